/**
 * The pool at the network edge: `createKeyPool` with the real `openai` SDK against the fake
 * OpenRouter on 127.0.0.1. Real sockets, real time: the checks here are bounds (quotas, counts,
 * orderings), never speeds.
 */
import { NEVER, Observable, concat, defer, filter, firstValueFrom, from, lastValueFrom, toArray, type Subscription } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AttemptsExhaustedError,
  BadRequestError,
  OpenRouterError,
  StreamError,
  balance,
  createFetchTransport,
  createKeyPool,
  type BalanceEvent,
  type ChatRequest,
  type KeyCredential,
  type ChunkEvent,
  type CompletionEvent,
  type KeyHealth,
  type KeyPool,
  type KeyPoolOptions,
  type PoolEvent,
  type PoolHealth,
  type RestartEvent,
  type Transport,
  type TransportOptions,
} from '../src/index.js';
import { startFakeOpenRouter, type FakeOpenRouter, type FakeRequestRecord, type FakeServerOptions } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const MODEL = 'test/model-a';

const servers: FakeOpenRouter[] = [];
const pools: KeyPool[] = [];
const subscriptions: Subscription[] = [];

afterEach(async () => {
  for (const subscription of subscriptions.splice(0)) subscription.unsubscribe();
  for (const pool of pools.splice(0)) pool.dispose();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function startFake(options: FakeServerOptions): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({ keepAliveIntervalMs: 20, ...options });
  servers.push(fake);
  return fake;
}

function startPool(fake: FakeOpenRouter, options: Omit<KeyPoolOptions, 'baseURL'>): KeyPool {
  const pool = createKeyPool({ baseURL: fake.baseURL, ...options });
  pools.push(pool);
  return pool;
}

function requestsOf(count: number, prefix: string, streamEvery = 0): ChatRequest[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `${prefix}-${index}`,
    model: MODEL,
    ...(streamEvery > 0 && index % streamEvery === 0 ? { stream: true } : {}),
    messages: [{ role: 'user' as const, content: `question ${index}` }],
  }));
}

function runAll(pool: KeyPool, requests: ChatRequest[], concurrency: number): Promise<BalanceEvent[]> {
  return lastValueFrom(from(requests).pipe(balance(pool, { concurrency }), toArray()));
}

function recordEvents(pool: KeyPool): PoolEvent[] {
  const events: PoolEvent[] = [];
  subscriptions.push(pool.events$.subscribe((event) => events.push(event)));
  return events;
}

function terminalEvents(events: BalanceEvent[]) {
  const completions = events.filter((event): event is CompletionEvent => event.type === 'completion');
  const failures = events.flatMap((event) => (event.type === 'failed' ? [event] : []));
  return { completions, failures };
}

/** Windows of `windowMs` that hold more than `limit` of `times` (half-open: (t - windowMs, t]). */
function overfullWindows(times: readonly number[], limit: number, windowMs: number): string[] {
  const sorted = [...times].sort((a, b) => a - b);
  const problems: string[] = [];
  for (let i = 0; i + limit < sorted.length; i++) {
    const span = sorted[i + limit]! - sorted[i]!;
    if (span < windowMs) problems.push(`${limit + 1} arrivals within ${span} ms from t=${sorted[i]}`);
  }
  return problems;
}

function keyHealth(pool: KeyPool, label: string): KeyHealth {
  const health = pool.snapshot().keys.find((key) => key.label === label);
  if (health === undefined) throw new Error(`no key ${label}`);
  return health;
}

