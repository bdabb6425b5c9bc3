import { describe, expect, it } from 'vitest';
import { catchError, concatMap, distinctUntilChanged, filter, map, of, take, timer, type Observable } from 'rxjs';
import type { KeyPool } from '../src/create-pool.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { circuitBreaker, type CircuitBreakerConfig } from '../src/operators/circuit-breaker.js';
import {
  AuthenticationError,
  BadRequestError,
  NetworkError,
  RateLimitError,
  UpstreamError,
  type OpenRouterError,
} from '../src/core/errors.js';
import type { TransportEvent } from '../src/core/types.js';
import { MODEL, chatRequest, chunkEvent, completionEvent, endEvent, newTestScheduler, scriptedPoolFactory } from './support.js';
import { POOL_PORT } from '../src/pool/types.js';

const makePool = scriptedPoolFactory([
  { key: 'sk-test-1', label: 'k1', account: 'acme' },
  { key: 'sk-test-2', label: 'k2', account: 'acme' },
  { key: 'sk-test-3', label: 'k3', account: 'other' },
]);

/** One request through `withKeyRotation` and `circuitBreaker`, its error swallowed. */
function run(pool: KeyPool, config?: CircuitBreakerConfig): Observable<unknown> {
  return of(chatRequest('hello', { id: 'r1', stream: true })).pipe(
    withKeyRotation(pool),
    circuitBreaker(pool, config),
    catchError(() => of('failed')),
  );
}

describe('circuitBreaker: successes', () => {
  it('records latency and time to first content token in scheduler ms', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      // Attempt leased at 10; a role-only chunk at 11 (not content), text at 13, end at 16.
      const call = cold('-r-a--e|', {
        r: chunkEvent(''),
        a: chunkEvent('Hel'),
        e: endEvent('gen-1', { promptTokens: 3, completionTokens: 2, totalTokens: 5 }),
      });
      const { pool } = makePool(scheduler, { k1: [call] });
      expectObservable(run(pool), '10ms ^').toBe('10ms xr-a--e|', {
        x: expect.objectContaining({ type: 'attempt', keyLabel: 'k1' }),
        r: expect.objectContaining({ type: 'chunk', delta: '' }),
        a: expect.objectContaining({ type: 'chunk', delta: 'Hel' }),
        e: expect.objectContaining({ type: 'end' }),
      });
      expectObservable(
        pool.key('k1').health$.pipe(
          filter((health) => health.latencyMs !== null),
          take(1),
          map(({ latencyMs, timeToFirstTokenMs, successes, usage }) => ({
            latencyMs,
            timeToFirstTokenMs,
            successes,
            requests: usage.requests,
            tokens: usage.totalTokens,
          })),
        ),
      ).toBe('16ms (h|)', { h: { latencyMs: 6, timeToFirstTokenMs: 3, successes: 1, requests: 1, tokens: 5 } });
      expectObservable(
        pool.model(MODEL).health$.pipe(
          filter((health) => health.latencyMs !== null),
          take(1),
          map(({ latencyMs, timeToFirstTokenMs, successes }) => ({ latencyMs, timeToFirstTokenMs, successes })),
        ),
      ).toBe('16ms (h|)', { h: { latencyMs: 6, timeToFirstTokenMs: 3, successes: 1 } });
    });
  });

  it('a non-streamed completion records latency but no time to first token', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const { pool } = makePool(scheduler, { k1: [cold('----c|', { c: completionEvent() })] });
      expectObservable(run(pool), '5ms ^').toBe('5ms x---c|', {
        x: expect.objectContaining({ type: 'attempt' }),
        c: expect.objectContaining({ type: 'completion' }),
      });
      expectObservable(
        pool.key('k1').health$.pipe(
          filter((health) => health.successes > 0),
          take(1),
          map(({ latencyMs, timeToFirstTokenMs }) => ({ latencyMs, timeToFirstTokenMs })),
        ),
      ).toBe('9ms (h|)', { h: { latencyMs: 4, timeToFirstTokenMs: null } });
    });
  });

  it('a success closes a half-open key', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const { pool } = makePool(
        scheduler,
        { k1: [cold('--c|', { c: completionEvent() })] },
        {
          keys: [{ key: 'sk-test-1', label: 'k1' }],
          breaker: { consecutiveFailures: 1, cooldownMs: 20 },
        },
      );
      pool[POOL_PORT].record({
        type: 'failure',
        keyLabel: 'k1',
        model: MODEL,
        error: new NetworkError({ message: 'reset', scope: 'transport', retryable: true }),
      });
      // Open until 20: a request then is refused at once (every key's breaker is open: waiting, it
      // would get a key only as a probe); one at 20 is the half-open probe, and its success at 22 closes.
      expectObservable(run(pool).pipe(filter((event) => event === 'failed')), '^ 100ms !').toBe('(f|)', { f: 'failed' });
      const completions = timer(20).pipe(
        concatMap(() => run(pool)),
        filter((event) => (event as { type?: string }).type === 'completion'),
        map(() => 'done'),
      );
      expectObservable(completions, '^ 100ms !').toBe('22ms d|', { d: 'done' });
      expectObservable(
        pool.key('k1').health$.pipe(
          map((health) => health.state),
          distinctUntilChanged(),
        ),
        '^ 100ms !',
      ).toBe('o 19ms h 1ms c', { o: 'open', h: 'half-open', c: 'closed' });
    });
  });
});

