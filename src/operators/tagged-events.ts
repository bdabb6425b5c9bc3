import { ConfigurationError } from '../core/errors.js';
import type { TransportEvent } from '../core/types.js';
import type { AttemptEvent } from './attempt-event.js';
import type { AttemptObserver } from './attempt-timeouts.js';

/** What `TaggedEvents` needs of the attempt it tags events for. */
export interface TaggingAttempt {
  /** A transport event as the attempt's; may throw (a lease or a callback that fails). */
  tag(event: TransportEvent): AttemptEvent;
  /** Torn down: a synchronous transport may still be emitting, and nothing more is taken. */
  readonly ended: boolean;
}

/** The transport's events as the attempt's (see `TaggingAttempt.tag`); a tagging that throws fails the attempt. */
export class TaggedEvents {
  /** Set once a tagging threw: a synchronous transport may still be emitting, and nothing more is taken. */
  private failed = false;

  constructor(
    private readonly attempt: TaggingAttempt,
    private readonly events: AttemptObserver,
  ) {}

  next(event: TransportEvent): void {
    if (this.failed || this.attempt.ended) return;
    let attemptEvent: AttemptEvent;
    try {
      attemptEvent = this.attempt.tag(event);
    } catch (thrown: unknown) {
      this.failed = true;
      this.events.error(thrown);
      return;
    }
    this.events.next(attemptEvent);
  }

  error(thrown: unknown): void {
    if (!this.failed && !this.attempt.ended) this.events.error(thrown);
  }

  complete(): void {
    if (!this.failed && !this.attempt.ended) this.events.complete();
  }
}

/** What a transport that returned no Observable fails its request with; a promise it returned is settled quietly. */
export function notAnObservableError(returned: unknown): ConfigurationError {
  const thenable = typeof (returned as PromiseLike<unknown> | null | undefined)?.then === 'function';
  if (thenable) (returned as PromiseLike<unknown>).then(undefined, () => undefined);
  const what = thenable ? 'a Promise' : returned === null ? 'null' : typeof returned;
  return new ConfigurationError({
    message: `the transport returned ${what}, not an Observable of TransportEvents (write it as (key, request, options) => new Observable(...), or wrap a promise with from())`,
    scope: 'request',
    retryable: false,
  });
}
