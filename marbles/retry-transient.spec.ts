import { describe, expect, it } from 'vitest';
import { catchError, ignoreElements, merge, of, takeWhile, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { KeyPool } from '../src/create-pool.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { circuitBreaker } from '../src/operators/circuit-breaker.js';
import { retryTransient, type RetryTransientConfig } from '../src/operators/retry-transient.js';
import { retryOnRateLimit } from '../src/operators/retry-on-rate-limit.js';
import type { AttemptEvent } from '../src/operators/attempt-event.js';
import {
  AttemptsExhaustedError,
  BadRequestError,
  ContextLengthError,
  NetworkError,
  RateLimitError,
  UpstreamError,
  type OpenRouterError,
} from '../src/core/errors.js';
import type { TransportEvent } from '../src/core/types.js';
import {
  asReported,
  chatRequest,
  chunkEvent,
  completionEvent,
  endEvent,
  newTestScheduler,
  randomSequence,
  rateLimitError,
  scriptedPoolFactory,
  timeline,
  upstreamError,
  type TransportCall,
} from './support.js';

const makePool = scriptedPoolFactory([{ key: 'sk-test-1', label: 'k1' }]);

function request$(pool: KeyPool, retry: ReturnType<typeof retryTransient>, content = 'hello'): Observable<AttemptEvent> {
  return of(chatRequest(content, { id: content })).pipe(withKeyRotation(pool), circuitBreaker(pool), retry);
}

function transient(scheduler: TestScheduler, config: RetryTransientConfig = {}) {
  return retryTransient({ scheduler, baseDelayMs: 100, ...config });
}

describe('retryTransient: the caller leaves during a retry', () => {
  it("a caller that leaves on the retried attempt's marker never leaves its HTTP request running", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold<TransportEvent>('-----#', undefined, upstreamError(503));
      const second = cold('500ms (c|)', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second] });
      // The second attempt's marker ends the caller: its call is unsubscribed as it starts (at 5 + 50).
      const markers$ = request$(pool, transient(scheduler, { random: () => 0.5 })).pipe(
        takeWhile((event) => !(event.type === 'attempt' && event.attempt === 2), true),
        ignoreElements(),
      );
      expectObservable(markers$).toBe('55ms |');
      expectSubscriptions(second.subscriptions).toBe('55ms (^!)');
    });
  });
});

describe('retryTransient: the pool is disposed during a backoff', () => {
  it('composed by hand, the request fails at once with its acquisition, as through balance: no backoff timer outlives the pool', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const { pool } = makePool(scheduler, { k1: [cold<TransportEvent>('10ms #', undefined, upstreamError(503))] });
      // The retry would wait floor(0.5 · 4,000) = 2,000 ms, from 10 to 2,010; the pool goes at 100.
      const outcome$ = request$(pool, transient(scheduler, { baseDelayMs: 4_000, maxDelayMs: 4_000, random: () => 0.5 })).pipe(
        ignoreElements(),
        catchError((error: OpenRouterError) => of(error.kind)),
      );
      scheduler.schedule(() => pool.dispose(), 100);
      expectObservable(outcome$).toBe('100ms (a|)', { a: 'aborted' });
    });
  });
});

