import { readFile } from 'node:fs/promises';
import { validateBalancedRequest } from '../routing/balanced-request.js';
import type { ChatRequest } from '../core/types.js';
import { UsageError } from './args.js';

/**
 * The prompts file: JSONL, one request per line. A line is `{ "id"?, "prompt"?, "messages"?, ... }`
 * plus any `ChatRequest` field; `prompt` is shorthand for one user message. `id` defaults to the
 * line number. A line that cannot be sent becomes a `bad` entry with its line number, so it is
 * reported and written as a failure instead of silently dropped.
 */

export interface PromptDefaults {
  /** `--model`, for lines without `model`. */
  model?: string | undefined;
  /** `--fallback-models`, for lines without `models`. */
  fallbackModels?: readonly string[] | undefined;
}

export type PromptEntry =
  { kind: 'ok'; id: string; line: number; request: ChatRequest } | { kind: 'bad'; id: string; line: number; message: string };

export async function readPromptsFile(path: string, defaults: PromptDefaults): Promise<PromptEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the prompts file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return parsePrompts(text, defaults);
}

/** Parses every non-blank line; ids are unique across the result (a repeated id is a bad line). */
export function parsePrompts(text: string, defaults: PromptDefaults): PromptEntry[] {
  const entries: PromptEntry[] = [];
  const firstLineOf = new Map<string, number>();
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = index + 1;
    const source = raw.replace(/\r$/, '');
    if (source.trim().length === 0) return;
    const entry = parseLine(source, line, defaults);
    const seen = firstLineOf.get(entry.id);
    if (seen !== undefined) {
      // Both lines cannot own one id in the results file: this one gets an id of its own.
      entries.push({ kind: 'bad', id: `${entry.id}@line-${line}`, line, message: `the id "${entry.id}" is already used on line ${seen}` });
      return;
    }
    firstLineOf.set(entry.id, line);
    entries.push(entry);
  });
  return entries;
}

function parseLine(source: string, line: number, defaults: PromptDefaults): PromptEntry {
  const fallbackId = String(line);
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (error) {
    return { kind: 'bad', id: fallbackId, line, message: `not valid JSON (${(error as Error).message})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'bad', id: fallbackId, line, message: 'must be a JSON object such as {"prompt": "Hello"}' };
  }
  const { id: rawId, prompt, ...rest } = value as Record<string, unknown>;
  let id = fallbackId;
  if (typeof rawId === 'string' && rawId.trim().length > 0) id = rawId;
  else if (typeof rawId === 'number' && Number.isFinite(rawId)) id = String(rawId);
  else if (rawId !== undefined) return { kind: 'bad', id, line, message: '"id" must be a non-empty string or a number' };
  if (prompt !== undefined && rest.messages !== undefined) {
    return { kind: 'bad', id, line, message: 'give "prompt" or "messages", not both' };
  }
  if (prompt !== undefined && (typeof prompt !== 'string' || prompt.length === 0)) {
    return { kind: 'bad', id, line, message: '"prompt" must be a non-empty string' };
  }
  if (prompt === undefined && rest.messages === undefined) {
    return { kind: 'bad', id, line, message: 'no "prompt" and no "messages"' };
  }
  const request: ChatRequest = {
    stream: true,
    ...(defaults.model === undefined ? {} : { model: defaults.model }),
    ...(defaults.fallbackModels === undefined || defaults.fallbackModels.length === 0 ? {} : { models: [...defaults.fallbackModels] }),
    ...(rest as Omit<ChatRequest, 'messages'>),
    messages: (prompt === undefined ? rest.messages : [{ role: 'user', content: prompt }]) as ChatRequest['messages'],
    id,
  };
  if (request.model === undefined && (request.models?.length ?? 0) === 0) {
    return { kind: 'bad', id, line, message: 'no model: give the line a "model", or pass --model' };
  }
  try {
    validateBalancedRequest(request);
  } catch (error) {
    return { kind: 'bad', id, line, message: (error as Error).message };
  }
  return { kind: 'ok', id, line, request };
}
