import { Observable, Subscription, type SchedulerLike, type Subscriber } from 'rxjs';
import { AttemptsExhaustedError, callbackError, toOpenRouterError, type AttemptRecord, type OpenRouterError } from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import { keptUnless } from '../core/subscriptions.js';
import type { Slot } from './merge-with-slots.js';
import {
  attemptRecordOf,
  carriesContent,
  recordingOf,
  requestOf,
  taughtLimit,
  whileResuming,
  withRetriedError,
  type AttemptEvent,
  type AttemptRestart,
  type AttemptStart,
  type RequestRetries,
} from './attempt-event.js';
import * as z from 'zod/mini';
import { schedulerOption } from '../core/validation.js';

/**
 * What a retry operator does when an attempt fails after delivering content: `'error'` fails with
 * that error; `'restart'` emits a `restart` event (the caller clears what it got) and retries.
 */
export type MidStreamErrorMode = 'error' | 'restart';

/** The options every retry operator takes besides its own, checked as `balance` checks its own. */
export const retryLoopOptionFields = {
  onMidStreamError: z.optional(z.enum(['error', 'restart'])),
  scheduler: z.optional(schedulerOption),
};

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
  return nestedRetryLoops(source, [policy]);
}

/**
 * `retryLoop`s nested, innermost first, run as one loop with one subscriber: the same events and
 * errors as `source.pipe(s => retryLoop(s, policies[0]), s => retryLoop(s, policies[1]), ...)`,
 * without a subscriber chain per operator for every request in flight. A loop that retries
 * starts the loops inside it afresh, as resubscribing them would; each takes up the request's
 * count of its kind at the next attempt (see `RequestRetries`).
 */
export function nestedRetryLoops(
  source: Observable<AttemptEvent>,
  policies: readonly RetryPolicy[],
  options: NestedRetryLoopsOptions = {},
): Observable<AttemptEvent> {
  const { cutShort$, slot } = options;
  const kept = options.resumable === true ? policies.map((policy) => new LoopState(policy)) : undefined;
  return new Observable<AttemptEvent>((subscriber) => {
    const run = new RetryRun(source, kept ?? policies.map((policy) => new LoopState(policy)), subscriber, cutShort$, slot);
    run.start();
    return run;
  });
}

export interface NestedRetryLoopsOptions {
  /** Ends any backoff at once when it emits (the pool was disposed): the retry then fails as its acquisition does. */
  cutShort$?: Observable<unknown>;
  /**
   * The loops' attempts carry over from one subscription to the next instead of starting afresh:
   * for one request's loops, resubscribed by a caller that waited for a model outside its
   * concurrency slot, so that the wait does not give the request a new set of retries.
   */
  resumable?: boolean;
  /**
   * The concurrency slot the request runs in (`balance`'s): given up for each backoff, so that a
   * request backing off from a failing model holds up no request for another model, and taken
   * again before the next attempt, ahead of the inputs not started yet.
   */
  slot?: Pick<Slot, 'release' | 'reacquire'>;
}

/** What one retry loop has seen: its own retries keep it; a retry by a loop outside it starts it afresh (the request's count of its kind goes on, see `started`). */
class LoopState {
  records: AttemptRecord[] = [];
  lastStart: AttemptStart | undefined;
  deliveredContent = false;
  /** Gives up when no attempt has started `maxWaitMs` after the retry was due. */
  waitTimer: Subscription | undefined;
  /**
   * While a retry waits for its attempt to start: when the wait gives up, and with what. Kept
   * when the loop stops, so that a resumed loop (see `NestedRetryLoopsOptions.resumable`) bounds
   * the rest of the wait.
   */
  pendingWait: { until: number; lastError: OpenRouterError } | undefined;
  /** Starts the next attempt after the backoff. */
  retryTimer: Subscription | undefined;

  constructor(readonly policy: RetryPolicy) {}

  /** Cancels its timers, as tearing the loop down would. */
  stop(): void {
    this.waitTimer?.unsubscribe();
    this.waitTimer = undefined;
    this.retryTimer?.unsubscribe();
    this.retryTimer = undefined;
  }

  /**
   * An attempt started: the wait for one is over. Its request's count for this loop's policy is
   * taken over (see `RequestRetries`): a loop started afresh by a retry outside it counts on.
   */
  started(event: AttemptStart): void {
    const recording = recordingOf(event);
    if (recording !== undefined) {
      const counts = recording.request.retryCounts;
      const counted = recording.resumed ? counts.get(this.policy) : undefined;
      if (counted === undefined) counts.set(this.policy, this.records);
      else if (counted !== this.records) {
        counted.push(...this.records);
        this.records = counted;
      }
    }
    this.lastStart = event;
    this.waitTimer?.unsubscribe();
    this.waitTimer = undefined;
    this.pendingWait = undefined;
    this.policy.onAttempt?.(this.records.length > 0);
  }

