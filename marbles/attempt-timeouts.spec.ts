/**
 * Marble tests of `attemptTimeouts`: the first-token, idle and total limits of one attempt, each
 * firing at its exact frame with its own error class, tearing the transport down at that frame,
 * and armed afresh for every attempt of a retry. Used alone after `withKeyRotation`, and inside
 * `balance(pool, { timeouts })`.
 */
import { describe, expect, it } from 'vitest';
import { EMPTY, filter, of, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { createPool, type KeyPool } from '../src/keys/pool.js';
import type { KeyPoolInput } from '../src/keys/config.js';
import type { PoolEvent } from '../src/keys/events.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { attemptTimeouts } from '../src/operators/attempt-timeouts.js';
import { retryTransient } from '../src/operators/retry-transient.js';
import { balance, type BalanceEvent } from '../src/operators/balance.js';
import type { AttemptEvent } from '../src/operators/attempt-event.js';
import { AttemptsExhaustedError, FirstTokenTimeoutError, IdleTimeoutError, TotalTimeoutError, type AttemptRecord } from '../src/errors.js';
import type { ChatRequest, Completion, Transport, TransportEvent } from '../src/types.js';

// ------------------------------------------------------------------ harness

interface Call {
  model: string;
  /** 1 for the model's first call, 2 for its second... */
  n: number;
  key: string;
  at: number;
}

/**
 * A pool over a fake transport that answers the n-th call to a model with `scripts[model][n-1]`
 * (cold observables the test keeps, to assert their subscriptions). Unscripted calls get EMPTY and
 * show up in `calls`, which every test asserts.
 */
function harness(
  scheduler: TestScheduler,
  scripts: Record<string, Observable<TransportEvent>[]>,
  overrides: Omit<Partial<KeyPoolInput>, 'scheduler' | 'transport'> = {},
): { pool: KeyPool; calls: Call[] } {
  const calls: Call[] = [];
  const transport: Transport = (key, request) => {
    const model = request.model ?? '';
    const n = calls.filter((call) => call.model === model).length + 1;
    calls.push({ model, n, key: key.label, at: scheduler.now() });
    return scripts[model]?.[n - 1] ?? EMPTY;
  };
  const pool = createPool({
    keys: [{ key: 'sk-or-v1-timeouts-1', label: 'k1' }],
    random: () => 0.5,
    strategy: (eligible) => eligible[0],
    ...overrides,
    scheduler,
    transport,
  });
  return { pool, calls };
}

const newScheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

const request = (overrides: Partial<ChatRequest> = {}): ChatRequest => ({
  id: 'r1',
  model: 'a',
  messages: [{ role: 'user', content: 'hi' }],
  stream: true,
  ...overrides,
});

// Transport events.
const role = (model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', model });
const empty = (model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', reasoning: '', toolCalls: [], model });
const text = (delta: string, model = 'a'): TransportEvent => ({ type: 'chunk', delta, model });
const thinking = (reasoning: string, model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', reasoning, model });
const end = (id: string, model = 'a'): TransportEvent => ({ type: 'end', id, model, finishReason: 'stop' });
const answer = (id: string, content: string, model = 'a'): Completion => ({ id, model, content, finishReason: 'stop', raw: null });
const done = (id: string, content: string, model = 'a'): TransportEvent => ({ type: 'completion', completion: answer(id, content, model) });

// Attempt events, as `withKeyRotation` tags them.
const tag = { requestId: 'r1', keyLabel: 'k1', model: 'a' };
const attempt = (n: number, at: number, stream = true): AttemptEvent => ({ type: 'attempt', attempt: n, at, stream, ...tag });
const tagged = (event: TransportEvent): AttemptEvent => ({ ...event, ...tag });

// The errors, exactly as the operator raises them.
const scoped = { scope: 'model' as const, retryable: true, keyLabel: 'k1', model: 'a' };
const firstTokenTimeout = (ms: number, model = 'a') => new FirstTokenTimeoutError('first-token', ms, { ...scoped, model });
const idleTimeout = (ms: number) => new IdleTimeoutError('idle', ms, scoped);
const totalTimeout = (ms: number) => new TotalTimeoutError('total', ms, scoped);

const limits = { firstTokenMs: 5, idleMs: 4, totalMs: 20 };

// ------------------------------------------------------------------ attemptTimeouts alone

describe('attemptTimeouts after withKeyRotation', () => {
  it('firstTokenMs: role-only and empty chunks do not count; it fires at frame 5 and unsubscribes the call', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('-r-e--------a|', { r: role(), e: empty(), a: text('late') });
      const { pool, calls } = harness(scheduler, { a: [call] });
      const attempts$ = of(request()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe(
        'xr-e-#',
        { x: attempt(1, 0), r: tagged(role()), e: tagged(empty()) },
        firstTokenTimeout(5),
      );
      expectSubscriptions(call.subscriptions).toBe('^----!');
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('firstTokenMs: the error is a FirstTokenTimeoutError naming the key, the model and the limit', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = harness(scheduler, { a: [cold('-r-------')] });
      let caught: unknown;
      of(request())
        .pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }))
        .subscribe({ error: (error: unknown) => (caught = error) });
      flush();
      expect(caught).toBeInstanceOf(FirstTokenTimeoutError);
      expect(caught).toMatchObject({ kind: 'timeout', phase: 'first-token', limitMs: 5, scope: 'model', retryable: true, keyLabel: 'k1', model: 'a' });
      expect((caught as Error).message).toBe('first-token timeout: no answer within 5 ms');
    });
  });

  it('firstTokenMs: a content chunk one frame before the limit disarms it (a reasoning-only chunk counts)', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('-r--t--a--(z|)', { r: role(), t: thinking('hmm'), a: text('Hi'), z: end('gen-1') });
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('xr--t--a--(z|)', {
        x: attempt(1, 0),
        r: tagged(role()),
        t: tagged(thinking('hmm')),
        a: tagged(text('Hi')),
        z: tagged(end('gen-1')),
      });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('idleMs: fires 4 frames after the last chunk once content flows, and unsubscribes the call', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('--a--b------c|', { a: text('He'), b: text('llo'), c: text('late') });
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x-a--b---#', { x: attempt(1, 0), a: tagged(text('He')), b: tagged(text('llo')) }, idleTimeout(4));
      expectSubscriptions(call.subscriptions).toBe('^--------!');
    });
  });

  it('idleMs: before the first content token only firstTokenMs applies, however long the gap', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      // firstTokenMs 8 > idleMs 4: role chunks 6 frames apart must not trip the idle limit.
      const call = cold('r------a--(z|)', { r: role(), a: text('Hi'), z: end('gen-1') });
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request()).pipe(withKeyRotation(pool), attemptTimeouts({ firstTokenMs: 8, idleMs: 4, totalMs: 20, scheduler }));
      expectObservable(attempts$).toBe('(xr)---a--(z|)', { x: attempt(1, 0), r: tagged(role()), a: tagged(text('Hi')), z: tagged(end('gen-1')) });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('totalMs: fires at frame 10 although chunks keep flowing, and unsubscribes the call', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const values = { a: text('a'), b: text('b'), c: text('c'), d: text('d'), e: text('e'), f: text('f') };
      const call = cold('-a-b-c-d-e-f|', values);
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request()).pipe(withKeyRotation(pool), attemptTimeouts({ firstTokenMs: 5, idleMs: 4, totalMs: 10, scheduler }));
      expectObservable(attempts$).toBe(
        'xa-b-c-d-e#',
        { x: attempt(1, 0), a: tagged(values.a), b: tagged(values.b), c: tagged(values.c), d: tagged(values.d), e: tagged(values.e) },
        totalTimeout(10),
      );
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('a non-streaming request gets only totalMs: an answer at frame 16 passes firstTokenMs 5 and idleMs 4', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('16ms (c|)', { c: done('gen-1', 'Hi') });
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request({ stream: false })).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x 15ms (c|)', { x: attempt(1, 0, false), c: tagged(done('gen-1', 'Hi')) });
      expectSubscriptions(call.subscriptions).toBe('^ 15ms !');
    });
  });

  it('a non-streaming request fails with TotalTimeoutError at totalMs (frame 20)', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('25ms (c|)', { c: done('gen-1', 'Hi') });
      const { pool } = harness(scheduler, { a: [call] });
      const attempts$ = of(request({ stream: false })).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x 19ms #', { x: attempt(1, 0, false) }, totalTimeout(20));
      expectSubscriptions(call.subscriptions).toBe('^ 19ms !');
    });
  });

  it('a retry gets fresh timers: attempt 2 (leased at 7) may run until 7 + totalMs, past frame 10', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-------', { r: role() });
      const second = cold('--a--b--(z|)', { a: text('He'), b: text('llo'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      const attempts$ = of(request()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ firstTokenMs: 5, idleMs: 4, totalMs: 10, scheduler }),
        // Retry 1 waits floor(0.5 * 4) = 2 frames.
        retryTransient({ maxAttempts: 2, baseDelayMs: 4, random: () => 0.5, budget: false, scheduler }),
      );
      expectObservable(attempts$).toBe('xr---R-y-a--b--(z|)', {
        x: attempt(1, 0),
        r: tagged(role()),
        R: { type: 'retry', requestId: 'r1', attempt: 1, reason: 'timeout', message: 'first-token timeout: no answer within 5 ms', delayMs: 2, at: 5, keyLabel: 'k1', model: 'a' },
        y: attempt(2, 7),
        a: tagged(text('He')),
        b: tagged(text('llo')),
        z: tagged(end('gen-2')),
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^-------!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it('a retry gets fresh timers: a silent attempt 2 (leased at 7) times out at 7 + firstTokenMs', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold('-r-------', { r: role() });
      const second = cold('-r-------', { r: role() });
      const { pool } = harness(scheduler, { a: [first, second] });
      const attempts$ = of(request()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ ...limits, scheduler }),
        retryTransient({ maxAttempts: 2, baseDelayMs: 4, random: () => 0.5, budget: false, scheduler }),
      );
      const record = (n: number, at: number): AttemptRecord => ({ attempt: n, kind: 'timeout', message: 'first-token timeout: no answer within 5 ms', at, keyLabel: 'k1', model: 'a' });
      expectObservable(attempts$).toBe(
        'xr---R-yr---#',
        {
          x: attempt(1, 0),
          r: tagged(role()),
          R: { type: 'retry', requestId: 'r1', attempt: 1, reason: 'timeout', message: 'first-token timeout: no answer within 5 ms', delayMs: 2, at: 5, keyLabel: 'k1', model: 'a' },
          y: attempt(2, 7),
        },
        new AttemptsExhaustedError(firstTokenTimeout(5), [record(1, 5), record(2, 12)]),
      );
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^----!');
    });
  });
});

