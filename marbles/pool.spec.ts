import { createMemoryStore, type StateStore } from '../src/store/state-store.js';
import { describe, expect, it } from 'vitest';
import { EMPTY, delay, distinctUntilChanged, map, mergeMap, of, tap, throwError, timer, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { KeyPool } from '../src/create-pool.js';
import type { PoolHealth } from '../src/health/records.js';
import {
  AuthenticationError,
  BadRequestError,
  InsufficientCreditsError,
  KeyLimitError,
  UpstreamError,
  type OpenRouterError,
} from '../src/core/errors.js';
import {
  MODEL,
  breakerView,
  chatRequest,
  networkError,
  newTestScheduler,
  predictablePool,
  rateLimitError,
  scriptedTransport,
  type PoolOverrides,
} from './support.js';
import { POOL_PORT, type KeyLease } from '../src/pool/types.js';
import type { ChatRequest } from '../src/core/types.js';
import type { Strategy } from '../src/pool/strategies.js';

/** Two keys, k1 and k2, for the tests where one refusal must touch only its own key. */
const TWO_KEYS = [
  { key: 'sk-a', label: 'k1' },
  { key: 'sk-b', label: 'k2' },
];

/** A request for one token, and one for more than `tokenQuotaKey`'s whole second: it fits only an empty window. */
const small = chatRequest('hi', { max_tokens: 1 });
const large = chatRequest('big', { max_tokens: 10_000 });

/** Key k1 with 50 tokens per second, and `requests` per 100 ms when given. */
function tokenQuotaKey(requests?: number) {
  const requestQuota = requests === undefined ? [] : [{ requests, windowMs: 100 }];
  return { key: 'sk-a', label: 'k1', limits: { quotas: [...requestQuota, { tokens: 50, windowMs: 1_000 }] } };
}

/** `memory`, with reservations answered 10 ms later, as a shared store answers them. */
function answeringLater(scheduler: TestScheduler, memory: StateStore): StateStore {
  return Object.assign(Object.create(memory) as StateStore, {
    reserve: (...args: Parameters<StateStore['reserve']>) => of(memory.reserve(...args)).pipe(delay(10, scheduler)),
  });
}

/** A pool whose transport is never called: these tests drive it through `acquire` and `record`. */
function makePool(scheduler: TestScheduler, overrides: PoolOverrides = {}): KeyPool {
  const { transport } = scriptedTransport(scheduler, {});
  return predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }], {
    breaker: { consecutiveFailures: 2, cooldownMs: 100, cooldownMultiplier: 2, maxCooldownMs: 300 },
    strategy: 'roundRobin',
    ...overrides,
  });
}

/** k1 with one request per 100 ms and k2 without a quota, no adaptive limit, and a strategy for each that places only on it. */
function answerLagPool(scheduler: TestScheduler) {
  const pool = makePool(scheduler, {
    adaptiveConcurrency: false,
    keys: [
      { key: 'sk-a', label: 'k1', limits: { quotas: [{ requests: 1, windowMs: 100 }] } },
      { key: 'sk-b', label: 'k2' },
    ],
  });
  const only = (index: number): Strategy => ({
    name: `only-${index}`,
    pick: (context) => (context.isEligible(index) ? index : undefined),
  });
  return { pool, port: pool[POOL_PORT], onK1: only(0), onK2: only(1) };
}

/** `count` requests on k2 taken at once, each answered (its first byte) and released at `at`. */
function answeredOnK2(scheduler: TestScheduler, port: KeyPool[typeof POOL_PORT], onK2: Strategy, count: number, at: number): void {
  const leases: KeyLease[] = [];
  for (let index = 0; index < count; index++)
    port.acquire(chatRequest(), { models: [MODEL], strategy: onK2 }).subscribe((lease) => leases.push(lease));
  scheduler.schedule(() => {
    for (const lease of leases) {
      lease.markResponded();
      lease.release();
    }
  }, at);
}

/** Schedules `pool.record` of a failure of `label` at frame `at`. */
function failAt(scheduler: TestScheduler, pool: KeyPool, at: number, error: OpenRouterError, label = 'k1'): void {
  scheduler.schedule(() => pool[POOL_PORT].record({ type: 'failure', keyLabel: label, model: MODEL, error }), at);
}

function succeedAt(scheduler: TestScheduler, pool: KeyPool, at: number, label = 'k1'): void {
  scheduler.schedule(() => pool[POOL_PORT].record({ type: 'success', keyLabel: label, model: MODEL, latencyMs: 5 }), at);
}

const closed = (consecutiveFailures = 0) => ({ state: 'closed', openReason: null, cooldownUntil: null, consecutiveFailures });
const openFor = (until: number, consecutiveFailures: number) => ({
  state: 'open',
  openReason: 'failures',
  cooldownUntil: until,
  consecutiveFailures,
});
const parked = (until: number, consecutiveFailures = 0) => ({
  state: 'open',
  openReason: 'rate-limit',
  cooldownUntil: until,
  consecutiveFailures,
});
const halfOpen = (consecutiveFailures: number) => ({ state: 'half-open', openReason: null, cooldownUntil: null, consecutiveFailures });

