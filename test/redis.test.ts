/**
 * The Redis state store (`openrouter-rx/redis`) against a real Redis: the one at 127.0.0.1:6379
 * (`.ci/run` starts one if none answers), plus private `redis-server`s on free ports for the
 * tests that kill and restart Redis mid-run.
 *
 * - In one process: two pools with their own stores on one prefix share a quota, and a 429 park,
 *   a 401 disable or a breaker opening in one shows in the other's key health.
 * - A fleet: worker processes (test/helpers/redis-worker.ts), each with its own pool, share three
 *   keys with quotas against the fake server. With the Redis store they stay within the quotas;
 *   with each its own memory store they over-admit and collect 429s, for contrast.
 * - A worker killed mid-flight holds its slot until its lease expires, and not longer.
 * - Redis dies and comes back mid-run: with `onStoreError: 'local'` no request is lost, shared
 *   limits resume, and `maxConcurrent` holds through both switches of mode; with `'fail'`
 *   admissions fail with a `StoreUnavailableError`.
 *
 * Without Redis at 127.0.0.1:6379 the suites are skipped with a warning that says why; under CI
 * (`CI` set) a missing Redis fails the run instead. Real time and real sockets throughout: the
 * checks are bounds (quotas, counts, orderings) with slack for a loaded two-core machine.
 */
import { Redis, type RedisOptions } from 'ioredis';
import {
  firstValueFrom,
  from,
  interval,
  isObservable,
  lastValueFrom,
  map,
  switchMap,
  take,
  tap,
  timer,
  toArray,
  type Subscription,
} from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AttemptsExhaustedError,
  balance,
  createKeyPool,
  createOpenRouterTransport,
  type BalanceEvent,
  type BalanceOptions,
  type ChatRequest,
  type KeyHealth,
  type KeyPool,
  type KeyPoolOptions,
  type OpenRouterError,
  type PoolEvent,
  type Transport,
  ValidationError,
} from '../src/index.js';
import type { AdmissionPlan, Reservation, ReserveResult, StateChange, StateStore } from '../src/store/state-store.js';
import { StoreUnavailableError, createRedisStore, type RedisStoreOptions } from '../src/redis/index.js';
import { seedCallOf } from '../src/redis/windows.js';
import { startFakeOpenRouter, type FakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import {
  runWorkerFleet,
  spawnRedisWorker,
  type RedisWorkerConfig,
  type RedisWorkerHandle,
  type RedisWorkerSummary,
} from './helpers/redis-worker.js';
import { redisServerBinary, startPrivateRedis, type PrivateRedis } from './helpers/redis-server.js';
import { UnsharedStates } from '../src/redis/unshared-states.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { POOL_PORT } from '../src/pool/types.js';

/** A store's answer to one reservation, whether it answers at once or after a round trip. */
async function reserveOnce(store: StateStore, plan: AdmissionPlan, tokens: number, now: number): Promise<ReserveResult> {
  const result = store.reserve(plan, tokens, now);
  return isObservable(result) ? firstValueFrom(result) : result;
}

const REDIS_HOST = '127.0.0.1';
const REDIS_PORT = 6379;
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

// ------------------------------------------------------------------------------------ probe

async function probeRedis(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const client = new Redis({
    host: REDIS_HOST,
    port: REDIS_PORT,
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // The socket's own error (ECONNREFUSED, ETIMEDOUT) says more than the "Connection is closed." that follows.
  let socketError: string | undefined;
  client.on('error', (error: Error) => {
    socketError ??= error.message || error.name;
  });
  try {
    await client.connect();
    const pong = await client.ping();
    return pong === 'PONG' ? { ok: true } : { ok: false, reason: `PING answered ${JSON.stringify(pong)}` };
  } catch (error) {
    return { ok: false, reason: socketError ?? (error instanceof Error ? error.message || error.name : String(error)) };
  } finally {
    client.disconnect();
  }
}

const probe = await probeRedis();
const redisUp = probe.ok;
const binary = redisServerBinary();
const restartable = redisUp && binary.available;
if (!probe.ok && !IN_CI) {
  console.warn(`Redis suites skipped: no Redis answered at ${REDIS_HOST}:${REDIS_PORT} (${probe.reason})`);
} else if (redisUp && !binary.available && !IN_CI) {
  console.warn(`Redis restart suites skipped: no redis-server binary to start a private Redis (${binary.reason})`);
}

describe.runIf(IN_CI && (!redisUp || !binary.available))('Redis shared state under CI', () => {
  it(`needs a Redis server at ${REDIS_HOST}:${REDIS_PORT} and the redis-server binary (CI never skips the Redis suites)`, () => {
    if (!probe.ok)
      throw new Error(
        `CI is set but no Redis answered at ${REDIS_HOST}:${REDIS_PORT} (${probe.reason}); .ci/run starts one when redis-cli is installed`,
      );
    if (!binary.available) throw new Error(`CI is set but redis-server cannot be run (${binary.reason}); the restart tests need it`);
  });
});

// ------------------------------------------------------------------------------------ resources

const clients: Redis[] = [];
const stores: StateStore[] = [];
const pools: KeyPool[] = [];
const fakes: FakeOpenRouter[] = [];
const subscriptions: Subscription[] = [];
const workers: RedisWorkerHandle[] = [];
/** Prefixes used on the shared Redis at 6379, deleted after each test. */
const prefixes: string[] = [];
let admin: Redis | undefined;

async function connectRedis(port = REDIS_PORT, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis({ host: REDIS_HOST, port, lazyConnect: true, connectTimeout: 2_000, ...options });
  client.on('error', () => undefined);
  clients.push(client);
  await client.connect();
  return client;
}

async function adminClient(): Promise<Redis> {
  if (admin === undefined) {
    admin = new Redis({ host: REDIS_HOST, port: REDIS_PORT, lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 2 });
    admin.on('error', () => undefined);
    await admin.connect();
  }
  return admin;
}

let prefixSeq = 0;
function uniquePrefix(name: string): string {
  const prefix = `orx-test:${name}:${process.pid}:${Date.now().toString(36)}:${++prefixSeq}`;
  prefixes.push(prefix);
  return prefix;
}

function redisStore(client: Redis, options: Omit<RedisStoreOptions, 'client'>): StateStore {
  const store = createRedisStore({ client, ...options });
  stores.push(store);
  return store;
}

async function startFake(options: FakeServerOptions): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({ keepAliveIntervalMs: 20, ...options });
  fakes.push(fake);
  return fake;
}

function startPool(fake: FakeOpenRouter, options: Omit<KeyPoolOptions, 'baseURL'>): KeyPool {
  const pool = createKeyPool({ baseURL: fake.baseURL, ...options });
  pools.push(pool);
  return pool;
}

function recordEvents(pool: KeyPool): PoolEvent[] {
  const events: PoolEvent[] = [];
  subscriptions.push(pool.events$.subscribe((event) => events.push(event)));
  return events;
}

/** Every key of a prefix (`{prefix}:*`) on `client`. */
async function keysOf(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 500);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

async function deletePrefix(client: Redis, prefix: string): Promise<void> {
  const keys = await keysOf(client, prefix);
  if (keys.length > 0) await client.del(...keys);
}

afterEach(async () => {
  for (const subscription of subscriptions.splice(0)) subscription.unsubscribe();
  for (const pool of pools.splice(0)) pool.dispose();
  for (const store of stores.splice(0)) store.dispose();
  await Promise.all(workers.splice(0).map((worker) => worker.kill()));
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
  // `quit` lets the stores' last fire-and-forget commands (releases) go out first.
  await Promise.all(
    clients.splice(0).map(async (client) => {
      if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
      else client.disconnect();
    }),
  );
  const used = prefixes.splice(0);
  if (used.length > 0 && redisUp) {
    const client = await adminClient();
    for (const prefix of used) await deletePrefix(client, prefix);
  }
});

afterAll(async () => {
  await admin?.quit().catch(() => admin?.disconnect());
  admin = undefined;
});

// ------------------------------------------------------------------------------------ helpers

const MODEL = 'test/model-a';
/**
 * How long a request may wait for a key before it fails with `QueueTimeoutError`: far beyond any
 * quota wait here, so a timeout means the pool stalled (a queued request nobody woke up), and the
 * test fails with that, rather than hanging until vitest's timeout.
 */
const STALL_MS = 8_000;

function requestsOf(count: number, prefix: string, model = MODEL): ChatRequest[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `${prefix}-${index}`,
    model,
    messages: [{ role: 'user' as const, content: `question ${index}` }],
  }));
}

