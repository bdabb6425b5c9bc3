/**
 * Marble tests of model fallback in `balance`, over the chain `model: 'a', models: ['b', 'c']`:
 * a failure of a model (a 503, a provider's 429) moves the request to the next model at once,
 * with no second try of the failing one (fallback first); with no next model (alone, or on the
 * last model) the bounded same-model retries with backoff remain; a model whose breaker opened is
 * skipped by every request until its cooldown ends; a prompt too long for a model's context skips
 * it without a call; a context-length or content-policy refusal moves to the next model at once;
 * a plain 400 is never retried on the same model.
 */
import { describe, expect, it } from 'vitest';
import { distinctUntilChanged, filter, map, of, tap } from 'rxjs';
import { balance, type BalanceEvent, type BalanceOptions } from '../src/operators/balance.js';
import {
  AttemptsExhaustedError,
  BadRequestError,
  ContentPolicyError,
  ContextLengthError,
  type AttemptRecord,
  type OpenRouterError,
} from '../src/core/errors.js';
import type { ChatRequest, TransportEvent } from '../src/core/types.js';
import { newTestScheduler, failedEvent } from './support.js';
import {
  answer,
  deliveredCompletion,
  eventsOf,
  modelScriptedPoolFactory,
  providerRateLimited,
  providerUnavailable,
  transientRetries,
} from './model-support.js';

// ------------------------------------------------------------------ harness

/** One key, k1 (its key text is listed in test/helpers/test-keys.ts, for the secret scan). */
const makePool = modelScriptedPoolFactory([{ key: 'sk-or-v1-fallback-1', label: 'k1' }]);

/** The chain a → b → c, not streamed (the answer is one `completion` event). */
const request = (id = 'r1', overrides: Partial<ChatRequest> = {}): ChatRequest => ({
  id,
  model: 'a',
  models: ['b', 'c'],
  messages: [{ role: 'user', content: 'hi' }],
  ...overrides,
});
/** 100 characters: about 29 prompt tokens (25 + 4 for the message). */
const longPrompt = 'x'.repeat(100);

/** The answer of `model`, whose text is "from <model>". */
const answerOf = (model: string, id = `gen-${model}`) => answer(id, `from ${model}`, model);
const done = (model: string, id?: string): TransportEvent => ({ type: 'completion', completion: answerOf(model, id) });
const completed = (model: string, attempts: number, latencyMs: number, requestId = 'r1', id?: string) =>
  deliveredCompletion(answerOf(model, id), { requestId, attempts, latencyMs });

const tooLong = () =>
  new ContextLengthError({
    message: 'maximum context length exceeded',
    scope: 'request',
    retryable: false,
    status: 400,
    errorType: 'context_length_exceeded',
  });
const refused = () => new ContentPolicyError({ message: 'flagged by moderation', scope: 'request', retryable: false, status: 403 });
const invalid = () => new BadRequestError({ message: 'temperature: must be at most 2', scope: 'request', retryable: false, status: 400 });
/** The error as `withKeyRotation` hands it on. */
const tagged = <E extends OpenRouterError>(error: E, model: string, routeExhausted = false): E =>
  Object.assign(error, { keyLabel: 'k1', model, routeExhausted });

/** Transient retries after floor(0.5 * 4) = 2, then floor(0.5 * 8) = 4 frames. */
const options: BalanceOptions = { transient: transientRetries };

// ------------------------------------------------------------------ fallback first

/** The retry event of r1 on pool.events$ after attempt `attempt` on `model` failed with a 503. */
const retryAfter503 = (attempt: number, model: string, at: number, delayMs: number) => ({
  type: 'retry' as const,
  requestId: 'r1',
  attempt,
  reason: 'upstream' as const,
  message: 'provider returned 503',
  status: 503,
  delayMs,
  at,
  keyLabel: 'k1',
  model,
});
/** The record of r1's attempt `attempt` on `model` that failed with a 503 at `at`. */
const record503 = (attempt: number, model: string, at: number): AttemptRecord => ({
  attempt,
  kind: 'upstream',
  message: 'provider returned 503',
  status: 503,
  at,
  keyLabel: 'k1',
  model,
});

