#!/usr/bin/env node
// API reports for the public entries: runs API Extractor once per entry config in api-extractor/
// against the built declarations in dist/ (run `npm run build` first).
//
//   node scripts/api-report.mjs          check: fail when an etc/<entry>.api.md differs from the
//                                        surface built in dist/ (`npm run api:check`, in `npm test`)
//   node scripts/api-report.mjs --local  update: rewrite etc/<entry>.api.md (`npm run api:update`)
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { CompilerState, Extractor, ExtractorConfig } from '@microsoft/api-extractor';

const ENTRIES = ['index', 'testing', 'redis', 'dashboard', 'otel'];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--local');
if (unknown.length > 0) {
  console.error(`api-report: unknown argument(s) ${unknown.join(' ')}; usage: api-report.mjs [--local]`);
  process.exit(2);
}
const localBuild = args.includes('--local');

const configs = ENTRIES.map((entry) => ExtractorConfig.loadFileAndPrepare(path.join(root, 'api-extractor', `${entry}.json`)));
const missing = configs.map((c) => c.mainEntryPointFilePath).filter((f) => !existsSync(f));
if (missing.length > 0) {
  for (const f of missing) console.error(`api-report: ${path.relative(root, f)} is missing`);
  console.error('api-report: run `npm run build` first');
  process.exit(1);
}
if (localBuild) mkdirSync(configs[0].reportFolder, { recursive: true });

// One TypeScript program for all the entries (they share tsup's chunk .d.ts files) instead of one each.
const compilerState = CompilerState.create(configs[0], {
  additionalEntryPoints: configs.slice(1).map((c) => c.mainEntryPointFilePath),
});

const failed = [];
for (const [i, entry] of ENTRIES.entries()) {
  const config = configs[i];
  const result = Extractor.invoke(config, {
    localBuild,
    compilerState,
    showVerboseMessages: false,
    // On a failed check, print the change itself: a CI log then says what moved (an update leaves
    // that to `git diff etc/`).
    printApiReportDiff: !localBuild,
    messageCallback: (message) => {
      // "Analysis will use the bundled TypeScript version …", once per entry: noise.
      if (message.messageId === 'console-preamble') message.handled = true;
    },
  });
  const report = path.relative(root, path.join(config.reportFolder, `${entry}.api.md`));
  if (result.succeeded) {
    console.log(`api-report: ${entry}: ${localBuild && result.apiReportChanged ? `updated ${report}` : 'ok'}`);
  } else {
    failed.push(entry);
    console.error(
      `api-report: ${entry}: ${result.errorCount} error(s), ${result.warningCount} warning(s)` +
        (result.apiReportChanged ? `; the public surface differs from ${report}` : ''),
    );
  }
}

if (failed.length > 0) {
  console.error(
    `api-report: failed for ${failed.join(', ')}.` +
      (localBuild
        ? ''
        : ' If the surface change is deliberate, run `npm run api:update` and commit etc/*.api.md' +
          ' (the report as built is in test-output/api-report/).'),
  );
  process.exit(1);
}
