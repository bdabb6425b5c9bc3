/**
 * Marble tests of `attemptTimeouts`: the first-token, idle and total limits of one attempt, each
 * firing at its exact frame with its own error class, tearing the transport down at that frame,
 * and armed afresh for every attempt of a retry. Used alone after `withKeyRotation`, and inside
 * `balance(pool, { timeouts })`.
 */
import { describe, expect, it } from 'vitest';
import { map, of } from 'rxjs';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { attemptTimeouts } from '../src/operators/attempt-timeouts.js';
import { retryTransient } from '../src/operators/retry-transient.js';
import { balance } from '../src/operators/balance.js';
import type { AttemptEvent } from '../src/operators/attempt-event.js';
import {
  AttemptsExhaustedError,
  FirstTokenTimeoutError,
  IdleTimeoutError,
  TotalTimeoutError,
  type AttemptRecord,
} from '../src/core/errors.js';
import type { TransportEvent } from '../src/core/types.js';
import { newTestScheduler, failedEvent } from './support.js';
import {
  answer,
  answerEvent,
  attemptStart,
  deliveredChunk,
  deliveredCompletion,
  emptyChunk,
  eventsOf,
  modelScriptedPoolFactory,
  reasoningChunk,
  roleChunk,
  streamedRequest,
  streamEnd,
  textChunk,
  transientRetries,
} from './model-support.js';

// ------------------------------------------------------------------ harness

/** One key, k1 (its key text is listed in test/helpers/test-keys.ts, for the secret scan). */
const makePool = modelScriptedPoolFactory([{ key: 'sk-or-v1-timeouts-1', label: 'k1' }]);

/** A transport event as `withKeyRotation` tags it with its attempt's request, key and model. */
const tagged = (event: TransportEvent): AttemptEvent => ({ ...event, requestId: 'r1', keyLabel: 'k1', model: 'a' });

// The errors, exactly as the operator raises them.
const scoped = { scope: 'model' as const, retryable: true, keyLabel: 'k1', model: 'a' };
const firstTokenTimeout = (ms: number, model = 'a') => new FirstTokenTimeoutError('first-token', ms, { ...scoped, model });
const idleTimeout = (ms: number) => new IdleTimeoutError('idle', ms, scoped);
const totalTimeout = (ms: number) => new TotalTimeoutError('total', ms, scoped);

const limits = { firstTokenMs: 5, idleMs: 4, totalMs: 20 };

// ------------------------------------------------------------------ attemptTimeouts alone