describe('retryTransient: backoff', () => {
  it('retries a 5xx with full-jitter exponential backoff: delay = floor(random · base · 2^(n-1))', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const first = cold<TransportEvent>('--#', undefined, upstreamError(503));
      const second = cold<TransportEvent>('--#', undefined, upstreamError(502));
      const third = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second, third] });
      // random 0.3 then 0.75: retry 1 waits floor(0.3 · 100) = 30, retry 2 floor(0.75 · 200) = 150.
      log = timeline(scheduler, request$(pool, transient(scheduler, { random: randomSequence(0.3, 0.75) }))).log;
      expectSubscriptions(first.subscriptions).toBe('^-!');
      expectSubscriptions(second.subscriptions).toBe('32ms ^-!'); // failed at 2, +30
      expectSubscriptions(third.subscriptions).toBe('184ms ^--!'); // failed at 34, +150
    });
    expect(log).toEqual([
      '0 attempt 1 k1',
      '2 retry upstream +30',
      '32 attempt 2 k1',
      '34 retry upstream +150',
      '184 attempt 3 k1',
      '186 completion k1',
      '187 complete',
    ]);
  });

  it('caps each delay at maxDelayMs', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectSubscriptions }) => {
      const failing = cold<TransportEvent>('--#', undefined, new NetworkError({ message: 'reset', scope: 'transport', retryable: true }));
      const last = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [failing, failing, failing, last] }, { breaker: { consecutiveFailures: 10 } });
      // random 0.5: 50, then min(120, 200) · 0.5 = 60, then min(120, 400) · 0.5 = 60.
      timeline(scheduler, request$(pool, transient(scheduler, { random: () => 0.5, maxAttempts: 4, maxDelayMs: 120 })));
      expectSubscriptions(failing.subscriptions).toBe(['^-!', '52ms ^-!', '114ms ^-!']);
      expectSubscriptions(last.subscriptions).toBe('176ms ^--!');
    });
  });

  it('a network error is retried too, and random 0 retries in the same frame', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold<TransportEvent>('--#', undefined, new NetworkError({ message: 'reset', scope: 'transport', retryable: true }));
      const second = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second] });
      expectObservable(request$(pool, transient(scheduler, { random: () => 0 })).pipe(ignoreElements())).toBe('-----|');
      expectSubscriptions(second.subscriptions).toBe('--^--!');
    });
  });
});

describe('retryTransient: a callback of the caller that throws', () => {
  it('fails the request with a request-scoped ConfigurationError naming it, as a throwing strategy does', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, { k1: [cold<TransportEvent>('--#', undefined, upstreamError(503))] });
      const failures: OpenRouterError[] = [];
      const random = (): number => {
        throw new Error('bug in my callback');
      };
      request$(pool, transient(scheduler, { random })).subscribe({ error: (error: OpenRouterError) => failures.push(error) });
      flush();
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ kind: 'configuration', scope: 'request', retryable: false });
      expect(failures[0]!.message).toBe('a retry callback threw: bug in my callback');
      // The key is not blamed for the caller's bug: only the 503 counts, against the model.
      expect(pool.snapshot().keys[0]!.consecutiveFailures).toBe(0);
    });
  });
});

