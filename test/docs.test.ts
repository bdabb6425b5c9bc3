/**
 * The documentation's own consistency: every local link of the README and of docs/*.md points at a
 * file that exists (and an anchor at a heading that exists), the README keeps the two commands a
 * fresh clone starts with (`.ci/run` runs `npm test`), and TypeDoc (`npm run docs`) documents every
 * public entry of the package. TypeDoc itself is not run here: it takes longer than the rest of
 * this file together.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** Markdown text without its fenced code blocks (whose brackets are code, not links). */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

/** Link targets: `[text](target)`, `![alt](target)` and `<img src="target">`. */
function linkTargets(markdown: string): string[] {
  const text = prose(markdown);
  const inline = [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((match) => match[1]!);
  const images = [...text.matchAll(/<img\s[^>]*src="([^"]+)"/g)].map((match) => match[1]!);
  return [...inline, ...images];
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  return new Set([...prose(markdown).matchAll(/^#{1,6}\s+(.+)$/gm)].map((match) => slug(match[1]!)));
}

describe('documentation links', () => {
  it('finds the pages', () => {
    expect(pages).toEqual(expect.arrayContaining(['README.md', 'docs/benchmark.md', 'docs/failover.md', 'docs/architecture.md']));
  });

  it.each(pages)('%s: every local link points at a file and heading that exist', (page) => {
    const markdown = readFileSync(join(root, page), 'utf8');
    const broken: string[] = [];
    for (const target of linkTargets(markdown)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      const [path = '', anchor] = target.split('#');
      const file = path === '' ? join(root, page) : resolve(dirname(join(root, page)), path);
      const fromRoot = relative(root, file).split('\\').join('/');
      if (!existsSync(file)) {
        broken.push(`${target}: no file ${fromRoot}`);
        continue;
      }
      if (anchor !== undefined && file.endsWith('.md') && !anchors(readFileSync(file, 'utf8')).has(anchor)) {
        broken.push(`${target}: no heading #${anchor} in ${fromRoot}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README links the benchmark page and keeps one performance paragraph', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readme).toContain('(docs/benchmark.md)');
    const performance = /^## Performance\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
    expect(performance.trim().split(/\n\s*\n/)).toHaveLength(1);
    expect(readme).not.toContain('MISSED');
  });
});

describe('the README', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');

  it('starts a fresh clone with the demo and the test command that .ci/run runs', () => {
    expect(readme).toContain('npm install && npm run demo');
    expect(readme).toContain('npm install && npm test');
    expect(readFileSync(join(root, '.ci', 'run'), 'utf8')).toMatch(/^npm test$/m);
  });

  it('states the test prerequisites: Redis and Chromium', () => {
    expect(readme).toContain('127.0.0.1:6379');
    expect(readme).toContain('/usr/bin/chromium');
  });
});

describe('API reference (TypeDoc)', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
    exports: Record<string, unknown>;
  };
  const typedoc = JSON.parse(readFileSync(join(root, 'typedoc.json'), 'utf8')) as { entryPoints: string[]; out: string };

  it('`npm run docs` runs TypeDoc into docs/api, which git ignores', () => {
    expect(manifest.scripts['docs']).toBe('typedoc');
    expect(typedoc.out).toBe('docs/api');
    expect(readFileSync(join(root, '.gitignore'), 'utf8')).toMatch(/^docs\/api\/$/m);
  });

  it('documents every public entry of the package', () => {
    // "." is src/index.ts; "./name" is src/name/index.ts (as tsup.config.ts builds them).
    const entries = Object.keys(manifest.exports)
      .filter((entry) => entry !== './package.json')
      .map((entry) => (entry === '.' ? 'src/index.ts' : `src/${entry.slice(2)}/index.ts`));
    expect([...typedoc.entryPoints].sort()).toEqual(entries.sort());
    for (const entry of typedoc.entryPoints) expect(existsSync(join(root, entry)), entry).toBe(true);
  });
});