describe('attemptTimeouts after withKeyRotation', () => {
  it('firstTokenMs: role-only and empty chunks do not count; it fires at frame 5 and unsubscribes the call', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('-r-e--------a|', { r: roleChunk(), e: emptyChunk(), a: textChunk('late') });
      const { pool, calls } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe(
        'xr-e-#',
        { x: attemptStart(1, 0), r: tagged(roleChunk()), e: tagged(emptyChunk()) },
        firstTokenTimeout(5),
      );
      expectSubscriptions(call.subscriptions).toBe('^----!');
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('firstTokenMs: the error is a FirstTokenTimeoutError naming the key, the model and the limit', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, { a: [cold('-r-------')] });
      let caught: unknown;
      of(streamedRequest())
        .pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }))
        .subscribe({ error: (error: unknown) => (caught = error) });
      flush();
      expect(caught).toBeInstanceOf(FirstTokenTimeoutError);
      expect(caught).toMatchObject({
        kind: 'timeout',
        phase: 'first-token',
        limitMs: 5,
        scope: 'model',
        retryable: true,
        keyLabel: 'k1',
        model: 'a',
      });
      expect((caught as Error).message).toBe('first-token timeout: no answer within 5 ms');
    });
  });

  it('firstTokenMs: a content chunk one frame before the limit disarms it (a reasoning-only chunk counts)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('-r--t--a--(z|)', { r: roleChunk(), t: reasoningChunk('hmm'), a: textChunk('Hi'), z: streamEnd('gen-1') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('xr--t--a--(z|)', {
        x: attemptStart(1, 0),
        r: tagged(roleChunk()),
        t: tagged(reasoningChunk('hmm')),
        a: tagged(textChunk('Hi')),
        z: tagged(streamEnd('gen-1')),
      });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('idleMs: fires 4 frames after the last chunk once content flows, and unsubscribes the call', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('--a--b------c|', { a: textChunk('He'), b: textChunk('llo'), c: textChunk('late') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe(
        'x-a--b---#',
        { x: attemptStart(1, 0), a: tagged(textChunk('He')), b: tagged(textChunk('llo')) },
        idleTimeout(4),
      );
      expectSubscriptions(call.subscriptions).toBe('^--------!');
    });
  });

  it('idleMs: none after the chunk with the finish reason, while the usage (or the end) is on its way; totalMs still bounds it', () => {
    // The transport waits up to its `doneGraceMs` for the usage after the finish: an idle limit
    // shorter than that grace failed a complete answer (and, restarting, had it generated again).
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const finished: TransportEvent = { type: 'chunk', delta: 'lo', model: 'a', finishReason: 'stop' };
      const call = cold('--a--b-------(z|)', { a: textChunk('Hel'), b: finished, z: streamEnd('gen-1') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x-a--b-------(z|)', {
        x: attemptStart(1, 0),
        a: tagged(textChunk('Hel')),
        b: tagged(finished),
        z: tagged(streamEnd('gen-1')),
      });
      const late = cold('--a--b------------------(z|)', { a: textChunk('Hel'), b: finished, z: streamEnd('gen-1') });
      const { pool: latePool } = makePool(scheduler, { a: [late] });
      const lateAttempts$ = of(streamedRequest()).pipe(withKeyRotation(latePool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(lateAttempts$).toBe(
        'x-a--b--------------#',
        { x: attemptStart(1, 0), a: tagged(textChunk('Hel')), b: tagged(finished) },
        totalTimeout(20),
      );
    });
  });

  it('idleMs: before the first content token only firstTokenMs applies, however long the gap', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      // firstTokenMs 8 > idleMs 4: role chunks 6 frames apart must not trip the idle limit.
      const call = cold('r------a--(z|)', { r: roleChunk(), a: textChunk('Hi'), z: streamEnd('gen-1') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ firstTokenMs: 8, idleMs: 4, totalMs: 20, scheduler }),
      );
      expectObservable(attempts$).toBe('(xr)---a--(z|)', {
        x: attemptStart(1, 0),
        r: tagged(roleChunk()),
        a: tagged(textChunk('Hi')),
        z: tagged(streamEnd('gen-1')),
      });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('totalMs: fires at frame 10 although chunks keep flowing, and unsubscribes the call', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const values = { a: textChunk('a'), b: textChunk('b'), c: textChunk('c'), d: textChunk('d'), e: textChunk('e'), f: textChunk('f') };
      const call = cold('-a-b-c-d-e-f|', values);
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ firstTokenMs: 5, idleMs: 4, totalMs: 10, scheduler }),
      );
      expectObservable(attempts$).toBe(
        'xa-b-c-d-e#',
        { x: attemptStart(1, 0), a: tagged(values.a), b: tagged(values.b), c: tagged(values.c), d: tagged(values.d), e: tagged(values.e) },
        totalTimeout(10),
      );
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });

  it('a non-streaming request gets only totalMs: an answer at frame 16 passes firstTokenMs 5 and idleMs 4', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('16ms (c|)', { c: answerEvent('gen-1', 'Hi') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest({ stream: false })).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x 15ms (c|)', { x: attemptStart(1, 0, { stream: false }), c: tagged(answerEvent('gen-1', 'Hi')) });
      expectSubscriptions(call.subscriptions).toBe('^ 15ms !');
    });
  });

  it('a non-streaming request fails with TotalTimeoutError at totalMs (frame 20)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('25ms (c|)', { c: answerEvent('gen-1', 'Hi') });
      const { pool } = makePool(scheduler, { a: [call] });
      const attempts$ = of(streamedRequest({ stream: false })).pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }));
      expectObservable(attempts$).toBe('x 19ms #', { x: attemptStart(1, 0, { stream: false }) }, totalTimeout(20));
      expectSubscriptions(call.subscriptions).toBe('^ 19ms !');
    });
  });

  it('a retry gets fresh timers: attempt 2 (leased at 7) may run until 7 + totalMs, past frame 10', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-------', { r: roleChunk() });
      const second = cold('--a--b--(z|)', { a: textChunk('He'), b: textChunk('llo'), z: streamEnd('gen-2') });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      const attempts$ = of(streamedRequest()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ firstTokenMs: 5, idleMs: 4, totalMs: 10, scheduler }),
        // Retry 1 waits floor(0.5 * 4) = 2 frames.
        retryTransient({ ...transientRetries, maxAttempts: 2, scheduler }),
      );
      expectObservable(attempts$).toBe('xr---R-y-a--b--(z|)', {
        x: attemptStart(1, 0),
        r: tagged(roleChunk()),
        R: {
          type: 'retry',
          requestId: 'r1',
          attempt: 1,
          reason: 'timeout',
          message: 'first-token timeout: no answer within 5 ms',
          delayMs: 2,
          at: 5,
          keyLabel: 'k1',
          model: 'a',
        },
        y: attemptStart(2, 7),
        a: tagged(textChunk('He')),
        b: tagged(textChunk('llo')),
        z: tagged(streamEnd('gen-2')),
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^-------!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it('a retry gets fresh timers: a silent attempt 2 (leased at 7) times out at 7 + firstTokenMs', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold('-r-------', { r: roleChunk() });
      const second = cold('-r-------', { r: roleChunk() });
      const { pool } = makePool(scheduler, { a: [first, second] });
      const attempts$ = of(streamedRequest()).pipe(
        withKeyRotation(pool),
        attemptTimeouts({ ...limits, scheduler }),
        retryTransient({ ...transientRetries, maxAttempts: 2, scheduler }),
      );
      const record = (n: number, at: number): AttemptRecord => ({
        attempt: n,
        kind: 'timeout',
        message: 'first-token timeout: no answer within 5 ms',
        at,
        keyLabel: 'k1',
        model: 'a',
      });
      expectObservable(attempts$).toBe(
        'xr---R-yr---#',
        {
          x: attemptStart(1, 0),
          r: tagged(roleChunk()),
          R: {
            type: 'retry',
            requestId: 'r1',
            attempt: 1,
            reason: 'timeout',
            message: 'first-token timeout: no answer within 5 ms',
            delayMs: 2,
            at: 5,
            keyLabel: 'k1',
            model: 'a',
          },
          y: attemptStart(2, 7),
        },
        new AttemptsExhaustedError(firstTokenTimeout(5), [record(1, 5), record(2, 12)]),
      );
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^----!');
    });
  });
});

