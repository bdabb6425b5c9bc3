/**
 * Why a target is missed: the closing notes of the performance section, one per target id, each
 * naming the profile that shows it. The profiles come from `bench/profile.ts` (warm-up excluded,
 * frames mapped back to `src/` lines); their summaries are in `bench/results/profiles/`. They were
 * read on the tree at 9ebbf52 (after the fixes of d21a88f: no abort of a fully read response, no
 * deep copy of every chunk for redaction, a 1 s arrival margin): re-run the command to check a change.
 */
import type { TargetCheck } from './scenarios/types.js';

const notes: Record<string, string> = {
  'overhead.rps':
    'Overhead, requests per second: client and fake server share two cores, so the CPU the library adds per request ' +
    '(next note) comes straight out of throughput.',
  'overhead.cpu':
    'Overhead, CPU per request: no single hot spot is left, the cost is spread over the operator chain. ' +
    '`npx tsx bench/profile.ts --peer library --workload overhead` (`bench/results/profiles/library-overhead.txt`, against ' +
    '`bare-sdk-overhead.txt` for the same 3,000 requests): the library’s own frames, rxjs and zod take about a fifth of the ' +
    'CPU of the run. rxjs subscriber plumbing is 6.6 %: every request crosses seven operators (`with-key-rotation`, ' +
    '`attempt-timeouts`, `circuit-breaker`, three `retry-loop`s, `balance`), each with its own subscriber, and each attempt ' +
    'arms asyncScheduler timers (a `setInterval` each). `src/operators` is 5.9 % self; the admission path (`enqueue` → ' +
    '`tryAdmit` → `store.reserve(...).subscribe` → `onReserved`) 6 % inclusive, an Observable per admission even with the ' +
    'in-memory store; zod validates every request (`validateBalancedRequest` → `safeParse`, 2.1 %).',
  'streaming.chunk':
    'Streaming, CPU per chunk: `npx tsx bench/profile.ts --peer library --workload streaming` ' +
    '(`bench/results/profiles/library-streaming.txt`). The library reads the SSE itself (`stream` in ' +
    '`src/transport/openai-transport.ts`, 11 % self, in place of the SDK’s parser), then every chunk is copied into a new ' +
    'object by `with-key-rotation`’s `map` (`{ ...event, ...tag }` and `markResponded`, 11 % self), crosses ' +
    '`attempt-timeouts` (which re-arms its idle timer per chunk: an asyncScheduler `setInterval`/`clearInterval` pair, ' +
    '2.3 %), `circuit-breaker`, three `retry-loop`s and `balance` (another event object, and the answer concatenated), and ' +
    '`parseStreamChunk` builds its result with `assignDefined` (`Object.entries` per chunk, 3.7 %).',
  'scale.pick':
    'Scale, picking a key: a pick is a full admission (`pool.acquire` and its release). `npx tsx bench/profile.ts --peer ' +
    'library --workload pick` (`bench/results/profiles/library-pick.txt`; its `dispatch` line is the profiler itself): ' +
    'the power-of-two strategy’s eligibility test goes through `state-store.fits` → `limiter.fits` → `sliding-window.prune` ' +
    'for every sampled key and once more for the chosen key in `place` (30 % of the pick); the reservation goes through an ' +
    'Observable (`store.reserve(...).subscribe` → `onReserved`, 12 %) even with the in-memory store; `flush` 14 %; GC of ' +
    'these allocations about a quarter.',
  'scale.heap':
    'Scale, heap: the heap per in-flight request grew with the number in flight (the slope from 5,500 to 10,000 above ' +
    '1.25× the slope from 1,000 to 5,500), or more than 2 MiB stayed once the session was closed and dropped.',
  'saturation.goodput':
    'Saturation, goodput: a quota entry counts from its admission plus an arrival margin, or from the first response ' +
    'byte if that comes sooner (`src/keys/state-store.ts`, since 9fb5313). With too small a margin the entry leaves the ' +
    'library’s window before the server’s: the next request draws a 429, and the 429 parks the key for its ' +
    '`Retry-After` (a whole window here). The window opens with a burst of 100 admissions, and on two busy cores the last ' +
    'of them reach the server well over 50 ms later: with the first margin, 50 ms, this scenario measured 8 % 429s and ' +
    '77 % goodput, with 200 ms none and 100 % (by hand, `createMemoryStore({ arrivalMarginMs })`). d21a88f raised it to ' +
    '1 s, which is safe here but brings back the cost of the next note. Run to run, goodput here varies with the load on ' +
    'the machine (the time from admission to the first response byte).',
  'saturation.429':
    'Saturation, 429s: the library was refused by the server although it knew the quotas: see the goodput note (arrival margin).',
  'saturation-slow.goodput':
    'Saturation with 250 ms answers, goodput: an entry counts from the earlier of admission + margin and the first ' +
    'response byte. With the 1 s margin of d21a88f, any answer shorter than 1 s counts from its first byte, and a ' +
    'non-streamed answer’s first byte comes at the end of its generation: each slot sits idle for one answer time, so ' +
    'goodput ≤ 1000 / (1000 + 250) = 80 % (75 % measured; no profile needed, it is arithmetic). Real quotas are per minute ' +
    'and non-streamed answers take seconds, so the loss is real there too. With a 50 ms margin the same run gave 93 % ' +
    'goodput but 0.9 % 429s (the first note). Counting from when the request was actually written to the socket, or ' +
    'resynchronising from the `X-RateLimit-Remaining`/`X-RateLimit-Reset` headers of each answer, would get both.',
  'saturation-slow.429': 'Saturation with 250 ms answers, 429s: see the goodput notes (arrival margin).',
  'saturation.ahead-tie':
    'Saturation, ahead of every peer: a tie, not a loss. At this demand every peer that keeps retrying (the SDK waits ' +
    'out `Retry-After`) fills the quota windows too, so goodput is capped at 100 % for it as for the library; the library ' +
    'gets there without the 429s (about a third of all attempts for the peers).',
  'saturation.ahead':
    'Saturation, ahead of every peer: a peer that keeps retrying on `Retry-After` filled the windows better than the ' +
    'library did in this run; see the goodput note for what the library loses.',
  'saturation-slow.ahead':
    'Saturation with 250 ms answers, ahead of every peer: the peers lose goodput too (their `Retry-After` waits are rounded ' +
    'up to whole seconds), and the library, which loses one answer time per slot (goodput note), ties or trails the best ' +
    'of them while it alone draws no 429.',
  'saturation-slow.ahead-tie': 'Saturation with 250 ms answers, ahead of every peer: see the previous note.',
  'saturation.lost': 'Saturation, lost requests: some requests had no outcome when the run ended.',
  'saturation-slow.lost': 'Saturation with 250 ms answers, lost requests: some requests had no outcome when the run ended.',
  'dead-keys.waste': 'Dead keys: the library wasted more attempts than a peer, or left a request unanswered.',
};

export function missedNotes(targets: ReadonlyArray<TargetCheck & { scenario: string }>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const check of targets) {
    if (check.met !== false || seen.has(check.id)) continue;
    seen.add(check.id);
    const note = notes[check.id];
    out.push(`- ${note ?? `${check.target}: missed; no analysis yet.`} Measured here: ${check.measured}.`);
  }
  return out;
}
