/**
 * `npm run bench` (full) or `npm run bench -- --quick` (two and a half minutes): every scenario against the
 * fake OpenRouter on 127.0.0.1, each scenario in a process of its own (forked from this one, as JMH
 * forks a JVM per benchmark: what one row's workload taught V8's JIT, such as call sites made
 * polymorphic by another pool's shapes, must not skew the next row's figures), every peer of a
 * scenario in that same process. Prints a Markdown table and
 * writes `bench/results/latest.json` and `latest.md` (its results in Markdown), and the
 * same as `full.json`/`full.md` or `quick.json`/`quick.md`, so a quick run leaves the last full one.
 *
 *   --quick              shorter runs (noisier figures)
 *   --only a,b           only these scenarios (saturation, saturation-unknown, saturation-slow,
 *                        shared-accounts, provider-capacity, overhead, streaming, dead-keys, scale,
 *                        fleet; saturation-slow and fleet are in the full run only); written to
 *                        bench/results/partial.json, never over latest.json
 *   --peers a,b          only these peers (library, bare-sdk, recipe, cockatiel, portkey)
 *   --out path           where to write the JSON instead
 */
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { peers as allPeers, stopGateway } from './peers/index.js';
import { markdownTable, performanceSection, targetSummary, writeJson, type BenchReport } from './report.js';
import { deadKeys } from './scenarios/dead-keys.js';
import { fleet } from './scenarios/fleet.js';
import { overhead } from './scenarios/overhead.js';
import { providerCapacity } from './scenarios/provider-capacity.js';
import { saturation, saturationSlow, saturationUnknown } from './scenarios/saturation.js';
import { scale } from './scenarios/scale.js';
import { sharedAccounts } from './scenarios/shared-accounts.js';
import { streaming } from './scenarios/streaming.js';
import type { Scenario, ScenarioId, ScenarioResult } from './scenarios/types.js';
import { startFakeHost, type FakeHost } from './support/fake-host.js';
import { buildLibrary } from './support/library.js';
import { machineInfo, packageVersions, sourceRevision } from './support/measure.js';

const scenarios: readonly Scenario[] = [
  saturation,
  saturationUnknown,
  saturationSlow,
  sharedAccounts,
  providerCapacity,
  overhead,
  streaming,
  deadKeys,
  scale,
  fleet,
];
/**
 * Left out of `--quick` unless named with `--only`: the fleet starts worker processes (about 15 s),
 * and the slow-answer saturation needs long windows, so `--quick` stays near two and a half minutes.
 */
const fullOnly = new Set<string>(['saturation-slow', 'fleet']);

function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  const index = args.indexOf(name);
  if (index >= 0) return args[index + 1];
  const inline = args.find((arg) => arg.startsWith(`${name}=`));
  return inline?.slice(name.length + 1);
}

function listOption(name: string): string[] | undefined {
  return option(name)
    ?.split(',')
    .map((value) => value.trim())
    .filter((value) => value.length > 0);
}

const SCENARIO_FLAG = '--scenario-process';

/** Runs one scenario in a forked copy of this script and returns what it sends back. */
function runInOwnProcess(id: ScenarioId, how: { quick: boolean; peerIds: string[] | undefined }): Promise<ScenarioResult> {
  const args = [
    SCENARIO_FLAG,
    id,
    ...(how.quick ? ['--quick'] : []),
    ...(how.peerIds === undefined ? [] : ['--peers', how.peerIds.join(',')]),
  ];
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise<ScenarioResult>((resolve, reject) => {
    let result: ScenarioResult | undefined;
    child.on('message', (message: { result?: ScenarioResult; error?: string }) => {
      if (message.error !== undefined) reject(new Error(message.error));
      else result = message.result;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (result !== undefined) resolve(result);
      else reject(new Error(`its process ended (${signal ?? `exit code ${code}`}) without a result`));
    });
  });
}

