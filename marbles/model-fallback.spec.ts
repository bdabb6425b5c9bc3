/**
 * Marble tests of model fallback in `balance`, over the chain `model: 'a', models: ['b', 'c']`:
 * a failing model is retried, then left for the next; a model whose breaker opened is skipped by
 * every request until its cooldown ends; a prompt too long for a model's context skips it without
 * a call; a context-length or content-policy refusal moves to the next model at once; a plain 400
 * is never retried on the same model.
 */
import { describe, expect, it } from 'vitest';
import { distinctUntilChanged, map, of } from 'rxjs';
import { balance, type BalanceOptions } from '../src/operators/balance.js';
import { BadRequestError, ContentPolicyError, ContextLengthError, type OpenRouterError } from '../src/core/errors.js';
import type { ChatRequest, TransportEvent } from '../src/core/types.js';
import { newTestScheduler } from './support.js';
import { answer, deliveredCompletion, eventsOf, modelScriptedPoolFactory, providerUnavailable, transientRetries } from './model-support.js';

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

// ------------------------------------------------------------------ 5xx

describe('a model failing with 503', () => {
  it('is retried (maxAttemptsPerModel 2), then left for b, with a fallback event on pool.events$', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const b1 = cold('--(c|)', { c: done('b') });
      const { pool, calls } = makePool(scheduler, { a: [a1, a2], b: [b1] });
      expectObservable(eventsOf(pool, 'fallback'), '^ 30ms !').toBe('8ms f', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 8 },
      });
      expectObservable(eventsOf(pool, 'retry'), '^ 30ms !').toBe('-x--y', {
        x: {
          type: 'retry',
          requestId: 'r1',
          attempt: 1,
          reason: 'upstream',
          message: 'provider returned 503',
          status: 503,
          delayMs: 2,
          at: 1,
          keyLabel: 'k1',
          model: 'a',
        },
        y: {
          type: 'retry',
          requestId: 'r1',
          attempt: 2,
          reason: 'upstream',
          message: 'provider returned 503',
          status: 503,
          delayMs: 4,
          at: 4,
          keyLabel: 'k1',
          model: 'a',
        },
      });
      // a fails at 1, again (at 3) at 4; b is leased at 8 and answers at 10.
      expectObservable(of(request()).pipe(balance(pool, options))).toBe('10ms (c|)', { c: completed('b', 3, 10) });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe('---^!');
      expectSubscriptions(b1.subscriptions).toBe('--------^-!');
      flush();
      expect(calls).toEqual([
        { model: 'a', n: 1, key: 'k1', at: 0 },
        { model: 'a', n: 2, key: 'k1', at: 3 },
        { model: 'b', n: 1, key: 'k1', at: 8 },
      ]);
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
      const a3 = cold('--(c|)', { c: done('a', 'gen-a-4') });
      const b1 = cold('--(c|)', { c: done('b', 'gen-b-1') });
      const b2 = cold('--(c|)', { c: done('b', 'gen-b-2') });
      const b3 = cold('--(c|)', { c: done('b', 'gen-b-3') });
      const b4 = cold('--(c|)', { c: done('b', 'gen-b-5') });
      const { pool, calls } = makePool(
        scheduler,
        { a: [a1, a2, a3], b: [b1, b2, b3, b4] },
        { modelBreaker: { consecutiveFailures: 2, cooldownMs: 100 } },
      );

      // a's second failure (at 4) opens its breaker until 104.
      const states$ = pool.model('a').health$.pipe(
        map((health) => health.state),
        distinctUntilChanged(),
      );
      expectObservable(states$, '^ 200ms !').toBe('c 3ms o 99ms h 1ms c', { c: 'closed', o: 'open', h: 'half-open' });
      expectObservable(eventsOf(pool, 'state-change', 'cooldown'), '^ 200ms !').toBe('4ms (ko) 96ms h 1ms c', {
        k: { type: 'cooldown', scope: 'model', target: 'a', reason: 'failures', until: 104, at: 4 },
        o: { type: 'state-change', scope: 'model', target: 'a', from: 'closed', to: 'open', at: 4 },
        h: { type: 'state-change', scope: 'model', target: 'a', from: 'open', to: 'half-open', at: 104 },
        c: { type: 'state-change', scope: 'model', target: 'a', from: 'half-open', to: 'closed', at: 106 },
      });

      // r1 at 0 opens it; r2 (at 50) and r3 (at 103) go straight to b; r4 (at 104) probes a, so
      // r5 (at 105, the probe still in flight) goes to b as well.
      const requests$ = cold('r 49ms s 52ms t u (v|)', {
        r: request('r1'),
        s: request('r2'),
        t: request('r3'),
        u: request('r4'),
        v: request('r5'),
      });
      expectObservable(requests$.pipe(balance(pool, options))).toBe('10ms w 41ms x 52ms y z (v|)', {
        w: completed('b', 3, 10, 'r1', 'gen-b-1'),
        x: completed('b', 1, 2, 'r2', 'gen-b-2'),
        y: completed('b', 1, 2, 'r3', 'gen-b-3'),
        z: completed('a', 1, 2, 'r4', 'gen-a-4'),
        v: completed('b', 1, 2, 'r5', 'gen-b-5'),
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe('---^!');
      expectSubscriptions(b1.subscriptions).toBe('--------^-!');
      expectSubscriptions(b2.subscriptions).toBe('50ms ^-!');
      expectSubscriptions(b3.subscriptions).toBe('103ms ^-!');
      expectSubscriptions(a3.subscriptions).toBe('104ms ^-!');
      expectSubscriptions(b4.subscriptions).toBe('105ms ^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['a', 3],
        ['b', 8],
        ['b', 50],
        ['b', 103],
        ['a', 104],
        ['b', 105],
      ]);
    });
  });

  it('a failed half-open probe re-opens it with a doubled cooldown (until 305): the probing request moves to b, later ones skip a', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, expectObservable, expectSubscriptions, flush }) => {
      const a1 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a2 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const a3 = cold<TransportEvent>('-#', undefined, providerUnavailable());
      const b1 = cold('--(c|)', { c: done('b', 'gen-b-1') });
      const b2 = cold('--(c|)', { c: done('b', 'gen-b-2') });
      const b3 = cold('--(c|)', { c: done('b', 'gen-b-3') });
      const { pool, calls } = makePool(
        scheduler,
        { a: [a1, a2, a3], b: [b1, b2, b3] },
        { modelBreaker: { consecutiveFailures: 2, cooldownMs: 100 } },
      );

      const states$ = pool.model('a').health$.pipe(
        map((health) => [health.state, health.cooldownUntil] as const),
        distinctUntilChanged((x, y) => x[0] === y[0] && x[1] === y[1]),
      );
      expectObservable(states$, '^ 400ms !').toBe('c 3ms o 99ms h p 199ms q', {
        c: ['closed', null],
        o: ['open', 104],
        h: ['half-open', null],
        p: ['open', 305],
        q: ['half-open', null],
      });
      expectObservable(eventsOf(pool, 'fallback'), '^ 400ms !').toBe('8ms f 98ms g', {
        f: { type: 'fallback', requestId: 'r1', from: 'a', to: 'b', reason: 'upstream', at: 8 },
        g: { type: 'fallback', requestId: 'r2', from: 'a', to: 'b', reason: 'upstream', at: 107 },
      });

      // r2 probes a at 104; the probe fails at 105 and r2 is retried at 107, on b.
      const requests$ = cold('r 103ms s 95ms (t|)', { r: request('r1'), s: request('r2'), t: request('r3') });
      expectObservable(requests$.pipe(balance(pool, options))).toBe('10ms w 98ms x 92ms (y|)', {
        w: completed('b', 3, 10, 'r1', 'gen-b-1'),
        x: completed('b', 2, 5, 'r2', 'gen-b-2'),
        y: completed('b', 1, 2, 'r3', 'gen-b-3'),
      });
      expectSubscriptions(a3.subscriptions).toBe('104ms ^!');
      expectSubscriptions(b2.subscriptions).toBe('107ms ^-!');
      expectSubscriptions(b3.subscriptions).toBe('200ms ^-!');
      flush();
      expect(calls.map((call) => [call.model, call.at])).toEqual([
        ['a', 0],
        ['a', 3],
        ['b', 8],
        ['a', 104],
        ['b', 107],
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
        f: { type: 'failed', requestId: 'r1', error, attempts: [{ attempt: 0, kind: 'context_length', message: error.message, at: 0 }] },
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
        f: {
          type: 'failed',
          requestId: 'r1',
          error: tagged(refused(), 'c', true),
          attempts: [
            { attempt: 1, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 1, keyLabel: 'k1', model: 'a' },
            { attempt: 2, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 2, keyLabel: 'k1', model: 'b' },
            { attempt: 3, kind: 'content_policy', message: 'flagged by moderation', status: 403, at: 3, keyLabel: 'k1', model: 'c' },
          ],
        },
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
        f: {
          type: 'failed',
          requestId: 'r1',
          error: tagged(invalid(), 'a'),
          attempts: [
            { attempt: 1, kind: 'bad_request', message: 'temperature: must be at most 2', status: 400, at: 1, keyLabel: 'k1', model: 'a' },
          ],
        },
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
        f: {
          type: 'failed',
          requestId: 'r1',
          error: tagged(invalid(), 'a', true),
          attempts: [
            { attempt: 1, kind: 'bad_request', message: 'temperature: must be at most 2', status: 400, at: 1, keyLabel: 'k1', model: 'a' },
          ],
        },
      });
      expectSubscriptions(a1.subscriptions).toBe('^!');
      expectSubscriptions(a2.subscriptions).toBe([]);
      flush();
      expect(calls).toHaveLength(1);
    });
  });
});
