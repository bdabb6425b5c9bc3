/**
 * The bench's output: one Markdown table (a row per scenario × peer, with ratios against the two
 * baselines of the same run and the library's targets), and the JSON with every figure.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MachineInfo } from './support/measure.js';
import { missedNotes } from './report-notes.js';
import type { ScenarioResult, TargetCheck } from './scenarios/types.js';

export interface BenchReport {
  generatedAt: string;
  mode: 'quick' | 'full';
  command: string;
  machine: MachineInfo & { loadAverageAtEnd: number[] };
  versions: Record<string, string>;
  /** The commit `src/` was built from (and whether it had uncommitted changes). */
  source: { commit: string; srcModified: boolean };
  peers: Array<{ id: string; name: string; description: string }>;
  durationMs: number;
  scenarios: ScenarioResult[];
  targets: Array<TargetCheck & { scenario: string }>;
  table: string;
}

const cell = (text: string | undefined) => (text ?? '—').replace(/\|/g, '\\|');

function targetCell(targets: readonly TargetCheck[]): string {
  if (targets.length === 0) return '—';
  return targets
    .map((check) => `${check.met === null ? 'not measured' : check.met ? '**met**' : '**MISSED**'}: ${check.target} (${check.measured})`)
    .join('; ');
}

export function markdownTable(scenarios: readonly ScenarioResult[]): string {
  const lines = ['| Scenario | Peer | Result | vs bare SDK | vs recipe | Target (library) |', '|---|---|---|---|---|---|'];
  for (const scenario of scenarios) {
    if (scenario.failed !== undefined) {
      lines.push(`| ${scenario.title} | — | failed: ${cell(scenario.failed)} | — | — | not measured |`);
      continue;
    }
    for (const result of scenario.results) {
      const target = (result.showsTargets ?? result.peer === 'library') ? targetCell(scenario.targets) : '—';
      lines.push(
        `| ${scenario.title} | ${cell(result.name)} | ${cell(result.failed === undefined ? result.summary : `failed: ${result.failed}`)} | ${cell(result.vsBare)} | ${cell(result.vsRecipe)} | ${cell(target)} |`,
      );
    }
  }
  return lines.join('\n');
}

export function targetSummary(scenarios: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const scenario of scenarios) {
    for (const check of scenario.targets) {
      const verdict = check.met === null ? 'not measured' : check.met ? 'met' : 'MISSED';
      lines.push(`- ${scenario.title}: ${check.target}: ${verdict} (${check.measured})`);
    }
  }
  return lines.join('\n');
}

export function writeJson(path: string, report: BenchReport): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/**
 * The results of this run in Markdown: the machine and versions, the table, the peers, the targets
 * and why each missed target is missed. `heading` opens it (`## Performance` in `latest.md`;
 * `bench/render.ts` puts it under its own heading in docs/benchmark.md).
 */
export function performanceSection(report: BenchReport, heading = '## Performance'): string {
  const machine = report.machine;
  const versions = report.versions;
  return [
    heading,
    '',
    `Measured with \`${report.command}\` on ${machine.cpuCount} × ${machine.cpuModel}, ${machine.totalMemoryGiB} GiB, ${machine.platform} ${machine.kernel}, Node ${machine.node}` +
      ` (load average ${machine.loadAverageAtStart[0]} at the start, ${machine.loadAverageAtEnd[0]} at the end), ${report.generatedAt}.` +
      ` Library at ${report.source.commit.slice(0, 7)}${report.source.srcModified ? ' (with uncommitted changes in src/)' : ''}.` +
      ` Peers: openai ${versions['openai']}, cockatiel ${versions['cockatiel']}, p-queue ${versions['p-queue']}, @portkey-ai/gateway ${versions['@portkey-ai/gateway']}.` +
      ' Each scenario runs in a process of its own and every peer of it in that process, on the same fake OpenRouter (in a child process on 127.0.0.1) and the same workload.',
    '',
    report.table,
    '',
    'Peers, each at its best as `bench/peers/` sets it up:',
    '',
    ...report.peers.map((peer) => `- **${peer.name}**: ${peer.description}.`),
    '',
    'Targets:',
    '',
    targetSummary(report.scenarios),
    '',
    ...(missedNotes(report.targets).length === 0 ? [] : ['Where a target is missed, and why:', '', ...missedNotes(report.targets), '']),
    'Reproduce: `npm run bench` (full, a few minutes) or `npm run bench -- --quick` (about two and a half minutes); every figure lands in `bench/results/latest.json`.',
    '',
  ].join('\n');
}