describe('createKeyPool against the fake OpenRouter (real SDK, 127.0.0.1)', () => {
  it('(a) 1,000 requests over 4 keys with quotas: all complete, under 1% of attempts get a 429, no key exceeds its quota in any window', async () => {
    // 4 keys x 50 per second: the quotas set the pace, about 5 s for 1,000 requests.
    const quota = { requests: 50, windowMs: 1_000 };
    const keys = [
      { key: TEST_KEYS.quota1, label: 'quota-1' },
      { key: TEST_KEYS.quota2, label: 'quota-2' },
      { key: TEST_KEYS.quota3, label: 'quota-3' },
      { key: TEST_KEYS.quota4, label: 'quota-4' },
    ];
    const fake = await startFake({
      keys: keys.map((key) => ({ ...key, quota })),
      defaultModel: { latencyMs: 5, chunkCount: 3 },
    });
    const pool = startPool(fake, {
      keys: keys.map((key) => ({ ...key, limits: { quotas: [quota] } })),
      strategy: 'leastInFlight',
    });

    const requests = requestsOf(1_000, 'load', 4);
    // Bursts of 64: on a loaded machine a request can take longer than a window to reach the
    // server, which the pool must allow for (an unanswered attempt keeps its place in the window).
    const events = await runAll(pool, requests, 64);

    const { completions, failures } = terminalEvents(events);
    expect(failures.map((event) => `${event.requestId}: ${event.error.kind} ${event.error.message}`)).toEqual([]);
    expect(new Set(completions.map((event) => event.requestId)).size).toBe(requests.length);
    expect(completions).toHaveLength(requests.length);

    const attempts = fake.requests;
    const rateLimited = attempts.filter((record) => record.status === 429).length;
    expect(attempts.length).toBeGreaterThanOrEqual(requests.length);
    expect(rateLimited / attempts.length, `${rateLimited} 429s in ${attempts.length} attempts`).toBeLessThan(0.01);

    for (const { label } of keys) {
      const arrivals = attempts.filter((record) => record.keyLabel === label).map((record) => record.at);
      const overfull = overfullWindows(arrivals, quota.requests, quota.windowMs);
      expect(overfull, `${label}: ${overfull.join('; ')}`).toEqual([]);
    }
    // Every key took its share: the quotas, not one key, set the pace.
    for (const { label } of keys) expect(fake.countRequests({ keyLabel: label, status: 200 }), label).toBeGreaterThan(100);
    expect(pool.snapshot().keys.map((key) => key.inFlight)).toEqual([0, 0, 0, 0]);
    expect(pool.snapshot().queued).toBe(0);
  }, 30_000);

  it('(b) a revoked key gets no request after its first 401 came back; requests already in flight then are the only late ones', async () => {
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.revoked, label: 'revoked', revoked: true },
        { key: TEST_KEYS.healthy1, label: 'healthy-1' },
        { key: TEST_KEYS.healthy2, label: 'healthy-2' },
      ],
      defaultModel: { latencyMs: 40 },
    });
    const pool = startPool(fake, {
      keys: [
        { key: TEST_KEYS.revoked, label: 'revoked' },
        { key: TEST_KEYS.healthy1, label: 'healthy-1' },
        { key: TEST_KEYS.healthy2, label: 'healthy-2' },
      ],
      // Round robin sends a third of the opening burst to the revoked key, all in flight at once.
      strategy: 'roundRobin',
      // The 401 must come from the burst: key info read at start would find the key revoked first (test b2).
      discoverAccounts: false,
    });
    const poolEvents = recordEvents(pool);

    const events = await runAll(pool, requestsOf(90, 'burst'), 30);

    const { completions, failures } = terminalEvents(events);
    expect(failures.map((event) => `${event.requestId}: ${event.error.kind}`)).toEqual([]);
    expect(completions).toHaveLength(90);
    expect(completions.every((event) => event.keyLabel !== 'revoked')).toBe(true);

    const disabled = poolEvents.find((event) => event.type === 'cooldown' && event.target === 'revoked' && event.reason === 'disabled');
    expect(disabled, 'the pool disabled the revoked key').toBeDefined();
    const disabledAt = disabled!.at;
    const revokedAttempts = poolEvents.filter((event) => event.type === 'attempt' && event.keyLabel === 'revoked');
    // The burst made it meaningful: several attempts were in flight on the key when the 401 came back.
    expect(revokedAttempts.length).toBeGreaterThan(1);
    // No attempt was leased on the key after the pool learnt of the 401 ...
    expect(revokedAttempts.filter((event) => event.at > disabledAt).map((event) => event.at)).toEqual([]);
    // ... and the server saw exactly those attempts: its 401s (a revoked key has no label there).
    const revokedArrivals: FakeRequestRecord[] = fake.requests.filter((record) => record.keyLabel === undefined);
    expect(revokedArrivals.every((record) => record.status === 401)).toBe(true);
    expect(revokedArrivals).toHaveLength(revokedAttempts.length);
    // So every arrival after the first 401 was answered (the fake answers a revoked key at once) was
    // a request already on its way: leased before the pool learnt of the 401.
    const first401At = Math.min(...revokedArrivals.map((record) => record.at));
    expect(disabledAt).toBeGreaterThanOrEqual(first401At);
    expect(revokedArrivals.filter((record) => record.at > first401At).length).toBeLessThanOrEqual(
      revokedAttempts.filter((event) => event.at <= disabledAt).length - 1,
    );

    expect(keyHealth(pool, 'revoked').state).toBe('disabled');
    expect(keyHealth(pool, 'revoked').lastError?.kind).toBe('authentication');

    // Later traffic never touches it.
    const before = revokedArrivals.length;
    const later = terminalEvents(await runAll(pool, requestsOf(30, 'later'), 10));
    expect(later.completions).toHaveLength(30);
    expect(fake.requests.filter((record) => record.keyLabel === undefined)).toHaveLength(before);
  }, 30_000);

  it("(b2) by default the pool reads every key's info at start: a revoked key is disabled before any chat request reaches it, and keys of one account are grouped", async () => {
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.revoked, label: 'revoked', revoked: true },
        { key: TEST_KEYS.healthy1, label: 'healthy-1', account: 'shared' },
        { key: TEST_KEYS.healthy2, label: 'healthy-2', account: 'shared' },
      ],
      defaultModel: { latencyMs: 5 },
    });
    const pool = startPool(fake, {
      keys: [
        { key: TEST_KEYS.revoked, label: 'revoked' },
        { key: TEST_KEYS.healthy1, label: 'healthy-1' },
        { key: TEST_KEYS.healthy2, label: 'healthy-2' },
      ],
    });
    // Traffic does not wait for key info; the keys are grouped once it answers.
    await firstValueFrom(
      pool.health$.pipe(filter((health) => health.keys.every((key) => key.account !== `key:${key.label}` || key.state === 'disabled'))),
    );
    expect(pool.snapshot().keys.map((key) => [key.label, key.state, key.account])).toEqual([
      ['revoked', 'disabled', 'key:revoked'],
      ['healthy-1', 'closed', 'user_fake_shared'],
      ['healthy-2', 'closed', 'user_fake_shared'],
    ]);
    // Its health says why it is out (a UI tells it from a key an operator disabled, which has none).
    expect(pool.snapshot().keys[0]!.lastError).toMatchObject({ kind: 'authentication', status: 401 });
    const events = terminalEvents(await runAll(pool, requestsOf(30, 'after-info'), 10));
    expect(events.completions).toHaveLength(30);
    expect(fake.requests.filter((record) => record.keyLabel === undefined)).toEqual([]);
  }, 30_000);

  it('(b3) a 429 whose bucket names the account teaches a quota the keys of the account share, not one per key', async () => {
    const keys = [TEST_KEYS.quota1, TEST_KEYS.quota2, TEST_KEYS.quota3].map((key, index) => ({ key, label: `q${index + 1}` }));
    const fake = await startFake({
      keys: keys.map((key) => ({ ...key, account: 'shared' })),
      accounts: [{ id: 'shared', quota: { requests: 6, windowMs: 1_000, bucket: 'requests-per-account' } }],
      defaultModel: { latencyMs: 5 },
    });
    const pool = startPool(fake, { keys });
    const events = terminalEvents(await runAll(pool, requestsOf(30, 'shared'), 8));
    expect(events.failures).toEqual([]);
    expect(events.completions).toHaveLength(30);
    // Learned per key, the three keys together sent about twice the account's quota: 26-36 of
    // 53-63 sends refused in five runs, and up to 3 requests failed. Shared: 5-7 of 35-37 (the
    // first window's overshoot, which teaches the quota, and the window's estimate settling).
    expect(fake.countRequests({ status: 429 })).toBeLessThanOrEqual(10);
  }, 30_000);

  it('(c) refreshKeyInfo folds limit, limitRemaining and usage into credit; a 403 key-limit key comes back once a refresh shows credit', async () => {
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.capped, label: 'capped', keyLimitExceeded: true, limit: 5, usage: 5 },
        { key: TEST_KEYS.credit, label: 'credit', limit: 10, usage: 2.5, isFreeTier: true },
      ],
    });
    const pool = startPool(fake, {
      keys: [
        { key: TEST_KEYS.capped, label: 'capped' },
        { key: TEST_KEYS.credit, label: 'credit' },
      ],
      strategy: 'roundRobin',
    });

    // The refresh folds `GET /api/v1/key` into credit.
    const refreshed = await lastValueFrom(pool.refreshKeyInfo());
    const creditHealth = refreshed.find((key) => key.label === 'credit')!;
    expect(creditHealth.credit).toMatchObject({ limit: 10, limitRemaining: 7.5, usage: 2.5, isFreeTier: true });
    expect(typeof creditHealth.credit!.checkedAt).toBe('number');
    expect(keyHealth(pool, 'credit').credit).toEqual(creditHealth.credit);
    expect(keyHealth(pool, 'capped').credit).toMatchObject({ limit: 5, limitRemaining: 0, usage: 5 });
    // No credit left: the key is out of service before it costs a request.
    expect(keyHealth(pool, 'capped').state).toBe('exhausted');

    // Back in service by hand, the key meets its 403 and is exhausted again.
    pool.enable('capped');
    expect(keyHealth(pool, 'capped').state).toBe('closed');
    const first = terminalEvents(await runAll(pool, requestsOf(4, 'capped'), 1));
    expect(first.completions).toHaveLength(4);
    expect(fake.countRequests({ keyLabel: 'capped', status: 403 })).toBe(1);
    expect(keyHealth(pool, 'capped').state).toBe('exhausted');
    expect(keyHealth(pool, 'capped').lastError?.kind).toBe('key_limit');
    expect(first.completions.every((event) => event.keyLabel === 'credit')).toBe(true);

    // A refresh that still shows no credit keeps it out.
    await lastValueFrom(pool.refreshKeyInfo());
    expect(keyHealth(pool, 'capped').state).toBe('exhausted');

    // The cap is raised: the next refresh shows credit and the key serves again.
    fake.setKey(TEST_KEYS.capped, { keyLimitExceeded: false, limit: 5, usage: 1 });
    await lastValueFrom(pool.refreshKeyInfo());
    expect(keyHealth(pool, 'capped').credit).toMatchObject({ limit: 5, limitRemaining: 4, usage: 1 });
    expect(keyHealth(pool, 'capped').state).toBe('closed');
    const second = terminalEvents(await runAll(pool, requestsOf(4, 'again'), 1));
    expect(second.completions).toHaveLength(4);
    expect(second.completions.filter((event) => event.keyLabel === 'capped').length).toBeGreaterThan(0);
    expect(fake.countRequests({ keyLabel: 'capped', status: 200 })).toBeGreaterThan(0);
    expect(fake.countRequests({ keyLabel: 'capped', status: 403 })).toBe(1);
  }, 30_000);

  it('(d) health$ never emits two equal snapshots in a row during a run', async () => {
    const quota = { requests: 4, windowMs: 200 };
    const fake = await startFake({
      keys: [
        { key: TEST_KEYS.quota1, label: 'quota-1', quota },
        { key: TEST_KEYS.quota2, label: 'quota-2', quota },
        { key: TEST_KEYS.revoked, label: 'revoked', revoked: true },
      ],
      models: {
        [MODEL]: {
          latencyMs: 10,
          faults: [
            { type: 'status', status: 500, times: 3 },
            { type: 'rate-limit', retryAfterSeconds: 0, times: 2 },
          ],
        },
      },
    });
    const pool = startPool(fake, {
      keys: [
        { key: TEST_KEYS.quota1, label: 'quota-1', limits: { quotas: [quota] } },
        { key: TEST_KEYS.quota2, label: 'quota-2', limits: { quotas: [quota] } },
        { key: TEST_KEYS.revoked, label: 'revoked' },
      ],
      breaker: { consecutiveFailures: 2, cooldownMs: 100 },
      modelBreaker: { consecutiveFailures: 2, cooldownMs: 100 },
    });
    const snapshots: PoolHealth[] = [];
    subscriptions.push(pool.health$.subscribe((snapshot) => snapshots.push(snapshot)));

    const events = await runAll(pool, requestsOf(40, 'health', 3), 12);
    expect(terminalEvents(events).completions.length + terminalEvents(events).failures.length).toBe(40);
    expect(snapshots.length).toBeGreaterThan(10);

    // Deep comparison of everything but the time the snapshot was taken: equal key arrays are fine
    // when the models or the queue changed.
    const content = (snapshot: PoolHealth) => JSON.stringify({ ...snapshot, at: undefined });
    const repeats: string[] = [];
    for (let i = 1; i < snapshots.length; i++) {
      if (content(snapshots[i]!) === content(snapshots[i - 1]!)) repeats.push(`#${i} (queued ${snapshots[i]!.queued})`);
    }
    // (Queued requests made the pool republish unchanged health after every admission pass; two
    // equal failures on one key in the same millisecond still can: see pool.properties.test.ts.)
    expect(repeats.slice(0, 5), `${repeats.length} of ${snapshots.length} snapshots repeat the previous one`).toEqual([]);
    expect(fake.countRequests({ status: 401 }) + fake.countRequests({ status: 500 })).toBeGreaterThan(0);
  }, 30_000);

  describe('(e) pool.complete and pool.stream', () => {
    async function startSimple(models: FakeServerOptions['models'] = {}) {
      const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], models });
      const pool = startPool(fake, { keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }] });
      return { fake, pool };
    }

    it('complete emits one completion event and completes', async () => {
      const { pool } = await startSimple();
      const events = await lastValueFrom(
        pool.complete({ id: 'one', model: MODEL, messages: [{ role: 'user', content: 'hello' }] }).pipe(toArray()),
      );
      expect(events).toHaveLength(1);
      const [event] = events;
      expect(event).toMatchObject({ type: 'completion', requestId: 'one', keyLabel: 'healthy-1', model: MODEL, attempts: 1 });
      expect(event!.completion.content.length).toBeGreaterThan(0);
      expect(event!.completion.finishReason).toBe('stop');
      expect(event!.usage?.totalTokens).toBeGreaterThan(0);
    });

    it('stream emits content chunks, then the completion holding their text', async () => {
      const { fake, pool } = await startSimple({ [MODEL]: { chunkCount: 5 } });
      const events = await lastValueFrom(
        pool.stream({ id: 'streamed', model: MODEL, messages: [{ role: 'user', content: 'hello' }] }).pipe(toArray()),
      );
      const chunks = events.filter((event): event is ChunkEvent => event.type === 'chunk');
      const completion = events.at(-1);
      expect(chunks.length).toBeGreaterThan(1);
      expect(chunks.every((chunk) => chunk.delta.length > 0 && chunk.requestId === 'streamed')).toBe(true);
      expect(completion?.type).toBe('completion');
      expect((completion as CompletionEvent).completion.content).toBe(chunks.map((chunk) => chunk.delta).join(''));
      expect(events.filter((event): event is RestartEvent => event.type === 'restart')).toEqual([]);
      expect(fake.requests.map((record) => record.stream)).toEqual([true]);
    });

    it('complete errors with the typed error of a refused request', async () => {
      const { fake, pool } = await startSimple({ [MODEL]: { faults: [{ type: 'status', status: 400, message: 'Invalid temperature' }] } });
      const error = await lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] })).then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(BadRequestError);
      expect(error).toBeInstanceOf(OpenRouterError);
      expect(error).toMatchObject({ kind: 'bad_request', status: 400, scope: 'request', keyLabel: 'healthy-1', model: MODEL });
      expect((error as Error).message).toContain('Invalid temperature');
      // A request-scoped refusal is not retried and leaves key health alone.
      expect(fake.requests).toHaveLength(1);
      expect(keyHealth(pool, 'healthy-1').state).toBe('closed');
    });

    it('stream errors with the typed error of a stream broken after content', async () => {
      const { pool } = await startSimple({ [MODEL]: { chunkCount: 6, faults: [{ type: 'in-band-error', afterChunks: 2, code: 502 }] } });
      const seen: Array<ChunkEvent | RestartEvent | CompletionEvent> = [];
      const error = await new Promise<unknown>((resolve) => {
        subscriptions.push(
          pool.stream({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] }).subscribe({
            next: (event) => seen.push(event),
            error: resolve,
            complete: () => resolve(undefined),
          }),
        );
      });
      expect(seen.filter((event) => event.type === 'chunk').length).toBeGreaterThan(0);
      expect(seen.some((event) => event.type === 'completion')).toBe(false);
      expect(error).toBeInstanceOf(OpenRouterError);
      expect(error).toBeInstanceOf(StreamError);
      expect(error).toMatchObject({ kind: 'stream', keyLabel: 'healthy-1', model: MODEL });
    });

    it("moves a stream to the request's next model when an in-band error names its context length before any content", async () => {
      const { fake, pool } = await startSimple({
        [MODEL]: {
          faults: [{ type: 'in-band-error', afterChunks: 0, code: 400, message: "This endpoint's maximum context length is 10 tokens." }],
        },
      });
      const events = await lastValueFrom(
        pool.stream({ model: MODEL, models: [`${MODEL}-long`], messages: [{ role: 'user', content: 'hello' }] }).pipe(toArray()),
      );
      // As the same error as an HTTP 400 would: no retry of the model, the next one answers.
      expect(events.at(-1)).toMatchObject({ type: 'completion', model: `${MODEL}-long`, attempts: 2 });
      expect(fake.requests.map((request) => `${request.model} ${request.status}`)).toEqual([`${MODEL} 200`, `${MODEL}-long 200`]);
      expect(pool.snapshot().models.find((model) => model.model === MODEL)?.state).toBe('closed');
    });

    it('complete errors with an AttemptsExhaustedError listing every attempt when every try fails', async () => {
      const { fake, pool } = await startSimple({ [MODEL]: { faults: [{ type: 'status', status: 502 }] } });
      const error = await lastValueFrom(
        pool.complete(
          { model: MODEL, messages: [{ role: 'user', content: 'hello' }] },
          { transient: { maxAttempts: 2, baseDelayMs: 1, budget: false } },
        ),
      ).then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(AttemptsExhaustedError);
      expect(error).toBeInstanceOf(OpenRouterError);
      const exhausted = error as AttemptsExhaustedError;
      expect(exhausted).toMatchObject({ kind: 'attempts_exhausted', status: 502, scope: 'model', keyLabel: 'healthy-1', model: MODEL });
      expect(exhausted.lastError.kind).toBe('upstream');
      expect(exhausted.attempts.map((attempt) => [attempt.attempt, attempt.kind, attempt.status])).toEqual([
        [1, 'upstream', 502],
        [2, 'upstream', 502],
      ]);
      expect(fake.requests.map((record) => record.status)).toEqual([502, 502]);
    });
  });

  it('(f) the health a subscriber is handed is frozen: editing it throws, and changes nothing another consumer or the totals see', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], defaultModel: { latencyMs: 5 } });
    const pool = startPool(fake, { keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }] });
    expect(terminalEvents(await runAll(pool, requestsOf(1, 'first'), 1)).completions).toHaveLength(1);
    const edits: unknown[] = [];
    subscriptions.push(
      pool.health$.subscribe((health) => {
        const key = health.keys[0] as unknown as Record<string, unknown> & { usage: Record<string, number>; quota: unknown[] };
        for (const edit of [
          () => (key.usage.requests = 1_000),
          () => (key.label = 'EDITED'),
          () => key.quota.push({}),
          () => ((health as unknown as Record<string, unknown>)['queued'] = 99),
        ]) {
          try {
            edit();
            edits.push('edited');
          } catch (error: unknown) {
            edits.push(error instanceof TypeError ? 'refused' : error);
          }
        }
      }),
    );
    expect(terminalEvents(await runAll(pool, requestsOf(2, 'second'), 1)).completions).toHaveLength(2);
    expect(edits.length).toBeGreaterThan(0);
    expect(new Set(edits)).toEqual(new Set(['refused']));
    const key = keyHealth(pool, 'healthy-1');
    expect(key.label).toBe('healthy-1');
    expect(key.usage.requests).toBe(3);
    expect(pool.snapshot().usage.requests).toBe(3);
    const fromKeyStream = await firstValueFrom(pool.key('healthy-1').health$);
    expect(fromKeyStream).toMatchObject({ label: 'healthy-1', usage: { requests: 3 } });
    expect(Object.isFrozen(fromKeyStream.usage) && Object.isFrozen(fromKeyStream.quota)).toBe(true);
  });

  it.each(['sdk', 'fetch'] as const)(
    '(e) a non-streamed answer cut off after its status counts against its model, as a cut stream does: the keys stay closed, another model still answers (%s transport)',
    async (transportKind) => {
      const cutModel = 'cutting/model';
      const fake = await startFake({
        keys: [
          { key: TEST_KEYS.healthy1, label: 'healthy-1' },
          { key: TEST_KEYS.healthy2, label: 'healthy-2' },
        ],
        defaultModel: { latencyMs: 5 },
        models: { [cutModel]: { faults: [{ type: 'cut', afterChunks: 2 }] } },
      });
      const pool = startPool(fake, {
        keys: [
          { key: TEST_KEYS.healthy1, label: 'healthy-1' },
          { key: TEST_KEYS.healthy2, label: 'healthy-2' },
        ],
        ...(transportKind === 'fetch' ? { transport: createFetchTransport({ baseURL: fake.baseURL }) } : {}),
      });
      const events = recordEvents(pool);
      // Enough attempts to open both keys' breakers if the cuts were blamed on them (5 failures in a row each).
      const cut = Array.from({ length: 6 }, (_, index) => ({
        id: `cut-${index}`,
        model: cutModel,
        messages: [{ role: 'user' as const, content: 'hi' }],
      }));
      const outcomes = await lastValueFrom(from(cut).pipe(balance(pool, { concurrency: 1, modelWaitMs: 0 }), toArray()));
      expect(terminalEvents(outcomes).failures).toHaveLength(cut.length);
      const attemptFailures = events.flatMap((event) => (event.type === 'failure' ? [event] : []));
      expect(attemptFailures.length).toBeGreaterThanOrEqual(5);
      for (const failure of attemptFailures) {
        expect(failure).toMatchObject({ kind: 'stream', scope: 'model' });
        expect(failure.message).toContain('answer body cut off before its end');
      }
      const health = pool.snapshot();
      expect(health.keys.map((key) => [key.label, key.state])).toEqual([
        ['healthy-1', 'closed'],
        ['healthy-2', 'closed'],
      ]);
      expect(health.models.find((model) => model.model === cutModel)?.failures).toBeGreaterThan(0);
      const other = terminalEvents(await runAll(pool, requestsOf(2, 'after-cut'), 1));
      expect(other.failures).toEqual([]);
      expect(other.completions).toHaveLength(2);
    },
  );
});