function runAll(pool: KeyPool, requests: ChatRequest[], options: BalanceOptions = {}): Promise<BalanceEvent[]> {
  return lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 16, queueTimeoutMs: STALL_MS, ...options }), toArray()));
}

function terminals(events: readonly BalanceEvent[]) {
  return {
    completed: events.filter((event) => event.type === 'completion'),
    failed: events.flatMap((event) => (event.type === 'failed' ? [event] : [])),
  };
}

/** Failures as `id: kind message`, so an assertion on them says what went wrong. */
function failuresOf(events: readonly BalanceEvent[]): string[] {
  return terminals(events).failed.map((event) => {
    const stalled = event.error.kind === 'queue_timeout' ? ' (the pool stalled: a queued request was never admitted)' : '';
    return `${event.requestId}: ${event.error.kind} ${event.error.message}${stalled}`;
  });
}

/** Windows of `windowMs` (half-open, as the fake server counts) that hold more than `limit` of `times`. */
function overfullWindows(times: readonly number[], limit: number, windowMs: number): string[] {
  const sorted = [...times].sort((a, b) => a - b);
  const problems: string[] = [];
  for (let i = 0; i + limit < sorted.length; i++) {
    const span = sorted[i + limit]! - sorted[i]!;
    if (span < windowMs) problems.push(`${limit + 1} within ${span} ms from t=${sorted[i]}`);
  }
  return problems;
}

/** The most entries of `times` in any window of `windowMs` (half-open). */
function busiestWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

/** Resolves with `Date.now()` and the record when a key's health first satisfies `predicate`. */
function whenKeyHealth(
  pool: KeyPool,
  label: string,
  predicate: (health: KeyHealth) => boolean,
  timeoutMs = 5_000,
): Promise<{ at: number; health: KeyHealth }> {
  return new Promise((resolve, reject) => {
    let subscription: Subscription | undefined;
    const timer = setTimeout(() => {
      subscription?.unsubscribe();
      reject(new Error(`key ${label} did not reach the expected health within ${timeoutMs} ms`));
    }, timeoutMs);
    subscription = pool.key(label).health$.subscribe((health) => {
      if (!predicate(health)) return;
      clearTimeout(timer);
      resolve({ at: Date.now(), health });
      queueMicrotask(() => subscription?.unsubscribe());
    });
    subscriptions.push(subscription);
  });
}

function waitFor<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const check = () => {
      const found = find();
      if (found !== undefined) return resolve(found);
      if (Date.now() > deadline) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(check, 10);
    };
    check();
  });
}

/** Polls Redis (or anything asynchronous) every 10 ms until `check` holds, for up to `timeoutMs`. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Measurements worth seeing when tuning the bounds: `ORX_REDIS_TEST_VERBOSE=1`. */
function verbose(message: string): void {
  if (process.env.ORX_REDIS_TEST_VERBOSE) console.log(`[redis.test] ${message}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `count` clients listen on the store channel of `prefix`, so no published change is missed. */
async function subscribersReady(client: Redis, prefix: string, count: number): Promise<void> {
  const channel = `{${prefix}}:changes`;
  const deadline = Date.now() + 3_000;
  for (;;) {
    const reply = (await client.pubsub('NUMSUB', channel)) as [string, number];
    if (Number(reply[1]) >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${reply[1]} of ${count} stores subscribed to ${channel}`);
    await sleep(10);
  }
}

/**
 * Reserves and releases slots of one plan on a store directly, counting the reservations held:
 * each stands for a request in flight, so `peak` is the most the upstream would have seen at once.
 */
function slotHolder(store: StateStore, plan: AdmissionPlan) {
  const held: Reservation[] = [];
  let peak = 0;
  return {
    get peak(): number {
      return peak;
    },
    get ids(): string[] {
      return held.map((reservation) => reservation.id);
    },
    /** Tries `times` admissions one after another; resolves how many were admitted. */
    async reserve(times = 1): Promise<number> {
      let admitted = 0;
      for (let i = 0; i < times; i++) {
        const result = await reserveOnce(store, plan, 1, Date.now());
        if (!result.ok) continue;
        held.push(result.reservation);
        admitted++;
        peak = Math.max(peak, held.length);
      }
      return admitted;
    },
    release(count = held.length): void {
      for (const reservation of held.splice(0, count)) store.release(reservation);
    },
  };
}

/** Waits until a slot set is empty: releases reach Redis a moment after `release` returns. */
async function waitForEmpty(client: Redis, slotKey: string): Promise<void> {
  const deadline = Date.now() + 2_000;
  while ((await client.zcard(slotKey)) > 0 && Date.now() < deadline) await sleep(20);
  expect(await client.zcard(slotKey), `leases left in ${slotKey} after every release`).toBe(0);
}

/** How many of `count` reservations `store` admits now on `plan` (each one's send reported at once). */
async function admittedBy(store: StateStore, plan: AdmissionPlan, count: number): Promise<number> {
  let ok = 0;
  for (let index = 0; index < count; index++) {
    const result = await reserveOnce(store, plan, 1, Date.now());
    if (!result.ok) continue;
    ok++;
    store.markSent(result.reservation, Date.now(), 0);
  }
  return ok;
}

function storeModes(store: StateStore): string[] {
  const modes: string[] = [];
  subscriptions.push(store.status$.subscribe((status) => modes.push(status.mode)));
  return modes;
}

// ------------------------------------------------------------------------------------ workers

/** Starts a worker that is killed after the test (if it is still running). */
function spawnWorker(config: RedisWorkerConfig): RedisWorkerHandle {
  const worker = spawnRedisWorker(config);
  workers.push(worker);
  return worker;
}

interface FleetRun {
  summaries: RedisWorkerSummary[];
  fake: FakeOpenRouter;
  attempts: number;
  rateLimited: number;
  startedAt: number;
  endedAt: number;
}

const FLEET_KEYS = [
  { key: TEST_KEYS.quota1, label: 'fleet-1' },
  { key: TEST_KEYS.quota2, label: 'fleet-2' },
  { key: TEST_KEYS.quota3, label: 'fleet-3' },
];
const FLEET_QUOTA = { requests: 10, windowMs: 1_000 };
const FLEET_WORKERS = 4;
const FLEET_REQUESTS = 20;

/** Runs the fleet once: `FLEET_WORKERS` workers, each sending `FLEET_REQUESTS`, released together. */
async function runFleet(store: 'redis' | 'memory'): Promise<FleetRun> {
  const fake = await startFake({ keys: FLEET_KEYS.map((key) => ({ ...key, quota: FLEET_QUOTA })), defaultModel: { latencyMs: 5 } });
  const prefix = uniquePrefix(`fleet-${store}`);
  const { summaries, spawnedAt, startedAt, endedAt } = await runWorkerFleet({
    workers: FLEET_WORKERS,
    name: store,
    onSpawn: (worker) => workers.push(worker),
    readyTimeoutMs: 20_000,
    runTimeoutMs: 25_000,
    config: {
      baseURL: fake.baseURL,
      keys: FLEET_KEYS.map((key) => ({ ...key, limits: { quotas: [FLEET_QUOTA] } })),
      store,
      ...(store === 'redis' ? { redis: { host: REDIS_HOST, port: REDIS_PORT, prefix } } : {}),
      requests: FLEET_REQUESTS,
      model: MODEL,
      concurrency: 16,
      queueTimeoutMs: STALL_MS,
      maxRunMs: 25_000,
    },
  });
  verbose(`fleet ${store}: workers ready after ${startedAt - spawnedAt} ms`);
  const attempts = fake.requests.length;
  const rateLimited = fake.requests.filter((record) => record.status === 429).length;
  const run = { summaries, fake, attempts, rateLimited, startedAt, endedAt };
  verbose(`fleet ${store}: ${describeFleet(run)}`);
  if (rateLimited > 0 && store === 'redis') {
    const at = (time: number) => time - startedAt;
    verbose(
      `fleet ${store}: 429s at ${fake.requests
        .filter((record) => record.status === 429)
        .map((record) => `${record.keyLabel}@${at(record.at)}`)
        .join(' ')}`,
    );
  }
  return run;
}

