import { Observable, type MonoTypeOperatorFunction } from 'rxjs';
import type { OpenRouterError } from '../core/errors.js';
import type { PoolCore } from '../pool/types.js';
import * as z from 'zod/mini';
import { checkOptions, functionOption } from '../core/validation.js';
import { recordingOf, type AttemptEvent } from './attempt-event.js';

/** Options of `circuitBreaker`. */
export interface CircuitBreakerConfig {
  /**
   * Whether a failure counts against health: a breaker's failure count and the `lastError` health
   * shows. Default: every failure does, as its scope says (request-scoped errors never touch key
   * health, whatever this returns). What the server stated applies whatever this returns: a 429
   * still parks its scope until its reset, a 401 still disables the key, a 402 still exhausts it.
   */
  shouldRecord?: (error: OpenRouterError) => boolean;
}

const circuitBreakerOptions = z.strictObject({
  shouldRecord: z.optional(functionOption<(error: OpenRouterError) => boolean>('expected a function of the error returning a boolean')),
});

/**
 * Narrows which failures of the attempts passing through count against the pool's key, account
 * and model health. `withKeyRotation` records every attempt's outcome itself (its lease knows the
 * key), so a chain without this operator still keeps health; this one only hands it
 * `shouldRecord`. The breaker policy itself (thresholds, cooldowns, probes) is the pool's, so every
 * request sees the same state. Place it right after `withKeyRotation`.
 *
 * `pool` is the pool the attempts come from; it is not used since recording moved into
 * `withKeyRotation`, and stays so that chains written as `circuitBreaker(pool)` keep compiling.
 * An unknown or invalid option makes it throw a `ValidationError`.
 */
export function circuitBreaker(_pool: PoolCore, config: CircuitBreakerConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  checkOptions(circuitBreakerOptions, config, 'circuitBreaker options');
  const { shouldRecord } = config;
  if (shouldRecord === undefined) return (source) => source;
  return (source) =>
    new Observable<AttemptEvent>((subscriber) =>
      source.subscribe({
        next: (event) => {
          if (event.type === 'attempt') {
            const recording = recordingOf(event);
            if (recording !== undefined) recording.shouldRecord = shouldRecord;
          }
          subscriber.next(event);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      }),
    );
}