describe('dispose() with requests in flight (real SDK)', () => {
  it('aborts the HTTP requests of a server that never answers: each fails at once, and the key holds nothing', async () => {
    const fake = await startFake({
      keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }],
      models: { [MODEL]: { faults: [{ type: 'silent' }] } },
    });
    const pool = startPool(fake, { keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], discoverAccounts: false });
    const events = runAll(pool, requestsOf(2, 'hung', 2), 2);
    // Both requests reached the server, which holds them without a byte.
    while (fake.requests.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    const disposedAt = performance.now();
    pool.dispose();
    const { completions, failures } = terminalEvents(await events);
    // The default timeouts would have ended them after 10 s (streamed) and 5 minutes (whole).
    expect(performance.now() - disposedAt).toBeLessThan(1_000);
    expect(completions).toEqual([]);
    expect(failures.map((failed) => [failed.requestId, failed.error.kind, failed.error.message])).toEqual([
      ['hung-0', 'aborted', 'the key pool was disposed'],
      ['hung-1', 'aborted', 'the key pool was disposed'],
    ]);
    expect(pool.snapshot().keys.map((key) => key.inFlight)).toEqual([0]);
    for (let waited = 0; !fake.requests.every((request) => request.clientAborted === true) && waited < 2_000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(fake.requests.map((request) => request.clientAborted)).toEqual([true, true]);
  });
});

