import { resolve } from 'node:path';
import { Subject, type Subscription } from 'rxjs';
import { balance, type BalanceEvent } from '../operators/balance.js';
import { createKeyPool } from '../pool.js';
import type { KeyPool } from '../keys/pool.js';
import { createDashboardServer, type DashboardServer } from '../dashboard/server.js';
import { UsageError } from './args.js';
import { FAKE_KEYS, FAKE_MODEL, startCliFake, type FakeSetup } from './fake.js';
import { renderHealthTable } from './health-table.js';
import { EXIT, type CliIo } from './io.js';
import { keyRedactor, loadKeys, type CliKey } from './keys.js';
import { ProgressReporter, formatDuration, type ProgressMode } from './progress.js';
import { readPromptsFile, type PromptEntry } from './prompts.js';
import { ResultsWriter, prepareResults, type ResultLine } from './results.js';
import type { RunOptions } from './run-options.js';

/**
 * `openrouter-rx run`: the batch. Prompts go into `balance()` one at a time as slots free up (so a
 * Ctrl-C can stop admitting at once, instead of after a buffered backlog), and every terminal event
 * becomes one result line. Key text reaches no output: the pool speaks in labels, and every line
 * and message passes through a redactor of the loaded keys as a last guard.
 */

/** Failures that say nothing about the prompt, only that the pool cannot serve anything now: they
 * stop the run instead of being written, so that fixing the keys and rerunning does the work. */
const POOL_WIDE_FAILURES = new Set(['no_key_available', 'aborted']);

/** Failure notes printed in full; past this they are only counted (they are all in the file). */
const MAX_FAILURE_NOTES = 20;

function progressMode(requested: RunOptions['progress'], io: CliIo): ProgressMode {
  if (requested !== 'auto') return requested;
  return io.stderr.isTTY === true ? 'bar' : 'plain';
}

function toResult(event: Exclude<BalanceEvent, { type: 'chunk' | 'restart' }>): ResultLine {
  if (event.type === 'completion') {
    return {
      id: event.requestId,
      ok: true,
      model: event.model,
      keyLabel: event.keyLabel,
      content: event.completion.content,
      finishReason: event.completion.finishReason,
      usage: event.usage ?? null,
      attempts: event.attempts,
      latencyMs: Math.round(event.latencyMs),
    };
  }
  return {
    id: event.requestId,
    ok: false,
    error: { kind: event.error.kind, message: event.error.message, ...(event.error.status === undefined ? {} : { status: event.error.status }) },
    attempts: event.attempts.length,
  };
}

interface Keys {
  keys: CliKey[];
  description: string;
  warnings: string[];
}

async function keysFor(options: RunOptions, io: CliIo, cwd: string): Promise<Keys> {
  const loaded = await loadKeys(options.keysFile === undefined ? undefined : resolve(cwd, options.keysFile), io.env);
  return { keys: loaded.keys, description: `${loaded.keys.length} key(s) from ${loaded.source}`, warnings: loaded.warnings };
}

