import type { MonoTypeOperatorFunction, SchedulerLike } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { retriedBy } from '../core/error-policy.js';
import type { AttemptEvent } from './attempt-event.js';
import * as z from 'zod/mini';
import { checkOptions, nonnegativeInt, positiveInt } from '../core/validation.js';
import { retryLoop, retryLoopOptionFields, type MidStreamErrorMode, type RetryPolicy } from './retry-loop.js';

/** Options of `retryOnRateLimit`. */
export interface RetryOnRateLimitConfig {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /**
   * The longest a retry may wait for an eligible key (all keys parked until their reset) before
   * giving up. Default 90 s: a per-minute quota spent (OpenRouter's free models: 20 a minute) frees
   * a minute after the window's first request, plus the margin the pool counts sends with, so a
   * retry that drew the minute's 429 would give up just before the room it waits for.
   */
  maxWaitMs?: number;
  /** What to do when an attempt fails after delivering content. Default `'error'`. */
  onMidStreamError?: MidStreamErrorMode;
  /** Runs the `maxWaitMs` timer and reads the clock. Default: `asyncScheduler`’s timers, on a clock that never goes back (`steadyScheduler`). */
  scheduler?: SchedulerLike;
}

const DEFAULT_RATE_LIMIT_MAX_WAIT_MS = 90_000;

/** Its own settings, which `balance` takes as `rateLimit`: a typo, or a bound that can only stall or give up, fails. */
export const rateLimitRetrySettings = z.strictObject({ maxAttempts: z.optional(positiveInt), maxWaitMs: z.optional(nonnegativeInt) });
const retryOnRateLimitOptions = z.extend(rateLimitRetrySettings, retryLoopOptionFields);

/**
 * Moves an attempt refused by its key or account (429, and 401, 402, 403 key limit) to another
 * key at once. A provider's 429 (scope `model`) moves it on to the next model of its chain, when
 * it has one, at once too (`withKeyRotation` passes the rate-limited model over). It never sleeps
 * itself: `withKeyRotation` prefers keys the request has not tried, and when every key is parked
 * the pool's queue admits the retry at the earliest reset. It gives
 * up after `maxAttempts`, or when no key frees within `maxWaitMs`, with an
 * `AttemptsExhaustedError` listing every attempt. An unknown or invalid option makes it throw a
 * `ValidationError`.
 */
export function retryOnRateLimit(config: RetryOnRateLimitConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  checkOptions(retryOnRateLimitOptions, config, 'retryOnRateLimit options');
  // One policy per operator, shared by every request through it.
  const policy = rateLimitRetryPolicy(config);
  return (source) => retryLoop(source, policy);
}

/** What `retryOnRateLimit` retries and how (`balance` runs it in one loop with the other retries). */
export function rateLimitRetryPolicy(config: RetryOnRateLimitConfig): RetryPolicy {
  const maxAttempts = config.maxAttempts ?? 4;
  return {
    handles: (error) => retriedBy(error) === 'rate-limit',
    delayFor: (_error, failures) => (failures < maxAttempts ? 0 : undefined),
    maxWaitMs: config.maxWaitMs ?? DEFAULT_RATE_LIMIT_MAX_WAIT_MS,
    onMidStreamError: config.onMidStreamError ?? 'error',
    scheduler: config.scheduler ?? steadyScheduler(),
  };
}