describe('pool: breaker transitions on key(label).health$', () => {
  it('closed → open → half-open → closed', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 10, networkError());
      failAt(scheduler, pool, 20, networkError()); // 2nd in a row: open for cooldownMs (100)
      succeedAt(scheduler, pool, 130); // the probe succeeds
      // Half-open at 120 without any call: the pool republishes when the cooldown ends.
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 300ms !').toBe('a 9ms b 9ms c 99ms d 9ms e', {
        a: closed(),
        b: closed(1),
        c: openFor(120, 2),
        d: halfOpen(2),
        e: closed(0),
      });
    });
  });

  it('half-open → open with a longer cooldown each time, capped at maxCooldownMs', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 10, networkError());
      failAt(scheduler, pool, 20, networkError()); // open until 120 (100 ms)
      failAt(scheduler, pool, 130, networkError()); // probe fails: open until 330 (200 ms)
      failAt(scheduler, pool, 340, networkError()); // probe fails: open until 640 (300 ms, not 400)
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 700ms !').toBe(
        'a 9ms b 9ms c 99ms d 9ms e 199ms f 9ms g 299ms h',
        {
          a: closed(),
          b: closed(1),
          c: openFor(120, 2),
          d: halfOpen(2),
          e: openFor(330, 3),
          f: halfOpen(3),
          g: openFor(640, 4),
          h: halfOpen(4),
        },
      );
    });
  });

  it('a later 429 extends a rate-limit cooldown, an earlier reset never shortens it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 10, rateLimitError(100)); // parked until 110
      failAt(scheduler, pool, 20, rateLimitError(30)); // would end at 50: ignored
      failAt(scheduler, pool, 30, rateLimitError(200)); // extended to 230
      // Nothing happens at 50 or 110; the key turns closed only at 230.
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 300ms !').toBe('a 9ms b 9ms c 9ms d 199ms e', {
        a: closed(),
        b: parked(110),
        c: parked(110),
        d: parked(230),
        e: closed(),
      });
    });
  });

  it('a short 429 on a key open for failures does not shorten the breaker cooldown', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 10, networkError());
      failAt(scheduler, pool, 20, networkError()); // open until 120
      failAt(scheduler, pool, 30, rateLimitError(10)); // parked until 40 only
      expectObservable(
        pool.key('k1').health$.pipe(map((health) => ({ state: health.state, cooldownUntil: health.cooldownUntil }))),
        '^ 200ms !',
      ).toBe('a 9ms b 9ms c 9ms d 89ms e', {
        a: { state: 'closed', cooldownUntil: null },
        b: { state: 'closed', cooldownUntil: null },
        c: { state: 'open', cooldownUntil: 120 },
        d: { state: 'open', cooldownUntil: 120 },
        e: { state: 'half-open', cooldownUntil: null },
      });
    });
  });
});

describe('pool: model breaker hints', () => {
  it('a model error with retryAfterMs holds the model open until the hint; a later, shorter hint never shortens it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      const upstream = (retryAfterMs: number) =>
        new UpstreamError({ message: 'upstream 503', scope: 'model', retryable: true, status: 503, retryAfterMs });
      failAt(scheduler, pool, 10, upstream(100)); // held open until 110
      failAt(scheduler, pool, 20, upstream(30)); // 50 < 110: unchanged
      failAt(scheduler, pool, 30, upstream(200)); // extended to 230
      expectObservable(
        pool.model(MODEL).health$.pipe(
          map((health) => `${health.state}:${health.cooldownUntil}`),
          distinctUntilChanged(),
        ),
        '^ 300ms !',
      ).toBe('a 9ms b 19ms c 199ms d', { a: 'closed:null', b: 'open:110', c: 'open:230', d: 'half-open:null' });
      // The key itself is untouched by a model-scoped error.
      expectObservable(
        pool.key('k1').health$.pipe(
          map((health) => health.state),
          distinctUntilChanged(),
        ),
        '^ 300ms !',
      ).toBe('a', { a: 'closed' });
    });
  });
});

describe('pool: open reason after a short park', () => {
  // A park that ends before the breaker's cooldown leaves the key open for failures until 120
  // (the 429 at 30 only updates the last error), and health$ never claims a 429 parks it.
  it('a shorter park on a key already open for failures leaves it open for failures', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 10, networkError());
      failAt(scheduler, pool, 20, networkError()); // open for failures until 120
      failAt(scheduler, pool, 30, rateLimitError(10)); // parked until 40
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 200ms !').toBe('a 9ms b 9ms c 9ms c 89ms f', {
        a: closed(),
        b: closed(1),
        c: openFor(120, 2),
        f: halfOpen(2),
      });
    });
  });
});

