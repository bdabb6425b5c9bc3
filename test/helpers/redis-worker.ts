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
 *
 * Imported (rather than run), the module only exports `spawnRedisWorker` and `runWorkerFleet`,
 * which start workers from the parent's side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { from, lastValueFrom, tap, toArray } from 'rxjs';
import { balance, createKeyPool, type BalanceEvent, type BalanceOptions, type ChatRequest, type KeyPool } from '../../src/index.js';
import type { LimitsConfig } from '../../src/pool/config.js';
import type { StateStore } from '../../src/store/state-store.js';
import { createRedisStore } from '../../src/redis/index.js';

export interface RedisWorkerConfig {
  /** The fake server's `baseURL`. */
  baseURL: string;
  keys: { key: string; label: string; limits?: LimitsConfig }[];
  store: 'redis' | 'memory';
  /** Where the Redis store lives (required with `store: 'redis'`). */
  redis?: {
    host: string;
    port: number;
    prefix: string;
    leaseMs?: number;
    /**
     * The store's `commandTimeoutMs`. Default here 5 s, not the store's 1 s: a fresh process on a
     * busy machine can stall its event loop for a second on its first requests, and a timer that
     * expired during a stall fires before the reply already waiting on the socket is read, which
     * would send the store to local limits for no fault of Redis.
     */
    commandTimeoutMs?: number;
  };
  /** Requests to send. */
  requests: number;
  model: string;
  /** `balance`'s concurrency. Default 16. */
  concurrency?: number;
  /** `balance`'s `queueTimeoutMs`: a request waiting longer for a key fails with `queue_timeout`. */
  queueTimeoutMs?: number;
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
  /** Store mode changes seen (`shared`, or `local (<reason>)`), in order. */
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
    void print({ type: 'error', message: `worker ${name} did not finish within ${config.maxRunMs ?? 60_000} ms` }).then(() =>
      process.exit(2),
    );
  }, config.maxRunMs ?? 60_000);
  guard.unref();

  let client: Redis | undefined;
  let store: StateStore | undefined;
  if (config.store === 'redis') {
    const { host, port, prefix, leaseMs, commandTimeoutMs } = config.redis!;
    client = await connect(host, port);
    store = createRedisStore({
      client,
      prefix,
      commandTimeoutMs: commandTimeoutMs ?? 5_000,
      ...(leaseMs === undefined ? {} : { leaseMs }),
    });
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
    if (event.type === 'store') storeModes.push(event.reason === undefined ? event.mode : `${event.mode} (${event.reason})`);
    if (event.type === 'attempt') {
      attempts++;
      if (config.reportAttempts === true) void print({ type: 'attempt', keyLabel: event.keyLabel, model: event.model, at: Date.now() });
    }
  });

  // The default transport loads the openai SDK when it is created; under tsx on a loaded machine
  // that takes seconds, and requests admitted meanwhile would go out long after their admission.
  // The fleet measures how processes share quotas, not a process's start: ready once it is loaded.
  await import('../../src/transport/openai-transport.js');
  await print({ type: 'ready', pid: process.pid, name });
  await waitForGo();

  const requests: ChatRequest[] = Array.from({ length: config.requests }, (_, index) => ({
    id: `${name}-${index}`,
    model: config.model,
    messages: [{ role: 'user' as const, content: `question ${index} from ${name}` }],
  }));
  const options: BalanceOptions = {
    concurrency: config.concurrency ?? 16,
    ...(config.queueTimeoutMs === undefined ? {} : { queueTimeoutMs: config.queueTimeoutMs }),
    ...(config.timeouts === false ? { timeouts: false as const } : {}),
  };
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
  await print({
    type: 'summary',
    name,
    pid: process.pid,
    store: config.store,
    completed,
    failed,
    errors,
    attempts,
    startedAt,
    endedAt,
    storeModes,
  });
  process.exit(0);
}

// ------------------------------------------------------------------------ the parent's side