describe('a failure of the model while the chain has a next model (fallback first)', () => {
  it('a 503 on a moves the request to b in the same frame: no backoff, no second try of a; a fallback event on pool.events$', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold('--(c|)', { c: done('a') });
      const b1 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2], b: [b1] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('-f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 1 },
      });
      expectObservable(eventsOf(pool, 'retry'), '^ 30ms !').toBe('-x', { x: retryAfter503(1, 'a', 1, 0) });
      // a fails at 1 and b is leased at 1 (it was 8 when a got a second try first).
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('---(c|)', { c: completed('b', 2, 3) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      expectSubscriptions(b1.subscriptions).toBe('-^-!');
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'b', n: 1, key: 'k1', at: 1 },
      ]);
    });
  });

  it("a provider's 429 (the model's rate limit, scope 'model') on a moves the request to b in the same frame as well", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerRateLimited());
      const a2 = cold('--(c|)', { c: done('a') });
      const b1 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2], b: [b1] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('-f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'rate_limit', at: 1 },
      });
      expectObservable(eventsOf(pool, 'retry').pipe(map((retry) => [retry.reason, retry.model, retry.delayMs])), '^ 30ms !').toBe('-x', {
        x: ['rate_limit', 'a', 0],
      });
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('---(c|)', { c: completed('b', 2, 3) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      expectSubscriptions(b1.subscriptions).toBe('-^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
      ]);
    });
  });

  it('a 503 on a, then on b, moves the request along the whole chain at once: c answers, each model tried once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const b1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const c1 = cold('--(c|)', { c: done('c') });
      const { pool, calls } = makePool(scheduler, { a: [a1], b: [b1], c: [c1] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('-fg', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 1 },
        g: { type: 'fallback', requestId: 'r1', from: 'b', to: 'c', reason: 'upstream', at: 2 },
      });
      expectObservable(eventsOf(pool, 'retry'), '^ 30ms !').toBe('-xy', { x: retryAfter503(1, 'a', 1, 0), y: retryAfter503(2, 'b', 2, 0) });
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('----(c|)', { c: completed('c', 3, 4) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(b1.subscriptions).toBe('-^!');
      expectSubscriptions(c1.subscriptions).toBe('--^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['c', 2],
      ]);
    });
  });
});

