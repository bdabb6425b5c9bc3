import type { MonoTypeOperatorFunction, SchedulerLike } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { retriedBy } from '../core/error-policy.js';
import type { AttemptEvent } from './attempt-event.js';
import * as z from 'zod/mini';
import { checkOptions, positiveInt } from '../core/validation.js';
import { retryLoop, retryLoopOptionFields, type MidStreamErrorMode, type RetryPolicy } from './retry-loop.js';

/** Options of `fallbackOnModelError`. */
export interface FallbackOnModelErrorConfig {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /** What to do when an attempt fails after delivering content. Default `'error'`. */
  onMidStreamError?: MidStreamErrorMode;
  /** Clock for the `at` of retry events and attempt records. Default: `asyncScheduler`’s timers, on a clock that never goes back (`steadyScheduler`). */
  scheduler?: SchedulerLike;
}

/** Its own settings, which `balance` takes as `fallback`. */
export const modelFallbackSettings = z.strictObject({ maxAttempts: z.optional(positiveInt) });
const fallbackOnModelErrorOptions = z.extend(modelFallbackSettings, retryLoopOptionFields);

/**
 * Moves a request that one model refused (context too long, content policy, no endpoints) to the
 * next model of its chain at once. `withKeyRotation` has already struck the refusing model off the
 * request's route, and marks the error `routeExhausted` when no model is left: then the
 * original error is the outcome, after exactly one try per model. A failure of the model itself
 * (a 5xx, a timeout, a provider's 429) moves the request on at once as well, but through the
 * operator that retries its kind (`retryTransient`, `retryOnRateLimit`): see `withKeyRotation`.
 */
export function fallbackOnModelError(config: FallbackOnModelErrorConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  checkOptions(fallbackOnModelErrorOptions, config, 'fallbackOnModelError options');
  // One policy per operator, shared by every request through it.
  const policy = modelFallbackPolicy(config);
  return (source) => retryLoop(source, policy);
}

/** What `fallbackOnModelError` retries and how (`balance` runs it in one loop with the other retries). */
export function modelFallbackPolicy(config: FallbackOnModelErrorConfig): RetryPolicy {
  const maxAttempts = config.maxAttempts ?? 4;
  return {
    handles: (error) => retriedBy(error) === 'model-fallback',
    delayFor: (_error, failures) => (failures < maxAttempts ? 0 : undefined),
    maxWaitMs: undefined,
    onMidStreamError: config.onMidStreamError ?? 'error',
    scheduler: config.scheduler ?? steadyScheduler(),
  };
}
