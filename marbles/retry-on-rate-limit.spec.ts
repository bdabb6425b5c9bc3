import { describe, expect, it } from 'vitest';
import { from, ignoreElements, of, type MonoTypeOperatorFunction, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { KeyPool } from '../src/create-pool.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { circuitBreaker } from '../src/operators/circuit-breaker.js';
import { retryOnRateLimit, type RetryOnRateLimitConfig } from '../src/operators/retry-on-rate-limit.js';
import type { AttemptEvent } from '../src/operators/attempt-event.js';
import { AttemptsExhaustedError, AuthenticationError, RateLimitError, UpstreamError } from '../src/core/errors.js';
import { balance } from '../src/operators/balance.js';
import type { TransportEvent } from '../src/core/types.js';
import {
  MODEL,
  asReported,
  chatRequest,
  completionEvent,
  newTestScheduler,
  rateLimitError,
  scriptedPoolFactory,
  timeline,
} from './support.js';

const threeKeys = [
  { key: 'sk-test-1', label: 'k1' },
  { key: 'sk-test-2', label: 'k2' },
  { key: 'sk-test-3', label: 'k3' },
];

// The strategy always takes the first eligible key, so only parking and the rotation's
// preference for untried keys move a retry elsewhere.
const makePool = scriptedPoolFactory(threeKeys);

/** withKeyRotation → circuitBreaker (so a 429 parks its key) → retryOnRateLimit. */
function request$(pool: KeyPool, scheduler: TestScheduler, config: RetryOnRateLimitConfig = {}, record = true): Observable<AttemptEvent> {
  const breaker: MonoTypeOperatorFunction<AttemptEvent> = record ? circuitBreaker(pool) : (source) => source;
  return of(chatRequest('hello', { id: 'r1' })).pipe(withKeyRotation(pool), breaker, retryOnRateLimit({ scheduler, ...config }));
}

describe('retryOnRateLimit', () => {
  it('moves a 429 to another key at once, in the same frame', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const k1 = cold<TransportEvent>('--#', undefined, rateLimitError(1_000));
      const k2 = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [k1], k2: [k2] });
      log = timeline(scheduler, request$(pool, scheduler)).log;
      expectSubscriptions(k1.subscriptions).toBe('^-!');
      expectSubscriptions(k2.subscriptions).toBe('--^--!'); // subscribed at 2, the frame of the 429
    });
    expect(log).toEqual(['0 attempt 1 k1', '2 retry rate_limit +0', '2 attempt 2 k2', '4 completion k2', '5 complete']);
  });

  it('never uses the same key twice while another is eligible, even when the 429 parks nothing', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      // Without circuitBreaker no 429 is recorded: k1 and k2 stay eligible throughout.
      const k1 = cold<TransportEvent>('--#', undefined, rateLimitError(1_000));
      const k2 = cold<TransportEvent>('--#', undefined, rateLimitError(1_000));
      const k3 = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [k1], k2: [k2], k3: [k3] });
      log = timeline(scheduler, request$(pool, scheduler, {}, false)).log;
      expectSubscriptions(k1.subscriptions).toBe('^-!');
      expectSubscriptions(k2.subscriptions).toBe('--^-!');
      expectSubscriptions(k3.subscriptions).toBe('----^--!');
    });
    expect(log.filter((line) => line.includes('attempt'))).toEqual(['0 attempt 1 k1', '2 attempt 2 k2', '4 attempt 3 k3']);
  });

  it('when every key is parked, waits for the earliest reset and retries there', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const k1 = cold<TransportEvent>('--#', undefined, rateLimitError(100)); // parked 2..102
      const k2First = cold<TransportEvent>('--#', undefined, rateLimitError(50)); // parked 4..54
      const k2Second = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [k1], k2: [k2First, k2Second] }, { keys: threeKeys.slice(0, 2) });
      log = timeline(scheduler, request$(pool, scheduler)).log;
      expectSubscriptions(k1.subscriptions).toBe('^-!');
      expectSubscriptions(k2First.subscriptions).toBe('--^-!');
      // The retry due at 4 waits in the pool's queue and starts exactly at k2's reset.
      expectSubscriptions(k2Second.subscriptions).toBe('54ms ^--!');
    });
    expect(log).toEqual([
      '0 attempt 1 k1',
      '2 retry rate_limit +0',
      '2 attempt 2 k2',
      '4 retry rate_limit +0',
      '54 attempt 3 k2',
      '56 completion k2',
      '57 complete',
    ]);
  });

  it('gives up after maxAttempts with an AttemptsExhaustedError listing every attempt', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const scripts = {
        k1: [cold<TransportEvent>('--#', undefined, rateLimitError(1_000))],
        k2: [cold<TransportEvent>('--#', undefined, rateLimitError(1_000))],
        k3: [cold<TransportEvent>('--#', undefined, rateLimitError(1_000))],
      };
      const { pool, calls } = makePool(scheduler, scripts);
      const attempt = (number: number, keyLabel: string, at: number) => ({
        attempt: number,
        keyLabel,
        model: MODEL,
        kind: 'rate_limit',
        status: 429,
        message: 'rate limited',
        at,
      });
      expectObservable(request$(pool, scheduler, { maxAttempts: 3 }).pipe(ignoreElements())).toBe(
        '6ms #',
        undefined,
        expect.objectContaining({
          name: 'AttemptsExhaustedError',
          kind: 'attempts_exhausted',
          attempts: [attempt(1, 'k1', 2), attempt(2, 'k2', 4), attempt(3, 'k3', 6)],
          lastError: expect.objectContaining({ name: 'RateLimitError', keyLabel: 'k3' }),
        }),
      );
      expectSubscriptions(scripts.k3[0]!.subscriptions).toBe('----^-!');
      scheduler.schedule(() => expect(calls.map((call) => call.label)).toEqual(['k1', 'k2', 'k3']), 2_000);
    });
  });

  it('maxWaitMs: gives up when no key frees within the bound after the retry was due', () => {
    const scheduler = newTestScheduler();
    let failure: unknown;
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const k1 = cold<TransportEvent>('--#', undefined, rateLimitError(1_000));
      const k2 = cold<TransportEvent>('--#', undefined, rateLimitError(1_000));
      const { pool, calls } = makePool(scheduler, { k1: [k1], k2: [k2] }, { keys: threeKeys.slice(0, 2) });
      const result = timeline(scheduler, request$(pool, scheduler, { maxWaitMs: 100 }));
      log = result.log;
      // The retry is due at 4 and waits in the queue; at 104 the request gives up and leaves it.
      expectSubscriptions(k1.subscriptions).toBe('^-!');
      expectSubscriptions(k2.subscriptions).toBe('--^-!');
      scheduler.schedule(() => {
        failure = result.error();
        expect(pool.snapshot().queued).toBe(0);
      }, 105);
      // The keys' resets at 1002 and 1004 call nothing more.
      scheduler.schedule(() => expect(calls).toHaveLength(2), 2_000);
    });
    expect(log.at(-1)).toBe('104 error AttemptsExhaustedError');
    expect(failure).toBeInstanceOf(AttemptsExhaustedError);
    expect((failure as AttemptsExhaustedError).attempts.map((attempt) => attempt.keyLabel)).toEqual(['k1', 'k2']);
  });

  it('a 401 also moves to another key, and the disabled key is never tried again', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const k1 = cold<TransportEvent>(
        '--#',
        undefined,
        new AuthenticationError({ message: 'User not found.', scope: 'key', retryable: false, status: 401 }),
      );
      const k2 = cold<TransportEvent>('--#', undefined, rateLimitError(10));
      const k2Again = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [k1], k2: [k2, k2Again] }, { keys: threeKeys.slice(0, 2) });
      log = timeline(scheduler, request$(pool, scheduler)).log;
      expectSubscriptions(k1.subscriptions).toBe('^-!');
      // k2 parked 4..14: k1 is disabled, so the retry waits for k2 rather than going back to k1.
      expectSubscriptions(k2Again.subscriptions).toBe('14ms ^--!');
    });
    expect(log.filter((line) => line.includes('attempt'))).toEqual(['0 attempt 1 k1', '2 attempt 2 k2', '14 attempt 3 k2']);
  });

  it('lets errors that are not key refusals pass through untouched, without a retry', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const error = new UpstreamError({ message: 'upstream 502', scope: 'model', retryable: true, status: 502 });
      const k1 = cold<TransportEvent>('--#', undefined, error);
      const { pool } = makePool(scheduler, { k1: [k1] });
      expectObservable(request$(pool, scheduler).pipe(ignoreElements())).toBe('--#', undefined, asReported(error));
      expectSubscriptions(k1.subscriptions).toBe('^-!');
    });
  });
});