function describeFleet(run: FleetRun): string {
  const perWorker = run.summaries.map(
    (summary) => `${summary.name}: ${summary.completed} ok, ${summary.failed} failed ${JSON.stringify(summary.errors)}`,
  );
  return `${run.attempts} attempts, ${run.rateLimited} 429s, ${run.endedAt - run.startedAt} ms; ${perWorker.join('; ')}`;
}

// ------------------------------------------------------------------------------------ suites

describe.skipIf(!redisUp)('Redis store: pools in one process', () => {
  it('two pools with their own stores on one prefix share a quota: admissions in any window stay within it', async () => {
    const quota = { requests: 4, windowMs: 500 };
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'shared', quota }], defaultModel: { latencyMs: 5 } });
    const prefix = uniquePrefix('share-quota');
    const config = { keys: [{ key: TEST_KEYS.healthy1, label: 'shared', limits: { quotas: [quota] } }] };
    const poolA = startPool(fake, { ...config, store: redisStore(await connectRedis(), { prefix }) });
    const poolB = startPool(fake, { ...config, store: redisStore(await connectRedis(), { prefix }) });
    const eventsA = recordEvents(poolA);
    const eventsB = recordEvents(poolB);

    const [resultA, resultB] = await Promise.all([runAll(poolA, requestsOf(10, 'a')), runAll(poolB, requestsOf(10, 'b'))]);

    expect([...failuresOf(resultA), ...failuresOf(resultB)]).toEqual([]);
    expect(terminals(resultA).completed).toHaveLength(10);
    expect(terminals(resultB).completed).toHaveLength(10);
    const admissions = [...eventsA, ...eventsB].flatMap((event) => (event.type === 'attempt' ? [event.at] : []));
    expect(admissions).toHaveLength(20);
    // Each pool alone would take the whole quota at once: the two together may not exceed it.
    expect(busiestWindow(admissions, quota.windowMs), 'admissions of both pools in one window').toBeLessThanOrEqual(quota.requests);
    const arrivals = fake.requests.map((record) => record.at);
    expect(overfullWindows(arrivals, quota.requests, quota.windowMs)).toEqual([]);
    expect(fake.countRequests({ status: 429 })).toBe(0);
    // Both pools took part: neither starved while the other ran.
    expect(eventsA.some((event) => event.type === 'attempt')).toBe(true);
    expect(eventsB.some((event) => event.type === 'attempt')).toBe(true);
    // Every slot and quota entry is in Redis under the prefix, and nothing else.
    const keys = await keysOf(await adminClient(), prefix);
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((key) => key.startsWith(`{${prefix}}:`))).toBe(true);
  });

  /** Two pools on one prefix with the same keys; only A sends traffic. */
  async function twoPools(
    fakeOptions: FakeServerOptions,
    keys: KeyPoolOptions['keys'],
    extra: Omit<KeyPoolOptions, 'baseURL' | 'keys' | 'store'> = {},
  ) {
    const fake = await startFake(fakeOptions);
    const prefix = uniquePrefix('share-state');
    const poolA = startPool(fake, { keys, ...extra, store: redisStore(await connectRedis(), { prefix }) });
    const poolB = startPool(fake, { keys, ...extra, store: redisStore(await connectRedis(), { prefix }) });
    await subscribersReady(await adminClient(), prefix, 2);
    return { fake, prefix, poolA, poolB, eventsA: recordEvents(poolA) };
  }

  /** How long pool B took to show what pool A published: from A's `cooldown` event to B's health. */
  function propagation(eventsA: PoolEvent[], target: string, reason: string, seenAt: number): number {
    const cooldown = eventsA.find((event) => event.type === 'cooldown' && event.target === target && event.reason === reason);
    expect(cooldown, `pool A's ${reason} cooldown event for ${target}`).toBeDefined();
    verbose(`${reason} of ${target} reached pool B ${seenAt - cooldown!.at} ms after pool A's event`);
    return seenAt - cooldown!.at;
  }

  it("a 429 that parks a key in pool A shows in pool B's key health within ~100 ms", async () => {
    const { poolA, poolB, eventsA } = await twoPools(
      { keys: [{ key: TEST_KEYS.healthy1, label: 'parked', quota: { requests: 1, windowMs: 10_000 } }] },
      [{ key: TEST_KEYS.healthy1, label: 'parked' }],
    );
    const seen = whenKeyHealth(poolB, 'parked', (health) => health.state === 'open' && health.openReason === 'rate-limit');

    await runAll(poolA, requestsOf(2, 'park'), { concurrency: 1, rateLimit: false });

    const { at, health } = await seen;
    const delayMs = propagation(eventsA, 'parked', 'rate-limit', at);
    expect(delayMs).toBeLessThan(150);
    // The park lasts as long in B as in A (the server's Retry-After of about 10 s).
    const parkedA = poolA.snapshot().keys[0]!;
    expect(parkedA.state).toBe('open');
    expect(Math.abs(health.cooldownUntil! - parkedA.cooldownUntil!)).toBeLessThan(250);
    expect(health.cooldownUntil! - Date.now()).toBeGreaterThan(5_000);
  });

  it("a 401 that disables a key in pool A shows in pool B's key health within ~100 ms", async () => {
    const { poolA, poolB, eventsA } = await twoPools(
      {
        keys: [
          { key: TEST_KEYS.revoked, label: 'revoked', revoked: true },
          { key: TEST_KEYS.healthy2, label: 'good' },
        ],
      },
      [
        { key: TEST_KEYS.revoked, label: 'revoked' },
        { key: TEST_KEYS.healthy2, label: 'good' },
      ],
      // The 401 must come from an attempt: key info read at start would find the key revoked first.
      { strategy: 'roundRobin', discoverAccounts: false },
    );
    const seen = whenKeyHealth(poolB, 'revoked', (health) => health.state === 'disabled');

    const events = await runAll(poolA, requestsOf(2, 'auth'), { concurrency: 1 });

    expect(failuresOf(events)).toEqual([]);
    expect(terminals(events).completed).toHaveLength(2);
    const { at } = await seen;
    expect(propagation(eventsA, 'revoked', 'disabled', at)).toBeLessThan(150);
    expect(poolB.snapshot().keys.find((key) => key.label === 'good')?.state).toBe('closed');
  });

  it('a 401 disabling shared on Redis ends for the fleet once key info reads fine: in the pool that refreshes, in those running, and in those started later', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.revoked, label: 'revoked', revoked: true }] });
    const prefix = uniquePrefix('stale-disable');
    const keys = [{ key: TEST_KEYS.revoked, label: 'revoked' }];
    const poolFor = async (discoverAccounts: boolean) =>
      startPool(fake, { keys, discoverAccounts, store: redisStore(await connectRedis(), { prefix }), queue: { timeoutMs: 1_500 } });
    const stateIn = (pool: KeyPool) => pool.snapshot().keys[0]!.state;
    // Pool A takes the 401: the key is disabled, and the disabling stored in Redis with no end.
    const poolA = await poolFor(false);
    const refused = await lastValueFrom(poolA.complete(requestsOf(1, 'stale')[0]!)).catch((error: OpenRouterError) => error.kind);
    expect(refused).toBe('no_key_available');
    expect(stateIn(poolA)).toBe('disabled');
    fake.setKey(TEST_KEYS.revoked, { revoked: false });
    // Pool B starts now and reads the key's info, which reads fine: the stored disabling is stale.
    const poolB = await poolFor(true);
    await waitFor(() => (poolB.snapshot().keys[0]!.credit === null ? undefined : true), 5_000, 'pool B to read key info');
    await sleep(300);
    expect(stateIn(poolB)).toBe('closed');
    expect(await lastValueFrom(poolB.complete(requestsOf(1, 'after')[0]!)).then(() => 'answered')).toBe('answered');
    // Pool A learns it from the store, without a key info read of its own; a pool started later finds nothing stored.
    await waitFor(() => (stateIn(poolA) === 'closed' ? true : undefined), 2_000, "pool A's key back in service");
    const poolC = await poolFor(false);
    await sleep(300);
    expect(stateIn(poolC)).toBe('closed');
  });

  it("a breaker opening in pool A shows in pool B's key health within ~100 ms", async () => {
    const breaker = { consecutiveFailures: 2, cooldownMs: 10_000 };
    const { poolA, poolB, eventsA } = await twoPools(
      { keys: [{ key: TEST_KEYS.healthy1, label: 'flaky' }], models: { 'test/broken': { faults: [{ type: 'reset' }] } } },
      [{ key: TEST_KEYS.healthy1, label: 'flaky' }],
      { breaker },
    );
    const seen = whenKeyHealth(poolB, 'flaky', (health) => health.state === 'open' && health.openReason === 'failures');

    const events = await runAll(poolA, requestsOf(1, 'broken', 'test/broken'), { transient: { maxAttempts: 2, baseDelayMs: 1 } });

    expect(terminals(events).failed).toHaveLength(1);
    const { at, health } = await seen;
    expect(propagation(eventsA, 'flaky', 'failures', at)).toBeLessThan(150);
    // B's own breaker saw no failure: it holds A's opening, for as long.
    expect(health.consecutiveFailures).toBe(0);
    expect(health.cooldownUntil! - Date.now()).toBeGreaterThan(5_000);
  });
});