  /**
   * Every failed attempt of the request, whichever retry operator took it (one failure is taken by
   * one loop), for the `AttemptsExhaustedError` this loop gives up with: a chain composed by hand
   * nests one loop per operator, and each counts only its own kind. Its own, outside `withKeyRotation`.
   */
  requestAttempts(): AttemptRecord[] {
    return [...(requestOf(this.lastStart)?.failedAttempts ?? this.records)];
  }

  /** As a new subscription of this loop would start. */
  restart(): void {
    this.stop();
    this.pendingWait = undefined;
    this.records = [];
    this.lastStart = undefined;
    this.deliveredContent = false;
  }
}

/**
 * One subscription of nested retry loops: each loop's attempts so far, and the subscription of
 * the current attempt. A class, not closures, because every request in flight holds one; it is
 * also the observer of each attempt it subscribes, and the teardown of its own subscription.
 */
class RetryRun {
  private inner: Subscription | undefined;
  private subscribing = false;
  private resubscribeNow = false;
  /** The request a retry resubscribes for: its next subscription goes on with its counts. */
  private resuming: RequestRetries | undefined;
  /** Torn down (the caller unsubscribed, perhaps on a `retry` event): no retry may start after it. */
  private stopped = false;

  constructor(
    private readonly source: Observable<AttemptEvent>,
    /** Innermost first. */
    private readonly loops: readonly LoopState[],
    private readonly subscriber: Subscriber<AttemptEvent>,
    private readonly cutShort$: Observable<unknown> | undefined,
    private readonly slot: NestedRetryLoopsOptions['slot'],
  ) {}

  /**
   * The first subscription. Loops resumed with a retry still waiting for its attempt (the caller
   * waited for a model in between) keep the rest of that wait's bound, or give up at once when it
   * is spent.
   */
  start(): void {
    for (const loop of this.loops) {
      const pending = loop.pendingWait;
      if (pending === undefined) continue;
      const leftMs = pending.until - loop.policy.scheduler.now();
      if (leftMs <= 0) {
        for (const each of this.loops) each.stop();
        this.subscriber.error(this.gaveUp(loop, new AttemptsExhaustedError(pending.lastError, loop.requestAttempts())));
        return;
      }
      this.armWait(loop, pending.lastError, leftMs);
    }
    this.subscribeSource();
  }

  subscribeSource(): void {
    if (this.stopped) return;
    if (this.subscribing) {
      this.resubscribeNow = true;
      return;
    }
    do {
      this.resubscribeNow = false;
      this.subscribing = true;
      const resuming = this.resuming;
      this.resuming = undefined;
      // The caller may leave while the attempt is being subscribed (on its marker, say): it ends then.
      this.inner = whileResuming(resuming, () => keptUnless(this.source.subscribe(this), this.stopped));
      this.subscribing = false;
      if (this.inner === undefined) return;
    } while (this.resubscribeNow);
  }

  /** The teardown: rxjs calls it when the caller's subscriber ends. */
  unsubscribe(): void {
    this.stopped = true;
    this.inner?.unsubscribe();
    for (const loop of this.loops) loop.stop();
  }

  next(event: AttemptEvent): void {
    if (event.type === 'attempt') {
      for (const loop of this.loops) loop.started(event);
    } else if (carriesContent(event)) {
      for (const loop of this.loops) loop.deliveredContent = true;
    }
    this.subscriber.next(event);
  }

  error(thrown: unknown): void {
    let error = toOpenRouterError(thrown);
    // Each loop, innermost first, retries the error or hands it (or what it gave up with) outward.
    try {
      for (let index = 0; index < this.loops.length; index++) {
        const outcome = this.onError(index, error);
        if (outcome === undefined) return;
        error = outcome;
        // A loop the error leaves is torn down: its timers with it.
        this.loops[index]!.stop();
      }
    } catch (callbackThrew: unknown) {
      // A user callback of a policy (`random`, a predicate) threw: this request fails with it (a
      // request-scoped ConfigurationError, as for a strategy that throws), the stream goes on.
      for (const loop of this.loops) loop.stop();
      error = callbackError(callbackThrew, 'a retry callback');
    }
    this.subscriber.error(error);
  }

  complete(): void {
    this.subscriber.complete();
  }

