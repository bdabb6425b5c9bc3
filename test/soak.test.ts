/**
 * A bounded soak of the core guarantees (issue #10): a few thousand requests through `balance`
 * and single calls, over the real SDK and the fake OpenRouter, with faults that change as the run
 * goes (5xx, resets, cut and hanging streams, bodies that never end), a dead model and a misspelt
 * one without fallback, and random unsubscribes, some of them after the response headers arrived.
 *
 * It asserts: one terminal event per request (none after an unsubscribe); no unhandled rejection;
 * healthy requests answered while the dead and misspelt ones fail; no timer beyond Node's limit;
 * nothing in flight or queued at the end; and no timer or socket left after `dispose()`.
 */
import { from, type Subscription } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { OpenRouterError, balance, createKeyPool, type BalanceEvent, type ChatRequest } from '../src/index.js';
import { startFakeOpenRouter, type FakeFault } from '../src/testing/index.js';
import { seededRandom } from './helpers/seeded-random.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { NODE_TIMER_LIMIT_MS, watchTimers } from './helpers/timer-watch.js';

const REQUESTS = 2_400;
const SINGLE_CALLS = 600;

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
  { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
  { key: TEST_KEYS.timeouts1, label: 'gamma', account: 'acct-c' },
  { key: TEST_KEYS.gating1, label: 'delta', account: 'acct-d' },
];

const HEALTHY = ['healthy/a', 'healthy/b'];
const DEAD = 'dead/model';
const MISSPELT = 'misspelt/model';
const HANGING = 'hanging/model';
/** Requests a healthy model answers between two fault sets (see the shifter). */
const TRAFFIC_PER_FAULT_SET = 10;

/** Fault sets the healthy models cycle through; each spends its `times` and then answers. */
const FAULT_SETS: FakeFault[][] = [
  [],
  [{ type: 'status', status: 500, times: 2 }],
  [{ type: 'reset', times: 2 }],
  [{ type: 'cut', afterChunks: 1, times: 2 }],
  [{ type: 'in-band-error', afterChunks: 0, times: 2 }],
  [{ type: 'rate-limit', retryAfterSeconds: 0, providerName: 'Acme', times: 1 }],
  [{ type: 'missing-done', ending: 'close', times: 2 }],
];

