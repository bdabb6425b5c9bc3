import type { ServerResponse } from 'node:http';
import { asyncScheduler, throttleTime, type Observable, type Subscription } from 'rxjs';
import type { PoolHealth } from '../health/records.js';
import type { FailedAttempts } from './failed-attempts.js';

/**
 * The health feed as Server-Sent Events: the current snapshot at once, then at most one per
 * `throttleMs` (the last one of a burst always goes out, so the page never shows a stale state),
 * and a comment line every `heartbeatMs` so that proxies and the browser keep an idle stream open.
 * Real timers are fine here: this is a network edge, not the core.
 *
 * A client that reads slower than snapshots come (or stops reading) gets them coalesced: once a
 * write is not taken at once, nothing more is written until the socket drains, and only the newest
 * snapshot waits meanwhile. Each snapshot replaces the whole state, so skipping the ones between
 * loses nothing, and what the server holds per client is bounded by the socket's high-water mark
 * plus two snapshots (the one being written and the one waiting), however long the client stalls.
 */

/** What the dashboard reads of a pool; a `KeyPool` is one. */
export interface HealthSource {
  /** The pool's health now, then on every change: what the SSE feed sends. */
  readonly health$: Observable<PoolHealth>;
  /** The pool's health now: what `health.json` answers. */
  snapshot(): PoolHealth;
}

export interface HealthStreamOptions {
  throttleMs: number;
  heartbeatMs: number;
  /** Failed attempts so far, read as each snapshot is written and sent along as `failedAttempts`. */
  failedAttempts?: () => FailedAttempts | undefined;
}

/** What one `data:` line of the feed holds: a health snapshot, and the failed attempts when counted. */
export type HealthFrame = PoolHealth & { failedAttempts?: FailedAttempts };

/** Streams `source` into `response`; returns the teardown (also run when the client goes away). */
export function streamHealth(source: HealthSource, response: ServerResponse, options: HealthStreamOptions): () => void {
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // nginx and similar proxies buffer responses unless told not to.
    'x-accel-buffering': 'no',
  });
  // The browser reconnects after this long if the stream drops.
  response.write('retry: 1000\n\n');
  let closed = false;
  let completed = false;
  let subscription: Subscription | undefined;
  /** The last write was not taken at once: wait for 'drain' before writing more. */
  let waitingForDrain = false;
  /** The newest snapshot that came while waiting for 'drain'; it replaces any older one. */
  let waiting: PoolHealth | undefined;

  const frame = (health: PoolHealth) => {
    const failedAttempts = options.failedAttempts?.();
    const data: HealthFrame = failedAttempts === undefined ? health : Object.assign({}, health, { failedAttempts });
    return `data: ${JSON.stringify(data)}\n\n`;
  };
  const write = (text: string) => {
    if (response.write(text)) return;
    waitingForDrain = true;
    response.once('drain', drained);
  };
  const drained = () => {
    waitingForDrain = false;
    const health = waiting;
    waiting = undefined;
    if (health !== undefined) write(frame(health));
  };
  // A stream that is backed up is not idle: no heartbeat then.
  const heartbeat = setInterval(() => {
    if (!waitingForDrain) write(': heartbeat\n\n');
  }, options.heartbeatMs);
  heartbeat.unref?.();
  // A function declaration: the feed may complete during `subscribe`, before a const would exist.
  function teardown(): void {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    subscription?.unsubscribe();
    response.off('close', teardown);
    response.off('drain', drained);
    if (!response.writableEnded) response.end();
  }
  response.on('close', teardown);
  subscription = source.health$.pipe(throttleTime(options.throttleMs, asyncScheduler, { leading: true, trailing: true })).subscribe({
    next: (health) => {
      if (waitingForDrain) waiting = health;
      else write(frame(health));
    },
    // The pool was disposed: tell the page (after the newest state), so it stops reconnecting.
    complete: () => {
      completed = true;
      if (waiting !== undefined) response.write(frame(waiting));
      response.write('event: end\ndata: {}\n\n');
      teardown();
    },
    error: () => teardown(),
  });
  if (completed) subscription.unsubscribe();
  return teardown;
}