describe('Redis store: the states changed while Redis did not answer', () => {
  const disabled = { scope: 'key', target: 'a', state: 'disabled', remainingMs: 60_000, origin: 'p', reason: 'user' } as const;

  it('an enabling is shared whatever the time (it deletes the stored state); a timed state with what is left of its time, or not at all', () => {
    const states = new UnsharedStates();
    states.remember('enabled', { scope: 'key', target: 'b', state: 'enabled', remainingMs: 0, origin: 'p', reason: 'user' }, 1_000);
    states.remember('parked', { ...disabled, state: 'parked', remainingMs: 5_000 }, 1_000);
    states.remember('over', { ...disabled, state: 'parked', remainingMs: 500 }, 1_000);
    expect(states.take(2_000).map(([key, change]) => `${key} ${change.remainingMs}`)).toEqual(['enabled 0', 'parked 4000']);
  });

  it('a state remembered before the store knew the pool time keeps all of its time, not NaN', () => {
    const states = new UnsharedStates();
    states.remember('early', disabled, -Infinity);
    expect(states.take(-Infinity).map(([key, change]) => `${key} ${change.remainingMs}`)).toEqual(['early 60000']);
  });
});

describe("Redis store: a learned window's seed", () => {
  it('lists the entries oldest first, the rest of the server’s count (older) before the pool’s own sends: the script tops a window up from the oldest', () => {
    const now = 10_000;
    const entries = [now - 1_000, now - 600, now - 1_500, now - 1_500].map((at) => ({ at, amount: 1, live: true }));
    const [window, sum, windowMs, ages, names] = seedCallOf('{p}', 'key:k1', 2_000, entries, now, 'n');
    expect([window, sum, windowMs, names]).toEqual([
      '{p}:window:key:k1:requests:2000:learned',
      '{p}:window:key:k1:requests:2000:learned:sum',
      2_000,
      'n',
    ]);
    expect(JSON.parse(String(ages))).toEqual([1_500, 1_500, 1_000, 600]);
  });
});

