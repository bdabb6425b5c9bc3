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
 * The Redis run is skipped (with the reason in `redisSkipped`) when no Redis answers.
 */
import { Redis } from 'ioredis';
import { startFakeOpenRouter, type FakeOpenRouter } from '../../src/testing.js';
import { runWorkerFleet, type RedisWorkerHandle, type RedisWorkerSummary } from '../../test/helpers/redis-worker.js';

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
  /** `null` when no Redis answered (see `redisSkipped`). */
  redis: FleetRunFigures | null;
  redisSkipped?: string;
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
  const client = new Redis({ host, port, lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => null });
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
    requestsPerWorker: quick ? 45 : 100,
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
  const keys = Array.from({ length: settings.keys }, (_, index) => ({ key: `sk-or-v1-bench-fleet-${index + 1}`, label: `fleet-${index + 1}` }));
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

  log(`fleet: ${settings.workers} workers x ${settings.requestsPerWorker} requests on ${settings.keys} keys of ${settings.quotaRequests}/${settings.windowMs} ms`);
  const memory = await runOnce('memory');
  const unreachable = await probeRedis(host, port);
  let redis: FleetRunFigures | null = null;
  if (unreachable === undefined) redis = await runOnce('redis');
  else log(`  redis: skipped, no Redis answered at ${host}:${port} (${unreachable})`);
  return {
    settings,
    memory,
    redis,
    ...(unreachable === undefined ? {} : { redisSkipped: `no Redis answered at ${host}:${port} (${unreachable})` }),
    durationMs: Date.now() - started,
  };
}