describe('pool: what each refusal does to health', () => {
  /** The 401 of a revoked key. */
  const revoked = () => new AuthenticationError({ message: 'User not found.', scope: 'key', retryable: false, status: 401 });

  it('a 429 with retryAfterMs parks the key until the reset without counting a failure', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 5, networkError()); // one real failure first: 1 in a row
      failAt(scheduler, pool, 10, rateLimitError(50)); // parked until 60, still 1 in a row
      expectObservable(
        pool.key('k1').health$.pipe(map((health) => ({ ...breakerView(health), failures: health.failures }))),
        '^ 100ms !',
      ).toBe('a 4ms b 4ms c 49ms d', {
        a: { ...closed(), failures: 0 },
        b: { ...closed(1), failures: 1 },
        c: { ...parked(60, 1), failures: 1 },
        d: { ...closed(1), failures: 1 },
      });
    });
  });

  it('429s without a hint park for rateLimitCooldownMs, doubling while they come in a row, with equal jitter', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      // random() = 1 takes the full backoff (half fixed + all of the random half).
      const pool = makePool(scheduler, { rateLimitCooldownMs: 100, random: () => 1 });
      failAt(scheduler, pool, 0, rateLimitError()); // 100 ms
      failAt(scheduler, pool, 100, rateLimitError()); // 200 ms
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 400ms !').toBe('a 99ms b 199ms c', {
        a: parked(100),
        b: parked(300),
        c: closed(),
      });
    });
  });

  it('a burst of 429s is one signal: answers to requests sent before the park change nothing; the next step needs a request sent after it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { rateLimitCooldownMs: 100, random: () => 1 });
      const burstAt = (at: number, sentAt: number) =>
        scheduler.schedule(
          () => pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: rateLimitError(), sentAt }),
          at,
        );
      // Thirty requests sent at 0, all refused, their answers arriving from 10 to 39.
      for (let index = 0; index < 30; index++) burstAt(10 + index, 0);
      // A request sent at 120, after the 100 ms park ended, is refused too: the wait doubles.
      burstAt(130, 120);
      // Every answer updates the key's last error; the view below changes only with the park.
      const view$ = pool.key('k1').health$.pipe(
        map(breakerView),
        distinctUntilChanged((a, b) => JSON.stringify(a) === JSON.stringify(b)),
      );
      expectObservable(view$, '^ 400ms !').toBe('a 9ms b 99ms c 19ms d 199ms e', {
        a: closed(),
        b: parked(110),
        c: closed(),
        d: parked(330),
        e: closed(),
      });
    });
  });

  it('the jitter takes between half and all of the backoff', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { rateLimitCooldownMs: 100, random: () => 0 });
      failAt(scheduler, pool, 0, rateLimitError()); // 50 ms: the fixed half only
      expectObservable(pool.key('k1').health$.pipe(map(breakerView)), '^ 100ms !').toBe('a 49ms c', {
        a: parked(50),
        c: closed(),
      });
    });
  });

  it('401 disables the key for good, and only that key', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: TWO_KEYS,
      });
      failAt(scheduler, pool, 10, revoked());
      expectObservable(pool.key('k1').health$.pipe(map((health) => `${health.state}:${health.cooldownUntil}`)), '^ 1000ms !').toBe(
        'a 9ms b',
        {
          a: 'closed:null',
          b: 'disabled:null',
        },
      );
      // Watched until 15 only: from 20 on, k2 emits again as the request below leases it.
      expectObservable(pool.key('k2').health$.pipe(map((health) => health.state)), '^ 15ms !').toBe('a', { a: 'closed' });
      // A request after the 401 goes to k2.
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(map((lease) => lease.label)), '20ms ^ 10ms !').toBe(
        '20ms a',
        { a: 'k2' },
      );
    });
  });

  // The transports' messages start with the status already ("401 User not found."): it is not said twice.
  it.each(['User not found.', '401 User not found.'])(
    'once every key is disabled, acquire fails with NoKeyAvailableError saying why (the 401: %s)',
    (message) => {
      const scheduler = newTestScheduler();
      scheduler.run(({ expectObservable }) => {
        const pool = makePool(scheduler);
        failAt(scheduler, pool, 10, new AuthenticationError({ message, scope: 'key', retryable: false, status: 401 }));
        expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }), '20ms ^').toBe(
          '20ms #',
          undefined,
          expect.objectContaining({
            name: 'NoKeyAvailableError',
            kind: 'no_key_available',
            status: 401,
            message: expect.stringMatching(/every key of the pool is disabled \(k1: 401 User not found\.\)/),
          }),
        );
      });
    },
  );

  it('a key put back into service after every key was disabled serves again, and its second 401 leaves none', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: TWO_KEYS,
      });
      // Putting back a key that serves changes nothing.
      scheduler.schedule(() => pool.enable('k2'), 5);
      failAt(scheduler, pool, 10, revoked(), 'k1');
      failAt(scheduler, pool, 20, revoked(), 'k2');
      scheduler.schedule(() => pool.enable('k1'), 30);
      failAt(scheduler, pool, 40, revoked(), 'k1');
      const labelOf = map((lease: KeyLease) => lease.label);
      const noKey = expect.objectContaining({ name: 'NoKeyAvailableError' });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(labelOf), '25ms ^').toBe(
        '25ms #',
        undefined,
        noKey,
      );
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(labelOf), '35ms ^ 1ms !').toBe('35ms a', {
        a: 'k1',
      });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(labelOf), '45ms ^').toBe(
        '45ms #',
        undefined,
        noKey,
      );
    });
  });

  it('403 key limit exhausts the key until exhaustedRetryMs (or its retryAfterMs), then it serves again', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: TWO_KEYS,
        exhaustedRetryMs: 1_000,
      });
      failAt(scheduler, pool, 10, new KeyLimitError({ message: 'Key limit exceeded', scope: 'key', retryable: false, status: 403 }));
      failAt(
        scheduler,
        pool,
        20,
        new KeyLimitError({ message: 'Key limit exceeded', scope: 'key', retryable: false, status: 403, retryAfterMs: 80 }),
        'k2',
      );
      const view = map((health: { state: string; cooldownUntil: number | null }) => `${health.state}:${health.cooldownUntil}`);
      expectObservable(pool.key('k1').health$.pipe(view), '^ 1100ms !').toBe('a 9ms b 999ms c', {
        a: 'closed:null',
        b: 'exhausted:1010',
        c: 'closed:null',
      });
      expectObservable(pool.key('k2').health$.pipe(view), '^ 1100ms !').toBe('a 19ms b 79ms c', {
        a: 'closed:null',
        b: 'exhausted:100',
        c: 'closed:null',
      });
    });
  });

  it('402 (scope account) exhausts every key of that account and no other', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [
          { key: 'sk-a', label: 'k1', account: 'acme' },
          { key: 'sk-b', label: 'k2', account: 'acme' },
          { key: 'sk-c', label: 'k3', account: 'other' },
        ],
        exhaustedRetryMs: 500,
      });
      failAt(
        scheduler,
        pool,
        10,
        new InsufficientCreditsError({ message: 'Insufficient credits', scope: 'account', retryable: false, status: 402 }),
      );
      const state = map((health: { state: string }) => health.state);
      expectObservable(pool.key('k1').health$.pipe(state), '^ 1000ms !').toBe('a 9ms b 499ms a', { a: 'closed', b: 'exhausted' });
      expectObservable(pool.key('k2').health$.pipe(state), '^ 1000ms !').toBe('a 9ms b 499ms a', { a: 'closed', b: 'exhausted' });
      expectObservable(pool.key('k3').health$.pipe(state), '^ 1000ms !').toBe('a', { a: 'closed' });
    });
  });

  it('a 429 with scope account parks every key of the account until its reset', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [
          { key: 'sk-a', label: 'k1', account: 'acme' },
          { key: 'sk-b', label: 'k2', account: 'acme' },
          { key: 'sk-c', label: 'k3', account: 'other' },
        ],
      });
      failAt(scheduler, pool, 10, rateLimitError(40, 'account'));
      const view = map(breakerView);
      expectObservable(pool.key('k1').health$.pipe(view), '^ 100ms !').toBe('a 9ms b 39ms a', { a: closed(), b: parked(50) });
      expectObservable(pool.key('k2').health$.pipe(view), '^ 100ms !').toBe('a 9ms b 39ms a', { a: closed(), b: parked(50) });
      expectObservable(pool.key('k3').health$.pipe(view), '^ 100ms !').toBe('a', { a: closed() });
    });
  });

  it('a request-scoped error (400) touches no key health at all', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: TWO_KEYS,
      });
      const before = pool.snapshot().keys;
      for (const at of [10, 20, 30]) {
        failAt(
          scheduler,
          pool,
          at,
          new BadRequestError({ message: 'messages: required', scope: 'request', retryable: false, status: 400 }),
        );
      }
      // No emission after the current value: nothing changed.
      expectObservable(pool.key('k1').health$, '^ 100ms !').toBe('a', { a: before[0] });
      expectObservable(pool.key('k2').health$, '^ 100ms !').toBe('a', { a: before[1] });
    });
  });
});

