/**
 * Closed-loop load: `concurrency` requests in flight, the next one sent as soon as one ends, until
 * a count or a duration is reached. Every request ends with an outcome, or is counted lost when
 * the hard deadline passes first. CPU is this process's, measured around the run.
 */
import { performance } from 'node:perf_hooks';
import type { BenchRequest, PeerSession } from '../peers/types.js';
import { cpuMicros } from './measure.js';

export interface RunRecord {
  issued: number;
  ok: number;
  failed: number;
  /** Requests without an outcome when the run gave up on them (deadline or stall). */
  lost: number;
  /** Requests never sent because the run gave up first (every slot held by a lost request). */
  notSent: number;
  /** Failure descriptions and how often each occurred. */
  errors: Record<string, number>;
  /** Latency of each successful request, ms. */
  latenciesMs: number[];
  /** When each successful request ended, ms since the start. */
  okAtMs: number[];
  /** Content chunks received over every successful request. */
  chunks: number;
  wallMs: number;
  cpuMicros: number;
  /** CPU of the peer's helper process (Portkey's gateway) over the run, µs. */
  helperCpuMicros?: number;
}

export interface DriveOptions {
  concurrency: number;
  makeRequest(index: number): BenchRequest;
  /** Stop sending after this many requests. */
  total?: number;
  /** Stop sending after this long (ms). */
  durationMs?: number;
  /** Give up on requests still in flight this long after the start (ms). */
  deadlineMs: number;
  /**
   * Give up when no request has ended for this long (ms), counting those in flight as lost and
   * those not sent as `notSent`: a peer asleep on a 10-minute `Retry-After` would otherwise hold
   * the run to its deadline.
   */
  stallMs?: number;
}

export function drive(session: PeerSession, options: DriveOptions): Promise<RunRecord> {
  return new Promise<RunRecord>((resolve) => {
    const record: RunRecord = {
      issued: 0,
      ok: 0,
      failed: 0,
      lost: 0,
      notSent: 0,
      errors: {},
      latenciesMs: [],
      okAtMs: [],
      chunks: 0,
      wallMs: 0,
      cpuMicros: 0,
    };
    const helperStart = session.helperCpuMicros?.();
    const cpuStart = cpuMicros();
    const start = performance.now();
    let inFlight = 0;
    let finished = false;
    let lastOutcomeAt = start;
    let stallTimer: NodeJS.Timeout | undefined;

    const mayIssue = () =>
      (options.total === undefined || record.issued < options.total) &&
      (options.durationMs === undefined || performance.now() - start < options.durationMs);

    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      if (stallTimer !== undefined) clearInterval(stallTimer);
      record.wallMs = performance.now() - start;
      record.cpuMicros = cpuMicros() - cpuStart;
      const helperEnd = session.helperCpuMicros?.();
      if (helperStart !== undefined && helperEnd !== undefined) record.helperCpuMicros = helperEnd - helperStart;
      record.lost = inFlight;
      if (options.total !== undefined) record.notSent = options.total - record.issued;
      resolve(record);
    };

    const launch = () => {
      while (!finished && inFlight < options.concurrency && mayIssue()) {
        const index = record.issued++;
        inFlight++;
        const sentAt = performance.now();
        session.run(options.makeRequest(index)).then(
          (outcome) => {
            if (finished) return;
            inFlight--;
            const now = performance.now();
            lastOutcomeAt = now;
            if (outcome.ok) {
              record.ok++;
              record.chunks += outcome.chunks;
              record.latenciesMs.push(now - sentAt);
              record.okAtMs.push(now - start);
            } else {
              record.failed++;
              record.errors[outcome.error] = (record.errors[outcome.error] ?? 0) + 1;
            }
            launch();
          },
          (error: unknown) => {
            if (finished) return;
            inFlight--;
            lastOutcomeAt = performance.now();
            record.failed++;
            const name = `rejected: ${error instanceof Error ? error.message : String(error)}`;
            record.errors[name] = (record.errors[name] ?? 0) + 1;
            launch();
          },
        );
      }
      if (!finished && inFlight === 0 && !mayIssue()) finish();
    };

    const deadline = setTimeout(finish, options.deadlineMs);
    if (options.stallMs !== undefined) {
      const stallMs = options.stallMs;
      stallTimer = setInterval(
        () => {
          if (inFlight > 0 && performance.now() - lastOutcomeAt > stallMs) finish();
        },
        Math.min(250, stallMs),
      );
    }
    launch();
  });
}

let sequence = 0;

/** The same small prompt for every peer; ids are unique across the run. */
export function benchRequest(stream: boolean): BenchRequest {
  sequence++;
  return {
    id: `bench-${sequence}`,
    stream,
    max_tokens: 64,
    messages: [{ role: 'user', content: `Request ${sequence}: answer in a few words.` }],
  };
}
