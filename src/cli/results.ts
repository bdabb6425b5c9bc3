import { closeSync, openSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from './args.js';

/**
 * The results file: JSONL, one line per prompt, in completion order. Every line goes out in one
 * `write` on a file opened for appending, synchronously: a Ctrl-C, a kill or a crash can only ever
 * leave whole lines behind, plus at worst one partial last line (a kill during the write itself),
 * which the next run cuts off and redoes. That is what makes resuming safe.
 */

export type ResultLine =
  | {
      id: string;
      ok: true;
      model: string;
      keyLabel: string;
      content: string;
      finishReason: string;
      usage: { promptTokens: number; completionTokens: number; totalTokens: number; cost?: number } | null;
      attempts: number;
      latencyMs: number;
    }
  | {
      id: string;
      ok: false;
      error: { kind: string; message: string; status?: number };
      attempts?: number;
      /** The prompts file's line, for a line that could not be sent. */
      line?: number;
    };

export interface ResumeState {
  /** Ids that already have a result line: the rerun skips them. */
  done: Set<string>;
  /** Results already in the file, by outcome. */
  succeeded: number;
  failed: number;
  /** Notes for the user: a cut-off last line, lines that are not results, dropped failures. */
  notes: string[];
}

/**
 * Reads what an earlier run wrote. A partial last line is cut off (so appending starts on a fresh
 * line) and its prompt runs again; with `retryFailed`, failure lines are dropped first, by writing
 * the successes to a temporary file and renaming it over the original, so the file is whole at
 * every instant.
 */
export function prepareResults(path: string, options: { retryFailed: boolean }): ResumeState {
  const state: ResumeState = { done: new Set(), succeeded: 0, failed: 0, notes: [] };
  let text: string;
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`--out: ${path} is a directory`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return state;
    throw new UsageError(`--out: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const complete = text.lastIndexOf('\n') + 1;
  if (complete < text.length) {
    truncateSync(path, Buffer.byteLength(text.slice(0, complete)));
    state.notes.push(`${path} ended with a partial line (an interrupted write); it was removed and that prompt runs again`);
    text = text.slice(0, complete);
  }
  const kept: string[] = [];
  let droppedFailures = 0;
  text.split('\n').forEach((line, index) => {
    if (line.trim().length === 0) return;
    const result = parseResult(line);
    if (result === undefined) {
      state.notes.push(`${path} line ${index + 1} is not a result line; it is left as it is`);
      kept.push(line);
      return;
    }
    if (!result.ok && options.retryFailed) {
      droppedFailures++;
      return;
    }
    kept.push(line);
    state.done.add(result.id);
    if (result.ok) state.succeeded++;
    else state.failed++;
  });
  if (droppedFailures > 0) {
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, kept.map((line) => `${line}\n`).join(''));
    renameSync(temporary, path);
    state.notes.push(`--retry-failed: removed ${droppedFailures} failure line(s) from ${path}; those prompts run again`);
  }
  return state;
}

function parseResult(line: string): { id: string; ok: boolean } | undefined {
  try {
    const value = JSON.parse(line) as { id?: unknown; ok?: unknown };
    return typeof value.id === 'string' && typeof value.ok === 'boolean' ? { id: value.id, ok: value.ok } : undefined;
  } catch {
    return undefined;
  }
}

/** The append-only writer: one synchronous `write` per line. */
export class ResultsWriter {
  private readonly fd: number;
  private closed = false;

  constructor(
    private readonly path: string,
    /** Scrubs key text from every line before it is written. */
    private readonly redact: (text: string) => string,
  ) {
    try {
      this.fd = openSync(path, 'a');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new UsageError(
        `--out: cannot write ${path}${code === 'ENOENT' ? ` (does ${dirname(path)} exist?)` : `: ${code ?? String(error)}`}`,
      );
    }
  }

  write(result: ResultLine): void {
    if (this.closed) throw new Error(`results file ${this.path} is closed`);
    const line = Buffer.from(`${this.redact(JSON.stringify(result))}\n`, 'utf8');
    // writeSync may write less than asked only on a full disk or a signal; loop so a line is never cut.
    let offset = 0;
    while (offset < line.length) offset += writeSync(this.fd, line, offset, line.length - offset);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