// ------------------------------------------------------------------ through balance

describe('balance(pool, { timeouts })', () => {
  const timeoutRecord = (phase: string, ms: number, at: number): AttemptRecord => ({
    attempt: 1,
    kind: 'timeout',
    message: `${phase} timeout: no answer within ${ms} ms`,
    at,
    keyLabel: 'k1',
    model: 'a',
  });

  it('firstTokenMs: the request fails at frame 5 with FirstTokenTimeoutError; the role-only chunk never reaches the subscriber', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('-r-e------a|', { r: role(), e: empty(), a: text('late') });
      const { pool, calls } = harness(scheduler, { a: [call] });
      const events$ = of(request()).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('-----(f|)', {
        f: { type: 'failed', requestId: 'r1', error: firstTokenTimeout(5), attempts: [timeoutRecord('first-token', 5, 5)] } satisfies BalanceEvent,
      });
      expectSubscriptions(call.subscriptions).toBe('^----!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('idleMs: after content the request fails at the idle frame (no retry: content was delivered)', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('--a--b------c|', { a: text('He'), b: text('llo'), c: text('late') });
      const { pool, calls } = harness(scheduler, { a: [call] });
      const events$ = of(request()).pipe(balance(pool, { timeouts: limits, transient: { baseDelayMs: 4, random: () => 0.5, budget: false } }));
      const chunk = (delta: string): BalanceEvent => ({ type: 'chunk', requestId: 'r1', delta, keyLabel: 'k1', model: 'a' });
      expectObservable(events$).toBe('--a--b---(f|)', {
        a: chunk('He'),
        b: chunk('llo'),
        f: { type: 'failed', requestId: 'r1', error: idleTimeout(4), attempts: [timeoutRecord('idle', 4, 9)] },
      });
      expectSubscriptions(call.subscriptions).toBe('^--------!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('totalMs: a non-streaming request fails at frame 20 with TotalTimeoutError', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('25ms (c|)', { c: done('gen-1', 'Hi') });
      const { pool } = harness(scheduler, { a: [call] });
      const events$ = of(request({ stream: false })).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('20ms (f|)', {
        f: { type: 'failed', requestId: 'r1', error: totalTimeout(20), attempts: [timeoutRecord('total', 20, 20)] },
      });
      expectSubscriptions(call.subscriptions).toBe('^ 19ms !');
    });
  });

  it('a non-streaming request is not subject to firstTokenMs or idleMs', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('16ms (c|)', { c: done('gen-1', 'Hi') });
      const { pool } = harness(scheduler, { a: [call] });
      const events$ = of(request({ stream: false })).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('16ms (c|)', {
        c: { type: 'completion', requestId: 'r1', completion: answer('gen-1', 'Hi'), keyLabel: 'k1', model: 'a', attempts: 1, latencyMs: 16 },
      });
      expectSubscriptions(call.subscriptions).toBe('^ 15ms !');
    });
  });

  it('each retry is timed from its own lease: attempt 1 times out at 5, attempt 2 (at 7) completes at 15 > totalMs 10', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-------', { r: role() });
      const second = cold('--a--b--(z|)', { a: text('He'), b: text('llo'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      const events$ = of(request()).pipe(
        balance(pool, { timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 10 }, transient: { baseDelayMs: 4, random: () => 0.5, budget: false } }),
      );
      const chunk = (delta: string): BalanceEvent => ({ type: 'chunk', requestId: 'r1', delta, keyLabel: 'k1', model: 'a' });
      expectObservable(events$).toBe('9ms a--b--(c|)', {
        a: chunk('He'),
        b: chunk('llo'),
        c: { type: 'completion', requestId: 'r1', completion: answer('gen-2', 'Hello'), keyLabel: 'k1', model: 'a', attempts: 2, latencyMs: 15 },
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^-------!');
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'a', n: 2, key: 'k1', at: 7 },
      ]);
    });
  });

  it('firstTokenMs counts from the lease: a request that waited 7 frames for a key times out at 7 + 5', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const busy = cold('-a--b--(z|)', { a: text('He'), b: text('llo'), z: end('gen-1') });
      const silent = cold('-r-------', { r: role() });
      const { pool, calls } = harness(scheduler, { a: [busy, silent] }, { keys: [{ key: 'sk-or-v1-timeouts-1', label: 'k1', limits: { maxConcurrent: 1 } }] });
      const events$ = of(request({ id: 'r1' }), request({ id: 'r2' })).pipe(balance(pool, { timeouts: limits, transient: false }));
      const chunk = (delta: string): BalanceEvent => ({ type: 'chunk', requestId: 'r1', delta, keyLabel: 'k1', model: 'a' });
      expectObservable(events$).toBe('-a--b--c----(f|)', {
        a: chunk('He'),
        b: chunk('llo'),
        c: { type: 'completion', requestId: 'r1', completion: answer('gen-1', 'Hello'), keyLabel: 'k1', model: 'a', attempts: 1, latencyMs: 7 },
        f: { type: 'failed', requestId: 'r2', error: firstTokenTimeout(5), attempts: [timeoutRecord('first-token', 5, 12)] },
      });
      expectSubscriptions(busy.subscriptions).toBe('^------!');
      expectSubscriptions(silent.subscriptions).toBe('-------^----!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it('a model that timed out is the route\'s problem: the retry goes to the next model of the chain, with a fallback event', () => {
    // RouteState.fail treats `timeout` as a failure of the model ("try the next model first"),
    // and the failover benchmark's S06 asks not to retry a silent route.
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const silentA = cold('-r-------', { r: role() });
      const answerA = cold('-a-(z|)', { a: text('from a'), z: end('gen-a') });
      const answerB = cold('-a-(z|)', { a: text('from b', 'b'), z: end('gen-b', 'b') });
      const { pool, calls } = harness(scheduler, { a: [silentA, answerA], b: [answerB] });
      const fallbacks$ = pool.events$.pipe(filter((event): event is Extract<PoolEvent, { type: 'fallback' }> => event.type === 'fallback'));
      expectObservable(fallbacks$, '^ 30ms !').toBe('7ms f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'timeout', at: 7 },
      });
      const events$ = of(request({ models: ['b'] })).pipe(
        balance(pool, { timeouts: limits, transient: { baseDelayMs: 4, random: () => 0.5, budget: false } }),
      );
      expectObservable(events$).toBe('8ms a-(c|)', {
        a: { type: 'chunk', requestId: 'r1', delta: 'from b', keyLabel: 'k1', model: 'b' },
        c: { type: 'completion', requestId: 'r1', completion: answer('gen-b', 'from b', 'b'), keyLabel: 'k1', model: 'b', attempts: 2, latencyMs: 10 },
      });
      expectSubscriptions(silentA.subscriptions).toBe('^----!');
      expectSubscriptions(answerB.subscriptions).toBe('-------^--!');
      expectSubscriptions(answerA.subscriptions).toBe([]);
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'b', n: 1, key: 'k1', at: 7 },
      ]);
    });
  });
});
