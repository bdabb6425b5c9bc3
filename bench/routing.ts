/**
 * The library's own cost per request, without the network: `balance` over a transport that
 * answers in a microtask, 20,000 requests piped in at once at concurrency 16, CPU per request
 * (median of five runs after a warm-up). What is left of the overhead row beyond this figure is
 * the network path (the SDK, undici, and the garbage collector's helper threads, whose work grows
 * with what each request allocates). Usage: `npx tsx bench/routing.ts`.
 */
import { Observable, Subject } from 'rxjs';
import type { BalanceEvent, ChatRequest, Transport, TransportEvent } from '../src/index.js';
import { loadLibrary } from './support/library.js';

const library = await loadLibrary();
const completion: TransportEvent = {
  type: 'completion',
  completion: {
    id: 'gen-1',
    model: 'bench/routing',
    content: 'hello',
    finishReason: 'stop',
    raw: null,
    usage: { promptTokens: 5, completionTokens: 2, totalTokens: 7 },
  },
};
const transport: Transport = (_key, _request, options) =>
  new Observable<TransportEvent>((subscriber) => {
    options?.onSent?.();
    let cancelled = false;
    queueMicrotask(() => {
      if (cancelled) return;
      subscriber.next(completion);
      subscriber.complete();
    });
    return () => {
      cancelled = true;
    };
  });
const keys = Array.from({ length: 4 }, (_, index) => ({ key: `sk-or-v1-bench-routing-${index + 1}`, label: `key-${index + 1}` }));

async function cpuPerRequest(requests: number): Promise<number> {
  const pool = library.createKeyPool({ keys, transport, discoverAccounts: false });
  const input = new Subject<ChatRequest>();
  let ended = 0;
  const done = new Promise<void>((resolve) => {
    input.pipe(library.balance(pool, { concurrency: 16 })).subscribe((event: BalanceEvent) => {
      if ((event.type === 'completion' || event.type === 'failed') && ++ended === requests) resolve();
    });
  });
  const started = process.cpuUsage();
  for (let index = 0; index < requests; index++) {
    input.next({ model: 'bench/routing', messages: [{ role: 'user', content: `hello ${index}` }], max_tokens: 16 });
  }
  await done;
  const used = process.cpuUsage(started);
  pool.dispose();
  return (used.user + used.system) / requests;
}

await cpuPerRequest(20_000);
const runs: number[] = [];
for (let run = 0; run < 5; run++) runs.push(await cpuPerRequest(20_000));
runs.sort((a, b) => a - b);
process.stdout.write(
  `routing alone: ${runs[2]!.toFixed(1)} µs CPU per request (median of 5 runs of 20,000; runs ${runs.map((value) => value.toFixed(1)).join(', ')})\n`,
);
