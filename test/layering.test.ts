/**
 * Keeps src/ layered (issue #11): no import cycles, imports only point down the layer table below,
 * and no source file grows past 500 lines. Imports are read with the TypeScript parser (see
 * test/helpers/import-graph.ts): static, type-only, re-exports, side-effect and dynamic imports and
 * `import('…')` type queries, relative specifiers only, resolved to files.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  adjacencyOf,
  checkLayers,
  extractSpecifiers,
  findCycles,
  layerOf,
  readImportGraph,
  type LayerRule,
} from './helpers/import-graph.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MAX_LINES = 500;

// ── The architecture ─────────────────────────────────────────────────────────────────────────────
// Ranked layers, lowest first: each may import its own layer and every layer before it, never one
// after it. Edges sit beside the stack and may import only what their row names. Importing your
// own layer is always allowed.
const STACK = ['core', 'health', 'store', 'pool', 'routing', 'operators', 'assembly'] as const;
const below = (layer: (typeof STACK)[number]) => STACK.slice(0, STACK.indexOf(layer));

const RULES: LayerRule[] = [
  // layer        files                                        may import (besides itself)
  { layer: 'core', paths: ['src/core/'], mayImport: below('core') },
  { layer: 'health', paths: ['src/health/'], mayImport: below('health') },
  { layer: 'store', paths: ['src/store/'], mayImport: below('store') },
  { layer: 'pool', paths: ['src/pool/'], mayImport: below('pool') },
  { layer: 'routing', paths: ['src/routing/'], mayImport: below('routing') },
  { layer: 'operators', paths: ['src/operators/'], mayImport: below('operators') },
  {
    layer: 'assembly',
    paths: ['src/create-pool.ts', 'src/create-key-pool.ts', 'src/index.ts'],
    mayImport: [...below('assembly'), 'transport', 'wire'],
  },
  // edges
  { layer: 'wire', paths: ['src/wire/'], mayImport: ['core'] },
  { layer: 'transport', paths: ['src/transport/'], mayImport: ['core', 'wire'] },
  { layer: 'redis', paths: ['src/redis/'], mayImport: ['core', 'health', 'store'] },
  { layer: 'testing', paths: ['src/testing/'], mayImport: [] }, // the fake server is an independent oracle
  { layer: 'dashboard', paths: ['src/dashboard/'], mayImport: [...STACK, 'transport'] },
  { layer: 'otel', paths: ['src/otel/'], mayImport: [...STACK, 'manifest'] }, // the tracer and meter carry the version
  { layer: 'cli', paths: ['src/cli/'], mayImport: [...STACK, 'transport', 'dashboard', 'testing', 'manifest'] },
  // outside src/
  { layer: 'manifest', paths: ['package.json'], mayImport: [] }, // the CLI prints its version, otel reports it
];

const graph = readImportGraph(root, 'src');

describe('src/ layering', () => {
  it('reads a plausible graph (every relative import resolves to a file)', () => {
    expect(graph.files.length).toBeGreaterThan(20);
    expect(graph.edges.length).toBeGreaterThan(50);
    const unresolved = graph.edges
      .filter((edge) => edge.to === undefined)
      .map((edge) => `${edge.from}:${edge.line} ${edge.kind} '${edge.specifier}' resolves to no file`);
    expect(unresolved, unresolved.join('\n')).toEqual([]);
  });

  it('has no import cycle (type-only imports included)', () => {
    const cycles = findCycles(adjacencyOf(graph.edges));
    const message = `${cycles.length} import cycle(s) in src/:\n${cycles.map((chain) => `  ${chain.join(' → ')}`).join('\n')}`;
    expect(
      cycles.map((chain) => chain.join(' → ')),
      message,
    ).toEqual([]);
  });

  it('imports only down the layer table', () => {
    const problems = checkLayers(RULES, graph.files, graph.edges);
    const message = `${problems.length} layering violation(s):\n${problems.map((line) => `  ${line}`).join('\n')}`;
    expect(problems, message).toEqual([]);
  });

  it(`has no source file over ${MAX_LINES} lines`, () => {
    const offenders = [...graph.lines].filter(([, count]) => count > MAX_LINES).map(([file, count]) => `${file}: ${count} lines`);
    expect(offenders, `files over ${MAX_LINES} lines:\n  ${offenders.join('\n  ')}`).toEqual([]);
  });
});

// ── The checkers themselves, on synthetic input, so a broken checker cannot pass silently ───────
describe('layering checkers (self-test)', () => {
  it('extracts every import form, and nothing from comments or strings', () => {
    const text = [
      `import {`,
      `  a,`,
      `  b, // from './not-this.js'`,
      `} from './multi-line.js';`,
      `import type { T } from '../types.js';`,
      `import { type U, v } from './mixed.js';`,
      `export { w } from './re-export.js';`,
      `export type { X } from './re-export-type.js';`,
      `export * from './star.js';`,
      `import './side-effect.js';`,
      `/* import { c } from './commented.js'; */`,
      `const s = "import { d } from './in-string.js'";`,
      `const lazy = () => import('./dynamic.js');`,
      `type Q = typeof import('./type-query.js');`,
      `import { e } from 'rxjs';`,
    ].join('\n');
    const found = extractSpecifiers('virtual.ts', text).map(({ specifier, kind }) => `${kind} ${specifier}`);
    expect(found).toEqual([
      'import ./multi-line.js',
      'import type ../types.js',
      'import ./mixed.js',
      'export from ./re-export.js',
      'export type from ./re-export-type.js',
      'export from ./star.js',
      'side effect ./side-effect.js',
      'dynamic import ./dynamic.js',
      'type query ./type-query.js',
      'import rxjs',
    ]);
  });

  it('finds cycles, as chains that follow real edges, and nothing in a DAG', () => {
    const dag = new Map([
      ['a', ['b', 'c']],
      ['b', ['c']],
      ['c', []],
    ]);
    expect(findCycles(dag)).toEqual([]);

    const tangled = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']], // a → b → c → a
      ['d', ['e']],
      ['e', ['d']], // d → e → d
      ['f', ['f']], // self-import
      ['g', ['a']], // leads into a cycle, is not part of one
      ['h', ['i']],
      ['i', ['h', 'j']],
      ['j', ['i']], // one group, two cycles: h → i → h and i → j → i
    ]);
    const cycles = findCycles(tangled);
    expect(cycles).toEqual([
      ['a', 'b', 'c', 'a'],
      ['d', 'e', 'd'],
      ['f', 'f'],
      ['h', 'i', 'h'],
      ['j', 'i', 'j'],
    ]);
    for (const chain of cycles) {
      for (let at = 0; at + 1 < chain.length; at += 1) expect(tangled.get(chain[at]!)).toContain(chain[at + 1]);
    }
  });

  it('flags upward imports, edge-to-edge imports, unknown files and unknown layer names', () => {
    const rules: LayerRule[] = [
      { layer: 'low', paths: ['src/low/'], mayImport: [] },
      { layer: 'high', paths: ['src/high/'], mayImport: ['low'] },
      { layer: 'entry', paths: ['src/index.ts'], mayImport: ['low', 'high'] },
      { layer: 'edge', paths: ['src/edge/'], mayImport: ['low'] },
      { layer: 'other', paths: ['src/other/'], mayImport: ['nonexistent'] },
    ];
    const files = ['src/low/a.ts', 'src/low/b.ts', 'src/high/c.ts', 'src/index.ts', 'src/edge/e.ts', 'src/other/o.ts', 'src/stray.ts'];
    const edges = [
      { from: 'src/low/a.ts', to: 'src/low/b.ts' }, // same layer: fine
      { from: 'src/high/c.ts', to: 'src/low/a.ts' }, // down: fine
      { from: 'src/index.ts', to: 'src/high/c.ts' }, // down: fine
      { from: 'src/low/b.ts', to: 'src/high/c.ts' }, // up: violation
      { from: 'src/edge/e.ts', to: 'src/index.ts' }, // edge → entry: violation
      { from: 'src/high/c.ts', to: 'src/edge/e.ts' }, // layer → edge: violation
      { from: 'src/high/c.ts', to: 'src/stray.ts' }, // target in no layer
      { from: 'src/high/c.ts', to: undefined }, // unresolved: reported elsewhere
    ];
    expect(checkLayers(rules, files, edges)).toEqual([
      "rule 'other' names an unknown layer 'nonexistent'",
      'src/stray.ts belongs to no layer: add its folder to the table',
      'src/low/b.ts → src/high/c.ts: low may not import high (low may import only itself and nothing)',
      'src/edge/e.ts → src/index.ts: edge may not import entry (edge may import only itself and low)',
      'src/high/c.ts → src/edge/e.ts: high may not import edge (high may import only itself and low)',
      'src/high/c.ts → src/stray.ts: the target belongs to no layer',
    ]);
  });

  it('the real table classifies the files the real rules are about', () => {
    const rule = (file: string) => layerOf(RULES, file)?.layer;
    expect(rule('src/pool/key-pool.ts')).toBe('pool');
    expect(rule('src/index.ts')).toBe('assembly');
    expect(checkLayers(RULES, ['src/operators/x.ts', 'src/pool/y.ts'], [{ from: 'src/pool/y.ts', to: 'src/operators/x.ts' }])).toHaveLength(
      1,
    );
    expect(checkLayers(RULES, ['src/operators/x.ts', 'src/pool/y.ts'], [{ from: 'src/operators/x.ts', to: 'src/pool/y.ts' }])).toEqual([]);
    expect(checkLayers(RULES, ['src/core/x.ts', 'src/wire/y.ts'], [{ from: 'src/core/x.ts', to: 'src/wire/y.ts' }])).toHaveLength(1);
  });
});