describe('Redis store options', () => {
  it('refuses a client without one of the calls the store makes, naming it, at creation instead of a TypeError from a later call', () => {
    const full = {
      eval: () => Promise.resolve(null),
      get: () => Promise.resolve(null),
      pttl: () => Promise.resolve(-2),
      scan: () => Promise.resolve(['0', []]),
      ping: () => Promise.resolve('PONG'),
      pipeline: () => ({}),
      duplicate: () => ({}),
    };
    // A node-redis-style client: eval and duplicate, but no pipeline().
    const { pipeline: _pipeline, ...withoutPipeline } = full;
    const { duplicate: _duplicate, ...withoutDuplicate } = full;
    for (const [client, missing] of [
      [withoutPipeline, 'pipeline'],
      [withoutDuplicate, 'duplicate'],
    ] as const) {
      let thrown: unknown;
      try {
        createRedisStore({ client: client as unknown as RedisStoreOptions['client'] });
      } catch (error: unknown) {
        thrown = error;
      }
      expect(thrown, missing).toBeInstanceOf(ValidationError);
      expect((thrown as Error).message, missing).toMatch(new RegExp(`client: .*${missing}\\(\\)`));
    }
  });

  it('refuses an ioredis client with a keyPrefix, naming it: its SCAN patterns do not get the prefix, so no stored state would ever be replayed', async () => {
    const client = new Redis({ host: REDIS_HOST, port: REDIS_PORT, keyPrefix: 'myapp:', lazyConnect: true });
    // ioredis takes a Buffer too, which its types do not say.
    const withBuffer = new Redis({
      host: REDIS_HOST,
      port: REDIS_PORT,
      keyPrefix: Buffer.from('myapp:') as unknown as string,
      lazyConnect: true,
    });
    try {
      for (const each of [client, withBuffer])
        expect(() => createRedisStore({ client: each })).toThrow(/client\.options\.keyPrefix: .*the store's prefix option/);
    } finally {
      client.disconnect();
      withBuffer.disconnect();
    }
  });

  it('refuses a duration past the longest timer Node keeps (2^31-1 ms), naming the field: such a timer would fire every millisecond', () => {
    const client = { eval: () => Promise.resolve(null) } as unknown as RedisStoreOptions['client'];
    for (const field of ['leaseMs', 'commandTimeoutMs', 'recoveryIntervalMs'] as const) {
      expect(() => createRedisStore({ client, [field]: 2 ** 31 }), field).toThrow(new RegExp(`${field}: .*2147483647`));
    }
  });
});

describe.skipIf(!redisUp)('Redis store: regressions found in review', () => {
  it('two stores in one process hand out distinct reservation ids, so their slots and quota entries never collide', async () => {
    const prefix = uniquePrefix('collide');
    const storeA = redisStore(await connectRedis(), { prefix });
    const storeB = redisStore(await connectRedis(), { prefix });
    const windowMs = 60_000;
    const plan = [{ id: 'key:twin', kind: 'key' as const, limits: { maxConcurrent: 2, quotas: [{ requests: 10, windowMs }] } }];
    const first = await reserveOnce(storeA, plan, 1, Date.now());
    const second = await reserveOnce(storeB, plan, 1, Date.now());
    if (!first.ok || !second.ok) throw new Error('the first two reservations should both fit');
    const client = await adminClient();
    const slots = `{${prefix}}:slots:key:twin`;
    const window = `{${prefix}}:window:key:twin:requests:${windowMs}`;
    // Two reservations hold two slots and two quota entries ...
    expect(await client.zcard(slots), 'slots held').toBe(2);
    expect(await client.zcard(window), 'quota entries').toBe(2);
    expect(await client.get(`${window}:sum`)).toBe('2');
    // ... so a third does not fit under maxConcurrent 2.
    const third = await reserveOnce(storeA, plan, 1, Date.now());
    expect(third.ok, 'a third reservation under maxConcurrent 2').toBe(false);
  });

  it("a prefix with glob characters replays only its own fleet's states, not those of a fleet its pattern would match", async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'a' }] });
    const keys = [{ key: TEST_KEYS.healthy1, label: 'a' }];
    const prefix = uniquePrefix('tenantB');
    const lookalike = prefix.replace('tenantB', 'tenant?');
    prefixes.push(lookalike);
    const poolB = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await connectRedis(), { prefix }) });
    poolB.disable('a');
    const client = await adminClient();
    await until(async () => (await keysOf(client, prefix)).some((key) => key.includes(':state:')), 'the disabling to be stored');
    const stateOf = (pool: KeyPool) => pool.snapshot().keys[0]!.state;
    // The same prefix replays the disabling (so a replay happens at all) ...
    const sameFleet = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await connectRedis(), { prefix }) });
    await waitFor(() => (stateOf(sameFleet) === 'disabled' ? true : undefined), 2_000, 'the same fleet to replay the disabling');
    // ... a prefix whose glob would match it does not.
    const other = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await connectRedis(), { prefix: lookalike }) });
    await sleep(500);
    expect(stateOf(other)).toBe('closed');
  });

  it('a key of another type under the prefix is skipped by the replay, not the states after it: a pool started later still finds a key disabled', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'a' }] });
    const keys = [{ key: TEST_KEYS.healthy1, label: 'a' }];
    const prefix = uniquePrefix('wrong-type');
    const first = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await connectRedis(), { prefix }) });
    first.disable('a');
    const client = await adminClient();
    await until(async () => (await keysOf(client, prefix)).some((key) => key.includes(':state:')), 'the disabling to be stored');
    // Hashes where states live (SCAN's order is the hash table's: with 40 of them, some come first).
    for (let index = 0; index < 40; index++) await client.hset(`{${prefix}}:state:key:junk-${index}`, 'field', 'value');
    const later = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await connectRedis(), { prefix }) });
    await waitFor(
      () => (later.snapshot().keys[0]!.state === 'disabled' ? true : undefined),
      3_000,
      'the later pool to replay the disabling',
    );
  });

  it('a slot lease Redis lost while the store stayed shared (a restart nobody noticed) is put back at the next renewal, so maxConcurrent holds', async () => {
    const prefix = uniquePrefix('lost-lease');
    const leaseMs = 300;
    const store = redisStore(await connectRedis(), { prefix, leaseMs });
    const plan = [{ id: 'key:forgotten', kind: 'key' as const, limits: { maxConcurrent: 3 } }];
    const slots = slotHolder(store, plan);
    expect(await slots.reserve(3)).toBe(3);
    const client = await adminClient();
    const slotKey = `{${prefix}}:slots:key:forgotten`;
    await client.del(slotKey);
    // Renewals run every leaseMs / 3: after two of them the three leases are back ...
    await sleep((2 * leaseMs) / 3 + 100);
    expect((await client.zrange(slotKey, 0, -1)).sort(), 'leases in Redis').toEqual(slots.ids.sort());
    // ... and a fourth request is refused while the three are in flight.
    expect(await slots.reserve(1), 'admitted over maxConcurrent 3').toBe(0);
    slots.release();
    await waitForEmpty(client, slotKey);
    expect(await slots.reserve(3)).toBe(3);
    expect(slots.peak).toBe(3);
  });

  it("a window full of another process's unanswered requests refuses with a retry of at most one window, not the window plus their margin (their room frees a window after their first byte, which is no earlier than now)", async () => {
    const prefix = uniquePrefix('pending-retry');
    const windowMs = 5_000;
    const plan = [{ id: 'key:burst', kind: 'key' as const, limits: { quotas: [{ requests: 2, windowMs }] } }];
    // Process A fills the window in one burst: two requests admitted, one of them sent, neither answered.
    const storeA = redisStore(await connectRedis(), { prefix });
    const storeB = redisStore(await connectRedis(), { prefix });
    const admitted = await reserveOnce(storeA, plan, 1, Date.now());
    const sent = await reserveOnce(storeA, plan, 1, Date.now());
    if (!admitted.ok || !sent.ok) throw new Error('both reservations should fit an empty window');
    storeA.markSent(sent.reservation, Date.now(), 250);
    const client = await adminClient();
    const window = `{${prefix}}:window:key:burst:requests:${windowMs}`;
    const [redisNowSeconds] = await client.time();
    const scores = (await client.zrange(window, 0, -1, 'WITHSCORES')).filter((_, index) => index % 2 === 1).map(Number);
    expect(Math.min(...scores), 'both entries scored ahead of Redis now (the arrival and send margins)').toBeGreaterThan(
      Number(redisNowSeconds) * 1000 + 200,
    );

    // Process B is refused, and told to come back when the earlier of them could leave: one window from now.
    const refused = await reserveOnce(storeB, plan, 1, Date.now());
    if (refused.ok) throw new Error('a third request should not fit a quota of two');
    expect(refused.retryAfterMs).toBeLessThanOrEqual(windowMs);
    expect(refused.retryAfterMs).toBeGreaterThan(windowMs - 500);
  });

  it("a quota learned from a 429 starts its Redis window with what the server had counted, so the fleet's window opens as the server's does, one entry at a time, not whole when the 429's park ends", async () => {
    const prefix = uniquePrefix('seeded');
    const windowMs = 2_000;
    const scope = { id: 'key:seeded', kind: 'key' as const, limits: {} };
    const quota = { requests: 3, windowMs, source: 'learned' as const, bucket: 'requests-per-key' };
    const storeA = redisStore(await connectRedis(), { prefix });
    const storeB = redisStore(await connectRedis(), { prefix });
    // Connected: both admit into the scope while it has no quota.
    expect((await reserveOnce(storeA, [scope], 1, Date.now())).ok && (await reserveOnce(storeB, [scope], 1, Date.now())).ok).toBe(true);
    const now = Date.now();
    // A's sends counted 1,500 and 1,000 ms ago, and another sender's: the server's window is full,
    // and its oldest count leaves in 500 ms (the 429's reset).
    storeA.learn(scope, quota, now, { remaining: 0, resetAfterMs: 500 }, [now - 1_500, now - 1_000]);
    // B knows the quota as a pool of the fleet does: from A's state change, with no seed of its own.
    storeB.learn(scope, quota, now);
    const client = await adminClient();
    const window = `{${prefix}}:window:key:seeded:requests:${windowMs}:learned`;
    for (let waited = 0; (await client.zcard(window)) < 3 && waited < 2_000; waited += 20) await sleep(20);
    expect(await client.zcard(window)).toBe(3);
    // B is refused until the oldest entry leaves, with the server's: about 500 ms from the 429.
    const refused = await reserveOnce(storeB, [scope], 1, Date.now());
    if (refused.ok) throw new Error('a window seeded full should refuse');
    expect(refused.retryAfterMs).toBeGreaterThan(200);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(700);
    // A second seed of the same burst (another process's 429) adds nothing: the window holds its count.
    storeB.learn(scope, quota, Date.now(), { remaining: 0, resetAfterMs: 450 }, []);
    await sleep(100);
    expect(await client.zcard(window)).toBe(3);
  });

  it("an unanswered request's quota entry stays in the Redis window until its response (or the arrival margin), so a request that reached the server late is not followed too soon by another pool's", async () => {
    const quota = { requests: 1, windowMs: 400 };
    const fake = await startFake({
      keys: [{ key: TEST_KEYS.healthy1, label: 'late', quota }],
      models: { 'test/slow': { latencyMs: 200 } },
      defaultModel: { latencyMs: 5 },
    });
    const prefix = uniquePrefix('late');
    const keys = [{ key: TEST_KEYS.healthy1, label: 'late', limits: { quotas: [quota] } }];
    // Pool A's process stalls 300 ms between its admission and sending (a busy event loop, a slow
    // connection setup): its request reaches the server at +300 ms and is answered at +500 ms.
    const http = createOpenRouterTransport({ baseURL: fake.baseURL });
    const stalled: Transport = (key, request, options) => timer(300).pipe(switchMap(() => http(key, request, options)));
    const poolA = startPool(fake, { keys, transport: stalled, store: redisStore(await connectRedis(), { prefix }) });
    const poolB = startPool(fake, { keys, store: redisStore(await connectRedis(), { prefix }) });

    const first = runAll(poolA, requestsOf(1, 'late', 'test/slow'));
    await sleep(50);
    const second = runAll(poolB, requestsOf(1, 'next'), { rateLimit: false });
    await Promise.all([first, second]);

    // The server counts A's request from its arrival (+300 ms) for 400 ms: B's may arrive from +700 ms.
    const [arrivalA, arrivalB] = fake.requests.map((record) => record.at);
    expect(fake.countRequests({ status: 429 }), 'requests refused by the server').toBe(0);
    expect(arrivalB! - arrivalA!).toBeGreaterThanOrEqual(quota.windowMs);
  });
});