describe('retryTransient: what it does not retry', () => {
  const notRetried: Array<[string, () => OpenRouterError]> = [
    ['a request-scoped 400', () => new BadRequestError({ message: 'bad', scope: 'request', retryable: false, status: 400 })],
    ['a context-length error', () => new ContextLengthError({ message: 'too long', scope: 'request', retryable: false, status: 400 })],
    ['a 5xx marked not retryable', () => new UpstreamError({ message: 'upstream 501', scope: 'model', retryable: false, status: 501 })],
    [
      'a 429 (retryOnRateLimit’s business)',
      () => new RateLimitError({ message: 'rate limited', scope: 'key', retryable: true, status: 429 }),
    ],
  ];
  for (const [name, makeError] of notRetried) {
    it(`passes ${name} through at once, unchanged`, () => {
      const scheduler = newTestScheduler();
      scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
        const error = makeError();
        const call = cold<TransportEvent>('--#', undefined, error);
        const { pool } = makePool(scheduler, { k1: [call] });
        expectObservable(request$(pool, transient(scheduler)).pipe(ignoreElements())).toBe(
          '--#',
          undefined,
          asReported(error, { routeExhausted: error.scope === 'request' }),
        );
        expectSubscriptions(call.subscriptions).toBe('^-!');
      });
    });
  }

  it('is bounded by maxAttempts, then fails with an AttemptsExhaustedError', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold<TransportEvent>('--#', undefined, upstreamError(503));
      const { pool } = makePool(scheduler, { k1: [call] });
      // random 0.5: 50 ms, then 100 ms; the third failure (at 156) ends it.
      expectObservable(request$(pool, transient(scheduler, { random: () => 0.5, maxAttempts: 3 })).pipe(ignoreElements())).toBe(
        '156ms #',
        undefined,
        expect.objectContaining({
          name: 'AttemptsExhaustedError',
          attempts: [
            expect.objectContaining({ attempt: 1, kind: 'upstream', at: 2 }),
            expect.objectContaining({ attempt: 2, kind: 'upstream', at: 54 }),
            expect.objectContaining({ attempt: 3, kind: 'upstream', at: 156 }),
          ],
        }),
      );
      expectSubscriptions(call.subscriptions).toBe(['^-!', '52ms ^-!', '154ms ^-!']);
    });
  });

  it('gives up listing every attempt of the request, those the operators nested with it took included, and counts them all', () => {
    const scheduler = newTestScheduler();
    let caught: unknown;
    scheduler.run(({ cold }) => {
      const failing = (error: OpenRouterError) => cold<TransportEvent>('--#', undefined, error);
      const { pool } = makePool(
        scheduler,
        {
          hello: [
            failing(upstreamError(503)),
            failing(rateLimitError(10)),
            failing(upstreamError(503)),
            failing(rateLimitError(10)),
            failing(upstreamError(503)),
          ],
        },
        { by: 'content' },
      );
      // A chain composed by hand: one loop per operator, each counting its own kind.
      of(chatRequest('hello', { id: 'hello' }))
        .pipe(
          withKeyRotation(pool),
          circuitBreaker(pool),
          retryOnRateLimit({ scheduler, maxAttempts: 4 }),
          transient(scheduler, { maxAttempts: 3, budget: false, random: () => 0.5 }),
        )
        .subscribe({ error: (error: unknown) => (caught = error) });
    });
    expect(caught).toBeInstanceOf(AttemptsExhaustedError);
    const exhausted = caught as AttemptsExhaustedError;
    expect(exhausted.attempts.map((record) => `${record.attempt}:${record.kind}`)).toEqual([
      '1:upstream',
      '2:rate_limit',
      '3:upstream',
      '4:rate_limit',
      '5:upstream',
    ]);
    expect(exhausted.message).toMatch(/^gave up after 5 attempts: /);
  });

  it('does not retry after content was delivered, in the default error mode', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const call = cold('-a-#', { a: chunkEvent('Hel') }, upstreamError(502));
      const { pool } = makePool(scheduler, { k1: [call] });
      log = timeline(scheduler, request$(pool, transient(scheduler))).log;
      expectSubscriptions(call.subscriptions).toBe('^--!');
    });
    expect(log).toEqual(['0 attempt 1 k1', '1 chunk "Hel" k1', '3 error UpstreamError']);
  });

  it('an empty (role-only) chunk is not content: the attempt is still retried', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectSubscriptions }) => {
      const first = cold('-r-#', { r: chunkEvent('') }, upstreamError(502));
      const second = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second] });
      timeline(scheduler, request$(pool, transient(scheduler, { random: () => 0.5 })));
      expectSubscriptions(second.subscriptions).toBe('53ms ^--!');
    });
  });
});

