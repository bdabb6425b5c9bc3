/**
 * The relative-import graph of a source tree, read with the TypeScript parser (so multi-line
 * imports, comments and strings that merely look like imports are handled), plus the two checks
 * test/layering.test.ts runs on it: cycles (Tarjan's strongly connected components) and layer rules.
 * Pure apart from `readImportGraph`, so the checkers can be tested on an in-memory graph.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** One import edge, as it appears in the source. */
export interface ImportEdge {
  /** Importing file, relative to the root, with forward slashes (`src/pool/key-pool.ts`). */
  from: string;
  /** The resolved file, same form; undefined when the specifier resolves to nothing. */
  to: string | undefined;
  specifier: string;
  kind: 'import' | 'import type' | 'export from' | 'export type from' | 'side effect' | 'dynamic import' | 'type query' | 'require';
  line: number;
}

export interface ImportGraph {
  /** Every `.ts` file found, relative to the root. */
  files: string[];
  /** Relative-specifier edges only; bare specifiers (`rxjs`, `node:fs`) are not part of the graph. */
  edges: ImportEdge[];
  /** Line counts per file. */
  lines: Map<string, number>;
}

const toPosix = (path: string) => path.split(sep).join('/');

/** Every `.ts` file (not `.d.ts`) under `dir`, sorted. */
export function listTsFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && /\.(ts|mts|cts|tsx)$/.test(entry.name) && !/\.d\.[mc]?ts$/.test(entry.name)) out.push(full);
    }
  };
  walk(dir);
  return out.sort();
}

function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}

/**
 * Resolves a relative specifier the way NodeNext + TypeScript sources do: `./x.js` → `./x.ts`,
 * `./x` → `./x.ts`, `./dir` → `./dir/index.ts`. Returns an absolute path or undefined.
 */
export function resolveSpecifier(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  const candidates: string[] = [];
  const swapped: Array<[RegExp, string[]]> = [
    [/\.js$/, ['.ts', '.tsx']],
    [/\.jsx$/, ['.tsx']],
    [/\.mjs$/, ['.mts']],
    [/\.cjs$/, ['.cts']],
  ];
  for (const [pattern, replacements] of swapped) {
    if (pattern.test(base)) candidates.push(...replacements.map((ext) => base.replace(pattern, ext)));
  }
  candidates.push(base, `${base}.ts`, `${base}.tsx`, join(base, 'index.ts'), join(base, 'index.tsx'));
  return candidates.find(isFile);
}

const isRelative = (specifier: string) =>
  specifier === '.' || specifier === '..' || specifier.startsWith('./') || specifier.startsWith('../');

