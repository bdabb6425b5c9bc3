import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One recorded OpenRouter exchange (see test/fixtures/openrouter/README.md). */
export interface HttpFixture {
  name: string;
  request?: { method: string; path: string; body: unknown };
  response: { status: number; headers: Record<string, string>; body: string };
  what?: string;
}

const SUFFIX = '.http.json';

/** The repository copy of the fixtures, or the shared originals while the copy is not there yet. */
export const FIXTURES_DIR: string =
  [fileURLToPath(new URL('../fixtures/openrouter/', import.meta.url)), '/work/shared/fixtures/openrouter/'].find(
    (dir) => existsSync(dir) && readdirSync(dir).some((entry) => entry.endsWith(SUFFIX)),
  ) ?? fileURLToPath(new URL('../fixtures/openrouter/', import.meta.url));

export function fixtureNames(): string[] {
  return readdirSync(FIXTURES_DIR)
    .filter((entry) => entry.endsWith(SUFFIX))
    .map((entry) => entry.slice(0, -SUFFIX.length))
    .sort();
}

export function loadFixture(name: string): HttpFixture {
  const parsed = JSON.parse(readFileSync(join(FIXTURES_DIR, `${name}${SUFFIX}`), 'utf8')) as Omit<HttpFixture, 'name'>;
  return { name, ...parsed };
}

/** The `data:` payloads of an SSE body, parsed, in order; comments, blank lines and `[DONE]` skipped. */
export function sseEvents(body: string): unknown[] {
  return body
    .split(/\r?\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice('data:'.length).trim())
    .filter((data) => data !== '[DONE]')
    .map((data) => JSON.parse(data) as unknown);
}