/** Node's active handles of the kinds a leak would show as, by kind. */
function activeHandles(): { Timeout: number; TCPSocketWrap: number } {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return { Timeout: counts['Timeout'] ?? 0, TCPSocketWrap: counts['TCPSocketWrap'] ?? 0 };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('soak', () => {
  it(`${REQUESTS} requests and ${SINGLE_CALLS} single calls under shifting faults and random unsubscribes`, async () => {
    const random = seededRandom(20261203);
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    const timers = watchTimers();

    const handlesBefore = activeHandles();
    const fake = await startFakeOpenRouter({
      keys: KEYS,
      keepAliveIntervalMs: 20,
      defaultModel: { chunkCount: 4, chunkGapMs: 1 },
      models: {
        [DEAD]: { faults: [{ type: 'status', status: 503 }] },
        [MISSPELT]: { faults: [{ type: 'status', status: 404, message: `No endpoints found for ${MISSPELT}.` }] },
        // Headers and part of the body, then nothing: only a timeout or an unsubscribe ends it.
        [HANGING]: { faults: [{ type: 'missing-done', ending: 'hang' }] },
      },
    });
    const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, keyInfo: () => Promise.reject(new Error('not polled here')) });
    // Generous for two shared cores: a timeout counts against its model, and under this load a
    // slow answer must not pass for a dead model.
    const timeouts = { totalMs: 3_000, firstTokenMs: 2_000, idleMs: 1_000 };
    // Longer than a model breaker's first cooldown (5 s) and its probe, as the default 60 s is: a
    // healthy model whose breaker the faults open under this load is waited for, not given up on
    // the moment it half-opens. The dead model's breaker stays open longer, so its requests still fail.
    const modelWaitMs = 12_000;

    try {
      // Faults shift while the run goes on, with the traffic: a model's next set is armed once it
      // has answered TRAFFIC_PER_FAULT_SET requests since the last, so a healthy model fails at
      // most 2 in 10 of its requests. Re-armed on the clock instead, a model nobody sends to (its
      // breaker open) would meet each probe with a fresh fault: it would fail every request that
      // comes one at a time, which is a broken model, not a healthy one.
      const requestsAtShift = new Map<string, number>();
      const shifter = setInterval(() => {
        for (const model of HEALTHY) {
          const served = fake.countRequests({ model });
          if (served < (requestsAtShift.get(model) ?? 0)) continue;
          requestsAtShift.set(model, served + TRAFFIC_PER_FAULT_SET);
          fake.setFaults(model, FAULT_SETS[Math.floor(random() * FAULT_SETS.length)]!);
        }
      }, 200);

      const modelOf = (roll: number): Pick<ChatRequest, 'model' | 'models'> => {
        if (roll < 0.1) return { model: DEAD };
        if (roll < 0.2) return { model: MISSPELT };
        if (roll < 0.22) return { model: HANGING };
        if (roll < 0.3) return { model: DEAD, models: [HEALTHY[0]!] };
        return { model: HEALTHY[Math.floor(roll * 100) % 2]! };
      };
      const requests: ChatRequest[] = Array.from({ length: REQUESTS }, (_, index) => ({
        id: `b${index}`,
        ...modelOf(random()),
        stream: random() < 0.5,
        messages: [{ role: 'user', content: `prompt ${index}` }],
      }));

      // 1. A stream of requests through balance: each gets exactly one terminal event.
      const byRequest = new Map<string, BalanceEvent[]>();
      const balanced = new Promise<void>((resolve, reject) => {
        from(requests)
          .pipe(balance(pool, { concurrency: 24, timeouts, modelWaitMs }))
          .subscribe({
            next: (event) => {
              const seen = byRequest.get(event.requestId) ?? [];
              seen.push(event);
              byRequest.set(event.requestId, seen);
            },
            error: reject,
            complete: resolve,
          });
      });

      // 2. Single calls, a third of them unsubscribed at a random moment (often after the headers).
      const singles = Array.from({ length: SINGLE_CALLS }, (_, index) => {
        const request: ChatRequest = { ...modelOf(random()), messages: [{ role: 'user', content: `single ${index}` }] };
        const streamed = random() < 0.5;
        const abandonAfterMs = random() < 0.35 ? Math.floor(random() * 40) : undefined;
        // Spread over the run's first seconds, as a server's calls would be.
        const startAfterMs = Math.floor(random() * 3_000);
        const model = request.models === undefined ? request.model! : 'with fallback';
        return new Promise<{ outcome: 'completed' | 'failed' | 'abandoned'; model: string; extra: number }>((resolve) =>
          setTimeout(() => {
            let outcome: 'completed' | 'failed' | undefined;
            let extra = 0;
            let abandoned = false;
            const call$ = streamed ? pool.stream(request, { timeouts, modelWaitMs }) : pool.complete(request, { timeouts, modelWaitMs });
            const subscription: Subscription = call$.subscribe({
              next: () => {
                if (abandoned) extra++;
              },
              error: (error: unknown) => {
                if (abandoned || outcome !== undefined) extra++;
                expect(error).toBeInstanceOf(OpenRouterError);
                outcome = 'failed';
                resolve({ outcome, model, extra });
              },
              complete: () => {
                if (abandoned || outcome !== undefined) extra++;
                outcome = 'completed';
                resolve({ outcome, model, extra });
              },
            });
            if (abandonAfterMs !== undefined) {
              setTimeout(() => {
                if (outcome !== undefined) return;
                abandoned = true;
                subscription.unsubscribe();
                // Anything that still arrives would show in `extra`.
                setTimeout(() => resolve({ outcome: 'abandoned', model, extra }), 50);
              }, abandonAfterMs);
            }
          }, startAfterMs),
        );
      });

      const [, singleResults] = await Promise.all([balanced, Promise.all(singles)]);
      clearInterval(shifter);

      // Exactly one terminal event per request, and it is the last of its events.
      expect(byRequest.size).toBe(REQUESTS);
      const outcomes = { healthy: { completed: 0, failed: 0 }, dead: 0, misspelt: 0 };
      for (const request of requests) {
        const events = byRequest.get(request.id!)!;
        const terminals = events.filter((event) => event.type === 'completion' || event.type === 'failed');
        expect(terminals, request.id).toHaveLength(1);
        expect(events.at(-1)).toBe(terminals[0]);
        const terminal = terminals[0]!;
        if (request.model === DEAD && request.models === undefined) {
          expect(terminal.type, `${request.id} on the dead model`).toBe('failed');
          outcomes.dead++;
        } else if (request.model === MISSPELT) {
          // A 404 never opens the model's breaker, but under this load a 404 can come later than
          // `totalMs`, and timeouts do count against the model.
          expect(terminal.type, `${request.id} on the misspelt model`).toBe('failed');
          if (terminal.type === 'failed' && terminal.error.kind === 'not_found') outcomes.misspelt++;
        } else if (request.model !== HANGING) {
          outcomes.healthy[terminal.type === 'completion' ? 'completed' : 'failed']++;
        }
      }
      // Healthy requests get through the shifting faults while the dead ones fail.
      expect(outcomes.dead).toBeGreaterThan(100);
      expect(outcomes.misspelt).toBeGreaterThan(0);
      expect(outcomes.healthy.completed / (outcomes.healthy.completed + outcomes.healthy.failed)).toBeGreaterThan(0.85);

      // Single calls: one outcome each, nothing after an unsubscribe, every dead one failed.
      expect(singleResults.every((result) => result.extra === 0)).toBe(true);
      expect(singleResults.filter((result) => result.outcome === 'abandoned').length).toBeGreaterThan(50);
      expect(singleResults.some((result) => result.model === DEAD && result.outcome === 'completed')).toBe(false);
      expect(singleResults.filter((result) => HEALTHY.includes(result.model) && result.outcome === 'completed').length).toBeGreaterThan(
        100,
      );
      // Some non-streamed calls were abandoned with their headers in (the hanging model's body never ends).
      // How many reach the server within their 0-40 ms depends on the machine's load: 65-103 in runs
      // of this file alone, 13 and 18 in runs of the whole suite.
      expect(fake.abortedConnections).toBeGreaterThan(5);

      // Nothing in flight, nothing queued.
      await sleep(100);
      const health = pool.snapshot();
      expect(health.queued).toBe(0);
      for (const key of health.keys) expect(key.inFlight, key.label).toBe(0);
      for (const model of health.models) expect(model.inFlight, model.model).toBe(0);
      expect(rejections).toEqual([]);
      expect(Math.max(...timers.delays)).toBeLessThanOrEqual(NODE_TIMER_LIMIT_MS);
      expect(timers.warnings).toEqual([]);
    } finally {
      pool.dispose();
      await fake.close();
      process.off('unhandledRejection', onRejection);
      timers.stop();
    }

    // No timer or socket outlives the pool and the server.
    await sleep(200);
    const handlesAfter = activeHandles();
    expect(handlesAfter.Timeout).toBeLessThanOrEqual(handlesBefore.Timeout);
    expect(handlesAfter.TCPSocketWrap).toBeLessThanOrEqual(handlesBefore.TCPSocketWrap);
    expect(rejections).toEqual([]);
  }, 90_000);
});