describe('a failure of the model with no next model: the bounded same-model retries remain', () => {
  it('alone (no chain), a 503 is retried on the same model after a backoff, as before: 2, then 4 frames', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a3 = cold('--(c|)', { c: done('a') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2, a3] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('');
      expectObservable(eventsOf(pool, 'retry'), '^ 30ms !').toBe('-x--y', {
        x: retryAfter503(1, 'a', 1, 2),
        y: retryAfter503(2, 'a', 4, 4),
      });
      // a fails at 1, again (at 3) at 4, and answers at 10 (leased at 8).
      expectObservable(of(request('r1', { models: undefined })).pipe(balance(pool, options))).toBe('10ms (c|)', {
        c: completed('a', 3, 10),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe('---^!');
      expectSubscriptions(a3.subscriptions).toBe('--------^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['a', 3],
        ['a', 8],
      ]);
    });
  });

  it('on the last model of the chain (a → b), a 503 on b is retried on b after a backoff; a is left at once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold('--(c|)', { c: done('a') });
      const b1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const b2 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2], b: [b1, b2] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('-f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 1 },
      });
      // The backoff counts the request's failures: floor(0.5 · 4 · 2^1) = 4 frames after the second.
      expectObservable(eventsOf(pool, 'retry'), '^ 30ms !').toBe('-xy', { x: retryAfter503(1, 'a', 1, 0), y: retryAfter503(2, 'b', 2, 4) });
      expectObservable(of(request('r1', { models: ['b'] })).pipe(balance(pool, options))).toBe('8ms (c|)', { c: completed('b', 3, 8) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      expectSubscriptions(b1.subscriptions).toBe('-^!');
      expectSubscriptions(b2.subscriptions).toBe('------^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['b', 6],
      ]);
    });
  });

  it('the attempts stay bounded by transient.maxAttempts (3), the move included: a, b, b, then AttemptsExhaustedError', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, flush }) => {
      const failing = () => cold<TransportEvent>('-#', undefined, providerUnavailable());
      const { pool, calls } = makePool(scheduler, { a: [failing(), failing()], b: [failing(), failing(), failing()] });
      const attempts = [record503(1, 'a', 1), record503(2, 'b', 2), record503(3, 'b', 7)];
      expectObservable(of(request('r1', { models: ['b'] })).pipe(balance(pool, options))).toBe('7ms (f|)', {
        f: failedEvent('r1', new AttemptsExhaustedError(tagged(providerUnavailable(), 'b'), attempts), attempts),
      });
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['b', 6],
      ]);
    });
  });

  it('every input gets exactly one terminal event, last: moved on (503, 429), retried alone, and failed', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, flush }) => {
      // r1 (a 503) and r2 (a 429) move to b at once; r3, alone on d, is retried after 2 frames and
      // answers at 8; r4, alone on e, fails at once with a 400.
      const { pool } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, providerUnavailable()), cold<TransportEvent>('-#', undefined, providerRateLimited())],
        b: [cold('--(c|)', { c: done('b', 'gen-b-1') }), cold('--(c|)', { c: done('b', 'gen-b-2') })],
        d: [cold<TransportEvent>('-#', undefined, providerUnavailable()), cold('-----(c|)', { c: done('d') })],
        e: [cold<TransportEvent>('-#', undefined, invalid())],
      });
      const requests$ = cold('(pqrs|)', {
        p: request('r1'),
        q: request('r2'),
        r: request('r3', { model: 'd', models: undefined }),
        s: request('r4', { model: 'e', models: undefined }),
      });
      const events: BalanceEvent[] = [];
      const events$ = requests$.pipe(
        balance(pool, options),
        tap((event) => events.push(event)),
      );
      expectObservable(events$.pipe(map((event) => `${event.requestId} ${event.type}`))).toBe('-s-(pq)-(r|)', {
        p: 'r1 completion',
        q: 'r2 completion',
        r: 'r3 completion',
        s: 'r4 failed',
      });
      flush();
      const answered = events.flatMap((event) => (event.type === 'completion' ? [[event.requestId, event.model, event.attempts]] : []));
      expect(answered).toEqual([
        ['r1', 'b', 2],
        ['r2', 'b', 2],
        ['r3', 'd', 2],
      ]);
      for (const id of ['r1', 'r2', 'r3', 'r4']) {
        const own = events.filter((event) => event.requestId === id);
        expect(own.filter((event) => event.type === 'completion' || event.type === 'failed')).toHaveLength(1);
        expect(['completion', 'failed']).toContain(own.at(-1)!.type);
      }
    });
  });
});

// ------------------------------------------------------------------ model breaker

