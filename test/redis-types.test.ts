/**
 * The published types in a user's strict project (`skipLibCheck: false`, so every declaration file
 * is checked): a project under the OS temp dir, out of reach of this repo's node_modules, gets the
 * built declarations (`npm run build` first) as node_modules/openrouter-rx, and rxjs, zod and
 * @types/node, but no ioredis, the optional peer. An ESM (.mts) and a CommonJS (.cts) consumer
 * import the main entry and `openrouter-rx/redis`, under node16 and nodenext resolution: no
 * diagnostics. With ioredis added, its `Redis` and `Cluster` pass as the store's client.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster, Redis } from 'ioredis';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import type { RedisClientLike } from '../src/redis/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// Type-level, checked by `tsc` (the typecheck step): ioredis clients fit the store's client type.
export const ioredisFits: ReadonlyArray<(client: Redis | Cluster) => RedisClientLike> = [(client) => client];

/** A user's module: the main entry and the Redis entry, a store on a client of the structural type. */
const USES_PACKAGE = `
import { createKeyPool, createMemoryStore, type KeyPoolOptions } from 'openrouter-rx';
import {
  createRedisStore,
  RedisStateStore,
  StoreUnavailableError,
  type RedisClientLike,
  type RedisStoreOptions,
} from 'openrouter-rx/redis';

declare const client: RedisClientLike;
const options: RedisStoreOptions = { client, prefix: 'my-app', onStoreError: 'local' };
const store = process.env.REDIS_URL === undefined ? createMemoryStore() : createRedisStore(options);
const config: KeyPoolOptions = { keys: [{ key: 'not-a-key', label: 'a' }], store };
export const pool = createKeyPool(config);
export const direct: RedisStateStore = new RedisStateStore(options);
export const failed: boolean = new Error('x') instanceof StoreUnavailableError;
`;

/** With ioredis installed: its clients are accepted as they are. */
const USES_IOREDIS = `
import { Cluster, Redis } from 'ioredis';
import { createRedisStore } from 'openrouter-rx/redis';

export const single = createRedisStore({ client: new Redis('redis://127.0.0.1:6379') });
export const cluster = createRedisStore({ client: new Cluster([{ host: '127.0.0.1', port: 7000 }]) });
`;

const projects: string[] = [];
afterAll(() => {
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

/**
 * A project dir under the OS temp dir with the built package (its declarations copied, so that
 * their imports resolve from here, not from this repo) and the given packages linked from this
 * repo's node_modules.
 */
function project(packages: readonly string[], files: Record<string, string>): string {
  const dir = mkdtempSync(join(realpathSync(tmpdir()), 'orx-types-'));
  projects.push(dir);
  const installed = join(dir, 'node_modules', 'openrouter-rx');
  mkdirSync(join(installed, 'dist'), { recursive: true });
  copyFileSync(join(root, 'package.json'), join(installed, 'package.json'));
  const declarations = readdirSync(join(root, 'dist')).filter((name) => /\.d\.c?ts$/.test(name));
  expect(declarations, 'no declarations in dist/: run `npm run build` first').toContain('redis.d.ts');
  for (const name of declarations) copyFileSync(join(root, 'dist', name), join(installed, 'dist', name));
  for (const name of packages) {
    mkdirSync(dirname(join(dir, 'node_modules', name)), { recursive: true });
    symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), 'dir');
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Each program checks some 460 declaration files (lib, @types/node, rxjs, zod): seconds each, more on a loaded machine. */
const TIMEOUT_MS = 120_000;

const KINDS = [
  ['node16', ts.ModuleKind.Node16, ts.ModuleResolutionKind.Node16],
  ['nodenext', ts.ModuleKind.NodeNext, ts.ModuleResolutionKind.NodeNext],
] as const;

function compilerOptions(module: ts.ModuleKind, moduleResolution: ts.ModuleResolutionKind): ts.CompilerOptions {
  return { target: ts.ScriptTarget.ES2022, module, moduleResolution, strict: true, skipLibCheck: false, noEmit: true };
}

/**
 * Parsed declaration files shared by the programs (lib, @types/node, rxjs, zod, ioredis): parsing
 * them once saves seconds. Keyed by path and by how the file is read (target, ESM or CommonJS).
 */
const parsed = new Map<string, ts.SourceFile>();

/** Every diagnostic of a program over `files` (syntactic, global, semantic, in every declaration file too). */
function diagnostics(dir: string, files: readonly string[], options: ts.CompilerOptions): string[] {
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const key = `${fileName}|${JSON.stringify(languageVersion)}`;
    const cached = parsed.get(key);
    if (cached !== undefined) return cached;
    const file = getSourceFile(fileName, languageVersion, ...rest);
    if (file !== undefined && fileName.includes('/node_modules/') && !fileName.startsWith(dir)) parsed.set(key, file);
    return file;
  };
  const program = ts.createProgram({ rootNames: files.map((name) => join(dir, name)), options, host });
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const where =
      diagnostic.file === undefined
        ? ''
        : `${diagnostic.file.fileName.replace(dir, '<project>')}:${diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line + 1}: `;
    return where + ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  });
}

describe('the built types, skipLibCheck off', () => {
  const withoutIoredis = () => project(['rxjs', 'zod', '@types/node'], { 'consumer.mts': USES_PACKAGE, 'consumer.cts': USES_PACKAGE });

  it.each(KINDS)(
    'type-check without ioredis installed (ESM and CommonJS consumers, %s)',
    { timeout: TIMEOUT_MS },
    (_name, module, moduleResolution) => {
      const dir = withoutIoredis();
      const options = compilerOptions(module, moduleResolution);
      // The setup holds: no ioredis to be found from the project, and the package found by both conditions.
      const resolve = (name: string, from: string, mode: ts.ResolutionMode) =>
        ts.resolveModuleName(name, join(dir, from), options, ts.sys, undefined, undefined, mode).resolvedModule?.resolvedFileName;
      expect(resolve('ioredis', 'consumer.mts', ts.ModuleKind.ESNext)).toBeUndefined();
      expect(resolve('ioredis', 'consumer.cts', ts.ModuleKind.CommonJS)).toBeUndefined();
      expect(resolve('openrouter-rx/redis', 'consumer.mts', ts.ModuleKind.ESNext)).toBe(
        join(dir, 'node_modules/openrouter-rx/dist/redis.d.ts'),
      );
      expect(resolve('openrouter-rx/redis', 'consumer.cts', ts.ModuleKind.CommonJS)).toBe(
        join(dir, 'node_modules/openrouter-rx/dist/redis.d.cts'),
      );
      expect(diagnostics(dir, ['consumer.mts', 'consumer.cts'], options)).toEqual([]);
    },
  );

  it("take ioredis's Redis and Cluster as the client (ESM and CommonJS consumers, nodenext)", { timeout: TIMEOUT_MS }, () => {
    const dir = project(['rxjs', 'zod', '@types/node', 'ioredis'], { 'ioredis.mts': USES_IOREDIS, 'ioredis.cts': USES_IOREDIS });
    expect(
      diagnostics(dir, ['ioredis.mts', 'ioredis.cts'], compilerOptions(ts.ModuleKind.NodeNext, ts.ModuleResolutionKind.NodeNext)),
    ).toEqual([]);
  });
});
