/**
 * Regressions of issue #10 that need the real SDK and the fake OpenRouter: a dead or misspelt model
 * must not stall requests for healthy models (defect 2), long waits must never overflow Node's
 * timers into a 1 ms spin (defect 3), and a provider that cuts streams blames the model, not the
 * keys (defect 8).
 */
import { asyncScheduler, from, lastValueFrom, tap, toArray, type SchedulerLike } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  KeyLimitError,
  ModelUnavailableError,
  StreamError,
  balance,
  createKeyPool,
  createPool,
  type BalanceEvent,
  type ChatRequest,
  type FailedEvent,
  type KeyPoolOptions,
} from '../src/index.js';
import { startFakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { NODE_TIMER_LIMIT_MS, watchTimers } from './helpers/timer-watch.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
  { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
  { key: TEST_KEYS.timeouts1, label: 'gamma', account: 'acct-c' },
  { key: TEST_KEYS.gating1, label: 'delta', account: 'acct-d' },
];

async function setUp(server: Partial<FakeServerOptions>, pool: Partial<KeyPoolOptions> = {}) {
  const fake = await startFakeOpenRouter({ keys: KEYS, keepAliveIntervalMs: 50, ...server });
  cleanups.push(() => fake.close());
  const keyPool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, ...pool });
  cleanups.push(() => keyPool.dispose());
  return { fake, pool: keyPool };
}

function chat(id: string, model: string, stream = false): ChatRequest {
  return { id, model, stream, messages: [{ role: 'user', content: `prompt ${id}` }] };
}

/** The documented clamp of a server's wait hint. */
const ONE_DAY_MS = 86_400_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a dead or misspelt model (defect 2)', () => {
  it('does not hold up requests for a healthy model: every request ends, the healthy ones answered', async () => {
    const { fake, pool } = await setUp({
      models: {
        'dead/model': { faults: [{ type: 'status', status: 503 }] },
        'misspelt/model': { faults: [{ type: 'status', status: 404, message: 'No endpoints found for misspelt/model.' }] },
      },
    });
    const models = ['dead/model', 'healthy/model', 'misspelt/model', 'healthy/model'];
    const requests = Array.from({ length: 80 }, (_, index) => chat(`r${index}`, models[index % models.length]!));
    const startedAt = Date.now();
    let lastHealthyAt = 0;
    const events = await lastValueFrom(
      from(requests).pipe(
        balance(pool, { concurrency: 4, modelWaitMs: 3_000 }),
        tap((event) => {
          if (event.type === 'completion' && event.model === 'healthy/model') lastHealthyAt = Date.now();
        }),
        toArray(),
      ),
    );
    const elapsedMs = Date.now() - startedAt;

    const terminal = events.filter((event) => event.type === 'completion' || event.type === 'failed');
    expect(new Set(terminal.map((event) => event.requestId)).size).toBe(80);
    expect(terminal).toHaveLength(80);
    const outcome = (model: string) =>
      terminal.filter((event) => requests.find((request) => request.id === event.requestId)!.model === model);
    expect(outcome('healthy/model').every((event) => event.type === 'completion')).toBe(true);
    expect(outcome('dead/model').every((event) => event.type === 'failed')).toBe(true);
    const misspelt = outcome('misspelt/model') as FailedEvent[];
    expect(misspelt.every((event) => event.type === 'failed' && event.error.kind === 'not_found')).toBe(true);
    // A dead model's requests stop reaching the server once its breaker opens; they fail with the reason.
    expect((outcome('dead/model') as FailedEvent[]).some((event) => event.error instanceof ModelUnavailableError)).toBe(true);
    expect(fake.countRequests({ model: 'dead/model' })).toBeLessThan(20);
    // A 404 is a request error: the misspelt model's health is untouched, one call per request.
    const misspeltHealth = pool.snapshot().models.find((model) => model.model === 'misspelt/model')!;
    expect(misspeltHealth).toMatchObject({ state: 'closed', consecutiveFailures: 0, lastError: null });
    expect(fake.countRequests({ model: 'misspelt/model' })).toBe(20);
    // No healthy request waited out the dead model's 5 s cooldown (generous bound for 2 shared
    // cores); the dead model's requests waited at most their 3 s without a slot, then failed.
    expect(lastHealthyAt - startedAt).toBeLessThan(2_500);
    expect(elapsedMs).toBeLessThan(6_000);
    expect(pool.snapshot().queued).toBe(0);
  });
});

