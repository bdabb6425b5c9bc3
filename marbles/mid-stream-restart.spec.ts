/**
 * Marble tests of `balance`'s `onMidStreamError`: once content reached the subscriber, an error
 * either fails the request as it is (`'error'`, the default: no retry, the transport is called
 * once), or voids what was delivered with a `restart` event and runs a new attempt whose
 * completion holds only its own text (`'restart'`).
 */
import { describe, expect, it } from 'vitest';
import { of } from 'rxjs';
import { balance, type BalanceEvent } from '../src/operators/balance.js';
import { ContentPolicyError, IdleTimeoutError } from '../src/core/errors.js';
import { newTestScheduler, failedEvent } from './support.js';
import {
  answer,
  attemptStart,
  deliveredChunk,
  deliveredCompletion,
  eventsOf,
  modelScriptedPoolFactory,
  providerUnavailable,
  roleChunk,
  streamedRequest,
  streamEnd,
  textChunk,
  transientRetries,
} from './model-support.js';

// ------------------------------------------------------------------ harness

/** Two keys, k1 and k2 (their key texts are listed in test/helpers/test-keys.ts, for the secret scan). */
const makePool = modelScriptedPoolFactory([
  { key: 'sk-or-v1-restart-1', label: 'k1' },
  { key: 'sk-or-v1-restart-2', label: 'k2' },
]);

const completed = (id: string, content: string, keyLabel: string, attempts: number, latencyMs: number, model = 'a') =>
  deliveredCompletion(answer(id, content, model), { keyLabel, attempts, latencyMs });
const restart = (attempt: number, reason: string): BalanceEvent => ({ type: 'restart', requestId: 'r1', attempt, reason }) as BalanceEvent;

const refused = () => new ContentPolicyError({ message: 'finish_reason: content_filter', scope: 'request', retryable: false });
/** The error as `withKeyRotation` hands it on: tagged with the attempt's key and model. */
const taggedProviderUnavailable = (keyLabel = 'k1') => Object.assign(providerUnavailable(), { keyLabel, model: 'a' });

// ------------------------------------------------------------------ 'error'

describe("onMidStreamError: 'error'", () => {
  it('an upstream error after content: the chunks, then `failed` with that error; the transport is called once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: textChunk('Hel'), b: textChunk('lo') }, providerUnavailable());
      const spare = cold('-c-(z|)', { c: textChunk('never'), z: streamEnd('gen-2') });
      const { pool, calls } = makePool(scheduler, { a: [first, spare] });
      expectObservable(eventsOf(pool, 'attempt', 'retry', 'restart'), '^ 20ms !').toBe('x', { x: attemptStart(1, 0) });
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries, onMidStreamError: 'error' }))).toBe(
        '-a-b-(f|)',
        {
          a: deliveredChunk('Hel'),
          b: deliveredChunk('lo'),
          f: failedEvent('r1', taggedProviderUnavailable(), [
            { attempt: 1, kind: 'upstream', message: 'provider returned 503', status: 503, at: 5, keyLabel: 'k1', model: 'a' },
          ]),
        },
      );
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(spare.subscriptions).toBe([]);
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('is the default: without onMidStreamError the same request fails the same way', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: textChunk('Hel'), b: textChunk('lo') }, providerUnavailable());
      const { pool, calls } = makePool(scheduler, { a: [first] });
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries }))).toBe('-a-b-(f|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        f: failedEvent('r1', taggedProviderUnavailable(), [
          { attempt: 1, kind: 'upstream', message: 'provider returned 503', status: 503, at: 5, keyLabel: 'k1', model: 'a' },
        ]),
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('an idle timeout after content: the chunks, then `failed` with the IdleTimeoutError at the idle frame', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b---------c|', { a: textChunk('Hel'), b: textChunk('lo'), c: textChunk('late') });
      const { pool, calls } = makePool(scheduler, { a: [first] });
      const events$ = of(streamedRequest()).pipe(
        balance(pool, { transient: transientRetries, onMidStreamError: 'error', timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }),
      );
      expectObservable(events$).toBe('-a-b---(f|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        f: failedEvent('r1', new IdleTimeoutError('idle', 4, { scope: 'model', retryable: true, keyLabel: 'k1', model: 'a' }), [
          { attempt: 1, kind: 'timeout', message: 'idle timeout: no answer within 4 ms', at: 7, keyLabel: 'k1', model: 'a' },
        ]),
      });
      expectSubscriptions(first.subscriptions).toBe('^------!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });
});

