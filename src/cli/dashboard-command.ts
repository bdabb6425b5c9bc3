import { resolve } from 'node:path';
import * as z from 'zod';
import { HOST_NAME_RULE, normalizeHostName } from '../dashboard/access.js';
import { createDashboardServer } from '../dashboard/server.js';
import { createKeyPool } from '../create-key-pool.js';
import type { KeyPool } from '../create-pool.js';
import { UsageError, commaSeparatedFlag, describeFlagIssues, intFlag, parseFlags, urlFlag } from './args.js';
import { startDashboardDemo, type DashboardDemo } from './dashboard-demo.js';
import { DASHBOARD_TOKEN_ENV, dashboardToken, tokenHint } from './dashboard-token.js';
import { EXIT, type CliIo } from './io.js';
import { keyRedactor, loadKeys } from './keys.js';

/** `openrouter-rx dashboard`: serves the live health page until Ctrl-C. */

export const DASHBOARD_HELP = `Usage: openrouter-rx dashboard [flags]

Serves a live web page of every key's health (state, in flight, spend and tokens, failed attempts
and 429s, quota and credit left, recent errors, latency and spend charts) and of every model, with
charts of the last few minutes, fed by the pool's health$ over Server-Sent Events.

With your keys (OPENROUTER_API_KEYS or --keys-file) it checks each key's credit and validity every
--refresh-ms. With --fake it runs a demo load against the embedded fake OpenRouter: no key needed.

It answers requests for localhost, IP addresses, --host and --allowed-host only (a page on another
site cannot read it through DNS rebinding). Set ${DASHBOARD_TOKEN_ENV} (16+ characters)
and every route asks for that token: open the page once as <url>?token=<token>, or send
Authorization: Bearer <token>.

Flags:
  -p, --port <port>        port to listen on (default 4280; 0 picks a free one)
      --host <host>        interface to listen on (default 127.0.0.1)
      --allowed-host <name>  another host name the page is reached by, e.g. behind a proxy
                           (comma-separated or repeated)
      --keys-file <file>   one key per line, optionally label=key
      --base-url <url>     an OpenAI-compatible endpoint (default https://openrouter.ai/api/v1)
      --refresh-ms <ms>    how often to check each key's credit (default 60000)
      --fake               demo load against the embedded fake OpenRouter
      --rate <n>           prompts per second of the demo load (default 8)
  -h, --help               this help
`;

const DASHBOARD_FLAGS = {
  port: { type: 'string', short: 'p' },
  host: { type: 'string' },
  'allowed-host': { type: 'string', multiple: true },
  'keys-file': { type: 'string' },
  'base-url': { type: 'string' },
  'refresh-ms': { type: 'string' },
  fake: { type: 'boolean' },
  rate: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const dashboardFlagsSchema = z
  .strictObject({
    port: intFlag(0, 65_535).optional(),
    host: z.string().min(1, 'must name an interface, such as 127.0.0.1').optional(),
    'allowed-host': commaSeparatedFlag
      .pipe(z.array(z.string().refine((name) => normalizeHostName(name) !== undefined, HOST_NAME_RULE)))
      .optional(),
    'keys-file': z.string().min(1).optional(),
    'base-url': urlFlag.optional(),
    'refresh-ms': intFlag(1000, 86_400_000).optional(),
    fake: z.boolean().optional(),
    rate: intFlag(1, 200).optional(),
  })
  .superRefine((flags, context) => {
    if (flags.fake === true && (flags['keys-file'] !== undefined || flags['base-url'] !== undefined)) {
      context.addIssue({
        code: 'custom',
        path: [flags['keys-file'] !== undefined ? 'keys-file' : 'base-url'],
        message: 'not with --fake: the demo has its own server and keys',
      });
    }
    if (flags.fake !== true && flags.rate !== undefined)
      context.addIssue({ code: 'custom', path: ['rate'], message: 'only applies with --fake' });
  });

export async function dashboardCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, DASHBOARD_FLAGS);
  if (values.help === true) {
    io.stdout.write(DASHBOARD_HELP);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError(`dashboard takes no file; got ${positionals.join(' ')}`);
  const { help: _help, ...flags } = values;
  const parsed = dashboardFlagsSchema.safeParse(flags);
  if (!parsed.success) throw new UsageError(describeFlagIssues(parsed.error));
  const options = parsed.data;
  const token = dashboardToken(io.env);
  const cwd = io.cwd ?? process.cwd();

  let demo: DashboardDemo | undefined;
  let pool: KeyPool;
  let redact = (text: string) => text;
  let refresh: ReturnType<typeof setInterval> | undefined;
  if (options.fake === true) {
    demo = await startDashboardDemo({ ratePerSecond: options.rate ?? 8 });
    pool = demo.pool;
  } else {
    const loaded = await loadKeys(options['keys-file'] === undefined ? undefined : resolve(cwd, options['keys-file']), io.env);
    redact = keyRedactor(loaded.keys);
    for (const warning of loaded.warnings) io.stderr.write(`warning: ${warning}\n`);
    pool = createKeyPool({
      keys: loaded.keys.map((key) => ({ key: key.key, label: key.label })),
      appTitle: 'openrouter-rx dashboard',
      ...(options['base-url'] === undefined ? {} : { baseURL: options['base-url'] }),
    });
    const check = () => pool.refreshKeyInfo().subscribe({ error: () => undefined });
    check();
    refresh = setInterval(check, options['refresh-ms'] ?? 60_000);
  }
  try {
    const host = options.host ?? '127.0.0.1';
    const server = await createDashboardServer({
      pool,
      port: options.port ?? 4280,
      host,
      title: options.fake === true ? 'openrouter-rx demo' : 'openrouter-rx',
      ...(options['allowed-host'] === undefined ? {} : { allowedHosts: options['allowed-host'] }),
      ...(token === undefined ? {} : { token }),
    });
    try {
      io.stdout.write(
        redact(
          `dashboard: ${server.url}  (${options.fake === true ? 'demo load on the embedded fake OpenRouter' : `${pool.labels.length} key(s)`}; Ctrl-C to stop)\n`,
        ),
      );
      if (token !== undefined) io.stdout.write(`dashboard: ${tokenHint(server.url)}\n`);
      if (token === undefined && host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') {
        io.stderr.write(
          `warning: listening on ${host} without a token: anyone who can reach it sees key labels, errors and spend (never key text); set ${DASHBOARD_TOKEN_ENV}\n`,
        );
      }
      await new Promise<void>((resolveStop) => {
        const signals = [io.signal, io.abortSignal].filter((signal): signal is AbortSignal => signal !== undefined);
        if (signals.some((signal) => signal.aborted)) return resolveStop();
        for (const signal of signals) signal.addEventListener('abort', () => resolveStop(), { once: true });
      });
    } finally {
      await server.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`--port: ${options.port ?? 4280} is in use; pick another, or 0 for a free one`);
    if (code === 'EACCES') throw new UsageError(`--port: not allowed to listen on ${options.port ?? 4280}`);
    throw error;
  } finally {
    if (refresh !== undefined) clearInterval(refresh);
    if (demo !== undefined) await demo.stop();
    else pool.dispose();
  }
  io.stdout.write('dashboard stopped\n');
  return EXIT.ok;
}