describe.skipIf(!redisUp)('Redis store: a fleet of worker processes', () => {
  let redisRun: FleetRun | undefined;

  it(`${FLEET_WORKERS} workers on 3 keys with quotas: every request completes, almost no 429s, no key over its quota in any window`, async () => {
    const run = await runFleet('redis');
    redisRun = run;
    const summary = describeFleet(run);

    for (const worker of run.summaries) {
      expect(worker.failed, summary).toBe(0);
      expect(worker.completed, summary).toBe(FLEET_REQUESTS);
      expect(
        worker.storeModes.filter((mode) => mode.startsWith('local')),
        `${worker.name} fell back to local limits`,
      ).toEqual([]);
    }
    expect(run.attempts).toBeGreaterThanOrEqual(FLEET_WORKERS * FLEET_REQUESTS);
    expect(run.rateLimited / run.attempts, summary).toBeLessThan(0.02);
    for (const { label } of FLEET_KEYS) {
      // Every arrival, 429s included: what the fleet sent, not what the server let through.
      const arrivals = run.fake.requests.filter((record) => record.keyLabel === label).map((record) => record.at);
      // One arrival of slack for the two clocks (Redis's TIME and the fake server's Date.now()).
      expect(overfullWindows(arrivals, FLEET_QUOTA.requests + 1, FLEET_QUOTA.windowMs), `${label}: ${summary}`).toEqual([]);
      // And the keys were used: the fleet ran at the quotas' pace, not below it.
      expect(busiestWindow(arrivals, FLEET_QUOTA.windowMs), `${label}: ${summary}`).toBeGreaterThanOrEqual(FLEET_QUOTA.requests / 2);
    }
  }, 40_000);

  it('the same fleet with each worker on its own memory store over-admits: markedly more 429s', async () => {
    const run = await runFleet('memory');
    const summary = describeFleet(run);
    const share = run.rateLimited / run.attempts;
    expect(share, summary).toBeGreaterThan(0.1);
    if (redisRun !== undefined) {
      expect(run.rateLimited, `memory: ${summary}\nredis: ${describeFleet(redisRun)}`).toBeGreaterThanOrEqual(
        Math.max(10, 5 * redisRun.rateLimited),
      );
    }
  }, 40_000);
});

describe.skipIf(!redisUp)('Redis store: a worker killed mid-flight', () => {
  it('its slot stays held until its lease expires, then another pool takes it (leaseMs 1000)', async () => {
    const leaseMs = 1_000;
    const fake = await startFake({
      keys: [{ key: TEST_KEYS.healthy1, label: 'single' }],
      models: { 'test/silent': { faults: [{ type: 'silent' }] } },
      defaultModel: { latencyMs: 5 },
    });
    const prefix = uniquePrefix('killed');
    const keys = [{ key: TEST_KEYS.healthy1, label: 'single', limits: { maxConcurrent: 1 } }];
    const worker = spawnWorker({
      name: 'doomed',
      baseURL: fake.baseURL,
      keys,
      store: 'redis',
      redis: { host: REDIS_HOST, port: REDIS_PORT, prefix, leaseMs },
      requests: 1,
      model: 'test/silent',
      timeouts: false,
      reportAttempts: true,
      maxRunMs: 20_000,
    });
    await worker.line('ready', 20_000);
    worker.go();
    await worker.line('attempt', 10_000);
    // Let the request reach the server, so the slot is held by a request in flight.
    await waitFor(() => (fake.countRequests({ model: 'test/silent' }) > 0 ? true : undefined), 5_000, 'the silent request');
    await sleep(150); // at least one lease renewal has gone by (every leaseMs / 3)

    await worker.kill('SIGKILL');
    const killedAt = Date.now();
    const client = await adminClient();
    const slotKey = `{${prefix}}:slots:key:single`;
    const held = await client.zrange(slotKey, 0, -1, 'WITHSCORES');
    expect(held, 'the dead worker still holds its slot').toHaveLength(2);
    const expiresAt = Number(held[1]);
    expect(expiresAt - killedAt).toBeGreaterThan(0);
    expect(expiresAt - killedAt).toBeLessThanOrEqual(leaseMs + 50);

    const pool = startPool(fake, { keys, store: redisStore(await connectRedis(), { prefix, leaseMs }) });
    const events = recordEvents(pool);
    const result = await runAll(pool, requestsOf(1, 'after-kill'));

    expect(failuresOf(result)).toEqual([]);
    expect(terminals(result).completed).toHaveLength(1);
    const admittedAt = events.find((event) => event.type === 'attempt')!.at;
    // Not before the lease expired (Redis's clock and ours are one machine's) ...
    expect(admittedAt).toBeGreaterThanOrEqual(expiresAt - 5);
    // ... and soon after: the pool polls a full slot set every 25 ms.
    expect(admittedAt - expiresAt).toBeLessThan(500);
    expect(admittedAt - killedAt).toBeLessThan(leaseMs + 500);
    // And the slot is free again once that request ended.
    const deadline = Date.now() + 2_000;
    while ((await client.zcard(slotKey)) > 0 && Date.now() < deadline) await sleep(20);
    expect(await client.zcard(slotKey)).toBe(0);
  }, 40_000);
});