/** The forked side of `runInOwnProcess`: the scenario, its own fake server host, its peers. */
async function scenarioProcess(id: string): Promise<void> {
  const scenario = scenarios.find((candidate) => candidate.id === id);
  if (scenario === undefined) throw new Error(`unknown scenario "${id}"`);
  const peerIds = listOption('--peers');
  const peers = peerIds === undefined ? allPeers : allPeers.filter((peer) => peerIds.includes(peer.id));
  const log = (message: string) => process.stderr.write(`${message}\n`);
  let host: FakeHost | undefined;
  try {
    host = await startFakeHost();
    const result = await scenario.run({ host, quick: process.argv.includes('--quick'), peers, log }).then(
      (ran) => ({ result: ran }),
      (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
    );
    await new Promise<void>((resolve, reject) =>
      process.send!(result, (error: Error | null) => (error === null ? resolve() : reject(error))),
    );
  } finally {
    await stopGateway();
    await host?.close();
  }
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const only = listOption('--only');
  const peerIds = listOption('--peers');
  const unknownScenario = only?.find((id) => !scenarios.some((scenario) => scenario.id === id));
  if (unknownScenario !== undefined)
    throw new Error(`unknown scenario "${unknownScenario}" (${scenarios.map((scenario) => scenario.id).join(', ')})`);
  const unknownPeer = peerIds?.find((id) => !allPeers.some((peer) => peer.id === id));
  if (unknownPeer !== undefined) throw new Error(`unknown peer "${unknownPeer}" (${allPeers.map((peer) => peer.id).join(', ')})`);
  const selected =
    only === undefined
      ? scenarios.filter((scenario) => !(quick && fullOnly.has(scenario.id)))
      : scenarios.filter((scenario) => only.includes(scenario.id));
  const peers = peerIds === undefined ? allPeers : allPeers.filter((peer) => peerIds.includes(peer.id));
  const complete = only === undefined && peerIds === undefined;
  const out = option('--out') ?? fileURLToPath(new URL(complete ? './results/latest.json' : './results/partial.json', import.meta.url));

  const machine = machineInfo();
  const log = (message: string) => process.stderr.write(`${message}\n`);
  log(`openrouter-rx bench (${quick ? 'quick' : 'full'}) on ${machine.cpuCount} × ${machine.cpuModel}, Node ${machine.node}`);
  const started = Date.now();
  // Read before the run: the library is built from the tree as it is when its first peer starts.
  const source = sourceRevision();
  // Built once, here: every scenario's process loads this build, so the whole run measures one tree.
  await buildLibrary();
  const results: ScenarioResult[] = [];
  for (const scenario of selected) {
    log(`${scenario.title}:`);
    const scenarioStart = Date.now();
    try {
      const result = await runInOwnProcess(scenario.id, { quick, peerIds });
      results.push({ ...result, durationMs: Date.now() - scenarioStart });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log(`  failed: ${reason}`);
      results.push({
        id: scenario.id,
        title: scenario.title,
        settings: {},
        results: [],
        targets: [],
        notes: [],
        durationMs: Date.now() - scenarioStart,
        failed: reason,
      });
    }
  }

  const table = markdownTable(results);
  const report: BenchReport = {
    generatedAt: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: { ...machine, loadAverageAtEnd: loadavg().map((value) => Math.round(value * 100) / 100) },
    versions: packageVersions(),
    source,
    peers: peers.map((peer) => ({ id: peer.id, name: peer.name, description: peer.description })),
    durationMs: Date.now() - started,
    scenarios: results,
    targets: results.flatMap((scenario) => scenario.targets.map((check) => ({ ...check, scenario: scenario.id }))),
    table,
  };
  writeJson(out, report);
  if (complete && option('--out') === undefined) {
    const mode = quick ? 'quick' : 'full';
    writeJson(fileURLToPath(new URL(`./results/${mode}.json`, import.meta.url)), report);
    const section = performanceSection(report);
    writeFileSync(fileURLToPath(new URL('./results/latest.md', import.meta.url)), section);
    writeFileSync(fileURLToPath(new URL(`./results/${mode}.md`, import.meta.url)), section);
  }
  process.stdout.write(`\n${table}\n\n${targetSummary(results)}\n\nWrote ${out} in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`);
}

const scenarioId = option(SCENARIO_FLAG);
(scenarioId === undefined ? main() : scenarioProcess(scenarioId)).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
