/**
 * Marble tests of first-token gating in `balance`: role-only and empty chunks are held back, so
 * an attempt that failed before its first content token leaves no trace in the subscriber's
 * stream; the subscriber sees the successful retry's content chunks and its completion only.
 */
import { describe, expect, it } from 'vitest';
import { of } from 'rxjs';
import { balance, type BalanceOptions } from '../src/operators/balance.js';
import { NetworkError } from '../src/core/errors.js';
import type { TransportEvent, Usage } from '../src/core/types.js';
import { newTestScheduler } from './support.js';
import {
  answer,
  attemptStart,
  deliveredChunk,
  deliveredCompletion,
  emptyChunk,
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

/** One key, k1 (its key text is listed in test/helpers/test-keys.ts, for the secret scan). */
const makePool = modelScriptedPoolFactory([{ key: 'sk-or-v1-gating-1', label: 'k1' }]);

/** What every answer here reports, at its stream's end. */
const usage: Usage = { promptTokens: 5, completionTokens: 2, totalTokens: 7 };

/** The completion of r1 on k1 and model a; only the answering attempt reports usage, so it is all that was billed. */
const completed = (id: string, content: string, attempts: number, latencyMs: number) =>
  deliveredCompletion(answer(id, content, 'a', usage), { attempts, latencyMs, usage, billedUsage: usage });

const reset = () => new NetworkError({ message: 'socket hang up', scope: 'transport', retryable: true });

/** Transient retries after floor(0.5 * 4) = 2, then floor(0.5 * 8) = 4 frames. */
const options: BalanceOptions = { transient: transientRetries };

// ------------------------------------------------------------------ tests

describe('first-token gating in balance', () => {
  it("a pre-token attempt that sent role-only and empty chunks then failed leaves no trace; only the retry's content and completion", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-e--#', { r: roleChunk(), e: emptyChunk() }, providerUnavailable());
      const second = cold('-ra-b-(z|)', { r: roleChunk(), a: textChunk('Hel'), b: textChunk('lo'), z: streamEnd('gen-2', 'a', usage) });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      const events$ = of(streamedRequest()).pipe(balance(pool, options));
      // Attempt 2 is leased at 6 + 2 = 8: its content at 10 and 12, its end at 14.
      expectObservable(events$).toBe('10ms a-b-(c|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        c: completed('gen-2', 'Hello', 2, 14),
      });
      expectSubscriptions(first.subscriptions).toBe('^-----!');
      expectSubscriptions(second.subscriptions).toBe('--------^-----!');
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'a', n: 2, key: 'k1', at: 8 },
      ]);
    });
  });

  it('the retry is visible on pool.events$ only, never as a restart: nothing was delivered to void', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const first = cold('-r-e--#', { r: roleChunk(), e: emptyChunk() }, providerUnavailable());
      const second = cold('-ra-b-(z|)', { r: roleChunk(), a: textChunk('Hel'), b: textChunk('lo'), z: streamEnd('gen-2', 'a', usage) });
      const { pool } = makePool(scheduler, { a: [first, second] });
      const markers$ = eventsOf(pool, 'attempt', 'retry', 'restart');
      expectObservable(markers$, '^ 30ms !').toBe('x 5ms R 1ms y', {
        x: attemptStart(1, 0),
        R: {
          type: 'retry',
          requestId: 'r1',
          attempt: 1,
          reason: 'upstream',
          message: 'provider returned 503',
          status: 503,
          delayMs: 2,
          at: 6,
          keyLabel: 'k1',
          model: 'a',
        },
        y: attemptStart(2, 8),
      });
      expectObservable(of(streamedRequest()).pipe(balance(pool, options))).toBe('10ms a-b-(c|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        c: completed('gen-2', 'Hello', 2, 14),
      });
    });
  });

  it('a pre-token attempt cut by firstTokenMs is gated the same way', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-e------a|', { r: roleChunk(), e: emptyChunk(), a: textChunk('too late') });
      const second = cold('--a-b(z|)', { a: textChunk('Hi'), b: textChunk('!'), z: streamEnd('gen-2', 'a', usage) });
      const { pool, calls } = makePool(scheduler, { a: [first, second] });
      const events$ = of(streamedRequest()).pipe(balance(pool, { ...options, timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }));
      // First-token timeout at 5, retry leased at 7: content at 9 and 11, end at 12.
      expectObservable(events$).toBe('9ms a-b(c|)', {
        a: deliveredChunk('Hi'),
        b: deliveredChunk('!'),
        c: completed('gen-2', 'Hi!', 2, 12),
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^----!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it('two pre-token failures in a row: the subscriber sees the third attempt only', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('r#', { r: roleChunk() }, providerUnavailable());
      const second = cold('-e-#', { e: emptyChunk() }, reset());
      const third = cold('-r-a(z|)', { r: roleChunk(), a: textChunk('ok'), z: streamEnd('gen-3', 'a', usage) });
      const { pool, calls } = makePool(scheduler, { a: [first, second, third] });
      const events$ = of(streamedRequest()).pipe(balance(pool, options));
      // Fails at 1; attempt 2 at 3 fails at 6; attempt 3 at 6 + 4 = 10: content at 13, end at 14.
      expectObservable(events$).toBe('13ms a(c|)', {
        a: deliveredChunk('ok'),
        c: completed('gen-3', 'ok', 3, 14),
      });
      expectSubscriptions(first.subscriptions).toBe('^!');
      expectSubscriptions(second.subscriptions).toBe('---^--!');
      expectSubscriptions(third.subscriptions).toBe('----------^---!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 3, 10]);
    });
  });

  it("the successful attempt's own role-only and empty chunks are held back too; its content is not delayed", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('r-e-a-e-b-(z|)', {
        r: roleChunk(),
        e: emptyChunk(),
        a: textChunk('Hel'),
        b: textChunk('lo'),
        z: streamEnd('gen-1', 'a', usage),
      });
      const { pool } = makePool(scheduler, { a: [call] });
      expectObservable(of(streamedRequest()).pipe(balance(pool, options))).toBe('4ms a---b-(c|)', {
        a: deliveredChunk('Hel'),
        b: deliveredChunk('lo'),
        c: completed('gen-1', 'Hello', 1, 10),
      });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });
});

describe('billed usage across attempts', () => {
  it('sums every usage field of the attempts that reported one, cached and reasoning tokens included', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const failed = providerUnavailable();
      failed.usage = { promptTokens: 5, completionTokens: 0, totalTokens: 5, cachedTokens: 3 };
      const answered: Usage = { promptTokens: 5, completionTokens: 2, totalTokens: 7, cachedTokens: 4, reasoningTokens: 1, cost: 0.5 };
      const { pool } = makePool(scheduler, {
        a: [
          cold<TransportEvent>('-#', undefined, failed),
          cold<TransportEvent>('-(ab|)', { a: textChunk('hi'), b: streamEnd('r1', 'a', answered) }),
        ],
      });
      const billed: Array<Usage | undefined> = [];
      of(streamedRequest())
        .pipe(balance(pool, options))
        .subscribe((event) => event.type === 'completion' && billed.push(event.billedUsage));
      flush();
      expect(billed).toEqual([{ promptTokens: 10, completionTokens: 2, totalTokens: 12, cachedTokens: 7, reasoningTokens: 1, cost: 0.5 }]);
    });
  });
});