// ------------------------------------------------------------------ 'restart'

describe("onMidStreamError: 'restart'", () => {
  it("an upstream error after content: the chunks, a `restart`, then the new attempt's chunks and a completion of its text only", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: textChunk('Hel'), b: textChunk('lo') }, providerUnavailable());
      const second = cold('-c-d-(z|)', { c: textChunk('Hello'), d: textChunk(' world'), z: streamEnd('gen-2') });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      // Restart and retry at 5; attempt 2 is leased at 7, on the key the request has not tried.
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries, onMidStreamError: 'restart' }))).toBe(
        '-a-b-R--c-d-(C|)',
        {
          a: deliveredChunk('Hel'),
          b: deliveredChunk('lo'),
          R: restart(1, 'upstream'),
          c: deliveredChunk('Hello', 'k2'),
          d: deliveredChunk(' world', 'k2'),
          C: completed('gen-2', 'Hello world', 'k2', 2, 12),
        },
      );
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^----!');
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'a', n: 2, key: 'k2', at: 7 },
      ]);
    });
  });

  it('pool.events$ reports the restart before the retry, both at the failing frame', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const first = cold('-a-b-#', { a: textChunk('Hel'), b: textChunk('lo') }, providerUnavailable());
      const second = cold('-c-d-(z|)', { c: textChunk('Hello'), d: textChunk(' world'), z: streamEnd('gen-2') });
      const { pool } = makePool(scheduler, { a: [first, second] });
      const attempts$ = eventsOf(pool, 'attempt');
      const voids$ = eventsOf(pool, 'restart', 'retry');
      expectObservable(attempts$, '^ 20ms !').toBe('x 6ms y', { x: attemptStart(1, 0), y: attemptStart(2, 7, { keyLabel: 'k2' }) });
      expectObservable(voids$, '^ 20ms !').toBe('5ms (ST)', {
        S: { type: 'restart', requestId: 'r1', attempt: 1, reason: 'upstream', at: 5 },
        T: {
          type: 'retry',
          requestId: 'r1',
          attempt: 1,
          reason: 'upstream',
          message: 'provider returned 503',
          status: 503,
          delayMs: 2,
          at: 5,
          keyLabel: 'k1',
          model: 'a',
        },
      });
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries, onMidStreamError: 'restart' }))).toBe(
        '-a-b-R--c-d-(C|)',
        {
          a: deliveredChunk('Hel'),
          b: deliveredChunk('lo'),
          R: restart(1, 'upstream'),
          c: deliveredChunk('Hello', 'k2'),
          d: deliveredChunk(' world', 'k2'),
          C: completed('gen-2', 'Hello world', 'k2', 2, 12),
        },
      );
    });
  });

  it('an idle timeout after content restarts too: the new attempt is timed afresh and completes with its text only', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b---------c|', { a: textChunk('Hel'), b: textChunk('lo'), c: textChunk('late') });
      const second = cold('-c-(z|)', { c: textChunk('Hello'), z: streamEnd('gen-2') });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      const events$ = of(streamedRequest()).pipe(
        balance(pool, { transient: transientRetries, onMidStreamError: 'restart', timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }),
      );
      // Idle timeout at 3 + 4 = 7; attempt 2 leased at 9.
      expectObservable(events$).toBe('-a-b---R--c-(C|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        R: restart(1, 'timeout'),
        c: deliveredChunk('Hello', 'k2'),
        C: completed('gen-2', 'Hello', 'k2', 2, 12),
      });
      expectSubscriptions(first.subscriptions).toBe('^------!');
      expectSubscriptions(second.subscriptions).toBe('---------^--!');
      flush();
      expect(calls.map((call) => [call.key, call.at])).toEqual([
        ['k1', 0],
        ['k2', 9],
      ]);
    });
  });

  it("two voided attempts in a row: one restart each, and the completion holds the third attempt's text only", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a#', { a: textChunk('One') }, providerUnavailable());
      const second = cold('-b#', { b: textChunk('Two') }, providerUnavailable());
      const third = cold('-c(z|)', { c: textChunk('Three'), z: streamEnd('gen-3') });
      const { pool, calls } = makePool(scheduler, { a: [first, second, third] });
      // Fails at 2; attempt 2 at 4 fails at 6; attempt 3 at 6 + 4 = 10.
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries, onMidStreamError: 'restart' }))).toBe(
        '-aR--bS----c(C|)',
        {
          a: deliveredChunk('One'),
          R: restart(1, 'upstream'),
          S: restart(2, 'upstream'),
          b: deliveredChunk('Two', 'k2'),
          c: deliveredChunk('Three'),
          C: completed('gen-3', 'Three', 'k1', 3, 12),
        },
      );
      expectSubscriptions(first.subscriptions).toBe('^-!');
      expectSubscriptions(second.subscriptions).toBe('----^-!');
      expectSubscriptions(third.subscriptions).toBe('----------^-!');
      flush();
      expect(calls.map((call) => [call.key, call.at])).toEqual([
        ['k1', 0],
        ['k2', 4],
        ['k1', 10],
      ]);
    });
  });

  it('a content-policy refusal after content restarts at once on the next model of the chain', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-#', { a: textChunk('Sure, here') }, refused());
      const next = cold('-c(z|)', { c: textChunk('I can help', 'b'), z: streamEnd('gen-b', 'b') });
      const { pool, calls } = makePool(scheduler, { a: [first], b: [next] });
      const events$ = of(streamedRequest({ models: ['b'] })).pipe(
        balance(pool, { transient: transientRetries, onMidStreamError: 'restart' }),
      );
      expectObservable(events$).toBe('-a-Rc(C|)', {
        a: deliveredChunk('Sure, here'),
        R: restart(1, 'content_policy'),
        c: deliveredChunk('I can help', 'k2', 'b'),
        C: completed('gen-b', 'I can help', 'k2', 2, 5, 'b'),
      });
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(next.subscriptions).toBe('---^-!');
      flush();
      expect(calls.map((call) => [call.model, call.key, call.at])).toEqual([
        ['a', 'k1', 0],
        ['b', 'k2', 3],
      ]);
    });
  });

  it("the same refusal in 'error' mode fails the request with it; the next model is never called", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-#', { a: textChunk('Sure, here') }, refused());
      const next = cold('-c(z|)', { c: textChunk('I can help', 'b'), z: streamEnd('gen-b', 'b') });
      const { pool, calls } = makePool(scheduler, { a: [first], b: [next] });
      const events$ = of(streamedRequest({ models: ['b'] })).pipe(
        balance(pool, { transient: transientRetries, onMidStreamError: 'error' }),
      );
      expectObservable(events$).toBe('-a-(f|)', {
        a: deliveredChunk('Sure, here'),
        f: failedEvent('r1', Object.assign(refused(), { keyLabel: 'k1', model: 'a' }), [
          { attempt: 1, kind: 'content_policy', message: 'finish_reason: content_filter', at: 3, keyLabel: 'k1', model: 'a' },
        ]),
      });
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(next.subscriptions).toBe([]);
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('a failure before any content is retried without a restart event', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold('-r-#', { r: roleChunk() }, providerUnavailable());
      const second = cold('-c-(z|)', { c: textChunk('Hello'), z: streamEnd('gen-2') });
      const { pool } = makePool(scheduler, { a: [first, second] });
      expectObservable(of(streamedRequest()).pipe(balance(pool, { transient: transientRetries, onMidStreamError: 'restart' }))).toBe(
        '6ms c-(C|)',
        {
          c: deliveredChunk('Hello', 'k2'),
          C: completed('gen-2', 'Hello', 'k2', 2, 8),
        },
      );
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(second.subscriptions).toBe('-----^--!');
    });
  });
});
