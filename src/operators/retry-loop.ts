import { Observable, type SchedulerLike, type Subscription } from 'rxjs';
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
    const records: AttemptRecord[] = [];
    let inner: Subscription | undefined;
    let timer: Subscription | undefined;
    let lastStart: AttemptStart | undefined;
    let deliveredContent = false;
    let subscribing = false;
    let resubscribeNow = false;

    const giveUp = (error: OpenRouterError) => {
      subscriber.error(records.length > 1 ? new AttemptsExhaustedError(error, records) : error);
    };

    /** Gives up when no attempt has started `maxWaitMs` after the retry was due. */
    const boundWait = (lastError: OpenRouterError, delayMs: number) => {
      if (policy.maxWaitMs === undefined) return;
      timer?.unsubscribe();
      timer = scheduleAfter(policy.scheduler, delayMs + policy.maxWaitMs, () => {
        inner?.unsubscribe();
        subscriber.error(new AttemptsExhaustedError(lastError, records));
      });
    };

    const subscribeSource = () => {
      if (subscribing) {
        resubscribeNow = true;
        return;
      }
      do {
        resubscribeNow = false;
        deliveredContent = false;
        subscribing = true;
        inner = source.subscribe({
          next: (event) => {
            if (event.type === 'attempt') {
              lastStart = event;
              timer?.unsubscribe();
              timer = undefined;
              policy.onAttempt?.(records.length > 0);
            } else if (!deliveredContent && carriesContent(event)) {
              deliveredContent = true;
            }
            subscriber.next(event);
          },
          error: (thrown: unknown) => onError(toOpenRouterError(thrown)),
          complete: () => subscriber.complete(),
        });
        subscribing = false;
      } while (resubscribeNow);
    };

    const onError = (error: OpenRouterError) => {
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
      records.push(attemptRecordOf(error, lastStart, now));
      if (deliveredContent && policy.onMidStreamError === 'error') {
        subscriber.error(error);
        return;
      }
      const delayMs = policy.delayFor(error, records.length);
      if (delayMs === undefined) {
        giveUp(error);
        return;
      }
      if (deliveredContent) {
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
      boundWait(error, delayMs);
      if (delayMs > 0) {
        const retryTimer = scheduleAfter(policy.scheduler, delayMs, () => subscribeSource());
        subscriber.add(retryTimer);
      } else {
        subscribeSource();
      }
    };

    subscribeSource();
    return () => {
      inner?.unsubscribe();
      timer?.unsubscribe();
    };
  });
}
