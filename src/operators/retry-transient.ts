import type { MonoTypeOperatorFunction, SchedulerLike } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { cappedBackoffMs } from '../core/timers.js';
import { retriedBy } from '../core/error-policy.js';
import { WindowedCount } from '../health/windowed-count.js';
import { movesOn, type AttemptEvent } from './attempt-event.js';
import * as z from 'zod/mini';
import { checkOptions, functionOption, nonnegativeNumber, positiveInt } from '../core/validation.js';
import { retryLoop, retryLoopOptionFields, type MidStreamErrorMode, type RetryPolicy } from './retry-loop.js';

/**
 * Finagle's retry budget: over the last `windowMs`, retries may be `ratio` of the attempts made,
 * plus `minRetriesPerSecond` so that light traffic can always retry.
 */
export interface RetryBudgetConfig {
  /** Retries may add at most this fraction of the attempts in the window. Default 0.2. */
  ratio?: number;
  /** Retries always allowed per second of window, however little traffic. Default 10. */
  minRetriesPerSecond?: number;
  /** The window over which attempts and retries are counted. Default 10 s. */
  windowMs?: number;
}

/** Options of `retryTransient`. */
export interface RetryTransientConfig {
  /**
   * Attempts in all, the first included, whichever models of the chain they go to: a move to the
   * next model at once (fallback first) counts like a retry. Default 3. So with the default, a
   * request whose primary and only fallback both keep failing with a 5xx makes three attempts:
   * primary, fallback at once, then fallback again after a backoff; alone, three on its model.
   */
  maxAttempts?: number;
  /**
   * Backoff base: retry n waits a random time in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))), n
   * counting the request's failures so far (moves to the next model included). Default 200 ms.
   */
  baseDelayMs?: number;
  /** Backoff cap. Default 5 s. */
  maxDelayMs?: number;
  /**
   * Shared by every request through this operator instance; `false` turns it off. A move to the
   * next model at once takes nothing from it: it does not retry the failing route.
   */
  budget?: RetryBudgetConfig | false;
  /** What to do when an attempt fails after delivering content. Default `'error'`. */
  onMidStreamError?: MidStreamErrorMode;
  /** Runs the backoff timers and reads the clock. Default: `asyncScheduler`’s timers, on a clock that never goes back (`steadyScheduler`). */
  scheduler?: SchedulerLike;
  /** Jitter source, returning a number in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Counts first attempts and retries over a sliding window. */
class RetryBudget {
  private readonly attempts: WindowedCount;
  private readonly retries: WindowedCount;
  private readonly minRetries: number;

  constructor(
    private readonly ratio: number,
    minRetriesPerSecond: number,
    windowMs: number,
  ) {
    this.attempts = new WindowedCount(windowMs);
    this.retries = new WindowedCount(windowMs);
    this.minRetries = (minRetriesPerSecond * windowMs) / 1000;
  }

  countAttempt(now: number): void {
    this.attempts.add(now);
  }

  /** Takes one retry from the budget if there is room. */
  tryRetry(now: number): boolean {
    const allowed = this.minRetries + this.ratio * this.attempts.total(now);
    if (this.retries.total(now) + 1 > allowed) return false;
    this.retries.add(now);
    return true;
  }
}

/** Its own settings, which `balance` takes as `transient`: a typo, or a bound that can only stall or give up, fails. */
export const transientRetrySettings = z.strictObject({
  maxAttempts: z.optional(positiveInt),
  baseDelayMs: z.optional(nonnegativeNumber),
  maxDelayMs: z.optional(nonnegativeNumber),
  budget: z.optional(
    z.union([
      z.literal(false),
      z.strictObject({
        ratio: z.optional(z.number().check(z.gte(0), z.lte(1))),
        minRetriesPerSecond: z.optional(nonnegativeNumber),
        windowMs: z.optional(positiveInt),
      }),
    ]),
  ),
  random: z.optional(functionOption<() => number>('expected a function returning a number in [0, 1)')),
});
const retryTransientOptions = z.extend(transientRetrySettings, retryLoopOptionFields);

/**
 * Retries transient failures (5xx, network errors, timeouts, broken streams) with full-jitter
 * exponential backoff, at most `maxAttempts` in all, and within a retry budget shared by every
 * request through this operator, so an outage does not turn into a retry storm. The next attempt
 * picks a key (and model) afresh, preferring ones the request has not failed on.
 *
 * Fallback first: when `withKeyRotation` moved the request on to the next model of its chain (a
 * failure of the model itself while the chain has another model), the retry is at once, with no
 * backoff and nothing taken from the budget; it still counts toward `maxAttempts`. On the last
 * model of the chain, or a lone model, retries back off as above. An unknown or invalid option makes
 * it throw a `ValidationError`.
 */
export function retryTransient(config: RetryTransientConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  checkOptions(retryTransientOptions, config, 'retryTransient options');
  // One policy (and budget) per operator, shared by every request through it.
  const policy = transientRetryPolicy(config);
  return (source) => retryLoop(source, policy);
}

/** What `retryTransient` retries and how, with its own budget (`balance` runs it in one loop with the other retries). */
export function transientRetryPolicy(config: RetryTransientConfig): RetryPolicy {
  const maxAttempts = config.maxAttempts ?? 3;
  const baseDelayMs = config.baseDelayMs ?? 200;
  const maxDelayMs = config.maxDelayMs ?? 5_000;
  const scheduler = config.scheduler ?? steadyScheduler();
  const random = config.random ?? Math.random;
  const budget =
    config.budget === false
      ? undefined
      : new RetryBudget(config.budget?.ratio ?? 0.2, config.budget?.minRetriesPerSecond ?? 10, config.budget?.windowMs ?? 10_000);
  return {
    handles: (error) => retriedBy(error) === 'transient',
    delayFor: (error, failures) => {
      if (failures >= maxAttempts) return undefined;
      // The next model, not the failing one: nothing to wait out, and no retry of a failing route.
      if (movesOn(error)) return 0;
      if (budget !== undefined && !budget.tryRetry(scheduler.now())) return undefined;
      return Math.floor(random() * cappedBackoffMs(baseDelayMs, 2, failures - 1, maxDelayMs));
    },
    maxWaitMs: undefined,
    onMidStreamError: config.onMidStreamError ?? 'error',
    scheduler,
    // Only first attempts fund the budget (Finagle's rule), so retries cannot feed more retries.
    ...(budget === undefined ? {} : { onAttempt: (isRetry: boolean) => isRetry || budget.countAttempt(scheduler.now()) }),
  };
}
