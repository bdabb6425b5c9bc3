import { Observable, type MonoTypeOperatorFunction, type Observer, type SchedulerLike, type Subscription } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { FirstTokenTimeoutError, IdleTimeoutError, TotalTimeoutError, type AttemptTimeoutError } from '../core/errors.js';
import { DeadlineQueue, type Deadline } from '../core/deadlines.js';
import { checkOptions, positiveInt, schedulerOption } from '../core/validation.js';
import { carriesContent, recordingOf, type AttemptEvent, type AttemptStart } from './attempt-event.js';
import * as z from 'zod/mini';

/** Options of `attemptTimeouts`. */
export interface AttemptTimeoutsConfig {
  /** The whole attempt, from the key's lease to the last event. Default 300 s. */
  totalMs?: number;
  /**
   * Streams only: from the lease to the first content token (text, reasoning or a tool call).
   * Keep-alive comments do not count. Default 10 s; raise it for models that think silently.
   */
  firstTokenMs?: number;
  /** Streams only: the longest gap between chunks once content flows. Default 20 s. */
  idleMs?: number;
  /** Runs the three timers. Default: `asyncScheduler`’s timers, on a clock that never goes back (`steadyScheduler`). */
  scheduler?: SchedulerLike;
}

export const defaultAttemptTimeouts = Object.freeze({ totalMs: 300_000, firstTokenMs: 10_000, idleMs: 20_000 });

/** The three limits, as `balance` and `withKeyRotation` take them as `timeouts`: a limit of 0, or NaN, could only fail every attempt. */
export const attemptTimeoutSettings = z.strictObject({
  totalMs: z.optional(positiveInt),
  firstTokenMs: z.optional(positiveInt),
  idleMs: z.optional(positiveInt),
});
export const attemptTimeoutsOptions = z.extend(attemptTimeoutSettings, { scheduler: z.optional(schedulerOption) });

type TimeoutErrorClass = new (...args: ConstructorParameters<typeof TotalTimeoutError>) => AttemptTimeoutError;

/**
 * Bounds each attempt with three timers on the scheduler: `totalMs`, `firstTokenMs` and `idleMs`.
 * When one fires, the attempt is unsubscribed (aborting its HTTP request) and fails with its own
 * typed error (`TotalTimeoutError`, `FirstTokenTimeoutError`, `IdleTimeoutError`), scoped to the
 * model, retryable. The limits count the time the process was awake: a stall of the client's
 * own event loop (a timer woken over 100 ms late) moves the pending deadlines by its length, so an
 * answer that waited in the socket meanwhile is not failed, nor its model blamed (see
 * `DeadlineQueue`). Place it right after `withKeyRotation`, inside the retries, so each attempt
 * gets fresh timers and a silent upstream costs at most `firstTokenMs`. An unknown or invalid option
 * makes it throw a `ValidationError`.
 */
export function attemptTimeouts(config: AttemptTimeoutsConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  checkOptions(attemptTimeoutsOptions, config, 'attemptTimeouts options');
  const limits = timeoutLimitsOf(config);
  return (source) =>
    new Observable<AttemptEvent>((subscriber) => {
      const run = new TimedAttempt(limits, subscriber);
      run.upstream = source.subscribe(run);
      return () => run.stop();
    });
}

/** The settings every attempt under one `attemptTimeouts` shares, with the queue of their deadlines. */
export interface TimeoutLimits {
  readonly totalMs: number;
  readonly firstTokenMs: number;
  readonly idleMs: number;
  readonly scheduler: SchedulerLike;
  readonly deadlines: DeadlineQueue;
}

export function timeoutLimitsOf(config: AttemptTimeoutsConfig): TimeoutLimits {
  const scheduler = config.scheduler ?? steadyScheduler();
  return {
    totalMs: config.totalMs ?? defaultAttemptTimeouts.totalMs,
    firstTokenMs: config.firstTokenMs ?? defaultAttemptTimeouts.firstTokenMs,
    idleMs: config.idleMs ?? defaultAttemptTimeouts.idleMs,
    scheduler,
    // One timer for every attempt's total and first-token deadlines (see `DeadlineQueue`).
    deadlines: new DeadlineQueue(scheduler),
  };
}

/** What takes an attempt's events: a subscriber, an attempt that drives its timers itself, or its timers. */
export type AttemptObserver = Pick<Observer<AttemptEvent>, 'next' | 'error' | 'complete'>;