/** This file, for `node --import tsx <path>`. */
export const REDIS_WORKER_PATH = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RedisWorkerHandle {
  readonly child: ChildProcess;
  /** Every JSON line the worker printed so far. */
  readonly lines: readonly RedisWorkerLine[];
  /** The tail of its stderr (and of any stdout line that was not JSON). */
  readonly stderr: string;
  /** The first line of `type`, waiting up to `timeoutMs`; rejects if the worker fails or exits first. */
  line<T extends RedisWorkerLine['type']>(type: T, timeoutMs: number): Promise<Extract<RedisWorkerLine, { type: T }>>;
  /** Tells a ready worker to start sending. */
  go(): void;
  /** Resolves with the exit code (or the signal) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** Kills the worker (SIGKILL by default) and resolves once it is gone; idempotent. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts one worker: `node --import tsx test/helpers/redis-worker.ts`, its config in the environment. */
export function spawnRedisWorker(config: RedisWorkerConfig): RedisWorkerHandle {
  const child = spawn(process.execPath, ['--import', 'tsx', REDIS_WORKER_PATH], {
    cwd: ROOT,
    env: { ...process.env, ORX_REDIS_WORKER: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: RedisWorkerLine[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  let gone = false;
  const exited = new Promise<number | string>((resolve) => {
    const finish = (outcome: number | string) => {
      gone = true;
      for (const listener of [...listeners]) listener();
      resolve(outcome);
    };
    child.once('exit', (code, signal) => finish(code ?? signal ?? 'unknown'));
    child.once('error', (error) => {
      stderr += `${error.message}\n`;
      finish('spawn-error');
    });
  });
  // A closed stdin is how a worker learns its parent is gone; writes after that are dropped.
  child.stdin?.on('error', () => undefined);
  createInterface({ input: child.stdout }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as RedisWorkerLine);
    } catch {
      stderr = `${stderr}[stdout] ${text}\n`.slice(-8_000);
    }
    for (const listener of [...listeners]) listener();
  });
  child.stderr?.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString('utf8')).slice(-8_000);
  });
  return {
    child,
    lines,
    get stderr() {
      return stderr;
    },
    line(type, timeoutMs) {
      return new Promise((resolve, reject) => {
        const settle = (finish: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          finish();
        };
        const check = () => {
          const found = lines.find((line) => line.type === type);
          const failure = lines.find((line): line is Extract<RedisWorkerLine, { type: 'error' }> => line.type === 'error');
          if (found !== undefined) settle(() => resolve(found as Extract<RedisWorkerLine, { type: typeof type }>));
          else if (failure !== undefined) settle(() => reject(new Error(`worker failed: ${failure.message}`)));
          else if (gone) settle(() => reject(new Error(`worker exited without a "${type}" line; stderr:\n${stderr.slice(-2_000)}`)));
        };
        const timer = setTimeout(
          () =>
            settle(() => reject(new Error(`no "${type}" line from the worker within ${timeoutMs} ms; stderr:\n${stderr.slice(-2_000)}`))),
          timeoutMs,
        );
        listeners.add(check);
        check();
      });
    },
    go() {
      if (!gone) child.stdin?.write('go\n');
    },
    exited,
    async kill(signal = 'SIGKILL') {
      if (!gone) child.kill(signal);
      child.stdin?.destroy();
      await exited;
    },
  };
}

export interface WorkerFleetOptions {
  /** How many workers, each with the same config but its own `name`. */
  workers: number;
  /** The config of every worker (`name` is set per worker). */
  config: Omit<RedisWorkerConfig, 'name'>;
  /** Prefix of the workers' names. */
  name: string;
  /** Called with each worker as it starts, so the caller can kill it if the run is abandoned. */
  onSpawn?: (worker: RedisWorkerHandle) => void;
  /** How long the workers may take to start. Default 30 s. */
  readyTimeoutMs?: number;
  /** How long the run may take once started. Default 60 s. */
  runTimeoutMs?: number;
}

export interface WorkerFleetRun {
  summaries: RedisWorkerSummary[];
  /** `Date.now()` when the workers were spawned, told to go, and when the last summary came. */
  spawnedAt: number;
  startedAt: number;
  endedAt: number;
}

/** Starts `workers` workers, waits until all are ready, releases them together, and collects their summaries. */
export async function runWorkerFleet(options: WorkerFleetOptions): Promise<WorkerFleetRun> {
  const spawnedAt = Date.now();
  const handles = Array.from({ length: options.workers }, (_, index) => {
    const handle = spawnRedisWorker({ ...options.config, name: `${options.name}-${index}` });
    options.onSpawn?.(handle);
    return handle;
  });
  try {
    await Promise.all(handles.map((handle) => handle.line('ready', options.readyTimeoutMs ?? 30_000)));
    const startedAt = Date.now();
    for (const handle of handles) handle.go();
    const summaries = await Promise.all(handles.map((handle) => handle.line('summary', options.runTimeoutMs ?? 60_000)));
    const endedAt = Date.now();
    await Promise.all(handles.map((handle) => handle.exited));
    return { summaries, spawnedAt, startedAt, endedAt };
  } finally {
    await Promise.all(handles.map((handle) => handle.kill()));
  }
}

// Run as a script (not imported): be a worker.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch(async (error: unknown) => {
    await print({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  });
}