describe('retryOnRateLimit in balance, with the defaults: a per-minute quota spent', () => {
  it('the request that drew the 429 waits out the minute and takes the first room the window frees, ahead of the requests that came after it', () => {
    const scheduler = newTestScheduler();
    const free = 'acme/model-a:free';
    const outcomes: string[] = [];
    scheduler.run(({ cold }) => {
      const answer = (content: string) => cold<TransportEvent>('50ms (c|)', { c: completionEvent(content) });
      // 2 a minute for the account's free models, found out when the third request draws the 429.
      const refused = new RateLimitError({
        message: '429 Rate limit exceeded: free-models-per-min',
        scope: 'account',
        retryable: true,
        status: 429,
        retryAfterMs: 59_800,
        rateLimit: { limit: 2, remaining: 0, resetAfterMs: 59_800, bucket: 'free-models-per-min' },
      });
      const { pool } = makePool(
        scheduler,
        {
          r0: [answer('r0')],
          r1: [answer('r1')],
          r2: [cold<TransportEvent>('5ms #', undefined, refused), answer('r2')],
          r3: [answer('r3')],
        },
        { by: 'content', keys: [{ key: 'sk-test-1', label: 'k1' }] },
      );
      const requests = ['r0', 'r1', 'r2', 'r3'].map((id) => chatRequest(id, { id, model: free }));
      from(requests)
        .pipe(balance(pool, { concurrency: 3 }))
        .subscribe((event) => {
          if (event.type === 'completion') outcomes.push(`${event.requestId} ok at ${scheduler.now()}`);
          if (event.type === 'failed') outcomes.push(`${event.requestId} failed at ${scheduler.now()}: ${event.error.message}`);
        });
      scheduler.schedule(() => pool.dispose(), 180_000);
    });
    expect(outcomes.slice(0, 2)).toEqual(['r0 ok at 50', 'r1 ok at 50']);
    // The window the 429 taught frees a minute after the first sends (plus the pool's margin): r2 first, then r3.
    expect(outcomes.slice(2).map((outcome) => outcome.replace(/ at \d+/, ''))).toEqual(['r2 ok', 'r3 ok']);
    expect(Number(/at (\d+)/.exec(outcomes[2]!)![1])).toBeGreaterThanOrEqual(60_000);
  });
});