describe('pool: admission queue', () => {
  const leaseLabel = map((lease: { label: string }) => lease.label);
  /** Like `leaseLabel`, keeping each lease in `leases` for the test to answer or release. */
  const keptInto = (leases: KeyLease[]) =>
    map((lease: KeyLease) => {
      leases.push(lease);
      return lease.label;
    });

  it('with every key parked, acquire waits and is admitted exactly at the earliest reset', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: TWO_KEYS,
      });
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: rateLimitError(100) }); // until 100
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k2', model: MODEL, error: rateLimitError(50) }); // until 50
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '10ms ^ 100ms !').toBe('50ms a', {
        a: 'k2',
      });
      // distinctUntilChanged: pool.health$ repeats snapshots (see the last test of this file).
      expectObservable(
        pool.health$.pipe(
          map((health) => health.queued),
          distinctUntilChanged(),
        ),
        '^ 60ms !',
      ).toBe('a 9ms b 39ms a', { a: 0, b: 1 });
    });
  });

  it('a key with maxConcurrent admits the next request when a slot is released', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { keys: [{ key: 'sk-a', label: 'k1', limits: { maxConcurrent: 2 } }] });
      const acquire = () => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel);
      // Subscribed first, so it sees the two first leases arrive at frame 0.
      expectObservable(pool.key('k1').health$.pipe(map((health) => health.inFlight)), '^ 200ms !').toBe('(abc) 15ms (bc) 16ms b 65ms a', {
        a: 0,
        b: 1,
        c: 2,
      });
      expectObservable(acquire(), '^ 19ms !').toBe('a', { a: 'k1' }); // releases at 20
      expectObservable(acquire(), '^ 39ms !').toBe('a', { a: 'k1' }); // releases at 40
      // Waits from 5; admitted when the first slot frees at 20, releases at 106.
      expectObservable(acquire(), '5ms ^ 100ms !').toBe('20ms a', { a: 'k1' });
    });
  });

  it('serves waiting requests in arrival order (FIFO)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { keys: [{ key: 'sk-a', label: 'k1', limits: { maxConcurrent: 1 } }] });
      const acquire = (id: string) => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL], requestId: id }).pipe(map(() => id));
      expectObservable(acquire('A'), '^ 29ms !').toBe('A', { A: 'A' }); // holds the slot 0..30
      expectObservable(acquire('B'), '10ms ^ 34ms !').toBe('30ms B', { B: 'B' }); // waits from 10, holds 30..45
      expectObservable(acquire('C'), '20ms ^ 100ms !').toBe('45ms C', { C: 'C' }); // waits from 20
    });
  });

  it('serves a higher priority first, whatever its arrival', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { keys: [{ key: 'sk-a', label: 'k1', limits: { maxConcurrent: 1 } }] });
      const acquire = (id: string, priority: number) =>
        pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL], requestId: id, priority }).pipe(map(() => id));
      expectObservable(acquire('A', 0), '^ 29ms !').toBe('A', { A: 'A' });
      expectObservable(acquire('B', 0), '10ms ^ 100ms !').toBe('45ms B', { B: 'B' }); // arrived first, served after C
      expectObservable(acquire('C', 5), '20ms ^ 24ms !').toBe('30ms C', { C: 'C' }); // holds 30..45
    });
  });

  it('queueTimeoutMs fails the waiting request with QueueTimeoutError at the right frame and leaves the queue', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: rateLimitError(1_000) });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL], queueTimeoutMs: 100 }), '10ms ^').toBe(
        '110ms #',
        undefined,
        expect.objectContaining({ name: 'QueueTimeoutError', kind: 'queue_timeout' }),
      );
      expectObservable(
        pool.health$.pipe(
          map((health) => health.queued),
          distinctUntilChanged(),
        ),
        '^ 200ms !',
      ).toBe('a 9ms b 99ms a', { a: 0, b: 1 });
    });
  });

  it('a request admitted at once arms no queue timer; one that waits on a shared store times out from its acquire', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const armedAt: number[] = [];
      const schedule = scheduler.schedule.bind(scheduler);
      scheduler.schedule = (work: never, delayMs?: number, state?: never) => {
        if (delayMs === 40) armedAt.push(scheduler.now());
        return schedule(work, delayMs, state);
      };
      const pool = makePool(scheduler, { queue: { timeoutMs: 40 } });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '5ms ^ 95ms !').toBe('5ms a', {
        a: 'k1',
      });
      // The store answers 10 ms after asking: the request's 5 ms run out first.
      const remote = makePool(scheduler, { store: answeringLater(scheduler, createMemoryStore()) });
      expectObservable(remote[POOL_PORT].acquire(chatRequest(), { models: [MODEL], queueTimeoutMs: 5 }), '5ms ^').toBe(
        '10ms #',
        undefined,
        expect.objectContaining({ name: 'QueueTimeoutError' }),
      );
      scheduler.schedule(() => expect(armedAt).toEqual([]), 200);
    });
  });

  it('the pool-wide queue.timeoutMs applies when the request sets none', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { queue: { timeoutMs: 40 } });
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: rateLimitError(1_000) });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }), '5ms ^').toBe(
        '45ms #',
        undefined,
        expect.objectContaining({ name: 'QueueTimeoutError' }),
      );
    });
  });

  it('a full queue (queue.maxSize) refuses at once with QueueFullError', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { queue: { maxSize: 1 } });
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: rateLimitError(100) });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '^ 200ms !').toBe('100ms a', {
        a: 'k1',
      });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }), '10ms ^').toBe(
        '10ms #',
        undefined,
        expect.objectContaining({ name: 'QueueFullError', kind: 'queue_full' }),
      );
    });
  });

  it('a half-open key admits halfOpenProbes attempts; the next waits for the verdict', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      failAt(scheduler, pool, 0, networkError());
      failAt(scheduler, pool, 0, networkError()); // open until 100
      succeedAt(scheduler, pool, 140); // the probe's verdict closes the breaker
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '110ms ^ 100ms !').toBe('110ms a', {
        a: 'k1',
      });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '120ms ^ 100ms !').toBe('140ms a', {
        a: 'k1',
      });
    });
  });

  it('quotas slide: with 2 requests per 100 ms the 3rd is admitted at 150 and the 4th at 160', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [{ key: 'sk-a', label: 'k1', limits: { quotas: [{ requests: 2, windowMs: 100 }] } }],
        store: createMemoryStore({ arrivalMarginMs: 50 }),
      });
      const acquire = () => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel);
      // Leases are released one frame later (the window counts requests, not concurrency). They
      // never saw a response, so each counts from its admission plus the arrival margin (50 ms here):
      // frames 50 and 60.
      expectObservable(acquire(), '^ !').toBe('a', { a: 'k1' });
      expectObservable(acquire(), '10ms ^ !').toBe('10ms a', { a: 'k1' });
      // A fixed window would admit both at once; the sliding one holds the 4th until the request
      // admitted at 10 leaves the window.
      expectObservable(acquire(), '20ms ^ 200ms !').toBe('150ms a', { a: 'k1' });
      expectObservable(acquire(), '20ms ^ 200ms !').toBe('160ms a', { a: 'k1' });
    });
  });

  it("a request waiting at its model's adaptive limit is admitted when a first byte grows the limit, not at the next release", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { adaptiveConcurrency: { initial: 2 } });
      const leases: KeyLease[] = [];
      const acquire = () => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] });
      // Two holders fill the model's limit of 2 until 300.
      for (let holder = 0; holder < 2; holder++) expectObservable(acquire().pipe(keptInto(leases)), '^ 300ms !').toBe('a', { a: 'k1' });
      // At 10 the first holder's answer starts: accepted with 2 of 2 in flight, the limit grows to 3.
      scheduler.schedule(() => leases[0]!.markResponded(), 10);
      // The third, waiting from 1, fits then.
      expectObservable(acquire().pipe(leaseLabel), '1ms ^ 400ms !').toBe('10ms a', { a: 'k1' });
    });
  });

  it('a first byte that dates a quota entry out of its window (a trusted answer lag) admits a waiting request at once', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(() => {
      const { pool, port, onK1, onK2 } = answerLagPool(scheduler);
      // Sixteen answers on k2 whose first byte takes 150 ms: the model's fastest is 150, and its lag is trusted.
      answeredOnK2(scheduler, port, onK2, 16, 150);
      // At 200 k1 takes a request (counted from 1,200 until its first byte) ...
      let held: KeyLease | undefined;
      scheduler.schedule(() => port.acquire(chatRequest(), { models: [MODEL], strategy: onK1 }).subscribe((lease) => (held = lease)), 200);
      // ... and another waits for k1 from 201.
      scheduler.schedule(
        () => port.acquire(chatRequest(), { models: [MODEL], strategy: onK1 }).subscribe(() => outcomes.push(`${scheduler.now()} W`)),
        201,
      );
      // Its first byte at 500, 150 ms slower than the fastest: counted by 360, out of the 100 ms window by 460.
      scheduler.schedule(() => held!.markResponded(), 500);
      scheduler.schedule(() => pool.dispose(), 3_000);
    });
    expect(outcomes).toEqual(['500 W']);
  });

  it("answers before the lag is trusted count again by its bound once it is: an early answer's quota entry leaves its window then", () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(() => {
      const { pool, port, onK1, onK2 } = answerLagPool(scheduler);
      // k1 takes a request at 0, and another waits for k1 from 1.
      let early: KeyLease | undefined;
      port.acquire(chatRequest(), { models: [MODEL], strategy: onK1 }).subscribe((lease) => (early = lease));
      scheduler.schedule(
        () => port.acquire(chatRequest(), { models: [MODEL], strategy: onK1 }).subscribe(() => outcomes.push(`${scheduler.now()} W`)),
        1,
      );
      // k1's first byte at 150, the model's first answer: counted from 150 (the lag is not trusted yet), out of the window by 250.
      scheduler.schedule(() => early!.markResponded(), 150);
      // Fifteen answers on k2 whose first byte takes 200 ms: at the sixteenth answer the fastest (150) is trusted, and k1's
      // answer, no slower than it, counts from its send plus the 10 ms slack: out of its window since 110.
      answeredOnK2(scheduler, port, onK2, 15, 200);
      scheduler.schedule(() => pool.dispose(), 3_000);
    });
    expect(outcomes).toEqual(['200 W']);
  });

  it('a large request at the head of its signature is woken when it fits, even when a smaller one behind it fits the quotas already', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      // The pool owns its store (default arrival margin 1 s: entries count from admission + 1,000).
      const pool = makePool(scheduler, {
        keys: [tokenQuotaKey(2)],
      });
      const acquire = (request: ChatRequest) => pool[POOL_PORT].acquire(request, { models: [MODEL] }).pipe(leaseLabel);
      // Two holders (admitted at 0, counted from 1,000) fill the request window until 1,100 and keep
      // a few tokens in the token window until 2,000; they hold their slots until 9,000.
      for (let holder = 0; holder < 2; holder++) expectObservable(acquire(small), '^ 9000ms !').toBe('a', { a: 'k1' });
      // Same priority, same model: the large one goes first, and fits once the token window is empty, at 2,000 ...
      expectObservable(acquire(large), '1ms ^ 9000ms !').toBe('2000ms a', { a: 'k1' });
      // ... the small one waits behind it (it fits the quotas from 1,100): after the large one's tokens leave, at 4,000.
      expectObservable(acquire(small), '2ms ^ 9000ms !').toBe('4000ms a', { a: 'k1' });
    });
  });

  it('a large request on one model is woken when it fits, though a small one on another model (held at its adaptive limit) fits the quotas already', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const OTHER = 'acme/model-b';
      const pool = makePool(scheduler, {
        adaptiveConcurrency: { initial: 3 },
        keys: [tokenQuotaKey(5)],
      });
      const acquire = (request: ChatRequest, model: string, priority = 0) =>
        pool[POOL_PORT].acquire(request, { models: [model], priority }).pipe(leaseLabel);
      // Five holders (two on MODEL, three on OTHER: its limit) fill the request window until 1,100; their tokens leave at 2,000.
      for (let holder = 0; holder < 2; holder++) expectObservable(acquire(small, MODEL), '^ 9000ms !').toBe('a', { a: 'k1' });
      for (let holder = 0; holder < 3; holder++) expectObservable(acquire(small, OTHER), '^ 9000ms !').toBe('a', { a: 'k1' });
      // The large one on MODEL fits once the token window is empty, at 2,000 ...
      expectObservable(acquire(large, MODEL, 1), '1ms ^ 9000ms !').toBe('2000ms a', { a: 'k1' });
      // ... while a small one on OTHER waits for a slot of OTHER (until the holders leave).
      expectObservable(acquire(small, OTHER), '2ms ^ 9000ms !').toBe('9001ms a', { a: 'k1' });
    });
  });

  it('on a shared store, a blocked queue polls even while a far-off change (a parked key) is known', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const store = createMemoryStore({ arrivalMarginMs: 0 });
      const keys = [
        { key: 'sk-a', label: 'k1', limits: { maxConcurrent: 1 } },
        { key: 'sk-b', label: 'k2' },
      ];
      const one = makePool(scheduler, { keys, store });
      const two = makePool(scheduler, { keys, store });
      // k2 is parked for a second (shared through the store: both pools see it).
      two[POOL_PORT].record({ type: 'failure', keyLabel: 'k2', model: MODEL, error: rateLimitError(1_000) });
      // Pool one holds k1's only slot until 50.
      expectObservable(one[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '^ 49ms !').toBe('a', { a: 'k1' });
      // Pool two waits from 10: it hears nothing of the release at 50, so it polls (10, 35, 60): admitted at 60, not at 1,000.
      expectObservable(two[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '10ms ^ 2000ms !').toBe('60ms a', {
        a: 'k1',
      });
    });
  });

  it('a send that moves a quota entry earlier (markSent) wakes the queue for the earlier room', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      // Send margin 250 ms (from a floor of 100), under the store's 1 s arrival margin.
      const pool = makePool(scheduler, {
        keys: [{ key: 'sk-a', label: 'k1', limits: { quotas: [{ requests: 1, windowMs: 100 }] } }],
        sendMarginMs: 100,
      });
      const leases: KeyLease[] = [];
      const acquire = () => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] });
      expectObservable(acquire().pipe(keptInto(leases)), '^ 3000ms !').toBe('a', { a: 'k1' });
      // Counted from 1,000 at admission; sent at 10, it counts from 260 and leaves the window at 360.
      scheduler.schedule(() => leases[0]!.markSent(), 10);
      expectObservable(acquire().pipe(leaseLabel), '5ms ^ 3000ms !').toBe('360ms a', { a: 'k1' });
    });
  });

  it('a half-open key admits halfOpenProbes attempts also while a shared store answers reservations later', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(() => {
      const remote = answeringLater(scheduler, createMemoryStore({ arrivalMarginMs: 0 }));
      const pool = makePool(scheduler, { store: remote });
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: networkError() });
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: networkError() }); // open until 100
      scheduler.schedule(() => {
        for (const id of ['A', 'B'])
          pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe({
            next: () => outcomes.push(`${scheduler.now()} ${id}`),
            error: (error: OpenRouterError) => outcomes.push(`${scheduler.now()} ${id} ${error.name}`),
          });
      }, 110);
      // The probe's verdict at 200 closes the breaker.
      scheduler.schedule(() => pool[POOL_PORT].record({ type: 'success', keyLabel: 'k1', model: MODEL, latencyMs: 5 }), 200);
      scheduler.schedule(() => pool.dispose(), 400);
    });
    // One probe at a time: B waits for the verdict.
    expect(outcomes[0]).toBe('120 A');
    expect(Number(outcomes[1]?.split(' ')[0])).toBeGreaterThanOrEqual(200);
  });

  it('a reservation that errors frees its model slot for a waiting request at once', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(() => {
      const memory = createMemoryStore({ arrivalMarginMs: 0 });
      let calls = 0;
      const remote: StateStore = Object.assign(Object.create(memory) as StateStore, {
        reserve: (...args: Parameters<StateStore['reserve']>) =>
          calls++ === 0
            ? timer(10, scheduler).pipe(mergeMap(() => throwError(() => new Error('store down'))))
            : of(memory.reserve(...args)).pipe(delay(10, scheduler)),
      });
      const pool = makePool(scheduler, { store: remote, adaptiveConcurrency: { initial: 1 } });
      for (const [id, at] of [
        ['A', 0],
        ['B', 1],
      ] as const)
        scheduler.schedule(
          () =>
            pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe({
              next: () => outcomes.push(`${scheduler.now()} ${id}`),
              error: (error: OpenRouterError) => outcomes.push(`${scheduler.now()} ${id} ${error.name}`),
            }),
          at,
        );
      scheduler.schedule(() => pool.dispose(), 400);
    });
    // A's reservation fails at 10: B (waiting at the model's limit of 1) reserves then, leased at 20.
    expect(outcomes.slice(0, 2)).toEqual(['10 A NetworkError', '20 B']);
  });

  it('a reservation answered for a request that left meanwhile frees its model slot for a waiting request at once', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(() => {
      const remote = answeringLater(scheduler, createMemoryStore({ arrivalMarginMs: 0 }));
      const pool = makePool(scheduler, { store: remote, adaptiveConcurrency: { initial: 1 } });
      const a = pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe(() => outcomes.push(`${scheduler.now()} A`));
      scheduler.schedule(() => a.unsubscribe(), 5); // A leaves while its reservation is under way
      scheduler.schedule(
        () => pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe(() => outcomes.push(`${scheduler.now()} B`)),
        1,
      );
      scheduler.schedule(() => pool.dispose(), 400);
    });
    // A's reservation comes back at 10 and is given back: B (waiting at the model's limit of 1) reserves then, leased at 20.
    expect(outcomes).toEqual(['20 B']);
  });

  it('a request whose own strategy refuses every key does not hold back one of the same priority and model that the pool strategy would place', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [
          { key: 'sk-a', label: 'k1' },
          { key: 'sk-b', label: 'k2', limits: { maxConcurrent: 1 } },
        ],
      });
      const onlyK2: Strategy = { name: 'only-k2', pick: (context) => (context.isEligible(1) ? 1 : undefined) };
      // k2's slot is held until 300.
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL], strategy: onlyK2 }).pipe(leaseLabel), '^ 300ms !').toBe(
        'a',
        {
          a: 'k2',
        },
      );
      expectObservable(
        pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL], strategy: onlyK2 }).pipe(leaseLabel),
        '1ms ^ 400ms !',
      ).toBe('301ms a', { a: 'k2' });
      // k1 is free: the pool's strategy places this one at once.
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).pipe(leaseLabel), '2ms ^ 400ms !').toBe('2ms a', {
        a: 'k1',
      });
    });
  });

  it('a large request is woken when it fits though a smaller one that fits already waits for something else (another strategy, a full key)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [tokenQuotaKey(), { key: 'sk-b', label: 'k2', limits: { maxConcurrent: 1 } }],
      });
      const onlyK2: Strategy = { name: 'only-k2', pick: (context) => (context.isEligible(1) ? 1 : undefined) };
      const acquire = (request: ChatRequest, strategy?: Strategy) =>
        pool[POOL_PORT].acquire(request, { models: [MODEL], ...(strategy === undefined ? {} : { strategy }) }).pipe(leaseLabel);
      // k2's one slot is held until 9,000; a small request on k1 keeps tokens in its window until 2,000.
      expectObservable(acquire(small, onlyK2), '^ 9000ms !').toBe('a', { a: 'k2' });
      expectObservable(acquire(small), '^ 9000ms !').toBe('a', { a: 'k1' });
      // From 1, a small request that would fit k1 already waits for k2 (its strategy's only key) ...
      expectObservable(acquire(small, onlyK2), '1ms ^ 9000ms !').toBe('9001ms a', { a: 'k2' });
      // ... and from 2 a request for a whole second's tokens waits for k1's window to empty.
      expectObservable(acquire(large), '2ms ^ 9000ms !').toBe('2000ms a', { a: 'k1' });
    });
  });

  it('a head of the queue that leaves (its queue timeout) lets the request behind it go at once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, { keys: [tokenQuotaKey()] });
      // A small request's tokens stay in the window until 2,000 (admitted at 0, counted from 1,000).
      expectObservable(pool[POOL_PORT].acquire(small, { models: [MODEL] }).pipe(leaseLabel), '^ 3000ms !').toBe('a', { a: 'k1' });
      // A large one waits from 1 for an empty window, and gives up at 101 ...
      expectObservable(pool[POOL_PORT].acquire(large, { models: [MODEL], queueTimeoutMs: 100 }).pipe(leaseLabel), '1ms ^ 3000ms !').toBe(
        '101ms #',
        undefined,
        expect.objectContaining({ name: 'QueueTimeoutError' }),
      );
      // ... and the small one behind it (same priority and model: it could not pass) fits then.
      expectObservable(pool[POOL_PORT].acquire(small, { models: [MODEL] }).pipe(leaseLabel), '2ms ^ 3000ms !').toBe('101ms a', { a: 'k1' });
    });
  });

  it('a reservation a shared store ends without answering fails its request and gives back the slot', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    let inFlight = -1;
    scheduler.run(() => {
      const memory = createMemoryStore({ arrivalMarginMs: 0 });
      const silent: StateStore = Object.assign(Object.create(memory) as StateStore, { reserve: () => EMPTY.pipe(delay(10, scheduler)) });
      const pool = makePool(scheduler, { store: silent });
      pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe({
        next: () => outcomes.push('admitted'),
        error: (error: OpenRouterError) => outcomes.push(`${scheduler.now()} ${error.message}`),
      });
      scheduler.schedule(() => {
        inFlight = pool.snapshot().keys[0]!.inFlight;
        pool.dispose();
      }, 50);
    });
    expect(outcomes).toEqual(['0 the state store ended a reservation without answering it']);
    expect(inFlight).toBe(0);
  });

  it('a request waiting behind a larger one of another priority is woken when it fits, not when the larger one does', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler, {
        keys: [tokenQuotaKey(2)],
        store: createMemoryStore({ arrivalMarginMs: 0 }),
      });
      const acquire = (request: ChatRequest, priority = 0) =>
        pool[POOL_PORT].acquire(request, { models: [MODEL], priority }).pipe(leaseLabel);
      // Two holders fill the request window until 100 (their tokens stay in the token window until 1,000).
      for (let holder = 0; holder < 2; holder++) expectObservable(acquire(small), '^ 2000ms !').toBe('a', { a: 'k1' });
      // At the head of the queue, a request for a whole second's tokens fits only once the token window is empty ...
      expectObservable(acquire(large, 1), '1ms ^ 2000ms !').toBe('1100ms a', { a: 'k1' });
      // ... and behind it a small one (it may pass: another priority) fits once the request window frees, at 100
      // (it used to sleep until the large one fitted, at 1,000, and then wait behind its tokens until 2,000).
      // Its tokens leave the token window at 1,100: the large one's turn.
      expectObservable(acquire(small), '2ms ^ 2000ms !').toBe('100ms a', { a: 'k1' });
    });
  });

  it('a waiting request that leaves while the queue drains (its neighbour was admitted and cancelled it) does not make the drain skip the request after it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      // Three requests per 100 ms, and 50 tokens per second: a request asking for a whole second's tokens waits.
      const pool = makePool(scheduler, {
        keys: [tokenQuotaKey(3)],
        store: createMemoryStore({ arrivalMarginMs: 0 }),
      });
      const acquire = (request: ChatRequest, priority = 0) =>
        pool[POOL_PORT].acquire(request, { models: [MODEL], priority }).pipe(leaseLabel);
      // Three holders fill the request window until 100 (and hold their slots until 300).
      for (let holder = 0; holder < 3; holder++) expectObservable(acquire(small), '^ 300ms !').toBe('a', { a: 'k1' });
      // From 1, a high-priority request for 10,000 tokens waits at the head of the queue: at 100 it
      // still does not fit the token window, so the drain passes over it ...
      let waitingLarge: Subscription | undefined;
      scheduler.schedule(() => {
        waitingLarge = acquire(large, 1).subscribe();
      }, 1);
      // ... and admits the next one, whose caller then cancels the large one (a race between them, say).
      expectObservable(acquire(small).pipe(tap(() => waitingLarge?.unsubscribe())), '2ms ^ 400ms !').toBe('100ms a', { a: 'k1' });
      // The third waiting request fits too: admitted at 100 as well, not when a holder leaves at 300.
      expectObservable(acquire(small), '3ms ^ 400ms !').toBe('100ms a', { a: 'k1' });
    });
  });

  // BUG (reported): enqueue() calls changes.next() and then drain(), which ends with an
  // unconditional changes.next(); drain() also emits after the flush() that admitted a ticket.
  // Seen: a snapshot repeated at 10 (request queued) and at 30 (request admitted).
  it('pool.health$ never emits two equal snapshots in a row', () => {
    const scheduler = newTestScheduler();
    const snapshots: PoolHealth[] = [];
    scheduler.run(() => {
      const pool = makePool(scheduler, { keys: [{ key: 'sk-a', label: 'k1', limits: { maxConcurrent: 1 } }] });
      pool.health$.subscribe((health) => snapshots.push(health));
      // One request holds the key 0..30; a second waits from 10 and is admitted at 30.
      const first = pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe();
      scheduler.schedule(() => first.unsubscribe(), 30);
      scheduler.schedule(() => {
        const second = pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }).subscribe();
        scheduler.schedule(() => second.unsubscribe(), 30);
      }, 10);
      failAt(scheduler, pool, 60, rateLimitError(20));
    });
    expect(snapshots.length).toBeGreaterThan(3);
    const duplicates = snapshots.slice(1).filter((snapshot, index) => JSON.stringify(snapshot) === JSON.stringify(snapshots[index]));
    expect(duplicates).toEqual([]);
  });
});

