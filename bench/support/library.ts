/**
 * The library as users run it: `src/` compiled by esbuild the way `tsup` builds `dist/` (ESM,
 * target node20, dependencies external, no `keepNames`), into `bench/.build/`. Running it from
 * source through `tsx` instead would charge it for `__name(...)` wrappers on every closure, which
 * tsx adds (`keepNames`) and the published build does not; the peers, plain JS from
 * `node_modules`, pay nothing of the kind. Built fresh on every run, so it measures the tree as it is
 * (once per run: the scenarios' processes load the build their parent made).
 * The output file name depends on the entry, so an A/B in parallel does not overwrite the other.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Library from '../../src/index.js';

export type LibraryModule = typeof Library;

/** `BENCH_LIBRARY_ENTRY=/path/to/src/index.ts` benches another copy of the source (an A/B of a fix). */
const ENTRY = process.env['BENCH_LIBRARY_ENTRY'] ?? fileURLToPath(new URL('../../src/index.ts', import.meta.url));
const OUTDIR = fileURLToPath(new URL('../.build/', import.meta.url));

/** A build of another tree is named by its entry's hash, so that builds of several trees stand side by side. */
function outfileOf(entry: string): string {
  return `openrouter-rx-${createHash('sha1').update(entry).digest('hex').slice(0, 8)}`;
}

const OUTFILE = process.env['BENCH_LIBRARY_ENTRY'] === undefined ? 'openrouter-rx' : outfileOf(ENTRY);

/** Set for the processes `bench/run.ts` forks: the run built the library once, before them. */
const BUILT_ENV = 'BENCH_LIBRARY_BUILT';

let loading: Promise<LibraryModule> | undefined;

/** Compiles the library into `bench/.build/`, and tells processes forked after it to load that build. */
export async function buildLibrary(): Promise<void> {
  await buildTree(ENTRY, OUTFILE);
  process.env[BUILT_ENV] = OUTFILE;
}

/** Compiles the library of the source tree whose entry is `entry` (its `src/index.ts`) into `bench/.build/<outfile>.mjs`. */
async function buildTree(entry: string, outfile: string): Promise<string> {
  const { build } = await import('esbuild');
  await build({
    entryPoints: { [outfile]: entry },
    outdir: OUTDIR,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    treeShaking: true,
    outExtension: { '.js': '.mjs' },
    // For `profile-summary.ts`, which maps profile frames back to `src/` lines with it.
    sourcemap: 'linked',
    logLevel: 'silent',
  });
  return `${OUTDIR}${outfile}.mjs`;
}

/** The library of another source tree (`/path/to/src/index.ts`), built and loaded beside this one's, for an A/B in one process. */
export async function loadTree(entry: string): Promise<LibraryModule> {
  const file = await buildTree(entry, outfileOf(entry));
  return (await import(pathToFileURL(file).href)) as LibraryModule;
}

export function loadLibrary(): Promise<LibraryModule> {
  loading ??= (async () => {
    if (process.env[BUILT_ENV] !== OUTFILE) await buildLibrary();
    return (await import(pathToFileURL(`${OUTDIR}${OUTFILE}.mjs`).href)) as LibraryModule;
  })();
  return loading;
}