describe('long waits (defect 3)', () => {
  it('a key capped until the end of the month and a 35-day Retry-After arm no overflowing timer, and the idle pool stays quiet', async () => {
    const timers = watchTimers();
    cleanups.push(timers.stop);
    // The pool's clock stands on the 2nd of a month, so the monthly cap resets ~29 days later.
    const secondOfMonth = Date.UTC(2026, 0, 2, 12);
    const shift = secondOfMonth - Date.now();
    const scheduler: SchedulerLike = { now: () => Date.now() + shift, schedule: asyncScheduler.schedule.bind(asyncScheduler) };
    const { fake, pool } = await setUp(
      {
        keys: [
          { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a', keyLimitExceeded: true, limit: 10, usage: 10, limitReset: 'monthly' },
          { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
        ],
        models: { 'hinted/model': { faults: [{ type: 'rate-limit', retryAfterSeconds: 35 * 86_400, providerName: 'Acme' }] } },
      },
      { keys: KEYS.slice(0, 2), scheduler, strategy: 'roundRobin' },
    );
    await lastValueFrom(pool.refreshKeyInfo());
    const events = await lastValueFrom(
      from([chat('capped', 'any/model'), chat('hinted', 'hinted/model')]).pipe(balance(pool, { rateLimit: { maxAttempts: 1 } }), toArray()),
    );
    expect(events.filter((event) => event.type === 'completion' || event.type === 'failed')).toHaveLength(2);
    const alpha = pool.snapshot().keys.find((key) => key.label === 'alpha')!;
    expect(alpha.state).toBe('exhausted');
    expect(alpha.cooldownUntil! - scheduler.now()).toBeGreaterThan(NODE_TIMER_LIMIT_MS);
    // The server's 35 days are clamped to the documented day.
    const hinted = pool.snapshot().models.find((model) => model.model === 'hinted/model')!;
    expect(hinted.cooldownUntil! - scheduler.now()).toBeLessThanOrEqual(ONE_DAY_MS);
    expect(fake.requests.length).toBeGreaterThan(0);

    const armedBefore = timers.delays.length;
    await sleep(300);
    expect(timers.warnings).toEqual([]);
    expect(Math.max(...timers.delays)).toBeLessThanOrEqual(NODE_TIMER_LIMIT_MS);
    // Idle: at most a few timers (the SDK's own), not one per millisecond.
    expect(timers.delays.length - armedBefore).toBeLessThan(20);
  });

  it('a pool told of a 35-day exhaustion by a custom transport sleeps in capped steps', async () => {
    const timers = watchTimers();
    cleanups.push(timers.stop);
    const pool = createPool({
      keys: [{ key: TEST_KEYS.alpha, label: 'alpha' }],
      transport: () => {
        throw new KeyLimitError({ message: 'key limit', scope: 'key', retryable: true, status: 403, retryAfterMs: 35 * 86_400_000 });
      },
    });
    cleanups.push(() => pool.dispose());
    const events: BalanceEvent[] = await lastValueFrom(
      from([chat('r1', 'any/model')]).pipe(balance(pool, { rateLimit: false }), toArray()),
    );
    expect(events.at(-1)?.type).toBe('failed');
    await sleep(200);
    expect(timers.warnings).toEqual([]);
    expect(Math.max(...timers.delays)).toBeLessThanOrEqual(NODE_TIMER_LIMIT_MS);
    expect(timers.delays.length).toBeLessThan(20);
  });
});

describe('a provider that cuts every stream (defect 8)', () => {
  it('opens the model breaker and leaves every key closed', async () => {
    const { pool } = await setUp({ models: { 'cutting/model': { chunkCount: 6, faults: [{ type: 'cut', afterChunks: 2 }] } } });
    const requests = Array.from({ length: 12 }, (_, index) => chat(`r${index}`, 'cutting/model', true));
    const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 4, modelWaitMs: 0 }), toArray()));
    const failed = events.filter((event): event is FailedEvent => event.type === 'failed');
    expect(failed).toHaveLength(12);
    const cut = failed.map((event) => event.error).find((error) => error instanceof StreamError || error.kind === 'attempts_exhausted');
    expect(cut?.scope).toBe('model');
    const health = pool.snapshot();
    for (const key of health.keys) expect(key, key.label).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
    expect(health.models.find((model) => model.model === 'cutting/model')!.state).not.toBe('closed');
  });
});

describe('a batch for a healthy model, with its adaptive limit below the concurrency (a load review)', () => {
  // Requests refused at the model's limit step out of their concurrency slots; each slot they
  // freed started the next input, refused in turn: the whole batch stepped out at once. It then
  // waited in the order it had been refused (the first requests last), and each request's queue
  // timeout ran from the start of the batch.
  async function run(total: number, queueTimeoutMs?: number) {
    const { pool } = await setUp({ defaultModel: { latencyMs: 30 } }, { keys: KEYS.slice(0, 2), discoverAccounts: false });
    const requests = Array.from({ length: total }, (_, index) => chat(`r${index}`, 'healthy/model'));
    const options = queueTimeoutMs === undefined ? { concurrency: 16 } : { concurrency: 16, queueTimeoutMs };
    const events = await lastValueFrom(from(requests).pipe(balance(pool, options), toArray()));
    return events.filter((event) => event.type === 'completion' || event.type === 'failed');
  }

  it('answers in arrival order: the first 16 requests are among the first 64 answers', async () => {
    const terminals = await run(400);
    expect(terminals.filter((event) => event.type === 'failed')).toEqual([]);
    const late = terminals.slice(64).filter((event) => Number(event.requestId.slice(1)) < 16);
    expect(late.map((event) => event.requestId)).toEqual([]);
  }, 30_000);

  it('times out no request of a batch the model keeps serving: queueTimeoutMs bounds a wait, not the batch', async () => {
    const terminals = await run(1_200, 2_000);
    expect(terminals.filter((event) => event.type === 'failed').map((event) => event.type === 'failed' && event.error.kind)).toEqual([]);
    expect(terminals).toHaveLength(1_200);
  }, 30_000);
});
