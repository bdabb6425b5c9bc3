/**
 * Marble tests of `balance`'s `onMidStreamError`: once content reached the subscriber, an error
 * either fails the request as it is (`'error'`, the default: no retry, the transport is called
 * once), or voids what was delivered with a `restart` event and runs a new attempt whose
 * completion holds only its own text (`'restart'`).
 */
import { describe, expect, it } from 'vitest';
import { EMPTY, filter, of, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { createPool, type KeyPool } from '../src/keys/pool.js';
import type { KeyPoolInput } from '../src/keys/config.js';
import type { PoolEvent } from '../src/keys/events.js';
import { balance, type BalanceEvent, type BalanceOptions } from '../src/operators/balance.js';
import { ContentPolicyError, IdleTimeoutError, UpstreamError } from '../src/errors.js';
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
 * A pool of two keys over a fake transport that answers the n-th call to a model with
 * `scripts[model][n-1]` (cold observables the test keeps, to assert their subscriptions).
 * Unscripted calls get EMPTY and show up in `calls`, which every test asserts.
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
    keys: [
      { key: 'sk-or-v1-restart-1', label: 'k1' },
      { key: 'sk-or-v1-restart-2', label: 'k2' },
    ],
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

const role = (): TransportEvent => ({ type: 'chunk', delta: '', model: 'a' });
const text = (delta: string, model = 'a'): TransportEvent => ({ type: 'chunk', delta, model });
const end = (id: string, model = 'a'): TransportEvent => ({ type: 'end', id, model, finishReason: 'stop' });

const chunk = (delta: string, keyLabel = 'k1', model = 'a'): BalanceEvent => ({ type: 'chunk', requestId: 'r1', delta, keyLabel, model });
const answer = (id: string, content: string, model = 'a'): Completion => ({ id, model, content, finishReason: 'stop', raw: null });
const completed = (id: string, content: string, keyLabel: string, attempts: number, latencyMs: number, model = 'a'): BalanceEvent => ({
  type: 'completion',
  requestId: 'r1',
  completion: answer(id, content, model),
  keyLabel,
  model,
  attempts,
  latencyMs,
});
const restart = (attempt: number, reason: string): BalanceEvent => ({ type: 'restart', requestId: 'r1', attempt, reason } as BalanceEvent);

const refused = () => new ContentPolicyError({ message: 'finish_reason: content_filter', scope: 'request', retryable: false });
const unavailable = () => new UpstreamError({ message: 'provider returned 503', scope: 'model', retryable: true, status: 503 });
/** The error as `withKeyRotation` hands it on: tagged with the attempt's key and model. */
const taggedUnavailable = (keyLabel = 'k1') => Object.assign(unavailable(), { keyLabel, model: 'a' });

/** Transient retries after floor(0.5 * 4) = 2, then floor(0.5 * 8) = 4 frames. */
const transient: BalanceOptions['transient'] = { baseDelayMs: 4, random: () => 0.5, budget: false };

const markersOf = (pool: KeyPool) =>
  pool.events$.pipe(filter((event: PoolEvent) => event.type === 'attempt' || event.type === 'retry' || event.type === 'restart'));
const attemptMarker = (attempt: number, keyLabel: string, at: number): PoolEvent =>
  ({ type: 'attempt', requestId: 'r1', attempt, keyLabel, model: 'a', stream: true, at }) as PoolEvent;

// ------------------------------------------------------------------ 'error'

describe("onMidStreamError: 'error'", () => {
  it('an upstream error after content: the chunks, then `failed` with that error; the transport is called once', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: text('Hel'), b: text('lo') }, unavailable());
      const spare = cold('-c-(z|)', { c: text('never'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, spare] });
      expectObservable(markersOf(pool), '^ 20ms !').toBe('x', { x: attemptMarker(1, 'k1', 0) });
      expectObservable(of(request()).pipe(balance(pool, { transient, onMidStreamError: 'error' }))).toBe('-a-b-(f|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        f: {
          type: 'failed',
          requestId: 'r1',
          error: taggedUnavailable(),
          attempts: [{ attempt: 1, kind: 'upstream', message: 'provider returned 503', status: 503, at: 5, keyLabel: 'k1', model: 'a' }],
        },
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(spare.subscriptions).toBe([]);
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it("is the default: without onMidStreamError the same request fails the same way", () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: text('Hel'), b: text('lo') }, unavailable());
      const { pool, calls } = harness(scheduler, { a: [first] });
      expectObservable(of(request()).pipe(balance(pool, { transient }))).toBe('-a-b-(f|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        f: {
          type: 'failed',
          requestId: 'r1',
          error: taggedUnavailable(),
          attempts: [{ attempt: 1, kind: 'upstream', message: 'provider returned 503', status: 503, at: 5, keyLabel: 'k1', model: 'a' }],
        },
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('an idle timeout after content: the chunks, then `failed` with the IdleTimeoutError at the idle frame', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b---------c|', { a: text('Hel'), b: text('lo'), c: text('late') });
      const { pool, calls } = harness(scheduler, { a: [first] });
      const events$ = of(request()).pipe(balance(pool, { transient, onMidStreamError: 'error', timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }));
      expectObservable(events$).toBe('-a-b---(f|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        f: {
          type: 'failed',
          requestId: 'r1',
          error: new IdleTimeoutError('idle', 4, { scope: 'model', retryable: true, keyLabel: 'k1', model: 'a' }),
          attempts: [{ attempt: 1, kind: 'timeout', message: 'idle timeout: no answer within 4 ms', at: 7, keyLabel: 'k1', model: 'a' }],
        },
      });
      expectSubscriptions(first.subscriptions).toBe('^------!');
      flush();
      expect(calls).toHaveLength(1);
    });
  });
});