describe.skipIf(!restartable)('Redis store: Redis dies and comes back mid-run', () => {
  let server: PrivateRedis | undefined;

  beforeAll(async () => {
    server = await startPrivateRedis();
  });

  afterEach(async () => {
    if (server !== undefined && !server.running) await server.start();
  });

  afterAll(async () => {
    await server?.close();
    server = undefined;
  });

  /** A client for the private server that reconnects quickly (the default backs off up to 2 s). */
  function privateClient(): Promise<Redis> {
    return connectRedis(server!.port, { retryStrategy: () => 50 });
  }

  it('a key disabled while Redis is down is disabled for the fleet once it answers again: in the pools running, and in one started later', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'a' }], defaultModel: { latencyMs: 5 } });
    const prefix = `orx-restart-disable-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, onStoreError: 'local' as const, commandTimeoutMs: 150, recoveryIntervalMs: 100 };
    // A limit, so that a request asks Redis (and finds it gone).
    const keys = [{ key: TEST_KEYS.healthy1, label: 'a', limits: { rpm: 1_000 } }];
    const poolOn = async (client?: Redis) =>
      startPool(fake, { keys, discoverAccounts: false, store: redisStore(client ?? (await privateClient()), options) });
    // The second pool's connections come back a second after Redis: the first has shared the
    // disabling by then, and the second must find it in the stored states when it reconnects.
    const [first, second] = [await poolOn(), await poolOn(await connectRedis(server!.port, { retryStrategy: () => 1_000 }))];
    const eventsFirst = recordEvents(first);
    const stateOf = (pool: KeyPool) => pool.snapshot().keys[0]!.state;
    await server!.stop('SIGKILL');
    // A request makes the store find Redis gone.
    await lastValueFrom(first.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(() => undefined);
    await waitFor(() => eventsFirst.find((event) => event.type === 'store' && event.mode === 'local'), 3_000, "a 'local' store event");
    first.disable('a');
    await server!.start();
    await waitFor(() => (stateOf(second) === 'disabled' ? true : undefined), 5_000, 'the running pool to see the disabling');
    const later = await poolOn();
    await waitFor(() => (stateOf(later) === 'disabled' ? true : undefined), 3_000, 'a pool started later to replay it');
    expect(stateOf(first)).toBe('disabled');
  });

  it("onStoreError 'local': no request is lost, the store goes local then shared again, and shared limits resume", async () => {
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.healthy1, label: 'steady' },
        { key: TEST_KEYS.healthy2, label: 'joint' },
      ],
      defaultModel: { latencyMs: 10 },
    });
    const prefix = `orx-restart-local-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, onStoreError: 'local' as const, commandTimeoutMs: 150, recoveryIntervalMs: 200, leaseMs: 1_000 };
    const store = redisStore(await privateClient(), options);
    const pool = startPool(fake, {
      keys: [{ key: TEST_KEYS.healthy1, label: 'steady', limits: { maxConcurrent: 4, quotas: [{ requests: 200, windowMs: 1_000 }] } }],
      store,
    });
    const events = recordEvents(pool);

    // One request every 20 ms for 3 s; Redis dies at 0.8 s and is back at 1.8 s.
    const total = 150;
    const outcomes: { id: string; type: string; at: number; error?: string }[] = [];
    const run = lastValueFrom(
      interval(20).pipe(
        take(total),
        map((index): ChatRequest => ({ id: `steady-${index}`, model: MODEL, messages: [{ role: 'user', content: `question ${index}` }] })),
        balance(pool, { concurrency: 16, queueTimeoutMs: STALL_MS }),
        tap((event) => {
          if (event.type === 'completion') outcomes.push({ id: event.requestId, type: event.type, at: Date.now() });
          if (event.type === 'failed')
            outcomes.push({ id: event.requestId, type: event.type, at: Date.now(), error: `${event.error.kind}: ${event.error.message}` });
        }),
        toArray(),
      ),
    );
    await sleep(800);
    await server!.stop('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => events.find((event) => event.type === 'store' && event.mode === 'local'), 3_000, "a 'local' store event");
    await sleep(1_000);
    await server!.start();
    const restartedAt = Date.now();
    const shared = await waitFor(
      () => events.find((event) => event.type === 'store' && event.mode === 'shared' && event.at >= restartedAt - 50),
      5_000,
      "a 'shared' store event",
    );
    await run;

    // Every input got exactly one terminal event, and it was a completion.
    expect(outcomes.filter((outcome) => outcome.type === 'failed')).toEqual([]);
    expect(new Set(outcomes.map((outcome) => outcome.id)).size).toBe(total);
    expect(outcomes).toHaveLength(total);
    // Requests went on completing while Redis was down, on local limits.
    expect(outcomes.filter((outcome) => outcome.at > killedAt + 300 && outcome.at < restartedAt).length).toBeGreaterThan(10);
    const modes = () => events.flatMap((event) => (event.type === 'store' ? [event.mode] : []));
    expect(modes()[0]).toBe('local');
    // Shared at the end (a command that times out just after the restart may flip it once more).
    await waitFor(() => (modes().at(-1) === 'shared' ? true : undefined), 3_000, 'the store back in shared mode');
    expect(shared.at - restartedAt).toBeLessThan(2_000);

    // Shared limits resume: a pool on the recovered store and one on a fresh store share a quota.
    const quota = { requests: 4, windowMs: 1_500 };
    const joint = [{ key: TEST_KEYS.healthy2, label: 'joint', limits: { quotas: [quota] } }];
    const poolA = startPool(fake, { keys: joint, store });
    const poolB = startPool(fake, { keys: joint, store: redisStore(await privateClient(), options) });
    const eventsA = recordEvents(poolA);
    const eventsB = recordEvents(poolB);
    const [resultA, resultB] = await Promise.all([runAll(poolA, requestsOf(4, 'joint-a')), runAll(poolB, requestsOf(4, 'joint-b'))]);
    expect([...failuresOf(resultA), ...failuresOf(resultB)]).toEqual([]);
    expect(terminals(resultA).completed).toHaveLength(4);
    expect(terminals(resultB).completed).toHaveLength(4);
    const admissions = [...eventsA, ...eventsB].flatMap((event) => (event.type === 'attempt' ? [event.at] : []));
    // Alone, each would take 4 at once; jointly, the second 4 wait for the window.
    expect(busiestWindow(admissions, 1_000)).toBeLessThanOrEqual(quota.requests);
    expect(eventsA.concat(eventsB).some((event) => event.type === 'store' && event.mode === 'local')).toBe(false);
  }, 40_000);

  it("onStoreError 'local': the slots held when Redis dies count against the local limit (maxConcurrent 3 never exceeded)", async () => {
    const prefix = `orx-down-slots-${process.pid}-${Date.now().toString(36)}`;
    const store = redisStore(await privateClient(), { prefix, onStoreError: 'local', commandTimeoutMs: 150, recoveryIntervalMs: 100 });
    const modes = storeModes(store);
    const plan = [{ id: 'key:capped', kind: 'key' as const, limits: { maxConcurrent: 3 } }];
    const slots = slotHolder(store, plan);
    expect(await slots.reserve(2), 'admitted in shared mode').toBe(2);

    await server!.stop('SIGKILL');
    // The first admission finds Redis gone and falls back to local limits: two of three slots are taken.
    expect(await slots.reserve(4), 'admitted locally with two in flight').toBe(1);
    expect(modes.at(-1)).toBe('local');
    expect(slots.peak, 'reservations held at once').toBe(3);
    // One ends, one more fits.
    slots.release(1);
    expect(await slots.reserve(2)).toBe(1);

    // Redis comes back empty: the three still held (two leases the restart lost, one never in Redis)
    // are leased again before shared admission resumes.
    await server!.start();
    await waitFor(() => (modes.at(-1) === 'shared' ? true : undefined), 3_000, 'the store back in shared mode');
    expect(await slots.reserve(2), 'admitted in shared mode with three in flight').toBe(0);
    const client = await privateClient();
    expect((await client.zrange(`{${prefix}}:slots:key:capped`, 0, -1)).sort(), 'leases in Redis').toEqual(slots.ids.sort());
    expect(slots.peak, 'reservations held at once').toBe(3);
  }, 20_000);

  it("onStoreError 'local': the slots taken while Redis was down are leased in Redis before shared admission resumes (maxConcurrent 3 never exceeded)", async () => {
    const prefix = `orx-up-slots-${process.pid}-${Date.now().toString(36)}`;
    const store = redisStore(await privateClient(), { prefix, onStoreError: 'local', commandTimeoutMs: 150, recoveryIntervalMs: 100 });
    const modes = storeModes(store);
    const plan = [{ id: 'key:capped', kind: 'key' as const, limits: { maxConcurrent: 3 } }];
    const slots = slotHolder(store, plan);

    await server!.stop('SIGKILL');
    expect(await slots.reserve(4), 'admitted locally').toBe(3);
    expect(modes.at(-1)).toBe('local');

    await server!.start();
    await waitFor(() => (modes.at(-1) === 'shared' ? true : undefined), 3_000, 'the store back in shared mode');
    // The three requests admitted while Redis was down are still in flight: Redis counts them.
    expect(await slots.reserve(3), 'admitted in shared mode with three in flight').toBe(0);
    const client = await privateClient();
    const slotKey = `{${prefix}}:slots:key:capped`;
    expect((await client.zrange(slotKey, 0, -1)).sort(), 'leases in Redis').toEqual(slots.ids.sort());
    // As they end, their slots go back to the fleet.
    slots.release(1);
    expect(await slots.reserve(2)).toBe(1);
    slots.release();
    await waitForEmpty(client, slotKey);
    expect(await slots.reserve(3)).toBe(3);
    expect(slots.peak, 'reservations held at once').toBe(3);
  }, 20_000);

  it("a restart no command noticed (the store stayed shared): once its connection is back, this process's sends still in a window are put back into Redis's, so another process finds their room taken", async () => {
    const prefix = `orx-unnoticed-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, onStoreError: 'local' as const, recoveryIntervalMs: 100 };
    const store = redisStore(await privateClient(), options);
    const modes = storeModes(store);
    const plan = [{ id: 'key:unnoticed', kind: 'key' as const, limits: { quotas: [{ requests: 10, windowMs: 60_000 }] } }];
    expect(await admittedBy(store, plan, 6), 'admitted before the restart').toBe(6);

    // Killed and started again between two commands: Redis comes back empty, and no command failed.
    await server!.stop('SIGKILL');
    await server!.start();
    const client = await privateClient();
    const sum = `{${prefix}}:window:key:unnoticed:requests:60000:sum`;
    await until(async () => Number(await client.get(sum)) === 6, 'the window in Redis to hold the 6 sends made before the restart');
    expect(modes, 'the store never went local').toEqual(['shared']);
    const other = redisStore(await privateClient(), options);
    expect(await admittedBy(other, plan, 10), "admitted by another process's store").toBe(4);
  }, 20_000);

  it('a pub/sub connection that drops and comes back with no restart puts back no send that has left its window, however long its process was idle', async () => {
    const prefix = `orx-blip-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, sendMarginMs: 0, arrivalMarginMs: 0 };
    const plan = [{ id: 'key:blip', kind: 'key' as const, limits: { quotas: [{ requests: 3, windowMs: 1_000 }] } }];
    const idle = redisStore(await privateClient(), options);
    const busy = redisStore(await privateClient(), options);
    const admin = await privateClient();
    await subscribersReady(admin, prefix, 2);
    expect(await admittedBy(idle, plan, 3), 'admitted by the process that then idles').toBe(3);
    await sleep(1_300);
    // The other process's admission prunes the idle one's sends, which have left the window.
    expect(await admittedBy(busy, plan, 1), 'admitted a window later').toBe(1);
    const sum = `{${prefix}}:window:key:blip:requests:1000:sum`;
    expect(Number(await admin.get(sum))).toBe(1);
    // A network blip of the pub/sub connections: each comes back and puts back what Redis lacks.
    await admin.client('KILL', 'TYPE', 'pubsub');
    await subscribersReady(admin, prefix, 2);
    await sleep(200);
    expect(Number(await admin.get(sum)), "the window in Redis after the blip: the busy process's one send").toBe(1);
    expect(await admittedBy(busy, plan, 2), 'admitted after the blip').toBe(2);
  }, 15_000);

  it("onStoreError 'fail': a reconnection whose putting back fails still replays the states published while the connection was down", async () => {
    const prefix = `orx-fail-resync-${process.pid}-${Date.now().toString(36)}`;
    const store = redisStore(await privateClient(), { prefix, onStoreError: 'fail', commandTimeoutMs: 150 });
    const replayed: StateChange[] = [];
    subscriptions.push(store.changes$.subscribe((change) => change.replayed === true && replayed.push(change)));
    const admin = await privateClient();
    await subscribersReady(admin, prefix, 1);
    // A slot held, so that the reconnection has a lease to put back.
    const held = await reserveOnce(store, [{ id: 'key:held', kind: 'key' as const, limits: { maxConcurrent: 5 } }], 1, Date.now());
    expect(held.ok).toBe(true);
    // A state stored whose publication the dropped connection misses.
    const message = { scope: 'key', target: 'k1', state: 'disabled', remainingMs: null, origin: 'another-process' };
    await admin.set(`{${prefix}}:state:key:k1`, JSON.stringify(message));
    // Writes held for a moment (a busy Redis): the lease's renewal times out.
    await admin.call('CLIENT', 'PAUSE', '600', 'WRITE');
    await admin.client('KILL', 'TYPE', 'pubsub');
    await waitFor(() => (replayed.some((change) => change.target === 'k1') ? true : undefined), 3_000, 'the stored state to be replayed');
  }, 15_000);

  it('a key enabled while Redis does not answer is enabled for the fleet once it does: its stored disabling goes, and is not replayed back', async () => {
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.healthy1, label: 'a' },
        { key: TEST_KEYS.healthy2, label: 'b' },
      ],
      defaultModel: { latencyMs: 5 },
    });
    const prefix = `orx-enable-local-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, onStoreError: 'local' as const, commandTimeoutMs: 150, recoveryIntervalMs: 100 };
    // Limits, so that a request on b asks Redis (and finds it not answering) while a is disabled.
    const keys = [
      { key: TEST_KEYS.healthy1, label: 'a', limits: { rpm: 1_000 } },
      { key: TEST_KEYS.healthy2, label: 'b', limits: { rpm: 1_000 } },
    ];
    const pool = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await privateClient(), options) });
    const events = recordEvents(pool);
    const admin = await privateClient();
    const stored = `{${prefix}}:state:key:a`;
    pool.disable('a');
    await until(async () => (await admin.get(stored)) !== null, 'the disabling to be stored');
    // Redis stops answering for a while, its data kept; a request makes the store find it so.
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    await lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(() => undefined);
    await waitFor(() => events.find((event) => event.type === 'store' && event.mode === 'local'), 3_000, "a 'local' store event");
    pool.enable('a');
    await waitFor(() => events.find((event) => event.type === 'store' && event.mode === 'shared'), 5_000, "a 'shared' store event");
    await sleep(300);
    expect(await admin.get(stored), 'the stored disabling').toBeNull();
    const stateOfA = (of: KeyPool) => of.snapshot().keys.find((key) => key.label === 'a')!.state;
    expect(stateOfA(pool)).toBe('closed');
    const later = startPool(fake, { keys, discoverAccounts: false, store: redisStore(await privateClient(), options) });
    await sleep(300);
    expect(stateOfA(later), 'in a pool started later').toBe('closed');
  }, 20_000);

  it("onStoreError 'local': a quota holds across both changes of mode: the fallback counts the sends made in shared mode, and the recovery puts the local sends into Redis's window", async () => {
    const prefix = `orx-quota-modes-${process.pid}-${Date.now().toString(36)}`;
    const options = { prefix, onStoreError: 'local' as const, commandTimeoutMs: 150, recoveryIntervalMs: 100, localShare: 0.5 };
    const store = redisStore(await privateClient(), options);
    const modes = storeModes(store);
    const plan = [{ id: 'key:windowed', kind: 'key' as const, limits: { quotas: [{ requests: 10, windowMs: 60_000 }] } }];
    const admitted = (on: StateStore, count: number) => admittedBy(on, plan, count);
    expect(await admitted(store, 4), 'admitted in shared mode').toBe(4);

    await server!.stop('SIGKILL');
    // Its share is 5 of the 10: the 4 it sent a moment ago count, so 1 more goes.
    expect(await admitted(store, 4), 'admitted locally after 4 shared sends').toBe(1);
    expect(modes.at(-1)).toBe('local');

    // Redis comes back empty: the window's 5 sends (the 4 its restart lost, the 1 it never saw) go
    // into it before shared admission resumes.
    await server!.start();
    await waitFor(() => (modes.at(-1) === 'shared' ? true : undefined), 3_000, 'the store back in shared mode');
    const client = await privateClient();
    expect(Number(await client.get(`{${prefix}}:window:key:windowed:requests:60000:sum`)), "the window's count in Redis").toBe(5);
    // Another process on the fleet finds the room this one used taken.
    const other = redisStore(await privateClient(), options);
    expect(await admitted(other, 12), "admitted by another process's store").toBe(5);
  }, 20_000);

  it('a reservation that timed out while Redis was down and runs when it comes back gives its slot back at once', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'lonely' }], defaultModel: { latencyMs: 5 } });
    const prefix = `orx-replay-${process.pid}-${Date.now().toString(36)}`;
    // The default lease (30 s): what a deployment gets.
    const pool = startPool(fake, {
      keys: [{ key: TEST_KEYS.healthy1, label: 'lonely', limits: { maxConcurrent: 1 } }],
      store: redisStore(await privateClient(), { prefix, onStoreError: 'fail', commandTimeoutMs: 150 }),
    });
    await server!.stop('SIGKILL');
    await expect(firstValueFrom(pool[POOL_PORT].acquire(requestsOf(1, 'down')[0]!, { models: [MODEL] }))).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    await server!.start();
    await sleep(500);

    // Nobody holds the key: its slot set is empty, and a request is admitted at once.
    const client = await privateClient();
    expect(await client.zrange(`{${prefix}}:slots:key:lonely`, 0, -1), 'slots held after the outage').toEqual([]);
    const after = await runAll(pool, requestsOf(1, 'after'), { queueTimeoutMs: 2_000 });
    expect(failuresOf(after)).toEqual([]);
  }, 20_000);

  it("onStoreError 'fail': while Redis is down, admissions fail with a StoreUnavailableError and every input gets exactly one terminal event", async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'strict' }], defaultModel: { latencyMs: 5 } });
    const prefix = `orx-restart-fail-${process.pid}-${Date.now().toString(36)}`;
    // No `maxConcurrent` here: see the known-bug test below for what a slot does across an outage.
    const pool = startPool(fake, {
      keys: [{ key: TEST_KEYS.healthy1, label: 'strict', limits: { quotas: [{ requests: 1_000, windowMs: 1_000 }] } }],
      store: redisStore(await privateClient(), { prefix, onStoreError: 'fail', commandTimeoutMs: 150, recoveryIntervalMs: 200 }),
    });
    const events = recordEvents(pool);
    const before = await runAll(pool, requestsOf(3, 'before'));
    expect(failuresOf(before)).toEqual([]);
    expect(terminals(before).completed).toHaveLength(3);

    await server!.stop('SIGKILL');
    const acquired = firstValueFrom(pool[POOL_PORT].acquire(requestsOf(1, 'direct')[0]!, { models: [MODEL] }));
    await expect(acquired).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(acquired).rejects.toMatchObject({ retryable: true, message: expect.stringContaining('Redis') });

    const during = await runAll(pool, requestsOf(12, 'down'), { concurrency: 4 });
    const ids = during.filter((event) => event.type === 'completion' || event.type === 'failed').map((event) => event.requestId);
    expect(ids.sort()).toEqual(
      requestsOf(12, 'down')
        .map((request) => request.id)
        .sort(),
    );
    const { completed, failed } = terminals(during);
    expect(completed).toHaveLength(0);
    for (const event of failed) {
      const error = event.error instanceof AttemptsExhaustedError ? event.error.lastError : event.error;
      expect(error, `${event.requestId}: ${event.error.name} ${event.error.message}`).toBeInstanceOf(StoreUnavailableError);
    }
    // Nothing reached the server while the store was down, and the store never went local.
    expect(fake.requests).toHaveLength(3);
    expect(events.some((event) => event.type === 'store' && event.mode === 'local')).toBe(false);

    await server!.start();
    await sleep(300);
    const after = await runAll(pool, requestsOf(3, 'after'));
    expect(failuresOf(after)).toEqual([]);
    expect(terminals(after).completed).toHaveLength(3);
  }, 40_000);
});
