import {
  Observable,
  asyncScheduler,
  type MonoTypeOperatorFunction,
  type SchedulerAction,
  type SchedulerLike,
  type Subscription,
} from 'rxjs';
import { FirstTokenTimeoutError, IdleTimeoutError, TotalTimeoutError, type AttemptTimeoutError } from '../core/errors.js';
import { MAX_TIMER_DELAY_MS, scheduleAfter } from '../core/timers.js';
import { carriesContent, type AttemptEvent, type AttemptStart } from './attempt-event.js';

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
  /** Runs the three timers. Default `asyncScheduler`. */
  scheduler?: SchedulerLike;
}

export const defaultAttemptTimeouts = Object.freeze({ totalMs: 300_000, firstTokenMs: 10_000, idleMs: 20_000 });

type TimeoutErrorClass = new (...args: ConstructorParameters<typeof TotalTimeoutError>) => AttemptTimeoutError;

/**
 * Bounds each attempt with three timers on the scheduler: `totalMs`, `firstTokenMs` and `idleMs`.
 * When one fires, the attempt is unsubscribed (aborting its HTTP request) and fails with its own
 * typed error (`TotalTimeoutError`, `FirstTokenTimeoutError`, `IdleTimeoutError`), scoped to the
 * model, retryable. Place it right after `withKeyRotation`, inside the retries, so each attempt
 * gets fresh timers and a silent upstream costs at most `firstTokenMs`.
 */
export function attemptTimeouts(config: AttemptTimeoutsConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  const totalMs = config.totalMs ?? defaultAttemptTimeouts.totalMs;
  const firstTokenMs = config.firstTokenMs ?? defaultAttemptTimeouts.firstTokenMs;
  const idleMs = config.idleMs ?? defaultAttemptTimeouts.idleMs;
  const scheduler = config.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<AttemptEvent>((subscriber) => {
      let start: AttemptStart | undefined;
      let total: Subscription | undefined;
      let firstToken: Subscription | undefined;
      let idle: Subscription | undefined;
      let contentSeen = false;
      let lastEventAt = 0;
      let upstream: Subscription | undefined;

      const clear = () => {
        total?.unsubscribe();
        firstToken?.unsubscribe();
        idle?.unsubscribe();
        total = firstToken = idle = undefined;
      };
      const fire = (ErrorClass: TimeoutErrorClass, phase: 'total' | 'first-token' | 'idle', limitMs: number) => {
        upstream?.unsubscribe();
        clear();
        subscriber.error(
          new ErrorClass(phase, limitMs, {
            scope: 'model',
            retryable: true,
            ...(start === undefined ? {} : { keyLabel: start.keyLabel, model: start.model }),
          }),
        );
      };
      const arm = (ErrorClass: TimeoutErrorClass, phase: 'total' | 'first-token', limitMs: number) =>
        scheduleAfter(scheduler, limitMs, () => fire(ErrorClass, phase, limitMs));
      /**
       * One idle timer per attempt, not one per chunk: when it fires it checks the time since the
       * last chunk and sleeps again for what is left (re-arming a timer per token costs more than
       * the token).
       */
      const armIdle = () =>
        scheduler.schedule(
          function (this: SchedulerAction<unknown>) {
            const quietMs = scheduler.now() - lastEventAt;
            if (quietMs >= idleMs) fire(IdleTimeoutError, 'idle', idleMs);
            else this.schedule(undefined, Math.min(idleMs - quietMs, MAX_TIMER_DELAY_MS));
          },
          Math.min(idleMs, MAX_TIMER_DELAY_MS),
        );

      upstream = source.subscribe({
        next: (event) => {
          if (event.type === 'attempt') {
            clear();
            start = event;
            contentSeen = false;
            total = arm(TotalTimeoutError, 'total', totalMs);
            if (event.stream) firstToken = arm(FirstTokenTimeoutError, 'first-token', firstTokenMs);
          } else if (start?.stream && (event.type === 'chunk' || event.type === 'end')) {
            if (!contentSeen && carriesContent(event)) {
              contentSeen = true;
              firstToken?.unsubscribe();
              firstToken = undefined;
            }
            if (contentSeen) {
              lastEventAt = scheduler.now();
              if (event.type === 'end') {
                idle?.unsubscribe();
                idle = undefined;
              } else {
                idle ??= armIdle();
              }
            }
          }
          if (event.type === 'end' || event.type === 'completion') clear();
          subscriber.next(event);
        },
        error: (error: unknown) => {
          clear();
          subscriber.error(error);
        },
        complete: () => {
          clear();
          subscriber.complete();
        },
      });
      return () => {
        upstream?.unsubscribe();
        clear();
      };
    });
}
