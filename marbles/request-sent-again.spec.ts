import { describe, expect, it } from 'vitest';
import { of } from 'rxjs';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { retryOnRateLimit } from '../src/operators/retry-on-rate-limit.js';
import { circuitBreaker } from '../src/operators/circuit-breaker.js';
import type { AttemptsExhaustedError } from '../src/core/errors.js';
import type { TransportEvent } from '../src/core/types.js';
import {
  chatRequest,
  completionEvent,
  fixedBackoffRetry,
  newTestScheduler,
  rateLimitError,
  scriptedPoolFactory,
  upstreamError,
} from './support.js';

const makePool = scriptedPoolFactory([{ key: 'sk-test-1', label: 'k1', limits: { maxConcurrent: 1 } }], { by: 'content' });

/**
 * The same request object sent again through a chain composed by hand, after the pool refused it or
 * its caller left it: a request of its own in the line (the queue's place, its bound, the attempts
 * listed when it gives up), while a retry of this library goes on where the request was.
 */
describe('a request object sent again after the pool refused it', () => {
  it('after a queue timeout, it joins the line behind the request queued since', () => {
    const scheduler = newTestScheduler();
    const order: string[] = [];
    const errors: string[] = [];
    scheduler.run(({ cold }) => {
      const answer = (content: string, ms: number) => cold<TransportEvent>(`${ms}ms (c|)`, { c: completionEvent(content) });
      const { pool } = makePool(scheduler, { h: [answer('h', 350)], l: [answer('l', 10)], x: [answer('x', 10)] });
      pool.events$.subscribe((event) => {
        if (event.type === 'attempt') order.push(`${event.requestId}@${event.at}`);
      });
      const short = withKeyRotation(pool, { queueTimeoutMs: 100 });
      const plain = withKeyRotation(pool);
      const x = chatRequest('x', { id: 'x' });
      of(chatRequest('h', { id: 'h' }))
        .pipe(plain)
        .subscribe();
      of(x)
        .pipe(short)
        .subscribe({ error: (e: { kind: string }) => errors.push(`${e.kind}@${scheduler.now()}`) });
      scheduler.schedule(
        () =>
          of(chatRequest('l', { id: 'l' }))
            .pipe(plain)
            .subscribe(),
        200,
      );
      scheduler.schedule(
        () =>
          of(x)
            .pipe(short)
            .subscribe({ error: (e: { kind: string }) => errors.push(`again ${e.kind}@${scheduler.now()}`) }),
        300,
      );
    });
    expect(errors).toEqual(['queue_timeout@100']);
    // l (queued at 200) before x (sent again at 300).
    expect(order).toEqual(['h@0', 'l@350', 'x@360']);
  });

  it.each([
    ['the same object', true],
    ['a new object, as a control', false],
  ] as const)('after a full queue refused it, sent again at once as %s, it is refused again (queue.maxSize)', (_case, sameObject) => {
    const scheduler = newTestScheduler();
    const errors: string[] = [];
    scheduler.run(({ cold }) => {
      const answer = (content: string, ms: number) => cold<TransportEvent>(`${ms}ms (c|)`, { c: completionEvent(content) });
      const { pool } = makePool(
        scheduler,
        { h: [answer('h', 1000)], y: [answer('y', 10)], x: [answer('x', 10)] },
        { queue: { maxSize: 1 } },
      );
      const rotation = withKeyRotation(pool);
      const x = chatRequest('x', { id: 'x' });
      of(chatRequest('h', { id: 'h' }))
        .pipe(rotation)
        .subscribe();
      of(chatRequest('y', { id: 'y' }))
        .pipe(rotation)
        .subscribe();
      for (const at of [10, 20])
        scheduler.schedule(
          () =>
            of(sameObject ? x : chatRequest('x', { id: 'x' }))
              .pipe(rotation)
              .subscribe({ error: (e: { kind: string }) => errors.push(`${e.kind}@${scheduler.now()}`) }),
          at,
        );
    });
    expect(errors).toEqual(['queue_full@10', 'queue_full@20']);
  });

  it('after its retry was refused by the queue timeout: giving up lists only the attempts of its own run', () => {
    const scheduler = newTestScheduler();
    let first: unknown;
    let caught: unknown;
    scheduler.run(({ cold }) => {
      const { pool } = makePool(scheduler, {
        x: [cold<TransportEvent>('20ms #', undefined, upstreamError(503))],
        h: [cold<TransportEvent>('1500ms (c|)', { c: completionEvent('h') })],
      });
      const short = withKeyRotation(pool, { queueTimeoutMs: 100 });
      const plain = withKeyRotation(pool);
      const transient = fixedBackoffRetry(scheduler, 600, { maxAttempts: 2 });
      const x = chatRequest('x', { id: 'x' });
      of(x)
        .pipe(short, transient)
        .subscribe({ error: (error: unknown) => (first = error) });
      scheduler.schedule(
        () =>
          of(chatRequest('h', { id: 'h' }))
            .pipe(plain)
            .subscribe(),
        500,
      );
      scheduler.schedule(
        () =>
          of(x)
            .pipe(short, transient)
            .subscribe({ error: (error: unknown) => (caught = error) }),
        3_000,
      );
    });
    expect((first as { kind: string }).kind).toBe('queue_timeout');
    const exhausted = caught as AttemptsExhaustedError;
    expect(exhausted.message).toMatch(/^gave up after 2 attempts: /);
    expect(exhausted.attempts.map((record) => record.at)).toEqual([3_020, 3_639]);
  });
});