// ------------------------------------------------------------------ 'restart'

describe("onMidStreamError: 'restart'", () => {
  it('an upstream error after content: the chunks, a `restart`, then the new attempt\'s chunks and a completion of its text only', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b-#', { a: text('Hel'), b: text('lo') }, unavailable());
      const second = cold('-c-d-(z|)', { c: text('Hello'), d: text(' world'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      // Restart and retry at 5; attempt 2 is leased at 7, on the key the request has not tried.
      expectObservable(of(request()).pipe(balance(pool, { transient, onMidStreamError: 'restart' }))).toBe('-a-b-R--c-d-(C|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        R: restart(1, 'upstream'),
        c: chunk('Hello', 'k2'),
        d: chunk(' world', 'k2'),
        C: completed('gen-2', 'Hello world', 'k2', 2, 12),
      });
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
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const first = cold('-a-b-#', { a: text('Hel'), b: text('lo') }, unavailable());
      const second = cold('-c-d-(z|)', { c: text('Hello'), d: text(' world'), z: end('gen-2') });
      const { pool } = harness(scheduler, { a: [first, second] });
      const attempts$ = pool.events$.pipe(filter((event) => event.type === 'attempt'));
      const voids$ = pool.events$.pipe(filter((event) => event.type === 'restart' || event.type === 'retry'));
      expectObservable(attempts$, '^ 20ms !').toBe('x 6ms y', { x: attemptMarker(1, 'k1', 0), y: attemptMarker(2, 'k2', 7) });
      expectObservable(voids$, '^ 20ms !').toBe('5ms (ST)', {
        S: { type: 'restart', requestId: 'r1', attempt: 1, reason: 'upstream', at: 5 },
        T: { type: 'retry', requestId: 'r1', attempt: 1, reason: 'upstream', message: 'provider returned 503', status: 503, delayMs: 2, at: 5, keyLabel: 'k1', model: 'a' },
      });
      expectObservable(of(request()).pipe(balance(pool, { transient, onMidStreamError: 'restart' }))).toBe('-a-b-R--c-d-(C|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        R: restart(1, 'upstream'),
        c: chunk('Hello', 'k2'),
        d: chunk(' world', 'k2'),
        C: completed('gen-2', 'Hello world', 'k2', 2, 12),
      });
    });
  });

  it('an idle timeout after content restarts too: the new attempt is timed afresh and completes with its text only', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-b---------c|', { a: text('Hel'), b: text('lo'), c: text('late') });
      const second = cold('-c-(z|)', { c: text('Hello'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      const events$ = of(request()).pipe(
        balance(pool, { transient, onMidStreamError: 'restart', timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }),
      );
      // Idle timeout at 3 + 4 = 7; attempt 2 leased at 9.
      expectObservable(events$).toBe('-a-b---R--c-(C|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        R: restart(1, 'timeout'),
        c: chunk('Hello', 'k2'),
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

  it('two voided attempts in a row: one restart each, and the completion holds the third attempt\'s text only', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a#', { a: text('One') }, unavailable());
      const second = cold('-b#', { b: text('Two') }, unavailable());
      const third = cold('-c(z|)', { c: text('Three'), z: end('gen-3') });
      const { pool, calls } = harness(scheduler, { a: [first, second, third] });
      // Fails at 2; attempt 2 at 4 fails at 6; attempt 3 at 6 + 4 = 10.
      expectObservable(of(request()).pipe(balance(pool, { transient, onMidStreamError: 'restart' }))).toBe('-aR--bS----c(C|)', {
        a: chunk('One'),
        R: restart(1, 'upstream'),
        S: restart(2, 'upstream'),
        b: chunk('Two', 'k2'),
        c: chunk('Three'),
        C: completed('gen-3', 'Three', 'k1', 3, 12),
      } as Record<string, BalanceEvent>);
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
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-#', { a: text('Sure, here') }, refused());
      const next = cold('-c(z|)', { c: text('I can help', 'b'), z: end('gen-b', 'b') });
      const { pool, calls } = harness(scheduler, { a: [first], b: [next] });
      const events$ = of(request({ models: ['b'] })).pipe(balance(pool, { transient, onMidStreamError: 'restart' }));
      expectObservable(events$).toBe('-a-Rc(C|)', {
        a: chunk('Sure, here'),
        R: restart(1, 'content_policy'),
        c: chunk('I can help', 'k2', 'b'),
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
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-a-#', { a: text('Sure, here') }, refused());
      const next = cold('-c(z|)', { c: text('I can help', 'b'), z: end('gen-b', 'b') });
      const { pool, calls } = harness(scheduler, { a: [first], b: [next] });
      const events$ = of(request({ models: ['b'] })).pipe(balance(pool, { transient, onMidStreamError: 'error' }));
      expectObservable(events$).toBe('-a-(f|)', {
        a: chunk('Sure, here'),
        f: {
          type: 'failed',
          requestId: 'r1',
          error: Object.assign(refused(), { keyLabel: 'k1', model: 'a' }),
          attempts: [{ attempt: 1, kind: 'content_policy', message: 'finish_reason: content_filter', at: 3, keyLabel: 'k1', model: 'a' }],
        },
      });
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(next.subscriptions).toBe([]);
      flush();
      expect(calls).toHaveLength(1);
    });
  });

  it('a failure before any content is retried without a restart event', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const first = cold('-r-#', { r: role() }, unavailable());
      const second = cold('-c-(z|)', { c: text('Hello'), z: end('gen-2') });
      const { pool } = harness(scheduler, { a: [first, second] });
      expectObservable(of(request()).pipe(balance(pool, { transient, onMidStreamError: 'restart' }))).toBe('6ms c-(C|)', {
        c: chunk('Hello', 'k2'),
        C: completed('gen-2', 'Hello', 'k2', 2, 8),
      });
      expectSubscriptions(first.subscriptions).toBe('^--!');
      expectSubscriptions(second.subscriptions).toBe('-----^--!');
    });
  });
});
