/**
 * What `npm pack` would publish (from the build `npm test` makes first): the files a user needs and
 * no more (no source maps), the licence and changelog, the CLI's sample prompts, a manifest that
 * runs no script on install, and a size budget that a stray file would break.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Budgets with some room over today's: about 340 KB packed and 1.34 MB unpacked at 0.1.0; 451 KB
 * and 1.70 MB once learned limits, the dashboard and the request-level fixes had landed; 479 KB and
 * 1.80 MB with one line for room at a model's limit (587b6ef); 520 KB with the stall-aware
 * deadlines, the tool-call assembly and the Redis fault handling (de4e4b3); 1.95 MB unpacked with the steady clock; 1.99 MB with
 * the quota line, the dispose that aborts attempts and backoffs outside the slot; 548 KB packed with the stall detection
 * and the lean admission (the leases out as a list, one array per send log, each limiter's sure room), 2.04 MB unpacked.
 * Room enough for code to grow, not for a stray file (the source maps alone are 1.3 MB).
 */
const MAX_PACKED_BYTES = 560_000;
const MAX_UNPACKED_BYTES = 2_100_000;

interface PackResult {
  size: number;
  unpackedSize: number;
  files: Array<{ path: string; size: number }>;
}

describe('the published package', () => {
  // --ignore-scripts: `prepack` would build again; the test command has just built.
  const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' })) as PackResult[];
  const paths = pack!.files.map((file) => file.path);

  it('holds the entry points, the licence, the changelog and the sample prompts, and no source maps', () => {
    for (const path of [
      'dist/index.js',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/cli.js',
      'LICENSE',
      'CHANGELOG.md',
      'README.md',
      'examples/prompts.jsonl',
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(paths.filter((path) => path.endsWith('.map'))).toEqual([]);
    expect(
      paths.filter(
        (path) =>
          !path.startsWith('dist/') && !['LICENSE', 'CHANGELOG.md', 'README.md', 'package.json', 'examples/prompts.jsonl'].includes(path),
      ),
    ).toEqual([]);
  });

  it(`stays within its size budget (${MAX_PACKED_BYTES} bytes packed, ${MAX_UNPACKED_BYTES} unpacked)`, () => {
    expect(pack!.size).toBeLessThanOrEqual(MAX_PACKED_BYTES);
    expect(pack!.unpackedSize).toBeLessThanOrEqual(MAX_UNPACKED_BYTES);
  });

  it('runs no script when installed: it builds on prepack, not prepare', () => {
    const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    for (const hook of ['prepare', 'preinstall', 'install', 'postinstall']) expect(manifest.scripts[hook], hook).toBeUndefined();
    expect(manifest.scripts['prepack']).toBe('npm run build');
  });

  it('every entry point loads with require() on a Node that cannot require an ES module (Node 20.0 to 20.18, which engines allows)', () => {
    const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { name: string; exports: Record<string, unknown> };
    const app = mkdtempSync(join(tmpdir(), 'openrouter-rx-cjs-'));
    try {
      mkdirSync(join(app, 'node_modules'));
      symlinkSync(resolve('.'), join(app, 'node_modules', manifest.name), 'dir');
      const entries = Object.keys(manifest.exports)
        .filter((entry) => entry !== './package.json')
        .map((entry) => manifest.name + entry.slice(1));
      expect(entries.length).toBeGreaterThanOrEqual(5);
      const script = `for (const entry of ${JSON.stringify(entries)}) require(entry); console.log('loaded');`;
      const output = execFileSync(process.execPath, ['--no-experimental-require-module', '-e', script], { cwd: app, encoding: 'utf8' });
      expect(output.trim()).toBe('loaded');
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });
});