describe('a transport that is still loading', () => {
  it('fails the requests waiting for it when the pool is disposed, even if it never loads', async () => {
    const transport: Transport = Object.assign(() => NEVER, { ready: new Promise<void>(() => undefined) });
    const pool = createKeyPool({ keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], transport, discoverAccounts: false });
    const outcome = lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(
      (error: unknown) => error,
    );
    setTimeout(() => pool.dispose(), 20);
    expect(await outcome).toMatchObject({ kind: 'aborted', message: 'the key pool was disposed' });
  });

  it('gives no request a key before the transport is ready: a short first-token timeout does not fire on a request not yet sent, and no model is blamed', async () => {
    const fake = await startFake({ keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], models: { [MODEL]: { latencyMs: 5 } } });
    // As `createOpenRouterTransport` does while the `openai` SDK loads: attempts wait for the load.
    let loadedAt = 0;
    const ready = new Promise<void>((resolve) => setTimeout(resolve, 300)).then(() => void (loadedAt = Date.now()));
    const fetchTransport = createFetchTransport({ baseURL: fake.baseURL });
    const loading = new Observable<never>((subscriber) => void ready.then(() => subscriber.complete()));
    const transport: Transport = Object.assign(
      (key: KeyCredential, request: ChatRequest, options?: TransportOptions) =>
        concat(
          loading,
          defer(() => fetchTransport(key, request, options)),
        ),
      { ready },
    );
    const pool = startPool(fake, { keys: [{ key: TEST_KEYS.healthy1, label: 'healthy-1' }], transport, discoverAccounts: false });
    const events = await lastValueFrom(
      from(requestsOf(4, 'cold', 1)).pipe(balance(pool, { concurrency: 4, timeouts: { firstTokenMs: 100 } }), toArray()),
    );
    expect(events.filter((event) => event.type === 'failed')).toEqual([]);
    // Each at its first attempt: none timed out waiting for the load.
    expect(events.flatMap((event) => (event.type === 'completion' ? [event.attempts] : []))).toEqual([1, 1, 1, 1]);
    expect(fake.requests.length).toBe(4);
    expect(fake.requests.every((record) => record.at >= loadedAt)).toBe(true);
    expect(pool.snapshot().models.find((model) => model.model === MODEL)?.state).toBe('closed');
  });
});
