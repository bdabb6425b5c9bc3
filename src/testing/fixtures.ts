/**
 * Loading recorded OpenRouter responses (`<name>.http.json`, see the fixtures README) for replay.
 * The fixtures are not part of the published package, so every loader takes the directory (or an
 * already parsed object) from the caller.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as z from 'zod';
import type { FakeRecordedResponse } from './types.js';

const FIXTURE_SUFFIX = '.http.json';

/** One fixture file: where it came from, the request (when recorded) and the raw response. */
export interface OpenRouterFixture {
  /** Where it came from: `repo@commit:path`, or the issue or page. */
  source?: string;
  /** The license of the source. */
  license?: string;
  /** How it was obtained (`recorded`, `issue paste`, `docs example`, ...). */
  provenance?: string;
  /** The request that got the response, when known (`body` is `null` when not recorded). */
  request?: { method: string; path: string; body?: unknown };
  /** The response, replayed byte for byte. */
  response: FakeRecordedResponse;
  /** One sentence on what the case shows. */
  what?: string;
  /** Caveats: a re-serialized body, headers not recorded, redactions. */
  notes?: string;
}

const fixtureSchema = z.object({
  source: z.string().optional(),
  license: z.string().optional(),
  provenance: z.string().optional(),
  request: z.object({ method: z.string(), path: z.string(), body: z.unknown() }).optional(),
  response: z.object({
    status: z.number().int().min(100).max(599),
    headers: z.record(z.string(), z.string()),
    body: z.string(),
  }),
  what: z.string().optional(),
  notes: z.string().optional(),
});

/** Checks a parsed fixture; `origin` names it in the error message. */
export function parseFixture(value: unknown, origin = 'fixture'): OpenRouterFixture {
  const result = fixtureSchema.safeParse(value);
  if (!result.success) throw new Error(`${origin} is not an OpenRouter fixture: ${z.prettifyError(result.error)}`);
  return result.data;
}

/** Accepts `chat-stream-usage-done` or `chat-stream-usage-done.http.json`. */
function fixtureFileName(name: string): string {
  if (basename(name) !== name) throw new Error(`fixture name must be a bare file name, got '${name}'`);
  return name.endsWith(FIXTURE_SUFFIX) ? name : `${name}${FIXTURE_SUFFIX}`;
}

/** Reads and checks the fixture `name` (with or without `.http.json`) from `fixturesDir`. */
export async function loadFixture(name: string, fixturesDir: string): Promise<OpenRouterFixture> {
  const fileName = fixtureFileName(name);
  const text = await readFile(join(fixturesDir, fileName), 'utf8');
  return parseFixture(JSON.parse(text), fileName);
}

/** Names (without `.http.json`) of every fixture in the directory, sorted. */
export async function listFixtures(fixturesDir: string): Promise<string[]> {
  const entries = await readdir(fixturesDir);
  return entries
    .filter((entry) => entry.endsWith(FIXTURE_SUFFIX))
    .map((entry) => entry.slice(0, -FIXTURE_SUFFIX.length))
    .sort();
}

/** The recording a `replay` fault sends: inline, or loaded by name from `fixturesDir`. */
export async function resolveRecording(
  fixture: string | FakeRecordedResponse,
  fixturesDir: string | undefined,
): Promise<FakeRecordedResponse> {
  if (typeof fixture !== 'string') return fixture;
  if (fixturesDir === undefined) {
    throw new Error(`replay of fixture '${fixture}' needs FakeServerOptions.fixturesDir`);
  }
  return (await loadFixture(fixture, fixturesDir)).response;
}
