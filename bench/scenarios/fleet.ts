/**
 * Fleet: several worker processes (test/helpers/redis-worker.ts), each with its own pool, share K
 * keys with request quotas at the fake server, and ask for more than Σ quota. Run twice: each
 * worker on its own in-memory store (every process thinks it has the whole quota), then every
 * worker on one Redis store (`openrouter-rx/redis`, at 127.0.0.1:6379 unless told otherwise).
 *
 * - goodput: answers the fake server gave with status 200, per second over the measured span
 *   (warm-up excluded, while demand still exceeds Σ quota), as a fraction of Σ quota;
 * - 429 share: 429 answers over every attempt the fake server saw;
 * - failed: requests that ended with an error; lost: requests without an outcome.
 *
 * The Redis run is skipped (with the reason in `redisSkipped`) when no Redis answers, and recorded
 * as failed (`redisFailed`) when it throws; the memory run's figures are kept either way.
 *
 * `fleet` (at the end) is the bench scenario: a row per store, the targets on the Redis row. The
 * Redis address can be changed with `BENCH_REDIS=host:port`.
 */
import { Redis } from 'ioredis';
import { startFakeOpenRouter, type FakeOpenRouter } from '../../src/testing/index.js';
import { runWorkerFleet, type RedisWorkerHandle, type RedisWorkerSummary } from '../../test/helpers/redis-worker.js';
import { round } from '../support/measure.js';
import { fmt, pct, type PeerResult, type Scenario, type TargetCheck } from './types.js';

export interface FleetRunFigures {
  store: 'memory' | 'redis';
  workers: number;
  /** Requests sent in all. */
  requests: number;
  completed: number;
  failed: number;
  /** Requests without an outcome (a worker that died). */
  lost: number;
  /** Failures by error kind, over every worker. */
  errors: Record<string, number>;
  /** Attempts the fake server saw, and how many of them it answered 429. */
  attempts: number;
  rateLimited: number;
  rateLimitedShare: number;
  /** Answers with status 200 per second over the measured span. */
  goodputPerSecond: number;
  sumQuotaPerSecond: number;
  /** `goodputPerSecond / sumQuotaPerSecond`. */
  goodputVsQuota: number;
  /** From the go signal to the last worker's summary. */
  durationMs: number;
  /** From spawning the workers to all of them being ready (process start, not measured above). */
  startupMs: number;
  /** Workers whose store fell back to local limits at some point (Redis run only). */
  storeFallbacks: number;
}

export interface FleetResult {
  settings: {
    workers: number;
    requestsPerWorker: number;
    keys: number;
    quotaRequests: number;
    windowMs: number;
    latencyMs: number;
    concurrencyPerWorker: number;
    warmupMs: number;
    measureMs: number;
    redis: string;
  };
  memory: FleetRunFigures;
  /** `null` when no Redis answered (see `redisSkipped`) or the Redis run failed (`redisFailed`). */
  redis: FleetRunFigures | null;
  redisSkipped?: string;
  redisFailed?: string;
  durationMs: number;
}

export interface FleetScenarioOptions {
  quick: boolean;
  /** Where the Redis store lives. Default 127.0.0.1:6379. */
  redisHost?: string;
  redisPort?: number;
  /** Progress lines. */
  log?: (message: string) => void;
}

async function probeRedis(host: string, port: number): Promise<string | undefined> {
  const client = new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let socketError: string | undefined;
  client.on('error', (error: Error) => {
    socketError ??= error.message || error.name;
  });
  try {
    await client.connect();
    const pong = await client.ping();
    return pong === 'PONG' ? undefined : `PING answered ${JSON.stringify(pong)}`;
  } catch (error) {
    return socketError ?? (error instanceof Error ? error.message || error.name : String(error));
  } finally {
    client.disconnect();
  }
}