describe('a model whose breaker opened', () => {
  it('is skipped by every request until its cooldown ends, then probed half-open and closed again', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a3 = cold('--(c|)', { c: done('a', 'gen-a-5') });
      const b1 = cold('--(c|)', { c: done('b', 'gen-b-1') });
      const b2 = cold('--(c|)', { c: done('b', 'gen-b-2') });
      const b3 = cold('--(c|)', { c: done('b', 'gen-b-3') });
      const b4 = cold('--(c|)', { c: done('b', 'gen-b-4') });
      const b5 = cold('--(c|)', { c: done('b', 'gen-b-6') });
      const { pool, calls } = makePool(
        scheduler,
        { a: [a1, a2, a3], b: [b1, b2, b3, b4, b5] },
        { modelBreaker: { consecutiveFailures: 2, cooldownMs: 100 } },
      );

      // Each request tries a once at most (fallback first): r1 fails on it at 1, r2 at 3, which
      // is a's second failure in a row and opens its breaker until 103.
      const states$ = pool.model('a').health$.pipe(
        map((health) => health.state),
        distinctUntilChanged(),
      );
      expectObservable(states$, '^ 200ms !').toBe('c 2ms o 99ms h 1ms c', { c: 'closed', o: 'open', h: 'half-open' });
      expectObservable(eventsOf(pool, 'state-change', 'cooldown'), '^ 200ms !').toBe('3ms (ko) 96ms h 1ms c', {
        k: { type: 'cooldown', scope: 'model', target: 'a', reason: 'failures', until: 103, at: 3 },
        o: { type: 'state-change', scope: 'model', target: 'a', from: 'closed', to: 'open', at: 3 },
        h: { type: 'state-change', scope: 'model', target: 'a', from: 'open', to: 'half-open', at: 103 },
        c: { type: 'state-change', scope: 'model', target: 'a', from: 'half-open', to: 'closed', at: 105 },
      });

      // r1 (at 0) and r2 (at 2) move to b at once; r3 (at 50) and r4 (at 102) go straight to b;
      // r5 (at 103) probes a, so r6 (at 104, the probe still in flight) goes to b as well.
      const requests$ = cold('r-s 47ms t 51ms u v (w|)', {
        r: request('r1'),
        s: request('r2'),
        t: request('r3'),
        u: request('r4'),
        v: request('r5'),
        w: request('r6'),
      });
      expectObservable(requests$.pipe(balance(pool, options))).toBe('3ms p-q 46ms x 51ms y z (v|)', {
        p: completed('b', 2, 3, 'r1', 'gen-b-1'),
        q: completed('b', 2, 3, 'r2', 'gen-b-2'),
        x: completed('b', 1, 2, 'r3', 'gen-b-3'),
        y: completed('b', 1, 2, 'r4', 'gen-b-4'),
        z: completed('a', 1, 2, 'r5', 'gen-a-5'),
        v: completed('b', 1, 2, 'r6', 'gen-b-6'),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(b1.subscriptions).toBe('-^-!');
      expectSubscriptions(a2.subscriptions).toBe('--^!');
      expectSubscriptions(b2.subscriptions).toBe('---^-!');
      expectSubscriptions(b3.subscriptions).toBe('50ms ^-!');
      expectSubscriptions(b4.subscriptions).toBe('102ms ^-!');
      expectSubscriptions(a3.subscriptions).toBe('103ms ^-!');
      expectSubscriptions(b5.subscriptions).toBe('104ms ^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['a', 2],
        ['b', 3],
        ['b', 50],
        ['b', 102],
        ['a', 103],
        ['b', 104],
      ]);
    });
  });

  it('a failed half-open probe re-opens it with a doubled cooldown (until 304): the probing request moves to b at once, later ones skip a', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a3 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const b1 = cold('--(c|)', { c: done('b', 'gen-b-1') });
      const b2 = cold('--(c|)', { c: done('b', 'gen-b-2') });
      const b3 = cold('--(c|)', { c: done('b', 'gen-b-3') });
      const b4 = cold('--(c|)', { c: done('b', 'gen-b-4') });
      const { pool, calls } = makePool(
        scheduler,
        { a: [a1, a2, a3], b: [b1, b2, b3, b4] },
        { modelBreaker: { consecutiveFailures: 2, cooldownMs: 100 } },
      );

      const states$ = pool.model('a').health$.pipe(
        map((health) => [health.state, health.cooldownUntil] as const),
        distinctUntilChanged((x, y) => x[0] === y[0] && x[1] === y[1]),
      );
      expectObservable(states$, '^ 400ms !').toBe('c 2ms o 99ms h p 199ms q', {
        c: ['closed', null],
        o: ['open', 103],
        h: ['half-open', null],
        p: ['open', 304],
        q: ['half-open', null],
      });
      expectObservable(eventsOf(pool, 'fallback'), '^ 400ms !').toBe('-f-g 100ms h', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 1 },
        g: { type: 'fallback', requestId: 'r2', from: 'a', to: 'b', reason: 'upstream', at: 3 },
        h: { type: 'fallback', requestId: 'r3', from: 'a', to: 'b', reason: 'upstream', at: 104 },
      });

      // r1 and r2 open a's breaker (until 103); r3 probes a at 103, the probe fails at 104 and
      // r3 moves to b in that frame; r4 (at 200) skips a.
      const requests$ = cold('r-s 100ms t 96ms (u|)', { r: request('r1'), s: request('r2'), t: request('r3'), u: request('r4') });
      expectObservable(requests$.pipe(balance(pool, options))).toBe('3ms w-x 100ms y 95ms (z|)', {
        w: completed('b', 2, 3, 'r1', 'gen-b-1'),
        x: completed('b', 2, 3, 'r2', 'gen-b-2'),
        y: completed('b', 2, 3, 'r3', 'gen-b-3'),
        z: completed('b', 1, 2, 'r4', 'gen-b-4'),
      });
      expectSubscriptions(a3.subscriptions).toBe('103ms ^!');
      expectSubscriptions(b3.subscriptions).toBe('104ms ^-!');
      expectSubscriptions(b4.subscriptions).toBe('200ms ^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['a', 2],
        ['b', 3],
        ['a', 103],
        ['b', 104],
        ['b', 200],
      ]);
    });
  });
});

