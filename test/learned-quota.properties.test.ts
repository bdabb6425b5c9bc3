/**
 * Property: a pool told no limit, in front of a server that admits L requests per sliding window
 * of W per key and answers the rest with a platform 429 (`X-RateLimit-Limit`, `-Reset`), learns
 * the limit from the first 429 and from then on never sends a key more than L requests in any
 * window of W: no request sent after a key's limit was learned is refused. A key whose limit is
 * assumed from another key's (one request looser) is refused at most one request sent after
 * the assumption before it learns its own. And every request still gets exactly one terminal
 * event, completed. Virtual time, seeded randomness, fast-check
 * drawing the limit, the window, the answer time, the trip, the keys and the demand.
 */
import fc from 'fast-check';
import { Observable, filter, from } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import {
  RateLimitError,
  balance,
  createPool,
  type BalanceEvent,
  type ChatRequest,
  type Transport,
  type TransportEvent,
} from '../src/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { seededRandom } from './helpers/seeded-random.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 60);
const SEED = Number(process.env['PROPERTY_SEED'] ?? 20_261_203);
const KEYS = [TEST_KEYS.prop1, TEST_KEYS.prop2, TEST_KEYS.prop3];

interface Scenario {
  limit: number;
  windowMs: number;
  latencyMs: number;
  /** From the transport's send to the server's count; within the pool's 20 ms send margin. */
  tripMs: number;
  keys: number;
  concurrency: number;
  requests: number;
  seed: number;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    limit: fc.integer({ min: 2, max: 12 }),
    windowMs: fc.constantFrom(1_000, 2_000, 5_000, 10_000, 60_000),
    latencyFraction: fc.double({ min: 0.001, max: 0.5, noNaN: true }),
    tripMs: fc.integer({ min: 0, max: 20 }),
    keys: fc.integer({ min: 1, max: 3 }),
    concurrency: fc.integer({ min: 1, max: 48 }),
    demand: fc.integer({ min: 2, max: 5 }),
    seed: fc.integer({ min: 1, max: 2 ** 30 }),
  })
  .map(({ latencyFraction, demand, ...rest }) => ({
    ...rest,
    latencyMs: Math.max(1, Math.round(rest.windowMs * latencyFraction)),
    requests: rest.limit * rest.keys * demand,
  }));

interface Send {
  label: string;
  sentAt: number;
  refused: boolean;
}

function run(scenario: Scenario) {
  const scheduler = new TestScheduler(() => undefined);
  scheduler.maxFrames = 3_600_000;
  const admissions = new Map<string, number[]>();
  const sends: Send[] = [];
  const learnedAt = new Map<string, number>();
  const assumedAt = new Map<string, number>();
  const events: BalanceEvent[] = [];
  let completed = false;

  // The server: a sliding window per key, counting a request when it arrives.
  const transport: Transport = (key, _request, options) =>
    new Observable<TransportEvent>((subscriber) => {
      options?.onSent?.();
      const sentAt = scheduler.now();
      const arrival = scheduler.schedule(() => {
        const now = scheduler.now();
        const admitted = (admissions.get(key.label) ?? []).filter((at) => at > now - scenario.windowMs);
        admissions.set(key.label, admitted);
        if (admitted.length >= scenario.limit) {
          sends.push({ label: key.label, sentAt, refused: true });
          const resetAt = admitted[admitted.length - scenario.limit]! + scenario.windowMs;
          subscriber.error(
            new RateLimitError({
              message: '429 Rate limit exceeded: requests-per-key',
              scope: 'key',
              retryable: true,
              status: 429,
              retryAfterMs: resetAt - now,
              rateLimit: { limit: scenario.limit, remaining: 0, resetAfterMs: resetAt - now, bucket: 'requests-per-key' },
            }),
          );
          return;
        }
        admitted.push(now);
        sends.push({ label: key.label, sentAt, refused: false });
        answer.add(
          scheduler.schedule(() => {
            subscriber.next({
              type: 'completion',
              completion: { id: 'gen', model: 'test/m', content: 'ok', finishReason: 'stop', raw: null },
            });
            subscriber.complete();
          }, scenario.latencyMs),
        );
      }, scenario.tripMs);
      const answer = arrival;
      return () => arrival.unsubscribe();
    });

  scheduler.run(() => {
    const pool = createPool({
      keys: KEYS.slice(0, scenario.keys).map((key, index) => ({ key, label: `k${index + 1}` })),
      transport,
      scheduler,
      random: seededRandom(scenario.seed),
      learning: { reprobeAfterMs: 1e9 },
    });
    pool.events$.pipe(filter((event) => event.type === 'limit-learned')).subscribe((event) => {
      const label = event.target.slice('key:'.length);
      const firsts = event.cause === 'assumed' ? assumedAt : learnedAt;
      if (!firsts.has(label)) firsts.set(label, event.at);
    });
    const requests: ChatRequest[] = Array.from({ length: scenario.requests }, (_, index) => ({
      id: `r${index}`,
      model: 'test/m',
      messages: [{ role: 'user', content: `q${index}` }],
    }));
    from(requests)
      .pipe(balance(pool, { concurrency: scenario.concurrency, rateLimit: { maxAttempts: 1_000, maxWaitMs: 3_600_000 } }))
      .subscribe({ next: (event) => events.push(event), complete: () => (completed = true) });
  });
  return { sends, learnedAt, assumedAt, events, completed };
}

describe('learned quotas (property)', () => {
  it('after a key learns its limit it is never refused again, and every request completes', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { sends, learnedAt, assumedAt, events, completed } = run(scenario);
        expect(completed).toBe(true);
        const terminals = events.filter((event) => event.type === 'completion' || event.type === 'failed');
        expect(terminals.filter((event) => event.type === 'completion')).toHaveLength(scenario.requests);
        expect(new Set(terminals.map((event) => event.requestId)).size).toBe(scenario.requests);
        for (const send of sends) {
          const learned = learnedAt.get(send.label);
          if (send.refused && learned !== undefined && send.sentAt > learned) {
            if (process.env['DEBUG_LEARN']) console.log(JSON.stringify(sends.filter((other) => other.label === send.label)));
            throw new Error(`${send.label} sent at ${send.sentAt} was refused after learning its limit at ${learned}`);
          }
        }
        for (const [label, assumed] of assumedAt) {
          const learned = learnedAt.get(label) ?? Infinity;
          const refusedMeanwhile = sends.filter(
            (send) => send.label === label && send.refused && send.sentAt > assumed && send.sentAt <= learned,
          );
          expect(refusedMeanwhile.length, `${label}: refused after its limit was assumed at ${assumed}`).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
