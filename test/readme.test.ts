import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { runWithTsx } from './helpers/run-tsx.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every ```ts block of the README, type-checked as a user's module importing the built package. */
describe('README code', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);

  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  it.each(blocks.map((code, index) => [index + 1, code] as const))('block %i compiles against the package', (index, code) => {
    // Inside the repo, so `openrouter-rx` resolves to this package's own exports (self-reference).
    const dir = join(root, 'test-output', 'readme');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `block-${index}.ts`);
    writeFileSync(file, `${code}\nexport {};\n`);
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
    });
    const diagnostics = ts
      .getPreEmitDiagnostics(program)
      .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    expect(diagnostics).toEqual([]);
  });
});

/** The first ```ts block under the README's `## Quickstart` heading. */
function quickstartBlock(readme: string): string {
  const start = readme.search(/^## Quickstart/m);
  expect(start, 'a "## Quickstart" section').toBeGreaterThanOrEqual(0);
  const end = readme.slice(start + 1).search(/^## /m);
  const section = end < 0 ? readme.slice(start) : readme.slice(start, start + 1 + end);
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(code, 'a ```ts block in the Quickstart').toBeDefined();
  return code!;
}

/**
 * The Quickstart as a newcomer runs it in a fresh clone (`npm install && npm run build`, the block
 * saved as quickstart.mts, `npx tsx quickstart.mts`): it imports `openrouter-rx` and
 * `openrouter-rx/testing` by name, which resolve to this package's dist/ (the test command builds
 * it first), needs no key, prints every answer and exits on its own.
 */
describe('README Quickstart', () => {
  it('runs as written, with no key, prints an answer per prompt and exits', async () => {
    expect(existsSync(join(root, 'dist', 'index.js')), 'dist/ is built (npm run build)').toBe(true);
    const dir = join(root, 'test-output', 'readme');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'quickstart.mts');
    writeFileSync(file, quickstartBlock(readFileSync(join(root, 'README.md'), 'utf8')));

    const run = await runWithTsx(file, { timeoutMs: 40_000, log: 'readme-quickstart.log' });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const answers = run.stdout.match(
      /^prompt-\d+: "Echo \(demo\/(flaky|steady)\): .+" \(key team-[ab], demo\/(flaky|steady), \d+ attempt\(s\)\)$/gm,
    );
    expect(answers, run.stdout).toHaveLength(6);
    expect(run.stdout).not.toContain('failed:');
    expect(run.stdout).toMatch(/^team-a #[0-9a-f]{6}: \w[\w-]*, \d+ requests$/m);
  }, 60_000);
});