// ------------------------------------------------------------------ context length

describe('context length', () => {
  it('a prompt longer than the configured contexts of a (10) and b (20) goes to c without calling either', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const c1 = cold('--(c|)', { c: done('c') });
      const { pool, calls } = makePool(scheduler, { c: [c1] }, { models: { a: { contextLength: 10 }, b: { contextLength: 20 } } });
      expectObservable(eventsOf(pool, 'fallback', 'retry'), '^ 20ms !').toBe('');
      expectObservable(of(request('r1', { messages: [{ role: 'user', content: longPrompt }] })).pipe(balance(pool, options))).toBe(
        '--(c|)',
        {
          c: completed('c', 1, 2),
        },
      );
      expectSubscriptions(c1.subscriptions).toBe('^-!');
      flush();
      expect(calls).toEqual([{ model: 'c', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('a prompt that fits stays on a (the pool only skips what cannot fit)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold('--(c|)', { c: done('a') });
      const { pool, calls } = makePool(scheduler, { a: [a1] }, { models: { a: { contextLength: 10 } } });
      // 'hi' is 1 + 4 = 5 tokens.
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('--(c|)', { c: completed('a', 1, 2) });
      expectSubscriptions(a1.subscriptions).toBe('^-!');
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('a ContextLengthError from b moves the request to c in the same frame (a, too small, is never called)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const b1 = cold<TransportEvent>('-#', undefined, tooLong());
      const c1 = cold('--(c|)', { c: done('c') });
      const { pool, calls } = makePool(scheduler, { b: [b1], c: [c1] }, { models: { a: { contextLength: 10 } } });
      expectObservable(eventsOf(pool, 'fallback'), '^ 20ms !').toBe('-f', {
        f: { type: 'fallback', requestId: 'r1', from: 'b', to: 'c', reason: 'context_length', at: 1 },
      });
      expectObservable(of(request('r1', { messages: [{ role: 'user', content: longPrompt }] })).pipe(balance(pool, options))).toBe(
        '---(c|)',
        {
          c: completed('c', 2, 3),
        },
      );
      expectSubscriptions(b1.subscriptions).toBe('^!');
      expectSubscriptions(c1.subscriptions).toBe('-^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['b', 0],
        ['c', 1],
      ]);
    });
  });

  it('a provider 429 on a, when b and c are too small for the prompt, retries a (after its park) instead of failing the request', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerRateLimited());
      const a2 = cold('--(c|)', { c: done('a') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2] }, { models: { b: { contextLength: 10 }, c: { contextLength: 10 } } });
      const long = request('r1', { messages: [{ role: 'user', content: longPrompt }] });
      // Refused alone, without a hint: a is parked (750 ms: half of 1 s plus half of the jitter), then tried again.
      expectObservable(
        of(long)
          .pipe(balance(pool, options))
          .pipe(filter((event) => event.type !== 'chunk')),
      ).toBe('753ms (c|)', {
        c: completed('a', 2, 753),
      });
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['a', 751],
      ]);
    });
  });

  it('a prompt that fits no model of the chain fails at once with ContextLengthError, without any call', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable, flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        {},
        { models: { a: { contextLength: 10 }, b: { contextLength: 10 }, c: { contextLength: 10 } } },
      );
      const error = new ContextLengthError({
        message: 'the prompt needs about 29 tokens, more than the context of a, b, c',
        scope: 'request',
        retryable: false,
      });
      error.routeExhausted = true;
      expectObservable(of(request('r1', { messages: [{ role: 'user', content: longPrompt }] })).pipe(balance(pool, options))).toBe('(f|)', {
        f: failedEvent('r1', error, [{ attempt: 0, kind: 'context_length', message: error.message, at: 0 }]),
      });
      flush();
      expect(calls).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ content policy

