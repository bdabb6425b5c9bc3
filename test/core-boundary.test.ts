import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const coreEntries = ['src/pool/key-pool.ts', 'src/pool/strategies.ts', 'src/operators/balance.ts', 'src/wire/index.ts'];

/** Every module reachable from `entry` through relative imports, with its bare imports. */
function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const visit = (file: string) => {
    if (graph.has(file)) return;
    const source = readFileSync(file, 'utf8');
    const specifiers = [...source.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map((match) => match[1]!);
    graph.set(
      file,
      specifiers.filter((specifier) => !specifier.startsWith('.')),
    );
    for (const specifier of specifiers.filter((s) => s.startsWith('.'))) visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
  };
  visit(resolve(root, entry));
  return graph;
}

describe('the core (keys, routing, operators, wire)', () => {
  it.each(coreEntries)('%s reaches no node: module, no SDK, no classic zod and no transport', (entry) => {
    const offenders: string[] = [];
    for (const [file, bare] of importGraph(entry)) {
      const name = relative(root, file);
      if (name.startsWith('src/transport') || name.startsWith('src/testing')) offenders.push(name);
      for (const specifier of bare) {
        // Classic zod is 97 KB in a browser bundle: the core validates with `zod/mini`.
        if (
          specifier.startsWith('node:') ||
          specifier === 'openai' ||
          specifier.startsWith('openai/') ||
          specifier === 'ioredis' ||
          specifier === 'zod'
        ) {
          offenders.push(`${name} imports ${specifier}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });

  it('bundles for the browser', async () => {
    const result = await build({
      stdin: {
        contents: coreEntries.map((entry, index) => `export * as m${index} from './${entry}';`).join('\n'),
        resolveDir: root,
        loader: 'ts',
      },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/from\s*["']node:/);
    expect(code).not.toMatch(/Date\.now\(\)/);
  });
});
