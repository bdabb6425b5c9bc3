import { Observable, type SchedulerLike, type Subscriber, type Subscription } from 'rxjs';
import { AttemptsExhaustedError, toOpenRouterError, type AttemptRecord, type OpenRouterError } from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import { attemptRecordOf, carriesContent, withRetriedError, type AttemptEvent, type AttemptStart } from './attempt-event.js';

/**
 * What a retry operator does when an attempt fails after delivering content: `'error'` fails with
 * that error; `'restart'` emits a `restart` event (the caller clears what it got) and retries.
 */
export type MidStreamErrorMode = 'error' | 'restart';

/** What a retry operator decides; shared by `retryOnRateLimit` and `retryTransient`. */
export interface RetryPolicy {
  /** Whether this operator retries errors like this one; others pass through untouched. */
  handles(error: OpenRouterError): boolean;
  /**
   * The delay before the next attempt, or undefined to give up. `failures` counts the failures
   * this operator handled, this one included.
   */
  delayFor(error: OpenRouterError, failures: number): number | undefined;
  /** The longest the next attempt may take to start (waiting for a key) before giving up. */
  maxWaitMs: number | undefined;
  onMidStreamError: MidStreamErrorMode;
  scheduler: SchedulerLike;
  /** Called for every attempt that starts, saying whether it is a retry (the retry budget counts first attempts). */
  onAttempt?: (isRetry: boolean) => void;
}

/**
 * Resubscribes `source` (one attempt per subscription) while `policy` allows. Errors the policy
 * does not handle pass through unchanged, so retry operators nest; when it gives up on its own
 * kind of error after more than one attempt, it fails with an `AttemptsExhaustedError`, which no
 * retry operator retries. It never retries
 * an attempt that already delivered content, since resubscribing would repeat those tokens:
 * it fails with the error (`'error'` mode) or announces a `restart` first (`'restart'` mode).
 * An error that already ended a retry loop upstream (`AttemptsExhaustedError`) passes through.
 */
export function retryLoop(source: Observable<AttemptEvent>, policy: RetryPolicy): Observable<AttemptEvent> {
  return new Observable<AttemptEvent>((subscriber) => {
    const run = new RetryRun(source, policy, subscriber);
    run.subscribeSource();
    return () => run.stop();
  });
}

/**
 * One subscription of a retry loop: its attempts so far and the subscription of the current one.
 * A class, not closures, because every request in flight holds one per retry operator; it is also
 * the observer of each attempt it subscribes.
 */
class RetryRun {
  private readonly records: AttemptRecord[] = [];
  private inner: Subscription | undefined;
  private timer: Subscription | undefined;
  private lastStart: AttemptStart | undefined;
  private deliveredContent = false;
  private subscribing = false;
  private resubscribeNow = false;

  constructor(
    private readonly source: Observable<AttemptEvent>,
    private readonly policy: RetryPolicy,
    private readonly subscriber: Subscriber<AttemptEvent>,
  ) {}

  subscribeSource(): void {
    if (this.subscribing) {
      this.resubscribeNow = true;
      return;
    }
    do {
      this.resubscribeNow = false;
      this.deliveredContent = false;
      this.subscribing = true;
      this.inner = this.source.subscribe(this);
      this.subscribing = false;
    } while (this.resubscribeNow);
  }

  stop(): void {
    this.inner?.unsubscribe();
    this.timer?.unsubscribe();
  }

  next(event: AttemptEvent): void {
    if (event.type === 'attempt') {
      this.lastStart = event;
      this.timer?.unsubscribe();
      this.timer = undefined;
      this.policy.onAttempt?.(this.records.length > 0);
    } else if (!this.deliveredContent && carriesContent(event)) {
      this.deliveredContent = true;
    }
    this.subscriber.next(event);
  }

  error(thrown: unknown): void {
    this.onError(toOpenRouterError(thrown));
  }

  complete(): void {
    this.subscriber.complete();
  }

  private giveUp(error: OpenRouterError): void {
    this.subscriber.error(this.records.length > 1 ? new AttemptsExhaustedError(error, this.records) : error);
  }

  /** Gives up when no attempt has started `maxWaitMs` after the retry was due. */
  private boundWait(lastError: OpenRouterError, delayMs: number): void {
    if (this.policy.maxWaitMs === undefined) return;
    this.timer?.unsubscribe();
    this.timer = scheduleAfter(this.policy.scheduler, delayMs + this.policy.maxWaitMs, () => {
      this.inner?.unsubscribe();
      this.subscriber.error(new AttemptsExhaustedError(lastError, this.records));
    });
  }

  private onError(error: OpenRouterError): void {
    const { policy, subscriber, lastStart } = this;
    if (error instanceof AttemptsExhaustedError || error.routeExhausted) {
      subscriber.error(error);
      return;
    }
    // Not ours: an outer operator (or the caller) decides, so it passes through as it is.
    if (!policy.handles(error)) {
      subscriber.error(error);
      return;
    }
    const now = policy.scheduler.now();
    this.records.push(attemptRecordOf(error, lastStart, now));
    if (this.deliveredContent && policy.onMidStreamError === 'error') {
      subscriber.error(error);
      return;
    }
    const delayMs = policy.delayFor(error, this.records.length);
    if (delayMs === undefined) {
      this.giveUp(error);
      return;
    }
    if (this.deliveredContent) {
      subscriber.next({
        type: 'restart',
        requestId: lastStart?.requestId ?? '',
        attempt: lastStart?.attempt ?? 0,
        reason: error.kind,
        at: now,
      });
    }
    subscriber.next(
      withRetriedError(
        {
          type: 'retry',
          requestId: lastStart?.requestId ?? '',
          attempt: lastStart?.attempt ?? 0,
          reason: error.kind,
          message: error.message,
          delayMs,
          at: now,
          ...(error.status === undefined ? {} : { status: error.status }),
          ...(error.usage === undefined ? {} : { usage: error.usage }),
          ...(error.keyLabel === undefined ? {} : { keyLabel: error.keyLabel }),
          ...(error.model === undefined ? {} : { model: error.model }),
        },
        error,
      ),
    );
    this.boundWait(error, delayMs);
    if (delayMs > 0) {
      const retryTimer = scheduleAfter(policy.scheduler, delayMs, () => this.subscribeSource());
      subscriber.add(retryTimer);
    } else {
      this.subscribeSource();
    }
  }
}
