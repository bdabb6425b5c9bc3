/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time by function and by package,
 * and the inclusive time of the library's own frames (`src/`), so a missed target can be shown
 * with the functions that cost it.
 *
 *   node --cpu-prof --cpu-prof-dir=bench/profiles --import tsx bench/run.ts --only overhead --peers library
 *   npx tsx bench/support/profile-summary.ts bench/profiles/<file>.cpuprofile [top=25] [filter]
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

const maps = new Map<string, SourceMap | null>();

/** A frame of the library's build (`bench/.build/`), mapped back to its `src/` file and line. */
function frameOf(frame: ProfileNode['callFrame']): { url: string; line: number } {
  if (!frame.url.includes('/.build/')) return { url: frame.url, line: frame.lineNumber + 1 };
  let map = maps.get(frame.url);
  if (map === undefined) {
    const path = `${frame.url.startsWith('file:') ? fileURLToPath(frame.url) : frame.url}.map`;
    map = existsSync(path) ? new SourceMap(JSON.parse(readFileSync(path, 'utf8')) as SourceMapPayload) : null;
    maps.set(frame.url, map);
  }
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber);
  if (entry === undefined || entry === null || !('originalSource' in entry)) return { url: frame.url, line: frame.lineNumber + 1 };
  return { url: entry.originalSource.replace(/^.*?\bsrc\//, '/src/'), line: entry.originalLine + 1 };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export function bucketOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const nodeModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nodeModules !== null) return nodeModules[1]!;
  if (url.includes('/src/')) return `src/${url.split('/src/')[1]!.split('/')[0]}`;
  if (url.includes('/.build/')) return 'openrouter-rx (built)';
  if (url.includes('/bench/')) return 'bench';
  if (url.startsWith('node:')) return url.startsWith('node:internal/deps/undici') ? 'undici (node)' : 'node internals';
  return url;
}

/** The library's own code: `src/` run from source, or the build in `bench/.build/`; not the fake server. */
function isLibrary(url: string): boolean {
  return (url.includes('/src/') && !url.includes('/src/testing')) || url.includes('/.build/openrouter-rx');
}

export function summarise(path: string, top = 25, filter?: string): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<number, number>();
  profile.samples.forEach((id, index) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const total = [...self.values()].reduce((sum, value) => sum + value, 0);

  const byFunction = new Map<string, number>();
  const byBucket = new Map<string, number>();
  let inLibrary = 0;
  const libraryEntry = new Map<string, number>();
  const libraryInclusive = new Map<string, number>();
  const libraryEdges = new Map<string, number>();
  const nameOf = (node: ProfileNode) => {
    const { url, line } = frameOf(node.callFrame);
    return `${node.callFrame.functionName || '(anonymous)'} ${url.replace(/^.*\/(src|node_modules|bench|\.build)\//, '$1/').replace(/^node:internal\//, '')}:${line}`;
  };
  for (const [id, micros] of self) {
    const node = byId.get(id)!;
    const frame = node.callFrame;
    const key = nameOf(node);
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
    const bucket = bucketOf(frameOf(frame).url, frame.functionName);
    byBucket.set(bucket, (byBucket.get(bucket) ?? 0) + micros);
    // Inclusive: the sample counts for the library when any frame of its stack is in src/.
    let cursor: number | undefined = id;
    let outermost: ProfileNode | undefined;
    let innermost: ProfileNode | undefined;
    let calleeOfInnermost: ProfileNode | undefined;
    let previous: ProfileNode | undefined;
    const seen = new Set<string>();
    while (cursor !== undefined) {
      const current = byId.get(cursor)!;
      if (isLibrary(current.callFrame.url)) {
        outermost = current;
        if (innermost === undefined) {
          innermost = current;
          calleeOfInnermost = previous;
        }
        const name = nameOf(current);
        if (!seen.has(name)) {
          seen.add(name);
          libraryInclusive.set(name, (libraryInclusive.get(name) ?? 0) + micros);
        }
      }
      previous = current;
      cursor = parent.get(cursor);
    }
    if (innermost !== undefined) {
      const edge = `${nameOf(innermost)} → ${calleeOfInnermost === undefined ? '(self)' : nameOf(calleeOfInnermost)}`;
      libraryEdges.set(edge, (libraryEdges.get(edge) ?? 0) + micros);
    }
    if (outermost !== undefined) {
      inLibrary += micros;
      const entry = nameOf(outermost);
      libraryEntry.set(entry, (libraryEntry.get(entry) ?? 0) + micros);
    }
  }
  const ms = (micros: number) => `${(micros / 1000).toFixed(1)} ms (${((micros / total) * 100).toFixed(1)}%)`;
  const sorted = (map: Map<string, number>) =>
    [...map.entries()].filter(([key]) => filter === undefined || key.includes(filter)).sort((a, b) => b[1] - a[1]);
  return [
    `profile ${relative(process.cwd(), path)}: ${(total / 1000).toFixed(0)} ms sampled`,
    '',
    'self time by package / area:',
    ...sorted(byBucket)
      .slice(0, 20)
      .map(([key, micros]) => `  ${ms(micros).padEnd(20)} ${key}`),
    '',
    `inclusive time under the library's frames (src/ or bench/.build/, the fake server excluded): ${ms(inLibrary)}`,
    ...sorted(libraryEntry)
      .slice(0, 10)
      .map(([key, micros]) => `  ${ms(micros).padEnd(20)} entered at ${key}`),
    '',
    'inclusive time by library function (top 20):',
    ...sorted(libraryInclusive)
      .slice(0, 20)
      .map(([key, micros]) => `  ${ms(micros).padEnd(20)} ${key}`),
    '',
    'time under the library, by its innermost frame → the callee outside it (top 20):',
    ...sorted(libraryEdges)
      .slice(0, 20)
      .map(([key, micros]) => `  ${ms(micros).padEnd(20)} ${key}`),
    '',
    `self time by function (top ${top}${filter === undefined ? '' : `, matching "${filter}"`}):`,
    ...sorted(byFunction)
      .slice(0, top)
      .map(([key, micros]) => `  ${ms(micros).padEnd(20)} ${key}`),
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [path, top, filter] = process.argv.slice(2);
  if (path === undefined) {
    process.stderr.write('usage: tsx bench/support/profile-summary.ts <file.cpuprofile> [top] [filter]\n');
    process.exit(1);
  }
  process.stdout.write(`${summarise(path, top === undefined ? 25 : Number(top), filter)}\n`);
}

/** A node of a sampling heap profile (`HeapProfiler.stopSampling`): the bytes its frame allocated itself. */
export interface HeapProfileNode {
  callFrame: ProfileNode['callFrame'];
  selfSize: number;
  children: HeapProfileNode[];
}

/**
 * Summarises a sampling heap profile taken with the objects minor and major GCs collected kept in
 * (what a hot path allocates, garbage included, not only what it retains): bytes by allocating
 * function and by package, and, for `focus` (part of a function name), the stacks that allocate
 * through it, so an allocation can be traced to the library frame that asked for it.
 */
export function summariseAllocations(head: HeapProfileNode, units: number, unitName: string, top = 30, focus?: string): string {
  const byFunction = new Map<string, number>();
  const byBucket = new Map<string, number>();
  const focusStacks = new Map<string, number>();
  let total = 0;
  const nameOf = (frame: ProfileNode['callFrame']) => {
    const { url, line } = frameOf(frame);
    return `${frame.functionName || '(anonymous)'} ${url.replace(/^.*\/(src|node_modules|bench|\.build)\//, '$1/').replace(/^node:internal\//, '')}:${line}`;
  };
  const visit = (node: HeapProfileNode, stack: readonly string[]) => {
    const name = nameOf(node.callFrame);
    const here = [...stack, name];
    if (node.selfSize > 0) {
      total += node.selfSize;
      byFunction.set(name, (byFunction.get(name) ?? 0) + node.selfSize);
      const bucket = bucketOf(frameOf(node.callFrame).url, node.callFrame.functionName);
      byBucket.set(bucket, (byBucket.get(bucket) ?? 0) + node.selfSize);
      if (focus !== undefined && node.callFrame.functionName.includes(focus)) {
        const key = here.slice(-8).join('\n      < ');
        focusStacks.set(key, (focusStacks.get(key) ?? 0) + node.selfSize);
      }
    }
    for (const child of node.children) visit(child, here);
  };
  visit(head, []);
  const perUnit = (bytes: number) => `${(bytes / units).toFixed(0).padStart(7)} B per ${unitName}`;
  const sorted = (map: Map<string, number>) => [...map.entries()].sort((a, b) => b[1] - a[1]);
  return [
    `allocated ${(total / 2 ** 20).toFixed(1)} MiB, ${perUnit(total).trim()} (sampled; attribution follows V8's inlining)`,
    '',
    'bytes by package / area:',
    ...sorted(byBucket)
      .slice(0, 15)
      .map(([key, bytes]) => `  ${perUnit(bytes)}  ${key}`),
    '',
    `bytes by allocating function (top ${top}):`,
    ...sorted(byFunction)
      .slice(0, top)
      .map(([key, bytes]) => `  ${perUnit(bytes)}  ${key}`),
    ...(focus === undefined
      ? []
      : [
          '',
          `stacks allocating through "${focus}" (top 8):`,
          ...sorted(focusStacks)
            .slice(0, 8)
            .map(([key, bytes]) => `  ${perUnit(bytes)}\n      ${key}`),
        ]),
  ].join('\n');
}
