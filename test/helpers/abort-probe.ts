/**
 * Run by test/unhandled-rejection.test.ts in a child process with Node's own unhandled-rejection
 * behaviour (`--unhandled-rejections=throw`, no handler installed): thousands of single calls to
 * the fake OpenRouter, through the transport and through `pool.complete`/`pool.stream`, each ended
 * at a random moment: by unsubscribing after a random delay, by unsubscribing just after the
 * response headers arrived (while the body is read), or by the attempt's `totalMs`. A rejection
 * nobody handles kills the process (exit code 1); otherwise it prints one JSON summary line.
 *
 * Usage: node --import tsx --unhandled-rejections=throw test/helpers/abort-probe.ts [calls] [seed]
 */
import type { Observable } from 'rxjs';
import { createKeyPool, createOpenRouterTransport, type ChatRequest, type KeyCredential } from '../../src/index.js';
import { startFakeOpenRouter } from '../../src/testing/index.js';
import { seededRandom } from './seeded-random.js';
import { TEST_KEYS } from './test-keys.js';

const CALLS = Number(process.argv[2] ?? 2000);
const random = seededRandom(Number(process.argv[3] ?? 1));
const CONCURRENCY = 48;
/** No new call starts after this: the probe stays bounded on a busy machine. */
const DEADLINE_MS = 25_000;
/** How long a call is watched after it was unsubscribed, for a notification that should not come. */
const AFTERMATH_MS = 200;
/** A call neither ended nor unsubscribed by then is counted as hanging. */
const WATCHDOG_MS = 10_000;

/** Headers and the whole body, then the connection stays open: the body read never ends. */
const HANG = 'probe/headers-then-hang';
const SLOW = 'probe/slow';

const fake = await startFakeOpenRouter({
  keys: [{ key: TEST_KEYS.abortProbe, label: 'probe' }],
  keepAliveIntervalMs: 5,
  models: {
    [HANG]: { firstTokenMs: 0, chunkCount: 1, chunkGapMs: 2, faults: [{ type: 'missing-done' }] },
    [SLOW]: { firstTokenMs: 2, chunkCount: 6, chunkGapMs: 3 },
  },
});

/** Calls waiting for their response headers, by the `probe <n>` text of their request body. */
const onHeaders = new Map<string, () => void>();
/** The real fetch, telling a waiting call that its headers arrived (fetch resolves on them). */
const probingFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const response = await fetch(input, init);
  const call = typeof init?.body === 'string' ? /probe \d+/.exec(init.body)?.[0] : undefined;
  if (call !== undefined) onHeaders.get(call)?.();
  return response;
};
const transport = createOpenRouterTransport({ baseURL: fake.baseURL, fetch: probingFetch, doneGraceMs: 20 });
// Failures are expected by the thousand: no breaker may stop the attempts from reaching the server.
const tolerant = { consecutiveFailures: 1_000_000, minimumCalls: 1_000_000 };
const pool = createKeyPool({ keys: [{ key: TEST_KEYS.abortProbe, label: 'probe' }], transport, breaker: tolerant, modelBreaker: tolerant });
const credential = Object.defineProperty({ label: 'probe', fingerprint: '#probe' }, 'key', {
  value: TEST_KEYS.abortProbe,
}) as KeyCredential;

const tally = {
  started: 0,
  /** Ended by the probe unsubscribing. */
  unsubscribed: 0,
  /** Of those, unsubscribed within a few ms of the response headers, before the call ended. */
  afterHeaders: 0,
  /** Completed or errored, once. */
  ended: 0,
  /** A second terminal notification, or one after the call was unsubscribed. */
  extra: 0,
  /** Neither ended nor unsubscribed. */
  hanging: 0,
};

const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

function oneCall(index: number): Promise<void> {
  const stream = random() < 0.3;
  const model = stream ? pick([SLOW, HANG]) : pick([HANG, HANG, SLOW]);
  const viaPool = random() < 0.5;
  const endBy = pick(viaPool ? (['delay', 'headers', 'totalMs'] as const) : (['delay', 'headers'] as const));
  const delayMs = Math.floor(random() * (endBy === 'headers' ? 3 : 30));
  const name = `probe ${index}`;
  const request: ChatRequest = { id: name, model, messages: [{ role: 'user', content: name }] };
  const options = { rateLimit: false, transient: false, timeouts: { totalMs: endBy === 'totalMs' ? 1 + delayMs : 60_000 } } as const;
  const source: Observable<unknown> = viaPool
    ? stream
      ? pool.stream(request, options)
      : pool.complete(request, options)
    : transport(credential, { ...request, stream });

  tally.started += 1;
  return new Promise<void>((resolve) => {
    let terminals = 0;
    let unsubscribed = false;
    const onTerminal = (): void => {
      onHeaders.delete(name);
      terminals += 1;
      if (terminals > 1 || unsubscribed) tally.extra += 1;
      else tally.ended += 1;
      resolve();
    };
    const unsubscribe = (afterHeaders: boolean): void => {
      onHeaders.delete(name);
      if (terminals > 0 || unsubscribed) return;
      unsubscribed = true;
      tally.unsubscribed += 1;
      if (afterHeaders) tally.afterHeaders += 1;
      subscription.unsubscribe();
      // Watch a little longer: nothing may arrive after the unsubscription.
      setTimeout(resolve, AFTERMATH_MS);
    };
    if (endBy === 'headers') onHeaders.set(name, () => setTimeout(() => unsubscribe(true), delayMs));
    const subscription = source.subscribe({ error: onTerminal, complete: onTerminal });
    if (endBy === 'delay') setTimeout(() => unsubscribe(false), delayMs);
    const watchdog = setTimeout(() => {
      onHeaders.delete(name);
      if (terminals === 0 && !unsubscribed) tally.hanging += 1;
      subscription.unsubscribe();
      resolve();
    }, WATCHDOG_MS);
    subscription.add(() => clearTimeout(watchdog));
  });
}

const startedAt = Date.now();
let next = 0;
async function worker(): Promise<void> {
  while (next < CALLS && Date.now() - startedAt < DEADLINE_MS) await oneCall(next++);
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
// Give a late rejection (a body read aborted after the last teardown) the time to surface.
await new Promise((resolve) => setTimeout(resolve, 300));

pool.dispose();
await fake.close();
process.stdout.write(`${JSON.stringify({ ...tally, elapsedMs: Date.now() - startedAt })}\n`);
