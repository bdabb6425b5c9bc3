/**
 * Re-renders the README's performance section from a results file, with the current notes on
 * missed targets (`report-notes.ts`), without running anything again:
 *
 *   npx tsx bench/render.ts bench/results/full.json     # writes bench/results/full.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { performanceSection, type BenchReport } from './report.js';

const path = process.argv[2];
if (path === undefined || !path.endsWith('.json')) {
  process.stderr.write('usage: tsx bench/render.ts <results.json>\n');
  process.exit(1);
}
const report = JSON.parse(readFileSync(path, 'utf8')) as BenchReport;
const out = path.replace(/\.json$/, '.md');
writeFileSync(out, performanceSection(report));
process.stdout.write(`wrote ${out}\n`);
