/**
 * The client's own stalls are not the model's fault. A process whose event loop is blocked (a
 * long synchronous task, a garbage collection, a starved CPU) reads its sockets late: the answers
 * wait in the socket, or, with the fake server in the same process, are late by the stall. When the
 * loop runs again, Node fires the timers that fell due before it reads those sockets, so attempt
 * deadlines that count the stall fail answers that came in time, count timeouts against healthy
 * models and open their breakers. These runs block the process for longer than every attempt limit
 * while requests are in flight, and every request must complete at its first attempt.
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { balance, createKeyPool, type BalanceEvent, type ChatRequest } from '../src/index.js';
import { startFakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
  { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
];

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Blocks the event loop, as a long synchronous task does. */
function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

const timeouts = { firstTokenMs: 1_000, idleMs: 400, totalMs: 1_500 };

describe("the client's own stalls", () => {
  it.each([
    ['before the answers start', 300, 100, 1_800],
    ['while the streams flow', 40, 150, 1_800],
    ['twice', 40, 30, 1_000, 700],
  ])(
    '%s: every request completes at its first attempt, and no model is blamed',
    async (_name, latencyMs, firstAtMs, firstMs, secondMs?) => {
      const fake = await startFakeOpenRouter({
        keys: KEYS,
        keepAliveIntervalMs: 20,
        defaultModel: { latencyMs, chunkCount: 8, chunkGapMs: 40 },
      });
      cleanups.push(() => fake.close());
      const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS });
      cleanups.push(() => pool.dispose());
      const requests: ChatRequest[] = Array.from({ length: 24 }, (_, index) => ({
        id: `r${index}`,
        model: index % 2 === 0 ? 'healthy/a' : 'healthy/b',
        stream: index % 3 !== 0,
        messages: [{ role: 'user', content: `prompt ${index}` }],
      }));
      const stalls = [
        setTimeout(() => {
          blockFor(firstMs);
          if (secondMs !== undefined) stalls.push(setTimeout(() => blockFor(secondMs), 200));
        }, firstAtMs),
      ];
      cleanups.push(() => stalls.forEach(clearTimeout));

      const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 24, timeouts }), toArray()));

      const terminals = events.filter((event): event is Exclude<BalanceEvent, { type: 'chunk' | 'restart' }> =>
        ['completion', 'failed'].includes(event.type),
      );
      expect(terminals).toHaveLength(requests.length);
      for (const terminal of terminals) {
        expect(terminal.type === 'failed' ? `${terminal.requestId}: ${terminal.error.message}` : terminal.type).toBe('completion');
        if (terminal.type === 'completion') expect(terminal.attempts, terminal.requestId).toBe(1);
      }
      expect(fake.countRequests({})).toBe(requests.length);
      for (const model of pool.snapshot().models) expect(model.state, model.model).toBe('closed');
    },
  );
});