describe('retryTransient: restart mode', () => {
  it('after delivered content, emits a restart marker, then retries', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, expectSubscriptions }) => {
      const first = cold('-a-#', { a: chunkEvent('Hel') }, upstreamError(502));
      const second = cold('-b-e|', { b: chunkEvent('Hello'), e: endEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second] });
      log = timeline(scheduler, request$(pool, transient(scheduler, { random: () => 0.5, onMidStreamError: 'restart' }))).log;
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(second.subscriptions).toBe('53ms ^---!');
    });
    expect(log).toEqual([
      '0 attempt 1 k1',
      '1 chunk "Hel" k1',
      '3 restart upstream',
      '3 retry upstream +50',
      '53 attempt 2 k1',
      '54 chunk "Hello" k1',
      '56 end k1',
      '57 complete',
    ]);
  });

  it('after a restart, a retried attempt that fails before any content is retried plainly: no second restart marker', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold }) => {
      const first = cold('-a-#', { a: chunkEvent('Hel') }, upstreamError(502));
      const second = cold<TransportEvent>('--#', {}, upstreamError(503));
      const third = cold('-b-e|', { b: chunkEvent('Hello'), e: endEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second, third] });
      log = timeline(scheduler, request$(pool, transient(scheduler, { random: () => 0.5, onMidStreamError: 'restart' }))).log;
    });
    expect(log).toEqual([
      '0 attempt 1 k1',
      '1 chunk "Hel" k1',
      '3 restart upstream',
      '3 retry upstream +50',
      '53 attempt 2 k1',
      '55 retry upstream +100',
      '155 attempt 3 k1',
      '156 chunk "Hello" k1',
      '158 end k1',
      '159 complete',
    ]);
  });

  it('a caller that unsubscribes on the restart marker gets no retry: no attempt starts after it left', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectSubscriptions }) => {
      const first = cold('-a-#', { a: chunkEvent('Hel') }, upstreamError(502));
      const second = cold('-b-e|', { b: chunkEvent('Hello'), e: endEvent() });
      const { pool } = makePool(scheduler, { k1: [first, second] });
      request$(pool, transient(scheduler, { random: () => 0.5, onMidStreamError: 'restart' }))
        .pipe(takeWhile((event) => event.type !== 'restart'))
        .subscribe();
      expectSubscriptions(first.subscriptions).toBe('^--!');
      // The 50 ms backoff's retry would have subscribed at 53: nothing does.
      expectSubscriptions(second.subscriptions).toBe([]);
    });
  });
});

