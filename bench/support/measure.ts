import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, arch, platform } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createRequire } from 'node:module';

/** The q-quantile (0..1) of `values`, by nearest rank; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** This process's CPU time (user + system, every thread), in µs. */
export function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

let clockTicks: number | undefined;

/** Another process's CPU time in µs, from /proc (Linux); undefined elsewhere. Resolution: one tick (10 ms). */
export function processCpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the `(comm)`, which may itself hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    clockTicks ??= 100; // CLK_TCK is 100 on every Linux this runs on.
    return ((utime + stime) * 1_000_000) / clockTicks;
  } catch {
    return undefined;
  }
}

type GcFunction = (options?: { type: 'minor' }) => void;

let gcFunction: GcFunction | undefined | null = null;

/**
 * A GC, if the runtime lets us have one (`--expose-gc`, or the V8 flag set at runtime). `full` is
 * V8's `gc()`, a mark-compact of the whole heap (twice: objects kept by finalizers and weak
 * references of the first pass go in the second): the heap figures. `young` is a scavenge of the
 * young generation only (`gc({ type: 'minor' })`; Node 20's V8 reads no other type, and runs a
 * scavenge for `{ type: 'major' }` too).
 */
export function collectGarbage(kind: 'full' | 'young' = 'full'): boolean {
  if (gcFunction === null) {
    const exposed = (globalThis as { gc?: GcFunction }).gc;
    if (typeof exposed === 'function') gcFunction = exposed;
    else {
      try {
        setFlagsFromString('--expose-gc');
        gcFunction = runInNewContext('gc') as GcFunction;
      } catch {
        gcFunction = undefined;
      }
    }
  }
  if (gcFunction === undefined) return false;
  if (kind === 'young') {
    gcFunction({ type: 'minor' });
  } else {
    gcFunction();
    gcFunction();
  }
  return true;
}

/** Heap used after a full GC (when available), in bytes. */
export function settledHeap(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface MachineInfo {
  cpuModel: string;
  cpuCount: number;
  totalMemoryGiB: number;
  platform: string;
  arch: string;
  kernel: string;
  node: string;
  v8: string;
  loadAverageAtStart: number[];
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cpuCount: list.length,
    totalMemoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: platform(),
    arch: arch(),
    kernel: release(),
    node: process.version,
    v8: process.versions.v8,
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
  };
}

const require = createRequire(import.meta.url);

/** Installed versions of the packages the bench compares. */
export function packageVersions(): Record<string, string> {
  const names = ['openai', 'rxjs', 'cockatiel', 'p-queue', '@portkey-ai/gateway', 'hono', '@hono/node-server', 'tsx'];
  const versions: Record<string, string> = {};
  for (const name of names) {
    try {
      const path = require.resolve(`${name}/package.json`, { paths: [process.cwd()] });
      versions[name] = (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
    } catch {
      try {
        versions[name] = (JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')) as { version: string }).version;
      } catch {
        versions[name] = 'unknown';
      }
    }
  }
  try {
    versions['openrouter-rx'] = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
  } catch {
    versions['openrouter-rx'] = 'unknown';
  }
  return versions;
}

/** The commit the library was built from, and whether `src/` differed from it (read-only git calls). */
export function sourceRevision(): { commit: string; srcModified: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--', 'src'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return { commit, srcModified: status.length > 0 };
  } catch {
    return { commit: 'unknown', srcModified: false };
  }
}

/** Rounds for the JSON: `digits` decimals. */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