describe('a lease', () => {
  it('works with its methods taken off it, as callbacks are (`finalize(lease.release)`)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(() => {
      const pool = makePool(scheduler);
      const port = pool[POOL_PORT];
      const leases: KeyLease[] = [];
      const subscription = port.acquire(chatRequest(), { models: [MODEL] }).subscribe((lease) => leases.push(lease));
      const [lease] = leases;
      if (lease === undefined) throw new Error('no lease');
      expect(pool.snapshot().keys.reduce((sum, key) => sum + key.inFlight, 0)).toBe(1);
      const { markSent, markResponded, reconcile, release } = lease;
      markSent();
      markResponded();
      reconcile({ promptTokens: 1, completionTokens: 1, totalTokens: 2 });
      release();
      expect(pool.snapshot().keys.reduce((sum, key) => sum + key.inFlight, 0)).toBe(0);
      subscription.unsubscribe();
    });
  });
  it('keeps its estimate in the token windows when told a usage no server bills (negative, infinite, not a number)', () => {
    for (const totalTokens of [-1_000_000, Infinity, Number.NaN]) {
      const scheduler = newTestScheduler();
      scheduler.run(() => {
        const { transport } = scriptedTransport(scheduler, {});
        const pool = predictablePool(scheduler, transport, [tokenQuotaKey()]);
        const port = pool[POOL_PORT];
        const tokensLeft = () => pool.snapshot().keys[0]!.quota.find((quota) => quota.unit === 'tokens')?.remaining;
        port.acquire(small, { models: [MODEL] }).subscribe((lease) => {
          const estimated = tokensLeft();
          lease.markSent();
          lease.reconcile({ promptTokens: 0, completionTokens: 0, totalTokens });
          lease.release();
          expect(estimated).toBeGreaterThan(0);
          expect(estimated).toBeLessThan(50);
          expect(tokensLeft()).toBe(estimated);
        });
      });
    }
  });
});

