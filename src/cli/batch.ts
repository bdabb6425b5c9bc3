import { Subject, type Subscription } from 'rxjs';
import { balance, type BalanceEvent } from '../operators/balance.js';
import type { KeyPool } from '../create-pool.js';
import { renderHealthTable } from './health-table.js';
import type { CliIo } from './io.js';
import { ProgressReporter, type ProgressMode } from './progress.js';
import type { PromptEntry } from './prompts.js';
import type { ResultLine, ResultsWriter } from './results.js';
import type { RunOptions } from './run-options.js';

/**
 * The batch loop of `openrouter-rx run`. Prompts go into `balance()` one at a time as slots free
 * up (so a Ctrl-C can stop admitting at once, instead of after a buffered backlog), and every
 * terminal event becomes one result line, written before the next prompt is admitted.
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
    error: {
      kind: event.error.kind,
      message: event.error.message,
      ...(event.error.status === undefined ? {} : { status: event.error.status }),
    },
    attempts: event.attempts.length,
  };
}

export interface BatchOutcome {
  succeeded: number;
  failed: number;
  /** Prompts never sent or aborted in flight: the next run sends them. */
  notRun: number;
  elapsedMs: number;
  /** A pool-wide failure (every key disabled) that stopped the run. */
  fatal?: string;
}

export function runBatch(
  pool: KeyPool,
  entries: ReadonlyArray<Extract<PromptEntry, { kind: 'ok' }>>,
  options: RunOptions,
  io: CliIo,
  writer: ResultsWriter,
  /** Scrubs key text from every message: the last guard before the terminal. */
  redact: (text: string) => string,
  alreadyFailed: number,
): Promise<BatchOutcome> {
  const progress = new ProgressReporter(io.stderr, progressMode(options.progress, io));
  const note = (text: string) => (progress.mode === 'none' ? io.stderr.write(`${redact(text)}\n`) : progress.note(redact(text)));
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
      if (progress.mode === 'bar') io.stderr.write(`${renderHealthTable(pool.snapshot(), io.stderr.columns)}\n`);
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
      progress.markStopping();
      if (fatal === undefined) {
        note(
          inFlight > 0
            ? `stopping: no new prompts; waiting for ${inFlight} in flight (Ctrl-C again to abort them)`
            : 'stopping: no new prompts',
        );
      }
      admit();
    };
    const abort = () => {
      if (settled) return;
      stopping = true;
      progress.markStopping();
      if (inFlight > 0) note(`aborting ${inFlight} prompt(s) in flight: they are not written, and the next run sends them again`);
      subscription?.unsubscribe();
      inFlight = 0;
      report();
      finish();
    };

    progress.start(entries.length + alreadyFailed);
    report();
    subscription = requests.pipe(balance(pool, { concurrency: options.concurrency, timeouts: options.timeouts })).subscribe({
      next: (event) => {
        if (event.type === 'chunk' || event.type === 'restart') return;
        inFlight--;
        if (event.type === 'failed' && POOL_WIDE_FAILURES.has(event.error.kind)) {
          // Not the prompt's fault: leave it unwritten so that the next run sends it.
          if (fatal === undefined) fatal = event.error.message;
          stop();
        } else {
          try {
            writer.write(toResult(event));
          } catch (error) {
            // A full disk or a vanished directory: nothing more can be kept, so stop at once.
            fatal = `cannot write ${options.out}: ${error instanceof Error ? error.message : String(error)}`;
            abort();
            return;
          }
          if (event.type === 'completion') succeeded++;
          else {
            failed++;
            if (failureNotes < MAX_FAILURE_NOTES) {
              failureNotes++;
              note(
                `${event.requestId} failed: ${event.error.kind}${event.error.status === undefined ? '' : ` ${event.error.status}`}: ${event.error.message}`,
              );
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