async function deletePrefix(host: string, port: number, prefix: string): Promise<void> {
  const client = new Redis({ host, port, lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  } catch {
    // Cleanup is best effort: the keys expire on their own (twice their window).
  } finally {
    client.disconnect();
  }
}

export async function runFleetScenario(options: FleetScenarioOptions): Promise<FleetResult> {
  const { quick } = options;
  const log = options.log ?? (() => undefined);
  const host = options.redisHost ?? '127.0.0.1';
  const port = options.redisPort ?? 6379;
  const started = Date.now();
  const settings: FleetResult['settings'] = {
    workers: 4,
    // Enough demand to saturate Σ quota through warm-up and the measured span, and then some.
    requestsPerWorker: quick ? 45 : 120,
    keys: 3,
    quotaRequests: 10,
    windowMs: 1_000,
    latencyMs: 20,
    concurrencyPerWorker: 16,
    warmupMs: 1_000,
    measureMs: quick ? 3_000 : 9_000,
    redis: `${host}:${port}`,
  };
  const sumQuotaPerSecond = (settings.keys * settings.quotaRequests * 1_000) / settings.windowMs;
  const keys = Array.from({ length: settings.keys }, (_, index) => ({
    key: `sk-or-v1-bench-fleet-${index + 1}`,
    label: `fleet-${index + 1}`,
  }));
  const quota = { requests: settings.quotaRequests, windowMs: settings.windowMs };

  async function runOnce(store: 'memory' | 'redis'): Promise<FleetRunFigures> {
    const fake: FakeOpenRouter = await startFakeOpenRouter({
      keys: keys.map((key) => ({ ...key, quota })),
      defaultModel: { latencyMs: settings.latencyMs },
    });
    const prefix = `orx-bench-fleet-${process.pid}-${Date.now().toString(36)}`;
    const spawned: RedisWorkerHandle[] = [];
    try {
      const run = await runWorkerFleet({
        workers: settings.workers,
        name: `bench-${store}`,
        onSpawn: (worker) => spawned.push(worker),
        readyTimeoutMs: 60_000,
        runTimeoutMs: 120_000,
        config: {
          baseURL: fake.baseURL,
          keys: keys.map((key) => ({ ...key, limits: { quotas: [quota] } })),
          store,
          ...(store === 'redis' ? { redis: { host, port, prefix } } : {}),
          requests: settings.requestsPerWorker,
          model: 'bench/fleet',
          concurrency: settings.concurrencyPerWorker,
          queueTimeoutMs: 30_000,
          maxRunMs: 120_000,
        },
      });
      const summaries: RedisWorkerSummary[] = run.summaries;
      const requests = settings.workers * settings.requestsPerWorker;
      const completed = summaries.reduce((sum, summary) => sum + summary.completed, 0);
      const failed = summaries.reduce((sum, summary) => sum + summary.failed, 0);
      const errors: Record<string, number> = {};
      for (const summary of summaries) {
        for (const [kind, count] of Object.entries(summary.errors)) errors[kind] = (errors[kind] ?? 0) + count;
      }
      const records = fake.requests;
      const attempts = records.length;
      const rateLimited = records.filter((record) => record.status === 429).length;
      const from = run.startedAt + settings.warmupMs;
      const to = from + settings.measureMs;
      const answered = records.filter((record) => record.status === 200 && record.at >= from && record.at < to).length;
      const goodputPerSecond = answered / (settings.measureMs / 1_000);
      const figures: FleetRunFigures = {
        store,
        workers: settings.workers,
        requests,
        completed,
        failed,
        lost: requests - completed - failed,
        errors,
        attempts,
        rateLimited,
        rateLimitedShare: attempts === 0 ? 0 : rateLimited / attempts,
        goodputPerSecond,
        sumQuotaPerSecond,
        goodputVsQuota: goodputPerSecond / sumQuotaPerSecond,
        durationMs: run.endedAt - run.startedAt,
        startupMs: run.startedAt - run.spawnedAt,
        storeFallbacks: summaries.filter((summary) => summary.storeModes.some((mode) => mode.startsWith('local'))).length,
      };
      log(
        `  ${store}: goodput ${(figures.goodputVsQuota * 100).toFixed(0)}% of Σ quota, 429 share ${(figures.rateLimitedShare * 100).toFixed(1)}% ` +
          `(${rateLimited}/${attempts}), ${completed}/${requests} completed, ${failed} failed, ${(figures.durationMs / 1_000).toFixed(1)} s`,
      );
      return figures;
    } finally {
      await Promise.all(spawned.map((worker) => worker.kill()));
      await fake.close();
      if (store === 'redis') await deletePrefix(host, port, prefix);
    }
  }

  log(
    `fleet: ${settings.workers} workers x ${settings.requestsPerWorker} requests on ${settings.keys} keys of ${settings.quotaRequests}/${settings.windowMs} ms`,
  );
  const memory = await runOnce('memory');
  const unreachable = await probeRedis(host, port);
  let redis: FleetRunFigures | null = null;
  let redisFailed: string | undefined;
  if (unreachable === undefined) {
    try {
      redis = await runOnce('redis');
    } catch (error) {
      redisFailed = error instanceof Error ? error.message : String(error);
      log(`  redis: failed: ${redisFailed}`);
    }
  } else log(`  redis: skipped, no Redis answered at ${host}:${port} (${unreachable})`);
  return {
    settings,
    memory,
    redis,
    ...(unreachable === undefined ? {} : { redisSkipped: `no Redis answered at ${host}:${port} (${unreachable})` }),
    ...(redisFailed === undefined ? {} : { redisFailed }),
    durationMs: Date.now() - started,
  };
}

// ------------------------------------------------------------------------ the bench scenario

/** `BENCH_REDIS=host:port` (or `host`, or `:port`), else 127.0.0.1:6379. */
function redisAddress(): { host: string; port: number } {
  const raw = process.env.BENCH_REDIS?.trim();
  if (raw === undefined || raw === '') return { host: '127.0.0.1', port: 6379 };
  const colon = raw.lastIndexOf(':');
  const host = (colon < 0 ? raw : raw.slice(0, colon)) || '127.0.0.1';
  const port = colon < 0 ? 6379 : Number(raw.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) throw new Error(`BENCH_REDIS="${raw}": expected host:port`);
  return { host, port };
}

const STORE_NAMES = { memory: 'library, memory store', redis: 'library, Redis store' } as const;

function storeRow(figures: FleetRunFigures, showsTargets: boolean): PeerResult {
  const fallbacks = figures.storeFallbacks > 0 ? ` · ${figures.storeFallbacks} of ${figures.workers} fell back to local limits` : '';
  const kinds = Object.entries(figures.errors)
    .map(([kind, count]) => `${kind} ${fmt(count)}`)
    .join(', ');
  return {
    peer: 'library',
    name: `${STORE_NAMES[figures.store]} (${figures.workers} processes)`,
    figures: {
      ...figures,
      rateLimitedShare: round(figures.rateLimitedShare, 4),
      goodputPerSecond: round(figures.goodputPerSecond, 2),
      goodputVsQuota: round(figures.goodputVsQuota, 4),
    },
    summary:
      `goodput ${pct(figures.goodputVsQuota)} of Σ quota · 429s ${pct(figures.rateLimitedShare)} of ${fmt(figures.attempts)} attempts · ` +
      `completed ${fmt(figures.completed)}/${fmt(figures.requests)} · failed ${fmt(figures.failed)}${kinds === '' ? '' : ` (${kinds})`} · lost ${fmt(figures.lost)}${fallbacks}`,
    showsTargets,
  };
}

/**
 * The library alone, as a fleet of processes: each on its own in-memory store, then all on one
 * Redis store. Peers do not apply (they have no shared store); the table shows a row per store,
 * with the targets on the Redis row. About 15 s in the quick run (each fleet's processes start
 * through `tsx`, about 2 s, outside the measured span).
 */
export const fleet: Scenario = {
  id: 'fleet',
  title: 'Fleet: several processes, memory store vs Redis store',
  async run(env) {
    const id = 'fleet' as const;
    const title = fleet.title;
    if (!env.peers.some((peer) => peer.id === 'library')) {
      env.log('  skipped: library-only scenario, and --peers leaves the library out');
      return {
        id,
        title,
        settings: { skipped: 'library not among --peers' },
        results: [],
        targets: [],
        notes: ['Skipped: the library is not among the selected peers.'],
      };
    }
    const { host, port } = redisAddress();
    const run = await runFleetScenario({ quick: env.quick, redisHost: host, redisPort: port, log: env.log });
    const { settings, memory, redis } = run;
    const redisReason = run.redisSkipped ?? run.redisFailed ?? 'no figures';
    const results: PeerResult[] = [
      storeRow(memory, false),
      redis === null
        ? {
            peer: 'library',
            name: `${STORE_NAMES.redis} (${settings.workers} processes)`,
            figures: {},
            summary: `failed: ${redisReason}`,
            failed: redisReason,
            showsTargets: true,
          }
        : storeRow(redis, true),
    ];
    const targets: TargetCheck[] = [];
    if (redis !== null) {
      targets.push({
        id: 'fleet.goodput',
        target: 'Redis store: goodput ≥ 95% of Σ quota',
        measured: `${pct(redis.goodputVsQuota)} (${fmt(redis.goodputPerSecond, 1)}/s of ${fmt(redis.sumQuotaPerSecond)}/s)`,
        met: redis.goodputVsQuota >= 0.95,
      });
      targets.push({
        id: 'fleet.429',
        target: 'Redis store: < 1% of attempts answered 429',
        measured: `${pct(redis.rateLimitedShare, 2)}, ${fmt(redis.rateLimited)} of ${fmt(redis.attempts)} attempts`,
        met: redis.rateLimitedShare < 0.01,
      });
      targets.push({
        id: 'fleet.vs-memory',
        target: 'Redis store: fewer 429s than the memory store',
        measured:
          `${fmt(redis.rateLimited)} vs ${fmt(memory.rateLimited)} answered 429, ${pct(redis.rateLimitedShare)} vs ${pct(memory.rateLimitedShare)} of attempts; ` +
          `goodput ${pct(redis.goodputVsQuota)} vs ${pct(memory.goodputVsQuota)} of Σ quota; completed ${fmt(redis.completed)} vs ${fmt(memory.completed)} of ${fmt(memory.requests)}`,
        met: redis.rateLimited < memory.rateLimited,
      });
    } else {
      targets.push({
        id: 'fleet.429',
        target: 'Redis store: goodput ≥ 95% of Σ quota, < 1% of attempts answered 429, fewer 429s than the memory store',
        measured: redisReason,
        met: null,
      });
    }
    const sumQuota = settings.keys * settings.quotaRequests;
    return {
      id,
      title,
      settings: { ...settings, sumQuotaPerWindow: sumQuota, redisSkipped: run.redisSkipped ?? null, redisFailed: run.redisFailed ?? null },
      results,
      targets,
      notes: [
        `${settings.workers} worker processes × ${settings.requestsPerWorker} requests (${settings.concurrencyPerWorker} in flight each) on ${settings.keys} keys × ${settings.quotaRequests} requests per ${settings.windowMs} ms window (Σ ${sumQuota}), answers in ${settings.latencyMs} ms: demand above Σ quota. Goodput = 200 answers at the fake server over ${settings.measureMs} ms after a ${settings.warmupMs} ms warm-up; the 429 share counts every attempt of the run.`,
        'Every worker is told the quotas. On the memory store each process believes it has the whole quota to itself; on the Redis store they share it.',
        `Library only (no peer has a shared store). The workers (test/helpers/redis-worker.ts) run the library from src/ through tsx; the fake server runs in the bench process. Redis at ${settings.redis}.`,
      ],
    };
  },
};