describe('attemptTimeouts after withKeyRotation, as a chain of its own', () => {
  it('a timeout fails the attempt as a transport failure would: recorded against the model, and the request moves on to the next model at once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const silent = cold('-r-------', { r: roleChunk() });
      const { pool, calls } = makePool(scheduler, { a: [silent], b: [cold('-(a|)', { a: answerEvent('g1', 'ok', 'b') })] });
      const seen: string[] = [];
      of(streamedRequest({ models: ['a', 'b'] }))
        .pipe(withKeyRotation(pool), attemptTimeouts({ ...limits, scheduler }), retryTransient({ ...transientRetries, scheduler }))
        .subscribe({
          next: (event) => seen.push(`${scheduler.now()} ${event.type}${event.type === 'retry' ? ` ${event.delayMs}` : ''}`),
          complete: () => seen.push(`${scheduler.now()} complete`),
        });
      flush();
      // The retry is at once (no backoff: the request moved on) to model b, which answers.
      expect(seen).toEqual(['0 attempt', '1 chunk', '5 retry 0', '5 attempt', '6 completion', '6 complete']);
      expect(calls.map(({ model, at }) => `${model}@${at}`)).toEqual(['a@0', 'b@5']);
      const model = pool.snapshot().models.find((entry) => entry.model === 'a');
      expect(model).toMatchObject({ consecutiveFailures: 1, lastError: expect.objectContaining({ kind: 'timeout' }) });
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
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('-r-e------a|', { r: roleChunk(), e: emptyChunk(), a: textChunk('late') });
      const { pool, calls } = makePool(scheduler, { a: [call] });
      const events$ = of(streamedRequest()).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('-----(f|)', {
        f: failedEvent('r1', firstTokenTimeout(5), [timeoutRecord('first-token', 5, 5)]),
      });
      expectSubscriptions(call.subscriptions).toBe('^----!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('idleMs: after content the request fails at the idle frame (no retry: content was delivered)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const call = cold('--a--b------c|', { a: textChunk('He'), b: textChunk('llo'), c: textChunk('late') });
      const { pool, calls } = makePool(scheduler, { a: [call] });
      const events$ = of(streamedRequest()).pipe(balance(pool, { timeouts: limits, transient: transientRetries }));
      expectObservable(events$).toBe('--a--b---(f|)', {
        a: deliveredChunk('He'),
        b: deliveredChunk('llo'),
        f: failedEvent('r1', idleTimeout(4), [timeoutRecord('idle', 4, 9)]),
      });
      expectSubscriptions(call.subscriptions).toBe('^--------!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('totalMs: a non-streaming request fails at frame 20 with TotalTimeoutError', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('25ms (c|)', { c: answerEvent('gen-1', 'Hi') });
      const { pool } = makePool(scheduler, { a: [call] });
      const events$ = of(streamedRequest({ stream: false })).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('20ms (f|)', {
        f: failedEvent('r1', totalTimeout(20), [timeoutRecord('total', 20, 20)]),
      });
      expectSubscriptions(call.subscriptions).toBe('^ 19ms !');
    });
  });

  it('a non-streaming request is not subject to firstTokenMs or idleMs', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('16ms (c|)', { c: answerEvent('gen-1', 'Hi') });
      const { pool } = makePool(scheduler, { a: [call] });
      const events$ = of(streamedRequest({ stream: false })).pipe(balance(pool, { timeouts: limits, transient: false }));
      expectObservable(events$).toBe('16ms (c|)', {
        c: deliveredCompletion(answer('gen-1', 'Hi'), { attempts: 1, latencyMs: 16 }),
      });
      expectSubscriptions(call.subscriptions).toBe('^ 15ms !');
    });
  });

  it('each retry is timed from its own lease: attempt 1 times out at 5, attempt 2 (at 7) completes at 15 > totalMs 10', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-------', { r: roleChunk() });
      const second = cold('--a--b--(z|)', { a: textChunk('He'), b: textChunk('llo'), z: streamEnd('gen-2') });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      const events$ = of(streamedRequest()).pipe(
        balance(pool, { timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 10 }, transient: transientRetries }),
      );
      expectObservable(events$).toBe('9ms a--b--(c|)', {
        a: deliveredChunk('He'),
        b: deliveredChunk('llo'),
        c: deliveredCompletion(answer('gen-2', 'Hello'), { attempts: 2, latencyMs: 15 }),
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
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const busy = cold('-a--b--(z|)', { a: textChunk('He'), b: textChunk('llo'), z: streamEnd('gen-1') });
      const silent = cold('-r-------', { r: roleChunk() });
      const { pool, calls } = makePool(
        scheduler,
        { a: [busy, silent] },
        { keys: [{ key: 'sk-or-v1-timeouts-1', label: 'k1', limits: { maxConcurrent: 1 } }] },
      );
      const events$ = of(streamedRequest({ id: 'r1' }), streamedRequest({ id: 'r2' })).pipe(
        balance(pool, { timeouts: limits, transient: false }),
      );
      expectObservable(events$).toBe('-a--b--c----(f|)', {
        a: deliveredChunk('He'),
        b: deliveredChunk('llo'),
        c: deliveredCompletion(answer('gen-1', 'Hello'), { attempts: 1, latencyMs: 7 }),
        f: failedEvent('r2', firstTokenTimeout(5), [timeoutRecord('first-token', 5, 12)]),
      });
      expectSubscriptions(busy.subscriptions).toBe('^------!');
      expectSubscriptions(silent.subscriptions).toBe('-------^----!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it("a model that timed out is the route's problem: the request moves to the next model of the chain at once, with a fallback event", () => {
    // A timeout is a failure of the model (scope `model`): with a next model in the chain, the
    // request goes there in the same frame, no backoff (fallback first), and the failover
    // benchmark's S06 asks not to retry a silent route.
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const silentA = cold('-r-------', { r: roleChunk() });
      const answerA = cold('-a-(z|)', { a: textChunk('from a'), z: streamEnd('gen-a') });
      const answerB = cold('-a-(z|)', { a: textChunk('from b', 'b'), z: streamEnd('gen-b', 'b') });
      const { pool, calls } = makePool(scheduler, { a: [silentA, answerA], b: [answerB] });
      const fallbacks$ = eventsOf(pool, 'fallback');
      expectObservable(fallbacks$, '^ 30ms !').toBe('5ms f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'timeout', at: 5 },
      });
      expectObservable(eventsOf(pool, 'retry').pipe(map((retry) => retry.delayMs)), '^ 30ms !').toBe('5ms d', { d: 0 });
      const events$ = of(streamedRequest({ models: ['b'] })).pipe(balance(pool, { timeouts: limits, transient: transientRetries }));
      expectObservable(events$).toBe('6ms a-(c|)', {
        a: deliveredChunk('from b', 'k1', 'b'),
        c: deliveredCompletion(answer('gen-b', 'from b', 'b'), { attempts: 2, latencyMs: 8 }),
      });
      expectSubscriptions(silentA.subscriptions).toBe('^----!');
      expectSubscriptions(answerB.subscriptions).toBe('-----^--!');
      expectSubscriptions(answerA.subscriptions).toBe([]);
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'b', n: 1, key: 'k1', at: 5 },
      ]);
    });
  });
});
