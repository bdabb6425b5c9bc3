/**
 * An A/B of the scale row's key pick between source trees, in one process: each tree built as the
 * bench builds the library, a pool of each with the row's 1,000 keys and 10,000 requests in flight,
 * and rounds of picks alternating between the pools, each first in turn. Noise from the host (other
 * tenants, the other core's work) then falls on every tree alike; the figure is the median of the
 * per-round ratios against the first tree. Runs of the row alone, one tree after the other, spread
 * by a microsecond on a shared host, more than most changes move it.
 *
 *   git worktree add --detach /tmp/before <rev>
 *   npx tsx bench/ab-pick.ts /tmp/before/src/index.ts src/index.ts [--rounds 20] [--picks 10000] [--rpm 600]
 *
 * Rounds start once every request of both pools has reached the transport, as the row's picks do:
 * before, the SDK's work for requests still on their way ran between rounds and collected its
 * garbage in them, and an A/A (two copies of one tree) read 1.01–1.24. Now it reads 1.02–1.04, the
 * tree built second still faring a few percent worse: run each pair in both orders and take the
 * square root of (forward ratio / reverse ratio). A round of 10,000 picks starts with caches the
 * other pool's round left cold, so it weighs memory reads more than the row does, whose 100,000
 * picks in one block warm the keys they sample. Every pick counts in its key's `--rpm` window: a
 * run takes at most what the keys have room for in a minute.
 */
import { performance } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { Subject } from 'rxjs';
import type { ChatRequest } from '../src/index.js';
import { pickOnce, poolFor } from './peers/library.js';
import { benchRequest } from './support/driver.js';
import { loadTree } from './support/library.js';
import { median, sleep } from './support/measure.js';
import { neverAnsweringFetch, waitFor } from './support/never-answering.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

const entries = process.argv.slice(2).filter((arg, index, args) => !arg.startsWith('--') && !args[index - 1]?.startsWith('--'));
if (entries.length < 2) throw new Error('usage: npx tsx bench/ab-pick.ts <tree A>/src/index.ts <tree B>/src/index.ts [...]');
const rounds = option('--rounds', 20);
const picksPerRound = option('--picks', 10_000);
const rpm = option('--rpm', 600);
const model = 'bench/scale';
const baseURL = 'http://127.0.0.1:9/api/v1';

const keys = Array.from({ length: 1000 }, (_, index) => ({
  key: `sk-or-v1-bench-ab-${String(index + 1).padStart(4, '0')}`,
  label: `key-${index + 1}`,
  limits: { rpm, maxConcurrent: 20 },
}));

// Past its keys' quota a pool's picks go to its queue, and the figures time that instead.
if (rounds * picksPerRound + 13_000 > rpm * keys.length)
  throw new Error(
    `${rounds} rounds of ${picksPerRound} picks need --rpm above ${Math.ceil((rounds * picksPerRound + 13_000) / keys.length)}`,
  );

const sessions: { entry: string; pick: () => void; close: () => void }[] = [];
for (const entry of entries) {
  const library = await loadTree(resolve(entry));
  const never = neverAnsweringFetch();
  const pool = poolFor(library, { baseURL, keys, model, concurrency: 10_000, fetch: never.fetch });
  const input = new Subject<ChatRequest>();
  const subscription = input.pipe(library.balance(pool, { concurrency: 10_000 })).subscribe();
  for (let index = 0; index < 10_000; index++) input.next({ ...benchRequest(false), model });
  // As the scale row: every request through the SDK to the transport before any pick is timed.
  if (!(await waitFor(() => never.pending() >= 10_000, 60_000)))
    throw new Error(`only ${never.pending()} of 10,000 requests reached the transport`);
  const port = pool[library.POOL_PORT];
  const probe: ChatRequest = { model, messages: [{ role: 'user', content: 'pick' }], max_tokens: 16 };
  const options = { models: [model] };
  sessions.push({
    entry,
    pick: () => pickOnce(port, probe, options),
    close: () => {
      subscription.unsubscribe();
      pool.dispose();
    },
  });
}
for (const session of sessions) for (let index = 0; index < 3000; index++) session.pick();

const micros = sessions.map((): number[] => []);
for (let round = 0; round < rounds; round++) {
  const order = sessions.map((_, index) => (round % 2 === 0 ? index : sessions.length - 1 - index));
  for (const index of order) {
    await sleep(10);
    const pick = sessions[index]!.pick;
    const started = performance.now();
    for (let count = 0; count < picksPerRound; count++) pick();
    micros[index]!.push(((performance.now() - started) * 1000) / picksPerRound);
  }
}
for (const [index, session] of sessions.entries()) {
  const ratio = median(micros[index]!.map((value, round) => value / micros[0]![round]!));
  console.log(`${session.entry}: median ${median(micros[index]!).toFixed(2)} µs per pick, ${ratio.toFixed(3)}× the first tree`);
}
for (const session of sessions) session.close();
process.exit(0);