/**
 * One attempt's timers and what they have seen of it. A class, not closures, because every
 * request in flight holds one. It observes the attempt's events and passes them on; when a timer
 * fires it ends `upstream` (aborting the HTTP request) and fails `downstream`. `attemptTimeouts`
 * makes one per subscription; `withKeyRotation` drives one inside each attempt it makes, without
 * the operator's two subscribers.
 */
export class TimedAttempt {
  upstream: Subscription | undefined;
  /** Stopped: events a synchronous upstream still sends are dropped, and no timer starts again. */
  private stopped = false;
  private start: AttemptStart | undefined;
  private total: Deadline | undefined;
  private firstToken: Deadline | undefined;
  private idle: Deadline | undefined;
  private contentSeen = false;
  /** The chunk with the finish reason (or the end) came: no idle timeout from then. */
  private contentEnded = false;
  private lastEventAt = 0;

  constructor(
    private readonly limits: TimeoutLimits,
    private readonly downstream: AttemptObserver,
  ) {}

  next(event: AttemptEvent): void {
    if (this.stopped) return;
    const { limits } = this;
    if (event.type === 'attempt') {
      this.clear();
      this.start = event;
      this.contentSeen = false;
      this.contentEnded = false;
      this.total = this.arm(TotalTimeoutError, 'total', limits.totalMs);
      if (event.stream) this.firstToken = this.arm(FirstTokenTimeoutError, 'first-token', limits.firstTokenMs);
    } else if (this.start?.stream && (event.type === 'chunk' || event.type === 'end')) {
      if (!this.contentSeen && carriesContent(event)) {
        this.contentSeen = true;
        this.firstToken?.cancel();
        this.firstToken = undefined;
      }
      if (event.type === 'end' || event.finishReason !== undefined) {
        // The content has ended: what may follow (usage, the stream's end) the transport waits for
        // within its own grace, and the total timeout bounds. An idle timer shorter than that grace
        // would fail a complete answer.
        this.contentEnded = true;
        this.firstToken?.cancel();
        this.firstToken = undefined;
        this.idle?.cancel();
        this.idle = undefined;
      } else if (this.contentSeen && !this.contentEnded) {
        this.lastEventAt = limits.deadlines.now();
        this.idle ??= this.armIdle(limits.idleMs);
      }
    }
    if (event.type === 'end' || event.type === 'completion') this.clear();
    this.downstream.next(event);
  }

  error(error: unknown): void {
    if (this.stopped) return;
    this.clear();
    this.downstream.error(error);
  }

  complete(): void {
    if (this.stopped) return;
    this.clear();
    this.downstream.complete();
  }

  /** Ends the attempt here: the upstream, the timers, and any event still on its way. */
  stop(): void {
    this.stopped = true;
    this.upstream?.unsubscribe();
    this.clear();
  }

  private clear(): void {
    this.total?.cancel();
    this.firstToken?.cancel();
    this.idle?.cancel();
    this.total = this.firstToken = this.idle = undefined;
  }

  private fire(ErrorClass: TimeoutErrorClass, phase: 'total' | 'first-token' | 'idle', limitMs: number): void {
    this.clear();
    const start = this.start;
    const error = new ErrorClass(phase, limitMs, {
      scope: 'model',
      retryable: true,
      ...(start === undefined ? {} : { keyLabel: start.keyLabel, model: start.model }),
    });
    // An attempt of `withKeyRotation` (this operator after it, or its own timers inside it) fails
    // itself: its HTTP request is aborted, the timeout recorded against the model and the request
    // moved on, and the error comes down through `error`. After a source that is not one, or an
    // attempt already over, the upstream is ended here.
    const recording = start === undefined ? undefined : recordingOf(start);
    if (recording?.fail(error) === true) return;
    this.upstream?.unsubscribe();
    this.downstream.error(error);
  }

  private arm(ErrorClass: TimeoutErrorClass, phase: 'total' | 'first-token', limitMs: number): Deadline {
    return this.limits.deadlines.add(limitMs, () => this.fire(ErrorClass, phase, limitMs));
  }

  /**
   * One idle deadline at a time, not one per chunk: when it fires it checks the time since the
   * last chunk and sleeps again for what is left (re-arming a deadline per token costs more than
   * the token). It is on the queue's awake clock, as the other two, so the process's own stall
   * is not taken for a quiet upstream.
   */
  private armIdle(delayMs: number): Deadline {
    return this.limits.deadlines.add(delayMs, () => {
      const { deadlines, idleMs } = this.limits;
      const quietMs = deadlines.now() - this.lastEventAt;
      if (quietMs >= idleMs) this.fire(IdleTimeoutError, 'idle', idleMs);
      else this.idle = this.armIdle(idleMs - quietMs);
    });
  }
}
