import * as z from 'zod';
import { strategyNames } from '../pool/strategies.js';
import type { StrategyName } from '../pool/strategies.js';
import { UsageError, describeFlagIssues, intFlag, modelFlag, modelListFlag, oneOfFlag, parseFlags, urlFlag } from './args.js';
import type { ProgressMode } from './progress.js';

/** `openrouter-rx run`: its flags, their validation, and its help. */

export const RUN_HELP = `Usage: openrouter-rx run <prompts.jsonl> --out <results.jsonl> [flags]

Sends every prompt of a JSONL file through a pool of OpenRouter keys and appends one result line
per prompt to --out. A rerun skips the ids already in --out, so an interrupted run resumes.

Input lines:  {"id"?: "a1", "prompt": "Hello"}  or  {"messages": [...], "model"?: ..., <any request field>}
              id defaults to the line number; "stream": false to ask for one non-streamed answer.
Output lines (in the order prompts finish):
              {"id", "ok": true, "model", "keyLabel", "content", "finishReason", "usage", "attempts", "latencyMs"}
              {"id", "ok": false, "error": {"kind", "message", "status"?}, "line"?}

Keys: OPENROUTER_API_KEYS (comma-separated, each optionally label=key), or --keys-file.
      Never a flag: it would stay in your shell history.

Flags:
  -o, --out <file>                 results file (JSONL, appended; required)
  -m, --model <slug>               model for lines without "model"
      --fallback-models <a,b>      models to fall back to, in order (comma-separated or repeated)
  -c, --concurrency <n>            prompts in flight at once (1-1000, default 8)
      --strategy <name>            key choice: ${strategyNames.join(', ')} (default powerOfTwo)
      --timeout-ms <ms>            longest attempt (default 300000)
      --first-token-timeout-ms <ms>  longest wait for a stream's first token (default 10000)
      --idle-timeout-ms <ms>       longest gap inside a stream (default 20000)
      --keys-file <file>           one key per line, optionally label=key; # starts a comment
      --base-url <url>             an OpenAI-compatible endpoint (default https://openrouter.ai/api/v1)
      --retry-failed               drop earlier failure lines from --out and run those prompts again
      --progress <mode>            auto (default: a bar on a terminal, plain lines otherwise), bar, plain, none
      --dashboard-port <port>      also serve the live health dashboard on http://127.0.0.1:<port>/
                                   (set OPENROUTER_RX_DASHBOARD_TOKEN and it asks for that token)
      --fake                       use the embedded fake OpenRouter: no key, no network
      --fake-latency-ms <ms>       how long the fake server takes to answer (default 60)
  -h, --help                       this help

Ctrl-C once: no new prompts; the ones in flight finish and are written. Twice: they are aborted.
Either way --out holds whole lines only, and the next run picks up where this one stopped.
Exit codes: 0 all succeeded, 1 some failed (see --out), 2 bad usage, 130 interrupted.
`;

export const RUN_FLAGS = {
  out: { type: 'string', short: 'o' },
  model: { type: 'string', short: 'm' },
  'fallback-models': { type: 'string', multiple: true },
  concurrency: { type: 'string', short: 'c' },
  strategy: { type: 'string' },
  'timeout-ms': { type: 'string' },
  'first-token-timeout-ms': { type: 'string' },
  'idle-timeout-ms': { type: 'string' },
  'keys-file': { type: 'string' },
  'base-url': { type: 'string' },
  'retry-failed': { type: 'boolean' },
  progress: { type: 'string' },
  'dashboard-port': { type: 'string' },
  fake: { type: 'boolean' },
  'fake-latency-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const timeoutFlag = intFlag(100, 3_600_000);

const runFlagsSchema = z
  .strictObject({
    input: z.string({ error: 'missing: openrouter-rx run <prompts.jsonl> --out <results.jsonl>' }).min(1),
    out: z.string({ error: 'is required: where to write the results, e.g. --out results.jsonl' }).min(1, 'must name a file'),
    model: modelFlag.optional(),
    'fallback-models': modelListFlag.optional(),
    concurrency: intFlag(1, 1000).optional(),
    strategy: oneOfFlag(strategyNames).optional(),
    'timeout-ms': timeoutFlag.optional(),
    'first-token-timeout-ms': timeoutFlag.optional(),
    'idle-timeout-ms': timeoutFlag.optional(),
    'keys-file': z.string().min(1, 'must name a file').optional(),
    'base-url': urlFlag.optional(),
    'retry-failed': z.boolean().optional(),
    progress: oneOfFlag(['auto', 'bar', 'plain', 'none'] as const).optional(),
    'dashboard-port': intFlag(1, 65_535).optional(),
    fake: z.boolean().optional(),
    'fake-latency-ms': intFlag(0, 60_000).optional(),
  })
  .superRefine((flags, context) => {
    if (flags.fake === true && flags['keys-file'] !== undefined) {
      context.addIssue({ code: 'custom', path: ['keys-file'], message: 'not with --fake: the fake server has keys of its own' });
    }
    if (flags.fake === true && flags['base-url'] !== undefined) {
      context.addIssue({ code: 'custom', path: ['base-url'], message: 'not with --fake: --fake starts its own server' });
    }
    if (flags.fake !== true && flags['fake-latency-ms'] !== undefined) {
      context.addIssue({ code: 'custom', path: ['fake-latency-ms'], message: 'only applies with --fake' });
    }
  });

export interface RunOptions {
  input: string;
  out: string;
  model: string | undefined;
  fallbackModels: string[];
  concurrency: number;
  strategy: StrategyName;
  timeouts: { totalMs: number; firstTokenMs: number; idleMs: number };
  keysFile: string | undefined;
  baseURL: string | undefined;
  retryFailed: boolean;
  /** `auto` resolved against the terminal later. */
  progress: ProgressMode | 'auto';
  dashboardPort: number | undefined;
  fake: boolean;
  fakeLatencyMs: number;
}

export type ParsedRun = { help: true } | { help: false; options: RunOptions };

export function parseRunArgs(argv: readonly string[]): ParsedRun {
  const { values, positionals } = parseFlags(argv, RUN_FLAGS);
  if (values.help === true) return { help: true };
  if (positionals.length > 1) {
    throw new UsageError(`one prompts file at a time; got ${positionals.length}: ${positionals.join(' ')}`);
  }
  const { help: _help, ...flags } = values;
  const parsed = runFlagsSchema.safeParse(Object.assign({}, flags, { input: positionals[0] }));
  if (!parsed.success) throw new UsageError(describeFlagIssues(parsed.error));
  const data = parsed.data;
  return {
    help: false,
    options: {
      input: data.input,
      out: data.out,
      model: data.model,
      fallbackModels: data['fallback-models'] ?? [],
      concurrency: data.concurrency ?? 8,
      strategy: data.strategy ?? 'powerOfTwo',
      timeouts: {
        totalMs: data['timeout-ms'] ?? 300_000,
        firstTokenMs: data['first-token-timeout-ms'] ?? 10_000,
        idleMs: data['idle-timeout-ms'] ?? 20_000,
      },
      keysFile: data['keys-file'],
      baseURL: data['base-url'],
      retryFailed: data['retry-failed'] ?? false,
      progress: data.progress ?? 'auto',
      dashboardPort: data['dashboard-port'],
      fake: data.fake ?? false,
      fakeLatencyMs: data['fake-latency-ms'] ?? 60,
    },
  };
}