describe('retryTransient: retry budget', () => {
  it('one operator instance stops retrying many failing requests beyond its ratio', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    let calls: TransportCall[] = [];
    scheduler.run(({ cold }) => {
      const names = Array.from({ length: 10 }, (_, index) => `r${index + 1}`);
      // Every request fails once at frame 2, then would succeed.
      const scripts = Object.fromEntries(
        names.map((name) => [name, [cold<TransportEvent>('--#', undefined, upstreamError(503)), cold('--c|', { c: completionEvent() })]]),
      );
      // A model breaker that tolerates the burst: ten 5xx in a row would otherwise open the model.
      const made = makePool(scheduler, scripts, {
        by: 'content',
        modelBreaker: { consecutiveFailures: 100, minimumCalls: 100 },
        // Ten 503s at once would lower the model's adaptive limit: this is about retries alone.
        adaptiveConcurrency: false,
      });
      calls = made.calls;
      // 10 attempts in the window, ratio 0.2 and no per-second floor: room for 2 retries in all.
      const retry = transient(scheduler, { random: () => 0.5, budget: { ratio: 0.2, minRetriesPerSecond: 0, windowMs: 10_000 } });
      const all = merge(...names.map((name) => request$(made.pool, retry, name).pipe(catchError(() => of({ type: 'failed' } as const)))));
      log = timeline(scheduler, all).log;
    });
    expect(log.filter((line) => line.includes('retry upstream'))).toEqual(['2 retry upstream +50', '2 retry upstream +50']);
    expect(log.filter((line) => line.endsWith('completion k1'))).toEqual(['54 completion k1', '54 completion k1']);
    expect(log.filter((line) => line.endsWith(' failed'))).toHaveLength(8);
    expect(calls).toHaveLength(12);
  });

  // BUG (reported): RetryBudget.tryRetry grants a retry while `retries < ratio · attempts`, so a
  // fractional allowance lets one retry beyond the ratio. Here 10 requests fail at 2 (2 retries:
  // 20 % of 10); the 2 retried attempts fail again at 54, when the window holds 12 attempts and
  // allows 0.2 · 12 = 2.4 retries, yet a 3rd retry (25 % of 12) is granted.
  it('never lets retries exceed ratio · attempts, even when the allowance is fractional', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold }) => {
      const names = Array.from({ length: 10 }, (_, index) => `r${index + 1}`);
      const failing = () => cold<TransportEvent>('--#', undefined, upstreamError(503));
      const scripts = Object.fromEntries(names.map((name) => [name, [failing(), failing(), cold('--c|', { c: completionEvent() })]]));
      const made = makePool(scheduler, scripts, {
        by: 'content',
        modelBreaker: { consecutiveFailures: 100, minimumCalls: 100 },
        // Ten 503s at once would lower the model's adaptive limit: this is about retries alone.
        adaptiveConcurrency: false,
      });
      const retry = transient(scheduler, { random: () => 0.5, budget: { ratio: 0.2, minRetriesPerSecond: 0, windowMs: 10_000 } });
      log = timeline(
        scheduler,
        merge(...names.map((name) => request$(made.pool, retry, name).pipe(catchError(() => of({ type: 'failed' } as const))))),
      ).log;
    });
    const attempts = log.filter((line) => line.includes(' attempt ')).length;
    const retries = log.filter((line) => line.includes(' retry ')).length;
    // Today: 3 retries for 13 attempts.
    expect(retries).toBeLessThanOrEqual(0.2 * attempts);
    expect({ attempts, retries }).toEqual({ attempts: 12, retries: 2 });
  });

  it('without a budget, every failing request is retried', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold }) => {
      const names = Array.from({ length: 10 }, (_, index) => `r${index + 1}`);
      const scripts = Object.fromEntries(
        names.map((name) => [name, [cold<TransportEvent>('--#', undefined, upstreamError(503)), cold('--c|', { c: completionEvent() })]]),
      );
      const made = makePool(scheduler, scripts, {
        by: 'content',
        modelBreaker: { consecutiveFailures: 100, minimumCalls: 100 },
        // Ten 503s at once would lower the model's adaptive limit: this is about retries alone.
        adaptiveConcurrency: false,
      });
      const retry = transient(scheduler, { random: () => 0.5, budget: false });
      log = timeline(scheduler, merge(...names.map((name) => request$(made.pool, retry, name)))).log;
    });
    expect(log.filter((line) => line.endsWith('completion k1'))).toEqual(Array.from({ length: 10 }, () => '54 completion k1'));
  });
});

describe('retryTransient nested under retryOnRateLimit (as balance composes them)', () => {
  it('retries a 5xx that follows a 429 moved to another key', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    let failure: unknown;
    scheduler.run(({ cold, expectSubscriptions }) => {
      const k1 = cold<TransportEvent>(
        '--#',
        undefined,
        new RateLimitError({ message: 'rate limited', scope: 'key', retryable: true, status: 429, retryAfterMs: 1_000 }),
      );
      const k2 = cold<TransportEvent>('--#', undefined, upstreamError(503));
      const k3 = cold('--c|', { c: completionEvent() });
      const { pool } = makePool(
        scheduler,
        { k1: [k1], k2: [k2], k3: [k3] },
        {
          keys: [
            { key: 'sk-test-1', label: 'k1' },
            { key: 'sk-test-2', label: 'k2' },
            { key: 'sk-test-3', label: 'k3' },
          ],
        },
      );
      const result = timeline(
        scheduler,
        of(chatRequest('hello', { id: 'r1' })).pipe(
          withKeyRotation(pool),
          circuitBreaker(pool),
          retryOnRateLimit({ scheduler }),
          transient(scheduler, { random: () => 0.5 }),
        ),
      );
      log = result.log;
      scheduler.schedule(() => (failure = result.error()), 100);
      // 429 at 2 → k2 at once; 503 at 4 → backoff 50 → k3 at 54.
      expectSubscriptions(k3.subscriptions).toBe('54ms ^--!');
    });
    expect(failure).toBeUndefined();
    expect(log.at(-2)).toBe('56 completion k3');
    expect(failure instanceof AttemptsExhaustedError).toBe(false);
  });
});