export async function runCommand(options: RunOptions, io: CliIo): Promise<number> {
  const cwd = io.cwd ?? process.cwd();
  const inputPath = resolve(cwd, options.input);
  const outPath = resolve(cwd, options.out);
  if (inputPath === outPath) throw new UsageError('--out: must not be the prompts file');

  // Everything that can be a usage error comes first: a bad call writes nothing and sends nothing.
  const entries = await readPromptsFile(inputPath, {
    model: options.model ?? (options.fake ? FAKE_MODEL : undefined),
    fallbackModels: options.fallbackModels,
  });
  const real = options.fake ? undefined : await keysFor(options, io, cwd);
  const resume = prepareResults(outPath, { retryFailed: options.retryFailed });
  const writer = new ResultsWriter(outPath, keyRedactor(real?.keys ?? FAKE_KEYS));

  const todo = entries.filter((entry) => !resume.done.has(entry.id));
  const bad = todo.filter((entry): entry is Extract<PromptEntry, { kind: 'bad' }> => entry.kind === 'bad');
  const runnable = todo.filter((entry): entry is Extract<PromptEntry, { kind: 'ok' }> => entry.kind === 'ok');
  const summarize = (outcome: Pick<BatchOutcome, 'succeeded' | 'failed' | 'elapsedMs'>) => {
    const written = outcome.succeeded + outcome.failed + bad.length;
    io.stdout.write(
      `${options.out}: ${written} result(s) written this run (${outcome.succeeded} ok, ${outcome.failed + bad.length} failed) in ${formatDuration(outcome.elapsedMs)}; ` +
        `${resume.done.size + written} of ${entries.length} prompt(s) have a result\n`,
    );
  };

  let fake: FakeSetup | undefined;
  let pool: KeyPool | undefined;
  let dashboard: DashboardServer | undefined;
  try {
    const redact = keyRedactor(real?.keys ?? FAKE_KEYS);
    const say = (text: string) => io.stderr.write(`${redact(text)}\n`);
    for (const note of [...(real?.warnings ?? []), ...resume.notes]) say(`warning: ${note}`);
    say(
      `openrouter-rx: ${entries.length} prompt(s) in ${options.input}; ${entries.length - todo.length} already in ${options.out}; ` +
        `${runnable.length} to send${bad.length > 0 ? `, ${bad.length} bad line(s)` : ''}`,
    );
    for (const entry of bad) {
      say(`${options.input} line ${entry.line}: ${entry.message}`);
      writer.write({ id: entry.id, ok: false, error: { kind: 'bad_request', message: `line ${entry.line}: ${entry.message}` }, line: entry.line });
    }
    if (runnable.length === 0) {
      summarize({ succeeded: 0, failed: 0, elapsedMs: 0 });
      if (bad.length === 0) say('nothing to do: every prompt already has a result (--retry-failed runs the failed ones again)');
      return bad.length > 0 ? EXIT.failures : EXIT.ok;
    }
    if (io.signal?.aborted === true || io.abortSignal?.aborted === true) {
      say(`stopped before any prompt was sent; ${runnable.length} not run`);
      return EXIT.interrupted;
    }

    fake = options.fake ? await startCliFake(options.fakeLatencyMs) : undefined;
    const keys = fake?.keys ?? real!.keys;
    say(
      fake === undefined
        ? `sending to ${options.baseURL ?? 'OpenRouter'} with ${real!.description}; concurrency ${options.concurrency}`
        : `sending to the embedded fake OpenRouter at ${fake.fake.url} with made-up keys ${keys.map((key) => key.label).join(', ')}; concurrency ${options.concurrency}`,
    );
    pool = createKeyPool({
      keys: keys.map((key) => ({ key: key.key, label: key.label })),
      strategy: options.strategy,
      appTitle: 'openrouter-rx CLI',
      ...(fake !== undefined ? { baseURL: fake.fake.baseURL } : options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
    });
    if (options.dashboardPort !== undefined) {
      dashboard = await createDashboardServer({ pool, port: options.dashboardPort, host: '127.0.0.1', title: 'openrouter-rx run' }).catch((error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code;
        throw code === 'EADDRINUSE' ? new UsageError(`--dashboard-port: ${options.dashboardPort} is in use; pick another`) : error;
      });
      say(`dashboard: ${dashboard.url}`);
      // Credit and validity per key, for the dashboard; a failure here only shows on the page.
      pool.refreshKeyInfo().subscribe({ error: () => undefined });
    }

    const outcome = await runBatch(pool, runnable, options, io, writer, say, bad.length);
    summarize(outcome);
    if (outcome.fatal !== undefined) {
      say(`error: ${outcome.fatal}; ${outcome.notRun} prompt(s) were not run. Fix the keys and run the same command again.`);
      return EXIT.failures;
    }
    if (outcome.notRun > 0) {
      say(`stopped: ${outcome.notRun} prompt(s) not run; run the same command again to resume`);
      return EXIT.interrupted;
    }
    return outcome.failed + bad.length > 0 ? EXIT.failures : EXIT.ok;
  } finally {
    writer.close();
    await dashboard?.close();
    pool?.dispose();
    await fake?.fake.close();
  }
}

interface BatchOutcome {
  succeeded: number;
  failed: number;
  /** Prompts never sent or aborted in flight: the next run sends them. */
  notRun: number;
  elapsedMs: number;
  /** A pool-wide failure (every key disabled) that stopped the run. */
  fatal?: string;
}

function runBatch(
  pool: KeyPool,
  entries: ReadonlyArray<Extract<PromptEntry, { kind: 'ok' }>>,
  options: RunOptions,
  io: CliIo,
  writer: ResultsWriter,
  say: (text: string) => void,
  alreadyFailed: number,
): Promise<BatchOutcome> {
  const progress = new ProgressReporter(io.stderr, progressMode(options.progress, io));
  const note = (text: string) => (progress.mode === 'none' ? say(text) : progress.note(text));
  const requests = new Subject<(typeof entries)[number]['request']>();
  const startedAt = Date.now();
  let next = 0;
  let inFlight = 0;
  let succeeded = 0;
  let failed = 0;
  let failureNotes = 0;
  let stopping = false;
  let sourceDone = false;
  let admitting = false;
  let admitAgain = false;
  let fatal: string | undefined;

  const report = () => progress.update({ succeeded, failed: failed + alreadyFailed, inFlight });

  /** Feeds prompts while slots are free. Re-entrant calls (a prompt that settles synchronously)
   * only flag another pass, so the source is never completed in the middle of a pass. */
  const admit = () => {
    if (admitting) {
      admitAgain = true;
      return;
    }
    admitting = true;
    do {
      admitAgain = false;
      while (!stopping && inFlight < options.concurrency && next < entries.length) {
        inFlight++;
        requests.next(entries[next++]!.request);
      }
      if (!sourceDone && (stopping || next >= entries.length)) {
        sourceDone = true;
        requests.complete();
      }
    } while (admitAgain);
    admitting = false;
    report();
  };

  return new Promise<BatchOutcome>((resolvePromise) => {
    let subscription: Subscription | undefined;
    let settled = false;
    const health = pool.health$.subscribe((snapshot) => progress.setHealth(snapshot));
    const finish = () => {
      if (settled) return;
      settled = true;
      health.unsubscribe();
      progress.setHealth(pool.snapshot());
      progress.finish();
      io.signal?.removeEventListener('abort', stop);
      io.abortSignal?.removeEventListener('abort', abort);
      if (progress.mode === 'bar') io.stderr.write(`${renderHealthTable(pool.snapshot())}\n`);
      resolvePromise({
        succeeded,
        failed,
        notRun: entries.length - succeeded - failed,
        elapsedMs: Date.now() - startedAt,
        ...(fatal === undefined ? {} : { fatal }),
      });
    };
    const stop = () => {
      if (stopping) return;
      stopping = true;
      if (fatal === undefined) {
        note(inFlight > 0 ? `stopping: no new prompts; waiting for ${inFlight} in flight (Ctrl-C again to abort them)` : 'stopping: no new prompts');
      }
      admit();
    };
    const abort = () => {
      if (settled) return;
      stopping = true;
      note(`aborting ${inFlight} prompt(s) in flight: they are not written, and the next run sends them again`);
      subscription?.unsubscribe();
      inFlight = 0;
      report();
      finish();
    };

    progress.start(entries.length + alreadyFailed);
    report();
    subscription = requests
      .pipe(balance(pool, { concurrency: options.concurrency, timeouts: options.timeouts }))
      .subscribe({
        next: (event) => {
          if (event.type === 'chunk' || event.type === 'restart') return;
          inFlight--;
          if (event.type === 'failed' && POOL_WIDE_FAILURES.has(event.error.kind)) {
            // Not the prompt's fault: leave it unwritten so that the next run sends it.
            if (fatal === undefined) fatal = event.error.message;
            stop();
          } else {
            writer.write(toResult(event));
            if (event.type === 'completion') succeeded++;
            else {
              failed++;
              if (failureNotes < MAX_FAILURE_NOTES) {
                failureNotes++;
                note(`${event.requestId} failed: ${event.error.kind}${event.error.status === undefined ? '' : ` ${event.error.status}`}: ${event.error.message}`);
                if (failureNotes === MAX_FAILURE_NOTES) note(`further failures are in ${options.out} only`);
              }
            }
          }
          report();
          admit();
        },
        complete: finish,
        error: (error: unknown) => {
          // balance() never errors (every failure is an event); if it does, say so and stop cleanly.
          fatal = `internal error: ${error instanceof Error ? error.message : String(error)}`;
          finish();
        },
      });
    io.signal?.addEventListener('abort', stop, { once: true });
    io.abortSignal?.addEventListener('abort', abort, { once: true });
    if (io.abortSignal?.aborted === true) abort();
    else if (io.signal?.aborted === true) stop();
    else admit();
  });
}