/** The module specifiers one source text uses, with how they are used. Exported for the self-test. */
export function extractSpecifiers(fileName: string, text: string): Array<Omit<ImportEdge, 'from' | 'to'>> {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Array<Omit<ImportEdge, 'from' | 'to'>> = [];
  const add = (literal: ts.Node, kind: ImportEdge['kind']) => {
    if (!ts.isStringLiteralLike(literal)) return;
    found.push({ specifier: literal.text, kind, line: source.getLineAndCharacterOfPosition(literal.getStart(source)).line + 1 });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const kind = !clause ? 'side effect' : clause.isTypeOnly ? 'import type' : 'import';
      add(node.moduleSpecifier, kind);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      add(node.moduleSpecifier, node.isTypeOnly ? 'export type from' : 'export from');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly ? 'import type' : 'require');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) {
      add(node.arguments[0], 'dynamic import');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      // `typeof import('./x.js')` / `import('./x.js').Foo` in a type position: a type-only edge.
      add(node.argument.literal, 'type query');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Reads every `.ts` file under `root/dir` and returns its relative import edges. */
export function readImportGraph(root: string, dir = 'src'): ImportGraph {
  const absolute = listTsFiles(resolve(root, dir));
  const files = absolute.map((file) => toPosix(relative(root, file)));
  const edges: ImportEdge[] = [];
  const lines = new Map<string, number>();
  absolute.forEach((file, index) => {
    const from = files[index]!;
    const text = readFileSync(file, 'utf8');
    lines.set(from, text.length === 0 ? 0 : text.split(/\r?\n/).length - (text.endsWith('\n') ? 1 : 0));
    for (const found of extractSpecifiers(file, text)) {
      if (!isRelative(found.specifier)) continue;
      const target = resolveSpecifier(file, found.specifier);
      edges.push({ from, to: target === undefined ? undefined : toPosix(relative(root, target)), ...found });
    }
  });
  return { files, edges, lines };
}

/**
 * Every import cycle: the strongly connected components with more than one file (or a file that
 * imports itself), each given as a closed chain `a → b → … → a` that really follows edges.
 */
export function findCycles(adjacency: ReadonlyMap<string, readonly string[]>): string[][] {
  const nodes = new Set<string>(adjacency.keys());
  for (const targets of adjacency.values()) for (const target of targets) nodes.add(target);
  const next = (node: string) => [...new Set(adjacency.get(node) ?? [])].sort();

  // Tarjan, iterative so a deep graph cannot overflow the stack.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  for (const start of [...nodes].sort()) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; children: string[]; at: number }> = [];
    const open = (node: string) => {
      index.set(node, counter);
      low.set(node, counter);
      counter += 1;
      stack.push(node);
      onStack.add(node);
      work.push({ node, children: next(node), at: 0 });
    };
    open(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      if (frame.at < frame.children.length) {
        const child = frame.children[frame.at]!;
        frame.at += 1;
        if (!index.has(child)) open(child);
        else if (onStack.has(child)) low.set(frame.node, Math.min(low.get(frame.node)!, index.get(child)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        const selfLoop = component.length === 1 && next(frame.node).includes(frame.node);
        if (component.length > 1 || selfLoop) components.push(component);
      }
    }
  }

  // Readable chains per component: from its smallest file, the shortest way back to itself (BFS
  // inside the component); then the same from the smallest file no chain has passed through yet,
  // until every file of the component appears in some chain. Each chain follows real edges.
  const shortestCycleThrough = (first: string, members: ReadonlySet<string>): string[] => {
    const previous = new Map<string, string>();
    const queue = [first];
    let closing: string | undefined;
    while (queue.length > 0 && closing === undefined) {
      const node = queue.shift()!;
      for (const child of next(node)) {
        if (!members.has(child)) continue;
        if (child === first) {
          closing = node;
          break;
        }
        if (!previous.has(child)) {
          previous.set(child, node);
          queue.push(child);
        }
      }
    }
    const chain = [first];
    for (let node = closing!; node !== first; node = previous.get(node)!) chain.splice(1, 0, node);
    chain.push(first);
    return chain;
  };
  const chains: string[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const covered = new Set<string>();
    for (const member of [...component].sort()) {
      if (covered.has(member)) continue;
      const chain = shortestCycleThrough(member, members);
      chain.forEach((node) => covered.add(node));
      chains.push(chain);
    }
  }
  return chains.sort((a, b) => a.join(' ').localeCompare(b.join(' ')));
}

/** One row of an architecture table: which files form a layer and which other layers it may import. */
export interface LayerRule {
  layer: string;
  /** Path prefixes (ending in `/` for a folder) or exact file paths, relative to the root. */
  paths: readonly string[];
  /** Layers this one may import besides itself. */
  mayImport: readonly string[];
}

/** The layer a file belongs to: the rule with the longest matching path, or undefined. */
export function layerOf(rules: readonly LayerRule[], file: string): LayerRule | undefined {
  let best: { rule: LayerRule; length: number } | undefined;
  for (const rule of rules) {
    for (const path of rule.paths) {
      const matches = path.endsWith('/') ? file.startsWith(path) : file === path;
      if (matches && (!best || path.length > best.length)) best = { rule, length: path.length };
    }
  }
  return best?.rule;
}

/** Every problem the rules find in a list of edges, one readable line each. */
export function checkLayers(
  rules: readonly LayerRule[],
  files: readonly string[],
  edges: ReadonlyArray<Pick<ImportEdge, 'from' | 'to'> & Partial<ImportEdge>>,
): string[] {
  const problems: string[] = [];
  const names = new Set(rules.map((rule) => rule.layer));
  for (const rule of rules) {
    for (const other of rule.mayImport) if (!names.has(other)) problems.push(`rule '${rule.layer}' names an unknown layer '${other}'`);
  }
  for (const file of files) {
    if (!layerOf(rules, file)) problems.push(`${file} belongs to no layer: add its folder to the table`);
  }
  for (const edge of edges) {
    if (edge.to === undefined) continue; // unresolved specifiers are reported on their own
    const from = layerOf(rules, edge.from);
    const to = layerOf(rules, edge.to);
    if (!from) continue; // already reported above
    const where = edge.line === undefined ? '' : `:${edge.line}`;
    const how = edge.kind === undefined ? '' : ` (${edge.kind} '${edge.specifier}')`;
    if (!to) {
      problems.push(`${edge.from}${where} → ${edge.to}${how}: the target belongs to no layer`);
      continue;
    }
    if (to.layer === from.layer || from.mayImport.includes(to.layer)) continue;
    const allowed = from.mayImport.length > 0 ? from.mayImport.join(', ') : 'nothing';
    problems.push(
      `${edge.from}${where} → ${edge.to}${how}: ${from.layer} may not import ${to.layer} (${from.layer} may import only itself and ${allowed})`,
    );
  }
  return problems;
}

/** Adjacency list of resolved edges, for `findCycles`. */
export function adjacencyOf(edges: ReadonlyArray<Pick<ImportEdge, 'from' | 'to'>>): Map<string, string[]> {
  const adjacency = new Map<string, string[]>();
  for (const edge of edges) {
    if (edge.to === undefined) continue;
    const list = adjacency.get(edge.from) ?? [];
    list.push(edge.to);
    adjacency.set(edge.from, list);
  }
  return adjacency;
}
