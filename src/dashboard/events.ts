import type { ServerResponse } from 'node:http';
import { asyncScheduler, throttleTime, type Observable, type Subscription } from 'rxjs';
import type { PoolHealth } from '../keys/health.js';

/**
 * The health feed as Server-Sent Events: the current snapshot at once, then at most one per
 * `throttleMs` (the last one of a burst always goes out, so the page never shows a stale state),
 * and a comment line every `heartbeatMs` so that proxies and the browser keep an idle stream open.
 * Real timers are fine here: this is a network edge, not the core.
 */

/** What the dashboard reads of a pool; a `KeyPool` is one. */
export interface HealthSource {
  readonly health$: Observable<PoolHealth>;
  snapshot(): PoolHealth;
}

export interface HealthStreamOptions {
  throttleMs: number;
  heartbeatMs: number;
}

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
  const heartbeat = setInterval(() => response.write(': heartbeat\n\n'), options.heartbeatMs);
  heartbeat.unref?.();
  // A function declaration: the feed may complete during `subscribe`, before a const would exist.
  function teardown(): void {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    subscription?.unsubscribe();
    response.off('close', teardown);
    if (!response.writableEnded) response.end();
  }
  response.on('close', teardown);
  subscription = source.health$.pipe(throttleTime(options.throttleMs, asyncScheduler, { leading: true, trailing: true })).subscribe({
    next: (health) => {
      response.write(`data: ${JSON.stringify(health)}\n\n`);
    },
    // The pool was disposed: tell the page, so it stops reconnecting.
    complete: () => {
      completed = true;
      response.write('event: end\ndata: {}\n\n');
      teardown();
    },
    error: () => teardown(),
  });
  if (completed) subscription.unsubscribe();
  return teardown;
}