describe('a retry and queue.maxSize', () => {
  const twoKeys = scriptedPoolFactory([
    { key: 'sk-test-1', label: 'k1', limits: { maxConcurrent: 1 } },
    { key: 'sk-test-2', label: 'k2', limits: { maxConcurrent: 1 } },
  ]);
  for (const failAt of [0, 1]) {
    it(`a retry after a 429 drawn at ${failAt} ms is in line already: a full queue does not refuse it`, () => {
      const scheduler = newTestScheduler();
      const errors: string[] = [];
      const order: string[] = [];
      scheduler.run(({ cold }) => {
        const { pool } = twoKeys(
          scheduler,
          {
            k1: [
              cold<TransportEvent>('1000ms (c|)', { c: completionEvent('h') }),
              cold<TransportEvent>('10ms (c|)', { c: completionEvent('k1') }),
            ],
            k2: [
              cold<TransportEvent>(`${failAt}ms #`, undefined, rateLimitError(200_000)),
              cold<TransportEvent>('10ms (c|)', { c: completionEvent('k2') }),
            ],
          },
          { queue: { maxSize: 1 } },
        );
        pool.events$.subscribe((event) => {
          if (event.type === 'attempt') order.push(`${event.requestId}:${event.keyLabel}@${event.at}`);
        });
        const rotation = withKeyRotation(pool);
        const breaker = circuitBreaker(pool);
        of(chatRequest('h', { id: 'h' }))
          .pipe(rotation)
          .subscribe();
        of(chatRequest('x', { id: 'x' }))
          .pipe(rotation, breaker, retryOnRateLimit({ scheduler }))
          .subscribe({ error: (e: { kind: string }) => errors.push(`${e.kind}@${scheduler.now()}`) });
        of(chatRequest('y', { id: 'y' }))
          .pipe(rotation)
          .subscribe({ error: (e: { kind: string }) => errors.push(`y ${e.kind}@${scheduler.now()}`) });
      });
      expect(errors).toEqual([]);
      expect(order.slice(0, 2)).toEqual(['h:k1@0', 'x:k2@0']);
    });
  }
});

describe('a request object sent again after its caller left it', () => {
  it('left while its retry waited in the queue, sent again, it queues behind the request that came before', () => {
    const scheduler = newTestScheduler();
    const order: string[] = [];
    scheduler.run(({ cold }) => {
      const { pool } = makePool(scheduler, {
        x: [cold<TransportEvent>('20ms #', undefined, upstreamError(503)), cold<TransportEvent>('10ms (c|)', { c: completionEvent('x') })],
        h: [cold<TransportEvent>('1000ms (c|)', { c: completionEvent('h') })],
        l: [cold<TransportEvent>('10ms (c|)', { c: completionEvent('l') })],
      });
      pool.events$.subscribe((event) => {
        if (event.type === 'attempt') order.push(`${event.requestId}@${event.at}`);
      });
      const rotation = withKeyRotation(pool);
      const transient = fixedBackoffRetry(scheduler, 100);
      const x = chatRequest('x', { id: 'x' });
      const first = of(x)
        .pipe(rotation, transient)
        .subscribe({ error: () => undefined });
      scheduler.schedule(
        () =>
          of(chatRequest('h', { id: 'h' }))
            .pipe(rotation)
            .subscribe(),
        50,
      );
      scheduler.schedule(() => first.unsubscribe(), 300);
      scheduler.schedule(
        () =>
          of(chatRequest('l', { id: 'l' }))
            .pipe(rotation)
            .subscribe(),
        400,
      );
      scheduler.schedule(
        () =>
          of(x)
            .pipe(rotation, transient)
            .subscribe({ error: () => undefined }),
        500,
      );
    });
    expect(order).toEqual(['x@0', 'h@50', 'l@1050', 'x@1060']);
  });
});

describe('a request object sent again after retryOnRateLimit gave up', () => {
  it('gave up on maxWaitMs while queued; sent again, it queues behind the request that came before', () => {
    const scheduler = newTestScheduler();
    const order: string[] = [];
    const errors: string[] = [];
    scheduler.run(({ cold }) => {
      const { pool } = makePool(scheduler, {
        x: [
          cold<TransportEvent>('10ms #', undefined, rateLimitError(1_000)),
          cold<TransportEvent>('10ms (c|)', { c: completionEvent('x') }),
        ],
        l: [cold<TransportEvent>('10ms (c|)', { c: completionEvent('l') })],
      });
      pool.events$.subscribe((event) => {
        if (event.type === 'attempt') order.push(`${event.requestId}@${event.at}`);
      });
      const rotation = withKeyRotation(pool);
      const breaker = circuitBreaker(pool);
      const rl = retryOnRateLimit({ scheduler, maxWaitMs: 100 });
      const x = chatRequest('x', { id: 'x' });
      of(x)
        .pipe(rotation, breaker, rl)
        .subscribe({ error: (e: { kind: string }) => errors.push(`${e.kind}@${scheduler.now()}`) });
      scheduler.schedule(
        () =>
          of(chatRequest('l', { id: 'l' }))
            .pipe(rotation)
            .subscribe(),
        200,
      );
      scheduler.schedule(
        () =>
          of(x)
            .pipe(rotation, breaker, rl)
            .subscribe({ error: (e: { kind: string }) => errors.push(`again ${e.kind}@${scheduler.now()}`) }),
        300,
      );
    });
    expect(errors).toEqual(['attempts_exhausted@110']);
    // l (at 200) is served when the key frees at 1010, x (sent again at 300) after it.
    expect(order).toEqual(['x@0', 'l@1010', 'x@1020']);
  });
});
