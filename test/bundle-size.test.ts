/**
 * What a browser app downloads at start when it uses the core (`createKeyPool`, `balance`,
 * `health$`) with `createFetchTransport()`: the package's `dist/index.js` bundled as Vite or the
 * Angular CLI would (ESM, code splitting, the `es2015` condition, minified). The openai SDK is a
 * chunk loaded only by the default transport's first attempt, so it is not in the initial load.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Minified bytes of the initial load (the entry and every chunk it imports statically). */
// A guard on growth, not a target: set with a few KB of headroom over what the core weighs (225.8 KB
// with quota windows that log numbers, not objects, and keep an absorb's copies apart; 220.4 KB
// with dispose aborting attempts, backoffs outside the slot and refusals that teach left uncounted;
// 219.1 KB with balance's line for quota room; 217.2 KB with the pool-wide key scrub; 215.2 KB with the steady clock, a wall clock set back holding no wait; 210.6 KB with PoolPort.acquireNow, the lease at once without an acquisition; 205.2 KB once each operator
// checked its own options and health records were frozen; 200.1 KB at 0771888, with learned limits,
// accounts and adaptive concurrency; 158 KB at 35d23c0).
const INITIAL_LOAD_BUDGET_BYTES = 230_000;

const app = `
import { from } from 'rxjs';
import { balance, createFetchTransport, createKeyPool } from './dist/index.js';
const pool = createKeyPool({ keys: [{ key: 'handled-by-the-backend', label: 'web' }], transport: createFetchTransport({ baseURL: '/api/openrouter' }) });
pool.health$.subscribe((health) => console.log(health.keys.length));
from([{ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }]).pipe(balance(pool)).subscribe(console.log);
`;

/** Output files reachable from `entry` through static imports. */
function initialLoad(outputs: Metafile['outputs'], entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imported of outputs[file]?.imports ?? []) if (imported.kind === 'import-statement') visit(imported.path);
  };
  visit(entry);
  return [...seen];
}

describe('the browser bundle of the core', () => {
  it(`loads without the openai SDK, within ${INITIAL_LOAD_BUDGET_BYTES} bytes minified`, async () => {
    const result = await build({
      stdin: { contents: app, resolveDir: root, loader: 'js', sourcefile: 'app.js' },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      splitting: true,
      minify: true,
      conditions: ['es2015'],
      outdir: resolve(root, 'test-output/bundle'),
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const outputs = result.metafile.outputs;
    const entry = Object.keys(outputs).find((file) => outputs[file]!.entryPoint !== undefined)!;
    const initial = initialLoad(outputs, entry);
    const inputs = initial.flatMap((file) => Object.keys(outputs[file]!.inputs));
    expect(inputs.filter((input) => input.includes('node_modules/openai/') || input.includes('openai-transport'))).toEqual([]);
    // The SDK is still there for the default transport, as a chunk loaded on demand.
    expect(Object.keys(outputs).some((file) => file.includes('openai-transport'))).toBe(true);
    const bytes = initial.reduce((sum, file) => sum + outputs[file]!.bytes, 0);
    expect(bytes).toBeLessThanOrEqual(INITIAL_LOAD_BUDGET_BYTES);
  });
});
