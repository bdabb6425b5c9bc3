import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { runWithTsx, type TsxRun } from './helpers/run-tsx.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const examplesDir = join(root, 'examples');

/** An example that is a project of its own, built and tested by its own tooling (test/angular-app.test.ts). */
const OWN_PROJECTS = new Set([join(examplesDir, 'angular-app')]);

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || OWN_PROJECTS.has(path) ? [] : listTs(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const exampleFiles = listTs(examplesDir);

describe('examples type-check', () => {
  /** Diagnostics per example file, from one program with the project's own compiler options. */
  const byFile = new Map<string, string[]>();

  beforeAll(() => {
    const configPath = join(root, 'tsconfig.json');
    const config = ts.readConfigFile(configPath, (path) => ts.sys.readFile(path));
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root, { noEmit: true }, configPath);
    const program = ts.createProgram(exampleFiles, parsed.options);
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const file = diagnostic.file === undefined ? '(global)' : relative(root, diagnostic.file.fileName);
      const position =
        diagnostic.file !== undefined && diagnostic.start !== undefined
          ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
          : undefined;
      const where = position === undefined ? file : `${file}:${position.line + 1}:${position.character + 1}`;
      const list = byFile.get(file) ?? [];
      list.push(`${where} ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
      byFile.set(file, list);
    }
  }, 60_000);

  it('finds the examples', () => {
    expect(exampleFiles.map((file) => relative(examplesDir, file)).sort()).toEqual(
      expect.arrayContaining(['minimal.ts', 'streaming.ts', 'custom-routing.ts', 'dashboard.ts', 'demo.ts']),
    );
  });

  it('compiles every Node example with the project settings', () => {
    const problems = [...byFile].flatMap(([, list]) => list);
    expect(problems).toEqual([]);
  });
});

/** Runs an example with tsx, with no OPENROUTER_API_KEYS: the examples then use the fake server. */
function runExample(file: string, args: string[] = [], env: Record<string, string> = {}): Promise<TsxRun> {
  return runWithTsx(join(examplesDir, file), { args, env, timeoutMs: 25_000, log: 'examples-output.log' });
}

describe.concurrent('runnable examples, against the fake server', () => {
  it('minimal.ts answers one prompt', async () => {
    const run = await runExample('minimal.ts');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^answer: Echo \(example\/model\): Say hello in five words\.$/m);
    expect(run.stdout).toMatch(/^served by key (one|two) \(example\/model\) in \d+ ms after 1 attempt\(s\)$/m);
  });

  it('streaming.ts writes the answer as it streams', async () => {
    const run = await runExample('streaming.ts');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Keys wait in a queue; one rests until its reset, the others answer.');
    expect(run.stdout).toMatch(/\(stop; key (one|two); \d+ tokens\)/);
  });

  it('custom-routing.ts sends long prompts to the large-context model', async () => {
    const run = await runExample('custom-routing.ts');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^long-1 -> example\/large-context \(key (one|two)\): example\/large-context read \d+ characters\.$/m);
    expect(run.stdout).toMatch(/^short-1 -> example\/small /m);
    expect(run.stdout).toMatch(/^short-2 -> example\/small /m);
  });

  it('dashboard.ts serves the dashboard from its own server', async () => {
    const run = await runExample('dashboard.ts', ['--once'], { PORT: '0' });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard\/$/m);
    expect(run.stdout).toMatch(/^key one #[0-9a-f]{6}: closed, \d+ requests$/m);
    expect(run.stdout).toMatch(/^key two #[0-9a-f]{6}: closed, \d+ requests$/m);
  });

  it('demo.ts balances 300 prompts over five keys', async () => {
    const run = await runExample('demo.ts');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/300 prompts in [\d.]+ s: \d+ completed, \d+ failed/);
  });
});

describe('the examples read OPENROUTER_API_KEYS as the CLI does', () => {
  it('comma- or newline-separated entries, each the key alone or label=key, spaces trimmed', async () => {
    const { keysFromEnvironment } = await import('../examples/support/env-keys.js');
    expect(keysFromEnvironment(' team-a = sk-or-v1-aaa ,sk-or-v1-bbb\nteam-c=sk-or-v1-ccc\n')).toEqual([
      { key: 'sk-or-v1-aaa', label: 'team-a' },
      { key: 'sk-or-v1-bbb', label: 'key-2' },
      { key: 'sk-or-v1-ccc', label: 'team-c' },
    ]);
    expect(keysFromEnvironment('')).toEqual([]);
  });
});