describe('dispose while a shared store answers', () => {
  it('dispose fails a request whose reservation is out at once, and its late answer gives the room back', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    let inFlight: number[] = [];
    scheduler.run(() => {
      const memory = createMemoryStore();
      // A store that answers reservations 10 ms later, as Redis does after its round trip.
      const remote: StateStore = Object.assign(Object.create(memory) as StateStore, {
        reserve: (...args: Parameters<StateStore['reserve']>) => of(memory.reserve(...args)).pipe(delay(10, scheduler)),
      });
      const pool = makePool(scheduler, { store: remote });
      pool[POOL_PORT].acquire(chatRequest('hi'), { models: [MODEL] }).subscribe({
        next: () => outcomes.push(`${scheduler.now()} lease`),
        error: (error: OpenRouterError) => outcomes.push(`${scheduler.now()} ${error.name}: ${error.message}`),
      });
      scheduler.schedule(() => pool.dispose(), 5);
      scheduler.schedule(() => (inFlight = pool.snapshot().keys.map((key) => key.inFlight)), 20);
    });
    // At the dispose, not when the store answers (a slow Redis held it up to its command timeout).
    expect(outcomes).toEqual(['5 AbortedError: the key pool was disposed']);
    expect(inFlight).toEqual([0]);
  });
});

