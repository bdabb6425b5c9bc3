import { resolve } from 'node:path';
import { createKeyPool } from '../create-key-pool.js';
import type { KeyPool } from '../create-pool.js';
import { createDashboardServer, type DashboardServer } from '../dashboard/server.js';
import { UsageError } from './args.js';
import { runBatch, type BatchOutcome } from './batch.js';
import { dashboardToken, tokenHint } from './dashboard-token.js';
import { FAKE_KEYS, FAKE_MODEL, startCliFake, type FakeSetup } from './fake.js';
import { EXIT, type CliIo } from './io.js';
import { keyRedactor, loadKeys, type CliKey } from './keys.js';
import { formatDuration } from './progress.js';
import { readPromptsFile, type PromptEntry } from './prompts.js';
import { ResultsWriter, prepareResults } from './results.js';
import type { RunOptions } from './run-options.js';

/**
 * `openrouter-rx run`: checks everything that can be a usage error before sending anything, writes
 * the bad lines as failures, then hands the rest to the batch loop (`batch.ts`). Key text reaches
 * no output: the pool speaks in labels, and every line and message passes through a redactor of
 * the loaded keys as a last guard.
 */

interface Keys {
  keys: CliKey[];
  description: string;
  warnings: string[];
}

async function keysFor(options: RunOptions, io: CliIo, cwd: string): Promise<Keys> {
  const loaded = await loadKeys(options.keysFile === undefined ? undefined : resolve(cwd, options.keysFile), io.env);
  return { keys: loaded.keys, description: `${loaded.keys.length} key(s) from ${loaded.source}`, warnings: loaded.warnings };
}

export async function runCommand(options: RunOptions, io: CliIo): Promise<number> {
  const cwd = io.cwd ?? process.cwd();
  const inputPath = resolve(cwd, options.input);
  const outPath = resolve(cwd, options.out);
  if (inputPath === outPath) throw new UsageError('--out: must not be the prompts file');
  const token = options.dashboardPort === undefined ? undefined : dashboardToken(io.env);

  // Everything that can be a usage error comes first: a bad call writes nothing and sends nothing.
  const entries = await readPromptsFile(inputPath, {
    model: options.model ?? (options.fake ? FAKE_MODEL : undefined),
    fallbackModels: options.fallbackModels,
  });
  const real = options.fake ? undefined : await keysFor(options, io, cwd);
  const resume = prepareResults(outPath, { retryFailed: options.retryFailed });
  const writer = new ResultsWriter(outPath, keyRedactor(real?.keys ?? FAKE_KEYS));

  const todo = entries.filter((entry) => !resume.done.has(entry.id));
  const bad = todo.filter((entry): entry is Extract<PromptEntry, { kind: 'bad' }> => entry.kind === 'bad');
  const runnable = todo.filter((entry): entry is Extract<PromptEntry, { kind: 'ok' }> => entry.kind === 'ok');
  const summarize = (outcome: Pick<BatchOutcome, 'succeeded' | 'failed' | 'elapsedMs'>) => {
    const written = outcome.succeeded + outcome.failed + bad.length;
    io.stdout.write(
      `${options.out}: ${written} result(s) written this run (${outcome.succeeded} ok, ${outcome.failed + bad.length} failed) in ${formatDuration(outcome.elapsedMs)}; ` +
        `${resume.done.size + written} of ${entries.length} prompt(s) have a result\n`,
    );
  };

  let fake: FakeSetup | undefined;
  let pool: KeyPool | undefined;
  let dashboard: DashboardServer | undefined;
  try {
    const redact = keyRedactor(real?.keys ?? FAKE_KEYS);
    const say = (text: string) => io.stderr.write(`${redact(text)}\n`);
    for (const note of [...(real?.warnings ?? []), ...resume.notes]) say(`warning: ${note}`);
    say(
      `openrouter-rx: ${entries.length} prompt(s) in ${options.input}; ${entries.length - todo.length} already in ${options.out}; ` +
        `${runnable.length} to send${bad.length > 0 ? `, ${bad.length} bad line(s)` : ''}`,
    );
    for (const entry of bad) {
      say(`${options.input} line ${entry.line}: ${entry.message}`);
      writer.write({
        id: entry.id,
        ok: false,
        error: { kind: 'bad_request', message: `line ${entry.line}: ${entry.message}` },
        line: entry.line,
      });
    }
    if (runnable.length === 0) {
      summarize({ succeeded: 0, failed: 0, elapsedMs: 0 });
      if (bad.length === 0) say('nothing to do: every prompt already has a result (--retry-failed runs the failed ones again)');
      return bad.length > 0 ? EXIT.failures : EXIT.ok;
    }
    if (io.signal?.aborted === true || io.abortSignal?.aborted === true) {
      say(`stopped before any prompt was sent; ${runnable.length} not run`);
      return EXIT.interrupted;
    }

    fake = options.fake ? await startCliFake(options.fakeLatencyMs) : undefined;
    const keys = fake?.keys ?? real!.keys;
    say(
      fake === undefined
        ? `sending to ${options.baseURL ?? 'OpenRouter'} with ${real!.description}; concurrency ${options.concurrency}`
        : `sending to the embedded fake OpenRouter at ${fake.fake.url} with made-up keys ${keys.map((key) => key.label).join(', ')}; concurrency ${options.concurrency}`,
    );
    pool = createKeyPool({
      keys: keys.map((key) => ({ key: key.key, label: key.label })),
      strategy: options.strategy,
      appTitle: 'openrouter-rx CLI',
      ...(fake !== undefined ? { baseURL: fake.fake.baseURL } : options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
    });
    if (options.dashboardPort !== undefined) {
      dashboard = await createDashboardServer({
        pool,
        port: options.dashboardPort,
        host: '127.0.0.1',
        title: 'openrouter-rx run',
        ...(token === undefined ? {} : { token }),
      }).catch((error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code;
        throw code === 'EADDRINUSE' ? new UsageError(`--dashboard-port: ${options.dashboardPort} is in use; pick another`) : error;
      });
      say(`dashboard: ${dashboard.url}${token === undefined ? '' : `; ${tokenHint(dashboard.url)}`}`);
      // Credit and validity per key, for the dashboard; a failure here only shows on the page.
      pool.refreshKeyInfo().subscribe({ error: () => undefined });
    }

    const outcome = await runBatch(pool, runnable, options, io, writer, redact, bad.length);
    summarize(outcome);
    if (outcome.fatal !== undefined) {
      say(`error: ${outcome.fatal}; ${outcome.notRun} prompt(s) were not run; fix that and run the same command again to resume`);
      return EXIT.failures;
    }
    if (outcome.notRun > 0) {
      say(`stopped: ${outcome.notRun} prompt(s) not run; run the same command again to resume`);
      return EXIT.interrupted;
    }
    return outcome.failed + bad.length > 0 ? EXIT.failures : EXIT.ok;
  } finally {
    writer.close();
    await dashboard?.close();
    pool?.dispose();
    await fake?.fake.close();
  }
}