  /** Loop `index` takes `error`: undefined when it retries, else the error it hands outward. */
  private onError(index: number, error: OpenRouterError): OpenRouterError | undefined {
    const loop = this.loops[index]!;
    const { policy, lastStart } = loop;
    if (error instanceof AttemptsExhaustedError || error.routeExhausted) return error;
    // Not ours: an outer loop (or the caller) decides, so it passes through as it is.
    if (!policy.handles(error)) return error;
    const now = policy.scheduler.now();
    const record = attemptRecordOf(error, lastStart, now);
    loop.records.push(record);
    requestOf(lastStart)?.failedAttempts.push(record);
    if (loop.deliveredContent && policy.onMidStreamError === 'error') return error;
    const delayMs = policy.delayFor(error, countedFailures(loop.records));
    if (delayMs === undefined)
      return this.gaveUp(loop, loop.records.length > 1 ? new AttemptsExhaustedError(error, loop.requestAttempts()) : error);
    const { subscriber } = this;
    // On the pool's `events$` too, through the attempt retried (this loop knows no pool).
    const emit = lastStart === undefined ? undefined : recordingOf(lastStart)?.emit;
    if (loop.deliveredContent) {
      const restart: AttemptRestart = {
        type: 'restart',
        requestId: lastStart?.requestId ?? '',
        attempt: lastStart?.attempt ?? 0,
        reason: error.kind,
        at: now,
      };
      emit?.(restart);
      subscriber.next(restart);
    }
    const retry = withRetriedError(
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
    );
    emit?.(retry);
    subscriber.next(retry);
    // The caller may have unsubscribed on the events just sent: then nothing more may start.
    if (this.stopped) return undefined;
    this.boundWait(loop, error, delayMs);
    if (delayMs > 0) this.retryAfter(loop, index, delayMs);
    else this.retryFrom(index);
    return undefined;
  }

  /**
   * Retries after `delayMs` (outside the request's slot, if it has one, and in it again), or as
   * soon as `cutShort$` (else the pool of the attempt retried) says the pool is gone: the attempt
   * then fails at its acquisition, without a slot to wait for.
   */
  private retryAfter(loop: LoopState, index: number, delayMs: number): void {
    const backoff = new Subscription();
    loop.retryTimer = backoff;
    const retry = (): void => {
      backoff.unsubscribe();
      this.retryFrom(index);
    };
    const { slot } = this;
    if (slot === undefined) backoff.add(scheduleAfter(loop.policy.scheduler, delayMs, retry));
    else {
      backoff.add(scheduleAfter(loop.policy.scheduler, delayMs, () => backoff.add(slot.reacquire().subscribe(retry))));
      // After the timer is armed: the slot may start another input at once, which may end this
      // request's caller (and this backoff with it).
      slot.release();
    }
    const cutShort$ = this.cutShort$ ?? (loop.lastStart === undefined ? undefined : recordingOf(loop.lastStart)?.disposed$);
    if (cutShort$ !== undefined && !backoff.closed) backoff.add(cutShort$.subscribe(retry));
  }

  /**
   * Loop `index` resubscribes its source, saying so to the request's route (see
   * `RequestRetries.resumes`): the loops inside it start afresh, and take up the request's counts
   * again at its next attempt.
   */
  private retryFrom(index: number): void {
    for (let inside = 0; inside < index; inside++) this.loops[inside]!.restart();
    const loop = this.loops[index]!;
    loop.deliveredContent = false;
    this.resuming = requestOf(loop.lastStart);
    this.subscribeSource();
  }

  /** `loop` gives up on the request with `error`: the request is over (see `RequestRetries.ended`). */
  private gaveUp(loop: LoopState, error: OpenRouterError): OpenRouterError {
    const request = requestOf(loop.lastStart);
    if (request !== undefined) request.ended = true;
    return error;
  }

  /** Gives up when no attempt has started `maxWaitMs` after the retry was due. */
  private boundWait(loop: LoopState, lastError: OpenRouterError, delayMs: number): void {
    if (loop.policy.maxWaitMs === undefined) return;
    const waitMs = delayMs + loop.policy.maxWaitMs;
    loop.pendingWait = { until: loop.policy.scheduler.now() + waitMs, lastError };
    this.armWait(loop, lastError, waitMs);
  }

  private armWait(loop: LoopState, lastError: OpenRouterError, waitMs: number): void {
    loop.waitTimer?.unsubscribe();
    loop.waitTimer = scheduleAfter(loop.policy.scheduler, waitMs, () => {
      this.inner?.unsubscribe();
      // Loops outside pass an `AttemptsExhaustedError` through as it is.
      this.subscriber.error(this.gaveUp(loop, new AttemptsExhaustedError(lastError, loop.requestAttempts())));
    });
  }
}

/** The failures a policy counts: a refusal the pool learned a limit from is not the request's (see `TAUGHT_LIMIT`). */
function countedFailures(records: readonly AttemptRecord[]): number {
  let counted = 0;
  for (const record of records) if (!taughtLimit(record)) counted++;
  return counted;
}