describe('health streams after dispose', () => {
  it('give every subscriber the last record and the end, as pool.health$ does: a key watched before, a key and a model first asked for after', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const pool = makePool(scheduler);
      const watchedBefore = pool.key('k1').health$.subscribe();
      pool.dispose();
      watchedBefore.unsubscribe();
      const stateOf = map((health: { state: string }) => health.state);
      expectObservable(pool.health$.pipe(map(() => 'pool'))).toBe('(p|)', { p: 'pool' });
      expectObservable(pool.key('k1').health$.pipe(stateOf)).toBe('(c|)', { c: 'closed' });
      expectObservable(pool.model('never/named').health$.pipe(stateOf)).toBe('(c|)', { c: 'closed' });
    });
  });
});

describe('a configured per-model limit in health', () => {
  it("shows in each key's quota, as its account's (OpenRouter limits per account), once a request met it", () => {
    const scheduler = newTestScheduler();
    scheduler.run(() => {
      const pool = makePool(scheduler, { models: { 'vendor/*': { quotas: [{ requests: 2, windowMs: 3_000 }] } } });
      pool[POOL_PORT].acquire(chatRequest('hi', { model: 'vendor/m' }), { models: ['vendor/m'] }).subscribe();
      expect(pool.snapshot().keys[0]!.quota).toEqual([
        expect.objectContaining({
          scope: 'model',
          model: 'vendor/*',
          unit: 'requests',
          limit: 2,
          remaining: 1,
          windowMs: 3_000,
          source: 'configured',
        }),
      ]);
    });
  });
});
