/**
 * A vitest setup file: tees everything the tests write (process.stdout, process.stderr and the
 * console methods) into `test-output/captured-<pid>.log`, so `scripts/scan-secrets.mjs` can
 * check afterwards that no test key ever reached any output. Output still goes where it went.
 *
 * Setup files run once per test file, and a worker process may run several test files: the
 * wrapping is idempotent (a marker on `process`, and one on each console object). Each test
 * writes a `# test:` line first, so a leak found by the scan can be traced to its test.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatWithOptions } from 'node:util';
import { beforeEach } from 'vitest';

const OUTPUT_DIR = fileURLToPath(new URL('../../test-output/', import.meta.url));
const LOG_FILE = `${OUTPUT_DIR}captured-${process.pid}.log`;
const STREAMS_MARK = Symbol.for('openrouter-rx.capture-output.streams');
const CONSOLE_MARK = Symbol.for('openrouter-rx.capture-output.console');
const CONSOLE_METHODS = [
  'log',
  'info',
  'warn',
  'error',
  'debug',
  'trace',
  'dir',
  'dirxml',
  'table',
  'assert',
  'group',
  'groupCollapsed',
] as const;

mkdirSync(OUTPUT_DIR, { recursive: true });
// Created at once, so the scan can tell a run without output from a run without capture.
appendFileSync(LOG_FILE, '');

/** While a console method is being captured, the stream writes it causes are not captured twice. */
let inConsole = 0;

function capture(text: string): void {
  try {
    appendFileSync(LOG_FILE, text);
  } catch {
    // Capturing must never break a test; a missing log shows up in the scan instead.
  }
}

function chunkText(chunk: unknown, encoding?: unknown): string {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return String(chunk);
}

type Writable = NodeJS.WriteStream & { [STREAMS_MARK]?: true };

function teeStream(stream: Writable, name: 'stdout' | 'stderr'): void {
  if (stream[STREAMS_MARK]) return;
  stream[STREAMS_MARK] = true;
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = (chunk: unknown, ...rest: unknown[]) => {
    if (inConsole === 0) capture(`[${name}] ${chunkText(chunk, rest[0])}`);
    return write(chunk, ...rest);
  };
}

type CapturedConsole = Console & { [CONSOLE_MARK]?: true };

function teeConsole(target: CapturedConsole): void {
  if (target[CONSOLE_MARK]) return;
  target[CONSOLE_MARK] = true;
  for (const method of CONSOLE_METHODS) {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below as `original.apply(target, args)`
    const original = target[method] as ((...args: unknown[]) => void) | undefined;
    if (typeof original !== 'function') continue;
    (target as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      // The same rendering console.log gives objects (errors with their cause chain included).
      const shown = method === 'assert' ? (args[0] ? undefined : args.slice(1)) : args;
      if (shown !== undefined) capture(`[console.${method}] ${formatWithOptions({ depth: 8, colors: false }, ...shown)}\n`);
      inConsole++;
      try {
        original.apply(target, args);
      } finally {
        inConsole--;
      }
    };
  }
}

beforeEach((context) => {
  capture(`# test: ${context.task.file?.name ?? '?'} > ${context.task.name}\n`);
});

teeStream(process.stdout, 'stdout');
teeStream(process.stderr, 'stderr');
teeConsole(globalThis.console);
