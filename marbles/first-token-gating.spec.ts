/**
 * Marble tests of first-token gating in `balance`: role-only and empty chunks are held back, so
 * an attempt that failed before its first content token leaves no trace in the subscriber's
 * stream; the subscriber sees the successful retry's content chunks and its completion only.
 */
import { describe, expect, it } from 'vitest';
import { EMPTY, filter, of, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { createPool, type KeyPool } from '../src/keys/pool.js';
import type { KeyPoolInput } from '../src/keys/config.js';
import type { PoolEvent } from '../src/keys/events.js';
import { balance, type BalanceEvent, type BalanceOptions } from '../src/operators/balance.js';
import { NetworkError, UpstreamError } from '../src/errors.js';
import type { ChatRequest, Completion, Transport, TransportEvent, Usage } from '../src/types.js';

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
    keys: [{ key: 'sk-or-v1-gating-1', label: 'k1' }],
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
const empty = (): TransportEvent => ({ type: 'chunk', delta: '', reasoning: '', toolCalls: [], model: 'a' });
const text = (delta: string): TransportEvent => ({ type: 'chunk', delta, model: 'a' });
const usage: Usage = { promptTokens: 5, completionTokens: 2, totalTokens: 7 };
const end = (id: string): TransportEvent => ({ type: 'end', id, model: 'a', finishReason: 'stop', usage });

const chunk = (delta: string): BalanceEvent => ({ type: 'chunk', requestId: 'r1', delta, keyLabel: 'k1', model: 'a' });
const answer = (id: string, content: string): Completion => ({ id, model: 'a', content, finishReason: 'stop', raw: null, usage });
const completed = (id: string, content: string, attempts: number, latencyMs: number): BalanceEvent => ({
  type: 'completion',
  requestId: 'r1',
  completion: answer(id, content),
  keyLabel: 'k1',
  model: 'a',
  attempts,
  latencyMs,
  usage,
  billedUsage: usage,
});

const unavailable = () => new UpstreamError({ message: 'provider returned 503', scope: 'model', retryable: true, status: 503 });
const reset = () => new NetworkError({ message: 'socket hang up', scope: 'transport', retryable: true });

/** Transient retries after floor(0.5 * 4) = 2, then floor(0.5 * 8) = 4 frames. */
const options: BalanceOptions = { transient: { baseDelayMs: 4, random: () => 0.5, budget: false } };

// ------------------------------------------------------------------ tests

describe('first-token gating in balance', () => {
  it('a pre-token attempt that sent role-only and empty chunks then failed leaves no trace; only the retry\'s content and completion', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-e--#', { r: role(), e: empty() }, unavailable());
      const second = cold('-ra-b-(z|)', { r: role(), a: text('Hel'), b: text('lo'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      const events$ = of(request()).pipe(balance(pool, options));
      // Attempt 2 is leased at 6 + 2 = 8: its content at 10 and 12, its end at 14.
      expectObservable(events$).toBe('10ms a-b-(c|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
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
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const first = cold('-r-e--#', { r: role(), e: empty() }, unavailable());
      const second = cold('-ra-b-(z|)', { r: role(), a: text('Hel'), b: text('lo'), z: end('gen-2') });
      const { pool } = harness(scheduler, { a: [first, second] });
      const markers$ = pool.events$.pipe(filter((event: PoolEvent) => event.type === 'attempt' || event.type === 'retry' || event.type === 'restart'));
      expectObservable(markers$, '^ 30ms !').toBe('x 5ms R 1ms y', {
        x: { type: 'attempt', requestId: 'r1', attempt: 1, keyLabel: 'k1', model: 'a', stream: true, at: 0 },
        R: { type: 'retry', requestId: 'r1', attempt: 1, reason: 'upstream', message: 'provider returned 503', status: 503, delayMs: 2, at: 6, keyLabel: 'k1', model: 'a' },
        y: { type: 'attempt', requestId: 'r1', attempt: 2, keyLabel: 'k1', model: 'a', stream: true, at: 8 },
      });
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('10ms a-b-(c|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        c: completed('gen-2', 'Hello', 2, 14),
      });
    });
  });

  it('a pre-token attempt cut by firstTokenMs is gated the same way', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('-r-e------a|', { r: role(), e: empty(), a: text('too late') });
      const second = cold('--a-b(z|)', { a: text('Hi'), b: text('!'), z: end('gen-2') });
      const { pool, calls } = harness(scheduler, { a: [first, second] });
      const events$ = of(request()).pipe(balance(pool, { ...options, timeouts: { firstTokenMs: 5, idleMs: 4, totalMs: 50 } }));
      // First-token timeout at 5, retry leased at 7: content at 9 and 11, end at 12.
      expectObservable(events$).toBe('9ms a-b(c|)', {
        a: chunk('Hi'),
        b: chunk('!'),
        c: completed('gen-2', 'Hi!', 2, 12),
      });
      expectSubscriptions(first.subscriptions).toBe('^----!');
      expectSubscriptions(second.subscriptions).toBe('-------^----!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 7]);
    });
  });

  it('two pre-token failures in a row: the subscriber sees the third attempt only', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const first = cold('r#', { r: role() }, unavailable());
      const second = cold('-e-#', { e: empty() }, reset());
      const third = cold('-r-a(z|)', { r: role(), a: text('ok'), z: end('gen-3') });
      const { pool, calls } = harness(scheduler, { a: [first, second, third] });
      const events$ = of(request()).pipe(balance(pool, options));
      // Fails at 1; attempt 2 at 3 fails at 6; attempt 3 at 6 + 4 = 10: content at 13, end at 14.
      expectObservable(events$).toBe('13ms a(c|)', {
        a: chunk('ok'),
        c: completed('gen-3', 'ok', 3, 14),
      });
      expectSubscriptions(first.subscriptions).toBe('^!');
      expectSubscriptions(second.subscriptions).toBe('---^--!');
      expectSubscriptions(third.subscriptions).toBe('----------^---!');
      flush();
      expect(calls.map((call) => call.at)).toEqual([0, 3, 10]);
    });
  });

  it('the successful attempt\'s own role-only and empty chunks are held back too; its content is not delayed', () => {
    const scheduler = newScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const call = cold('r-e-a-e-b-(z|)', { r: role(), e: empty(), a: text('Hel'), b: text('lo'), z: end('gen-1') });
      const { pool } = harness(scheduler, { a: [call] });
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('4ms a---b-(c|)', {
        a: chunk('Hel'),
        b: chunk('lo'),
        c: completed('gen-1', 'Hello', 1, 10),
      });
      expectSubscriptions(call.subscriptions).toBe('^---------!');
    });
  });
});