describe('content policy', () => {
  it('a ContentPolicyError from a moves the request to b in the same frame; a is called once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, refused());
      const b1 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1], b: [b1] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 20ms !').toBe('-f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'content_policy', at: 1 },
      });
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('---(c|)', { c: completed('b', 2, 3) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(b1.subscriptions).toBe('-^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
      ]);
    });
  });

  it('when every model refuses, the last refusal is the outcome, after exactly one try per model', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, refused());
      const b1 = cold<TransportEvent>('-#', undefined, refused());
      const c1 = cold<TransportEvent>('-#', undefined, refused());
      const { pool, calls } = makePool(scheduler, { a: [a1], b: [b1], c: [c1] });
      const events$ = of(request()).pipe(balance(pool, options));
      expectObservable(events$).toBe('---(f|)', {
        f: failedEvent('r1', tagged(refused(), 'c', true), [
          { attempt: 1, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 1, keyLabel: 'k1', model: 'a' },
          { attempt: 2, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 2, keyLabel: 'k1', model: 'b' },
          { attempt: 3, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 3, keyLabel: 'k1', model: 'c' },
        ]),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(b1.subscriptions).toBe('-^!');
      expectSubscriptions(c1.subscriptions).toBe('--^!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['b', 1],
        ['c', 2],
      ]);
    });
  });
});

// ------------------------------------------------------------------ plain 400

describe('a plain 400', () => {
  it('is never retried on the same model: the request fails with the BadRequestError after one call', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, invalid());
      const a2 = cold('--(c|)', { c: done('a') });
      const b1 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2], b: [b1] });
      expectObservable(eventsOf(pool, 'retry', 'fallback'), '^ 20ms !').toBe('');
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('-(f|)', {
        f: failedEvent('r1', tagged(invalid(), 'a'), [
          { attempt: 1, kind: 'bad_request', message: 'temperature: must be at most 2', status: 400, at: 1, keyLabel: 'k1', model: 'a' },
        ]),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      expectSubscriptions(b1.subscriptions).toBe([]);
      flush();
      expect(calls).toEqual([{ model: 'a', n: 1, key: 'k1', at: 0 }]);
    });
  });

  it('is not retried on a single-model route either, however generous the retry settings', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, invalid());
      const a2 = cold('--(c|)', { c: done('a') });
      const { pool, calls } = makePool(
        scheduler,
        { a: [a1, a2] },
        {
          keys: [
            { key: 'sk-or-v1-fallback-1', label: 'k1' },
            { key: 'sk-or-v1-fallback-2', label: 'k2' },
          ],
        },
      );
      const events$ = of(request('r1', { models: undefined })).pipe(
        balance(pool, {
          ...options,
          maxAttemptsPerModel: 5,
          transient: { ...transientRetries, maxAttempts: 5 },
          rateLimit: { maxAttempts: 5 },
          fallback: { maxAttempts: 5 },
        }),
      );
      expectObservable(events$).toBe('-(f|)', {
        f: failedEvent('r1', tagged(invalid(), 'a', true), [
          { attempt: 1, kind: 'bad_request', message: 'temperature: must be at most 2', status: 400, at: 1, keyLabel: 'k1', model: 'a' },
        ]),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      flush();
      expect(calls).toHaveLength(1);
    });
  });
});
