/**
 * One process of a fleet, for test/redis.test.ts and bench/scenarios/fleet.ts: run as a child
 * process with `node --import tsx test/helpers/redis-worker.ts` and its config as JSON in the
 * `ORX_REDIS_WORKER` environment variable (see `RedisWorkerConfig`).
 *
 * It creates its own pool against the fake server (`baseURL`), with a Redis store or its own
 * in-memory store, prints `{"type":"ready"}` and waits for a `go` line on stdin, so that every
 * worker of a fleet starts sending at the same moment. It then sends `requests` requests through
 * `balance` and prints one `{"type":"summary", completed, failed, ...}` line. With
 * `reportAttempts` it also prints an `{"type":"attempt"}` line per attempt (the test that kills a
 * worker mid-flight waits for one).
 *
 * Output is JSON lines on stdout, labels only, never key text. The worker exits by itself when
 * done, when its stdin closes before `go` (its parent is gone), or after `maxRunMs`.
 */
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { from, lastValueFrom, tap, toArray } from 'rxjs';
import { balance, createKeyPool, type BalanceEvent, type BalanceOptions, type ChatRequest, type KeyPool } from '../../src/index.js';
import type { LimitsConfig } from '../../src/keys/config.js';
import type { StateStore } from '../../src/keys/state-store.js';
import { createRedisStore } from '../../src/redis/index.js';

export interface RedisWorkerConfig {
  /** The fake server's `baseURL`. */
  baseURL: string;
  keys: { key: string; label: string; limits?: LimitsConfig }[];
  store: 'redis' | 'memory';
  /** Where the Redis store lives (required with `store: 'redis'`). */
  redis?: { host: string; port: number; prefix: string; leaseMs?: number };
  /** Requests to send. */
  requests: number;
  model: string;
  /** `balance`'s concurrency. Default 16. */
  concurrency?: number;
  /** `false` turns the per-attempt timeouts off (a request may then wait forever on a silent server). */
  timeouts?: false;
  /** Print an `attempt` line per attempt. */
  reportAttempts?: boolean;
  /** Exit with code 2 if the run has not finished by then. Default 60 s. */
  maxRunMs?: number;
  /** Prefix of the request ids, to tell workers apart in the fake server's records. */
  name?: string;
}

export interface RedisWorkerSummary {
  type: 'summary';
  name: string;
  pid: number;
  store: 'redis' | 'memory';
  completed: number;
  failed: number;
  /** Failures by error kind. */
  errors: Record<string, number>;
  /** Attempts the pool made (a 429 and its retry are two). */
  attempts: number;
  /** `Date.now()` when the first request went in and when the last terminal event came out. */
  startedAt: number;
  endedAt: number;
  /** Store mode changes seen (`shared`/`local`), in order. */
  storeModes: string[];
}

export type RedisWorkerLine =
  | { type: 'ready'; pid: number; name: string }
  | { type: 'attempt'; keyLabel: string; model: string; at: number }
  | RedisWorkerSummary
  | { type: 'error'; message: string };

function print(line: RedisWorkerLine): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(line)}\n`, () => resolve()));
}

function readConfig(): RedisWorkerConfig {
  const raw = process.env.ORX_REDIS_WORKER;
  if (raw === undefined) throw new Error('ORX_REDIS_WORKER is not set');
  const config = JSON.parse(raw) as RedisWorkerConfig;
  if (config.store === 'redis' && config.redis === undefined) throw new Error('store "redis" needs a `redis` section');
  return config;
}

/** Resolves on a `go` line; exits the process if stdin closes first. */
function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    let started = false;
    lines.on('line', (line) => {
      if (line.trim() === 'go' && !started) {
        started = true;
        resolve();
      }
    });
    // The parent closed our stdin (or died): nobody is waiting for this worker any more.
    lines.on('close', () => {
      if (!started) process.exit(3);
    });
  });
}

async function connect(host: string, port: number): Promise<Redis> {
  const client = new Redis({ host, port, lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 2 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function main(): Promise<void> {
  const config = readConfig();
  const name = config.name ?? `w${process.pid}`;
  const guard = setTimeout(() => {
    void print({ type: 'error', message: `worker ${name} did not finish within ${config.maxRunMs ?? 60_000} ms` }).then(() => process.exit(2));
  }, config.maxRunMs ?? 60_000);
  guard.unref();

  let client: Redis | undefined;
  let store: StateStore | undefined;
  if (config.store === 'redis') {
    const { host, port, prefix, leaseMs } = config.redis!;
    client = await connect(host, port);
    store = createRedisStore({ client, prefix, ...(leaseMs === undefined ? {} : { leaseMs }) });
  }
  const pool: KeyPool = createKeyPool({
    baseURL: config.baseURL,
    keys: config.keys,
    strategy: 'leastInFlight',
    ...(store === undefined ? {} : { store }),
  });
  const storeModes: string[] = [];
  let attempts = 0;
  const events = pool.events$.subscribe((event) => {
    if (event.type === 'store') storeModes.push(event.mode);
    if (event.type === 'attempt') {
      attempts++;
      if (config.reportAttempts === true) void print({ type: 'attempt', keyLabel: event.keyLabel, model: event.model, at: Date.now() });
    }
  });

  await print({ type: 'ready', pid: process.pid, name });
  await waitForGo();

  const requests: ChatRequest[] = Array.from({ length: config.requests }, (_, index) => ({
    id: `${name}-${index}`,
    model: config.model,
    messages: [{ role: 'user' as const, content: `question ${index} from ${name}` }],
  }));
  const options: BalanceOptions = { concurrency: config.concurrency ?? 16, ...(config.timeouts === false ? { timeouts: false as const } : {}) };
  const startedAt = Date.now();
  let completed = 0;
  let failed = 0;
  const errors: Record<string, number> = {};
  await lastValueFrom(
    from(requests).pipe(
      balance(pool, options),
      tap((event: BalanceEvent) => {
        if (event.type === 'completion') completed++;
        else if (event.type === 'failed') {
          failed++;
          errors[event.error.kind] = (errors[event.error.kind] ?? 0) + 1;
        }
      }),
      toArray(),
    ),
  );
  const endedAt = Date.now();

  events.unsubscribe();
  pool.dispose();
  store?.dispose();
  await client?.quit().catch(() => undefined);
  clearTimeout(guard);
  await print({ type: 'summary', name, pid: process.pid, store: config.store, completed, failed, errors, attempts, startedAt, endedAt, storeModes });
  process.exit(0);
}

main().catch(async (error: unknown) => {
  await print({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exit(1);
});