describe('circuitBreaker: failures go to the scope their error names', () => {
  interface Case {
    name: string;
    error: () => OpenRouterError;
    /** Per key label: [consecutiveFailures, state]. */
    keys: Record<string, [number, string]>;
    modelFailures: number;
  }
  const cases: Case[] = [
    {
      name: 'a transport error counts against the key only',
      error: () => new NetworkError({ message: 'reset', scope: 'transport', retryable: true }),
      keys: { k1: [1, 'closed'], k2: [0, 'closed'], k3: [0, 'closed'] },
      modelFailures: 0,
    },
    {
      name: 'a model error (5xx) counts against the model, not the key',
      error: () => new UpstreamError({ message: 'upstream 502', scope: 'model', retryable: true, status: 502 }),
      keys: { k1: [0, 'closed'], k2: [0, 'closed'], k3: [0, 'closed'] },
      modelFailures: 1,
    },
    {
      name: 'an account 429 parks every key of the account and counts no failure',
      error: () => new RateLimitError({ message: 'rate limited', scope: 'account', retryable: true, status: 429, retryAfterMs: 1_000 }),
      keys: { k1: [0, 'open'], k2: [0, 'open'], k3: [0, 'closed'] },
      modelFailures: 0,
    },
    {
      name: 'a request error touches nothing',
      error: () => new BadRequestError({ message: 'bad', scope: 'request', retryable: false, status: 400 }),
      keys: { k1: [0, 'closed'], k2: [0, 'closed'], k3: [0, 'closed'] },
      modelFailures: 0,
    },
  ];

  for (const testCase of cases) {
    it(testCase.name, () => {
      const scheduler = newTestScheduler();
      scheduler.run(({ cold, expectObservable }) => {
        const { pool } = makePool(scheduler, { k1: [cold<TransportEvent>('--#', undefined, testCase.error())] });
        expectObservable(run(pool)).toBe('x-(f|)', { x: expect.objectContaining({ type: 'attempt', keyLabel: 'k1' }), f: 'failed' });
        scheduler.schedule(() => {
          const snapshot = pool.snapshot();
          const keys = Object.fromEntries(snapshot.keys.map((key) => [key.label, [key.consecutiveFailures, key.state]]));
          expect(keys).toEqual(testCase.keys);
          const model = snapshot.models.find((entry) => entry.model === MODEL);
          expect(model?.consecutiveFailures ?? 0).toBe(testCase.modelFailures);
          expect(model?.lastError?.kind ?? null).toBe(testCase.modelFailures > 0 ? testCase.error().kind : null);
        }, 5);
      });
    });
  }

  it('shouldRecord: false keeps a failure out of health', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const { pool } = makePool(scheduler, {
        k1: [cold<TransportEvent>('--#', undefined, new NetworkError({ message: 'reset', scope: 'transport', retryable: true }))],
      });
      expectObservable(run(pool, { shouldRecord: () => false })).toBe('x-(f|)', {
        x: expect.objectContaining({ type: 'attempt' }),
        f: 'failed',
      });
      scheduler.schedule(() => {
        expect(pool.snapshot().keys[0]).toMatchObject({ consecutiveFailures: 0, failures: 0, lastError: null });
      }, 5);
    });
  });

  it('shouldRecord narrows health only: a 429 still parks its key until its reset, a 401 still disables its key', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const { pool } = makePool(scheduler, {
        k1: [
          cold<TransportEvent>(
            '--#',
            undefined,
            new RateLimitError({ message: '429', scope: 'key', retryable: true, status: 429, retryAfterMs: 2_000 }),
          ),
        ],
        k2: [
          cold<TransportEvent>('--#', undefined, new AuthenticationError({ message: '401', scope: 'key', retryable: false, status: 401 })),
        ],
      });
      // Only 5xx count against health here; neither answer is one.
      const onlyServerErrors: CircuitBreakerConfig = { shouldRecord: (error) => (error.status ?? 0) >= 500 };
      const pinned = (label: string) =>
        of(chatRequest('hello', { id: label })).pipe(
          withKeyRotation(pool, { strategy: (eligible) => eligible.find((key) => key.label === label) }),
          circuitBreaker(pool, onlyServerErrors),
          catchError(() => of('failed')),
        );
      expectObservable(pinned('k1')).toBe('x-(f|)', { x: expect.objectContaining({ type: 'attempt' }), f: 'failed' });
      expectObservable(pinned('k2')).toBe('x-(f|)', { x: expect.objectContaining({ type: 'attempt' }), f: 'failed' });
      scheduler.schedule(() => {
        const keys = Object.fromEntries(pool.snapshot().keys.map((key) => [key.label, key]));
        expect(keys['k1']).toMatchObject({ state: 'open', cooldownUntil: 2_002, consecutiveFailures: 0, lastError: null });
        expect(keys['k2']).toMatchObject({ state: 'disabled', consecutiveFailures: 0, lastError: null });
      }, 5);
    });
  });

  it('a queue timeout (no attempt started) is recorded against no key', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const { pool } = makePool(scheduler, {}, { keys: [{ key: 'sk-test-1', label: 'k1' }] });
      pool[POOL_PORT].record({
        type: 'failure',
        keyLabel: 'k1',
        model: MODEL,
        error: new RateLimitError({ message: '429', scope: 'key', retryable: true, retryAfterMs: 500 }),
      });
      const request$ = of(chatRequest('hello', { id: 'r1' })).pipe(withKeyRotation(pool, { queueTimeoutMs: 50 }), circuitBreaker(pool));
      expectObservable(request$).toBe('50ms #', undefined, expect.objectContaining({ name: 'QueueTimeoutError' }));
      scheduler.schedule(() => expect(pool.snapshot().keys[0]).toMatchObject({ consecutiveFailures: 0, failures: 0 }), 60);
    });
  });
});

describe('recording without circuitBreaker', () => {
  it('withKeyRotation alone records every outcome: a chain that leaves circuitBreaker out still keeps health', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, flush }) => {
      const fail = () =>
        cold<TransportEvent>('-#', undefined, new NetworkError({ message: 'connection reset', scope: 'transport', retryable: true }));
      const { pool } = makePool(scheduler, { k1: [fail(), fail(), cold('--c|', { c: completionEvent() })] });
      // Three requests, one after the other, all on k1 (the pool takes the first eligible key).
      for (const at of [0, 10, 20]) {
        scheduler.schedule(
          () =>
            of(chatRequest('hello', { id: `r${at}` }))
              .pipe(
                withKeyRotation(pool),
                catchError(() => of('failed')),
              )
              .subscribe(),
          at,
        );
      }
      expectObservable(
        pool.key('k1').health$.pipe(
          map(({ successes, failures, consecutiveFailures }) => `${successes}/${failures}/${consecutiveFailures}`),
          distinctUntilChanged(),
        ),
        '^ 30ms !',
      ).toBe('a 0ms b 9ms c 10ms d', { a: '0/0/0', b: '0/1/1', c: '0/2/2', d: '1/2/0' });
      flush();
    });
  });
});
