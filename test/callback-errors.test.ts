/**
 * A user callback that throws where the library handles an error (a `circuitBreaker` predicate,
 * a retry policy's `random`) fails only what it was deciding about: the request gets its terminal
 * event, the stream goes on, and nothing reaches rxjs's unhandled-error hook (which Node would
 * turn into an uncaught exception).
 */
import { catchError, config as rxConfig, from, lastValueFrom, map, mergeMap, of, throwError, timeout, timer, toArray } from 'rxjs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { UpstreamError } from '../src/core/errors.js';
import type { ChatRequest, Transport, TransportEvent } from '../src/core/types.js';
import type { KeyHealth } from '../src/health/records.js';
import { createPool } from '../src/create-pool.js';
import { balance, type BalanceEvent } from '../src/operators/balance.js';
import { circuitBreaker } from '../src/operators/circuit-breaker.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';

const unhandled: unknown[] = [];
const previousHook = rxConfig.onUnhandledError;
rxConfig.onUnhandledError = (error) => unhandled.push(error);
afterEach(() => {
  unhandled.length = 0;
});
afterAll(() => {
  rxConfig.onUnhandledError = previousHook;
});

const upstream = () => new UpstreamError({ message: 'provider returned 503', scope: 'model', retryable: true, status: 503 });
/** Model `a` always fails (503), model `b` answers. */
const transport: Transport = (_key, request) =>
  request.model === 'a'
    ? timer(5).pipe(mergeMap(() => throwError(() => upstream())))
    : timer(5).pipe(
        map((): TransportEvent => ({
          type: 'completion',
          completion: { id: 'g', model: 'b', content: 'ok', finishReason: 'stop', raw: null },
        })),
      );
const requestFor = (id: string, model: string): ChatRequest => ({ id, model, messages: [{ role: 'user', content: id }] });
const KEY = { key: 'sk-test-callback', label: 'k1' };

describe('a user callback that throws while an error is handled', () => {
  it("circuitBreaker's shouldRecord: the attempt errors, the key is freed, nothing is unhandled", async () => {
    const pool = createPool({ keys: [KEY], transport });
    const outcome = await lastValueFrom(
      of(requestFor('r1', 'a')).pipe(
        withKeyRotation(pool),
        circuitBreaker(pool, {
          shouldRecord: () => {
            throw new Error('predicate exploded');
          },
        }),
        toArray(),
        map(() => 'completed'),
        catchError((error: unknown) => of(`error ${String(error)}`)),
        timeout({ first: 500, with: () => of('hung') }),
      ),
    );
    const inFlight = pool.snapshot().keys[0]!.inFlight;
    pool.dispose();
    expect({ outcome, inFlight, unhandled: unhandled.map(String) }).toEqual({
      outcome: expect.stringMatching(/^error/),
      inFlight: 0,
      unhandled: [],
    });
  });

  it("a transient retry policy's random: only its request fails, the stream completes, nothing is unhandled", async () => {
    const pool = createPool({ keys: [KEY], transport });
    const events = await lastValueFrom(
      from([requestFor('r1', 'a'), requestFor('r2', 'b')]).pipe(
        balance(pool, {
          transient: {
            budget: false,
            random: () => {
              throw new Error('random exploded');
            },
          },
        }),
        toArray(),
        timeout({ first: 500, with: () => of<BalanceEvent[] | 'hung'>('hung') }),
      ),
    );
    pool.dispose();
    const summary =
      events === 'hung'
        ? 'hung'
        : events
            .filter((event) => event.type !== 'chunk')
            .map((event) => `${event.requestId} ${event.type}`)
            .sort();
    expect({ summary, unhandled: unhandled.map(String) }).toEqual({ summary: ['r1 failed', 'r2 completion'], unhandled: [] });
  });
});

describe('a user callback that throws while a request is placed', () => {
  /** Each request's terminal event through `balance`, and what the transport was asked. */
  async function outcomes(options: Parameters<typeof balance>[1]): Promise<{ failed: string[]; sent: string[] }> {
    const sent: string[] = [];
    const counting: Transport = (key, request, hooks) => {
      sent.push(request.messages[0]!.content as string);
      return transport(key, request, hooks);
    };
    const pool = createPool({ keys: [KEY], transport: counting });
    const events = await lastValueFrom(from([requestFor('r1', 'b'), requestFor('boom', 'b')]).pipe(balance(pool, options), toArray()));
    pool.dispose();
    const failed = events.flatMap((event) =>
      event.type === 'failed' ? [`${event.requestId} ${event.error.name} ${event.error.scope} ${event.error.message}`] : [],
    );
    return { failed, sent };
  }

  it('priority: that request fails at once with a ConfigurationError naming the callback, untried and unretried', async () => {
    const priority = (request: ChatRequest) => {
      if (request.id === 'boom') throw new Error('priority exploded');
      return 0;
    };
    expect(await outcomes({ priority })).toEqual({
      failed: ['boom ConfigurationError request priority threw: priority exploded'],
      sent: ['r1'],
    });
    expect(unhandled).toEqual([]);
  });

  it('a strategy: that request fails at once with a ConfigurationError, and is not retried', async () => {
    const strategy = (eligible: readonly KeyHealth[], request: ChatRequest) => {
      if (request.id === 'boom') throw new Error('strategy exploded');
      return eligible[0];
    };
    expect(await outcomes({ strategy })).toEqual({
      failed: ['boom ConfigurationError request the strategy threw: strategy exploded'],
      sent: ['r1'],
    });
    expect(unhandled).toEqual([]);
  });
});

describe('a transport that returns no Observable', () => {
  it.each([
    ['an async function (a Promise)', (async () => ({ type: 'completion' })) as unknown as Transport, 'a Promise'],
    ['an async function that rejects', (async () => Promise.reject(new Error('network down'))) as unknown as Transport, 'a Promise'],
    ['nothing', (() => undefined) as unknown as Transport, 'undefined'],
  ])(
    '%s: every request fails with a ConfigurationError that says so, nothing is unhandled, no key is blamed or held',
    async (_case, broken, what) => {
      const pool = createPool({ keys: [KEY], transport: broken });
      const events = await lastValueFrom(
        from([requestFor('r1', 'b'), requestFor('r2', 'b')]).pipe(
          balance(pool),
          toArray(),
          timeout({ first: 2_000, with: () => of('hung' as const) }),
        ),
      );
      // A rejection left unhandled would surface here, after the request has failed.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const key = pool.snapshot().keys[0]!;
      pool.dispose();
      expect(events).not.toBe('hung');
      const failures = (events as BalanceEvent[]).flatMap((event) => (event.type === 'failed' ? [event.error] : []));
      expect(failures).toHaveLength(2);
      for (const error of failures) {
        expect(error).toMatchObject({ name: 'ConfigurationError', scope: 'request', retryable: false });
        expect(error.message).toContain(`the transport returned ${what}, not an Observable`);
      }
      expect({ inFlight: key.inFlight, state: key.state, failures: key.failures, unhandled: unhandled.map(String) }).toEqual({
        inFlight: 0,
        state: 'closed',
        failures: 0,
        unhandled: [],
      });
    },
  );
});