describe('retryOnRateLimit: refusals that teach the pool a limit', () => {
  /** A platform 429 of a key's quota, with what `X-RateLimit-*` says of it (`taught`), or a bare one (as a docs example's, only a `Retry-After`). */
  const keyRefusal = (taught: boolean) =>
    new RateLimitError({
      message: taught ? '429 Rate limit exceeded: requests-per-key' : '429 Rate limit exceeded',
      scope: 'key',
      retryable: true,
      status: 429,
      retryAfterMs: 900,
      ...(taught ? { rateLimit: { limit: 1, remaining: 0, resetAfterMs: 900, bucket: 'requests-per-key' } } : {}),
    });

  /** Six keys that served one request each; five then refuse the next (`taught`: saying their quota), the sixth has room. */
  function outcomeOfRefusedRequest(taught: boolean): string[] {
    const scheduler = newTestScheduler();
    const labels = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6'];
    const outcomes: string[] = [];
    scheduler.run(({ cold }) => {
      const answer = () => cold<TransportEvent>('10ms (c|)', { c: completionEvent() });
      const refusal = () => cold<TransportEvent>('5ms #', undefined, keyRefusal(taught));
      const scripts = Object.fromEntries(
        labels.map((label) => [label, label === 'k6' ? [answer(), answer()] : [answer(), refusal(), answer()]]),
      );
      const keys = labels.map((label) => ({ key: `sk-test-${label}`, label }));
      const { pool } = makePool(scheduler, scripts, { keys, strategy: 'roundRobin' });
      const requests = [...labels.map((label) => chatRequest(label, { id: `fill-${label}` })), chatRequest('x', { id: 'x' })];
      from(requests)
        .pipe(balance(pool, { concurrency: 1 }))
        .subscribe((event) => {
          if (event.requestId !== 'x') return;
          if (event.type === 'completion') outcomes.push(`completion on ${event.keyLabel} after ${event.attempts} attempts`);
          if (event.type === 'failed') outcomes.push(`failed: ${event.error.message}`);
        });
    });
    return outcomes;
  }

  it('a request refused in turn by five keys whose quotas nobody knew is answered by the sixth: the lessons are not its retries', () => {
    // Five refusals, one more than the default four attempts, each the first word on its key's quota.
    expect(outcomeOfRefusedRequest(true)).toEqual(['completion on k6 after 6 attempts']);
  });

  it('refusals the pool learns no limit from count: the request gives up after its four attempts, as before', () => {
    expect(outcomeOfRefusedRequest(false)).toEqual([expect.stringMatching(/^failed: gave up after 4 attempts/)]);
  });
});
