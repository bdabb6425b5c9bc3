import type { Observable, Subscription } from 'rxjs';
import type { PoolEvent } from './events.js';

/** How much the pool tells its logger: each level includes the ones after it. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Where the pool logs: console, pino, winston and most loggers fit as they are. Each call gets the
 * event as structured fields (`event` names its type; labels, models, kinds and statuses, never
 * key text) and a one-line message.
 */
export interface PoolLogger {
  debug?(fields: Record<string, unknown>, message: string): void;
  info?(fields: Record<string, unknown>, message: string): void;
  warn?(fields: Record<string, unknown>, message: string): void;
  error?(fields: Record<string, unknown>, message: string): void;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** The level of an event: routine per-attempt traffic at debug, changes at info, trouble at warn. */
function levelOf(event: PoolEvent): LogLevel {
  switch (event.type) {
    case 'attempt':
    case 'success':
    case 'queued':
      return 'debug';
    case 'failure':
      // A 429 is the pool's normal signal, not trouble; the rest may be.
      return event.kind === 'rate_limit' ? 'info' : 'warn';
    case 'cooldown':
      return event.reason === 'disabled' || event.reason === 'exhausted' ? 'warn' : 'info';
    case 'state-change':
      return event.to === 'closed' || event.to === 'half-open' ? 'info' : 'warn';
    case 'store':
      return event.mode === 'shared' ? 'info' : 'error';
    default:
      return 'info';
  }
}

function messageOf(event: PoolEvent): string {
  switch (event.type) {
    case 'attempt':
      return `attempt ${event.attempt} of ${event.requestId} on ${event.keyLabel} (${event.model})`;
    case 'success':
      return `${event.keyLabel} answered (${event.model}) in ${Math.round(event.latencyMs)} ms`;
    case 'failure':
      return `${event.keyLabel} failed (${event.model}): ${event.kind}${event.status === undefined ? '' : ` ${event.status}`}`;
    case 'retry':
      return `retrying ${event.requestId} in ${Math.round(event.delayMs)} ms after ${event.reason}`;
    case 'state-change':
      return `${event.scope} ${event.target}: ${event.from} → ${event.to}`;
    case 'cooldown':
      return `${event.scope} ${event.target} cools down (${event.reason})`;
    case 'limit-learned':
      return `${event.target}: ${event.quota.requests} requests per ${event.quota.windowMs} ms (${event.cause})`;
    case 'concurrency':
      return `${event.scope} ${event.target}: concurrency limit ${event.limit}`;
    default:
      return event.type;
  }
}

/**
 * Logs `events$` to `logger` from `level` up. A logger that throws is the logger's trouble: the
 * event is dropped and the pool goes on. Returns the subscription (the pool ends it on dispose).
 */
export function logPoolEvents(events$: Observable<PoolEvent>, logger: PoolLogger, level: LogLevel): Subscription {
  const least = RANK[level];
  return events$.subscribe((event) => {
    const eventLevel = levelOf(event);
    if (RANK[eventLevel] < least) return;
    const { type, ...fields } = event;
    try {
      const logged: unknown = logger[eventLevel]?.({ event: type, ...fields }, messageOf(event));
      // Logging must never take the pool (or the request that caused the event) down: nor an
      // async logger's rejection, which would be unhandled.
      if (typeof (logged as PromiseLike<unknown> | undefined)?.then === 'function')
        (logged as PromiseLike<unknown>).then(undefined, ignore);
    } catch {
      // As above, for a logger that throws.
    }
  });
}

function ignore(): void {}
