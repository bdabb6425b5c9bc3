/**
 * CPU profile of one peer on one workload, warm-up excluded (the V8 profiler runs only around the
 * measured work, through `node:inspector`), so that two peers' profiles of the same work can be
 * compared function by function. Writes `bench/profiles/<peer>-<workload>.cpuprofile` (open it in
 * Chrome DevTools) and `bench/results/profiles/<peer>-<workload>.txt` (the summary).
 *
 *   npx tsx bench/profile.ts --peer library --workload overhead     # non-streamed requests
 *   npx tsx bench/profile.ts --peer bare-sdk --workload streaming   # streamed chunks
 *   npx tsx bench/profile.ts --peer library --workload pick         # an admission at 1,000 keys, 10,000 in flight
 *   npx tsx bench/profile.ts --peer library --workload pick --heap  # what the same work allocates, garbage included
 *   npx tsx bench/profile.ts --peer library --workload pick --heap --stacks Observable   # and who allocates through a function
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { peers } from './peers/index.js';
import type { PeerSession } from './peers/types.js';
import { benchRequest, drive } from './support/driver.js';
import { startFakeHost, type FakeHost, type FakeServerHandle } from './support/fake-host.js';
import { sleep } from './support/measure.js';
import { summarise, summariseAllocations, type HeapProfileNode } from './support/profile-summary.js';

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

const peerId = option('--peer', 'library');
const workload = option('--workload', 'overhead');
if (!['overhead', 'streaming', 'pick'].includes(workload)) throw new Error(`unknown workload ${workload} (overhead, streaming, pick)`);
const peer = peers.find((candidate) => candidate.id === peerId);
if (peer === undefined) throw new Error(`unknown peer ${peerId}`);

const inspector = new Session();
inspector.connect();
await inspector.post('Profiler.enable');
await inspector.post('Profiler.setSamplingInterval', { interval: 100 });

let host: FakeHost | undefined;
let fake: FakeServerHandle | undefined;
let session: PeerSession;
/** The measured work: its figure, and how many units (picks, requests, chunks) it did. */
let measured: () => Promise<{ text: string; units: number; unitName: string }>;

if (workload === 'pick') {
  const keys = Array.from({ length: 1000 }, (_, index) => ({
    key: `sk-or-v1-bench-pick-${index + 1}`,
    label: `key-${index + 1}`,
    limits: { rpm: 600, maxConcurrent: 20 },
  }));
  const never = ((_input: unknown, init?: RequestInit) =>
    new Promise<Response>((_resolve, reject) =>
      init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))),
    )) as typeof fetch;
  session = await peer.start({ baseURL: 'http://127.0.0.1:9/api/v1', keys, model: 'bench/pick', concurrency: 10_000, fetch: never });
  if (session.pick === undefined) throw new Error(`${peer.name} has no key chooser to profile`);
  const pick = session.pick.bind(session);
  for (let index = 0; index < 10_000; index++) void session.run(benchRequest(false));
  await sleep(1000);
  for (let index = 0; index < 5000; index++) pick();
  measured = async () => {
    const picks = 50_000;
    const started = performance.now();
    for (let index = 0; index < picks; index++) pick();
    const text = `${(((performance.now() - started) * 1000) / picks).toFixed(2)} µs per pick (10,000 in flight, 1,000 keys; profiler on)`;
    return { text, units: picks, unitName: 'pick' };
  };
} else {
  const stream = workload === 'streaming';
  host = await startFakeHost();
  const keys = Array.from({ length: 4 }, (_, index) => ({ key: `sk-or-v1-bench-profile-${index + 1}`, label: `key-${index + 1}` }));
  fake = await host.start({
    keys,
    defaultModel: stream ? { latencyMs: 0, chunkCount: 300, chunkGapMs: 0 } : { latencyMs: 0 },
    ...(stream ? { answerChars: 2400 } : {}),
  });
  const concurrency = stream ? 32 : 16;
  const requests = Number(option('--requests', stream ? '256' : '3000'));
  session = await peer.start({ baseURL: fake.baseURL, keys, model: 'bench/profile', concurrency });
  await drive(session, { concurrency, total: stream ? 128 : 2000, deadlineMs: 120_000, makeRequest: () => benchRequest(stream) });
  measured = async () => {
    const record = await drive(session, { concurrency, total: requests, deadlineMs: 300_000, makeRequest: () => benchRequest(stream) });
    const units = stream ? record.chunks : record.ok;
    const unitName = stream ? 'chunk' : 'request';
    const text = `${record.ok} ok, ${record.failed} failed; ${(record.cpuMicros / Math.max(1, units)).toFixed(2)} µs CPU per ${unitName} (profiler on)`;
    return { text, units: Math.max(1, units), unitName };
  };
}

const profiles = fileURLToPath(new URL('./profiles/', import.meta.url));
const summaries = fileURLToPath(new URL('./results/profiles/', import.meta.url));
mkdirSync(profiles, { recursive: true });
mkdirSync(summaries, { recursive: true });
let text: string;
if (process.argv.includes('--heap')) {
  // Every allocation is sampled (about one in 256 bytes), those the GC has collected since too.
  await inspector.post('HeapProfiler.enable');
  // V8 takes the two flags; Node 20's types do not list them yet.
  const sampling = { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true };
  await inspector.post('HeapProfiler.startSampling', sampling);
  const outcome = await measured();
  const { profile } = await inspector.post('HeapProfiler.stopSampling');
  inspector.disconnect();
  const name = `${peerId}-${workload}-heap`;
  writeFileSync(`${profiles}${name}.heapprofile`, JSON.stringify(profile));
  const focus = option('--stacks', '');
  const head = profile.head as unknown as HeapProfileNode;
  text = `${peerId}, ${workload}: ${outcome.text}\n${summariseAllocations(head, outcome.units, outcome.unitName, 30, focus === '' ? undefined : focus)}\n`;
  writeFileSync(`${summaries}${name}.txt`, text);
} else {
  await inspector.post('Profiler.start');
  const outcome = await measured();
  const { profile } = await inspector.post('Profiler.stop');
  inspector.disconnect();
  const name = `${peerId}-${workload}`;
  writeFileSync(`${profiles}${name}.cpuprofile`, JSON.stringify(profile));
  text = `${peerId}, ${workload}: ${outcome.text}\n${summarise(`${profiles}${name}.cpuprofile`, 30)}\n`;
  writeFileSync(`${summaries}${name}.txt`, text);
}
process.stdout.write(text);
await session.close();
await fake?.close();
await host?.close();
process.exit(0);
