/**
 * The options of `withKeyRotation`, and the parts of them `balance` takes too, with their checks.
 */
import * as z from 'zod/mini';
import type { ChatRequest } from '../core/types.js';
import { checkOptions, nonnegativeInt, positiveInt } from '../core/validation.js';
import { strategyOption } from '../pool/config.js';
import type { StrategyLike } from '../pool/strategies.js';
import { POOL_PORT, type PoolCore } from '../pool/types.js';
import { attemptTimeoutsOptions, type AttemptTimeoutsConfig } from './attempt-timeouts.js';

/** Options of `withKeyRotation`. */
export interface WithKeyRotationConfig {
  /** Overrides the pool's strategy for these requests. */
  strategy?: StrategyLike;
  /** Admission priority: higher first. A number, or a function of the request. Default 0. */
  priority?: number | ((request: ChatRequest) => number);
  /** How long an attempt may wait for a key; default from the pool config (no limit). */
  queueTimeoutMs?: number;
  /**
   * The longest park (a provider's 429) of every model of a request's chain that an attempt waits
   * out in the admission queue; a longer one fails the attempt at once with
   * `ModelUnavailableError` (`retryAfterMs`: when the first model is back). Default: the pool's
   * `maxRateLimitCooldownMs`. `balance` sets 0 and waits for the model outside the request's
   * concurrency slot, so that the wait holds up no request for another model; with 0, a request
   * whose models' own quotas are spent for more than 50 ms is refused too (`quotaSpent`).
   */
  maxQueuedModelParkMs?: number;
  /**
   * Whether an attempt is refused (`ModelUnavailableError` with `modelsAtCapacity`) rather than queued
   * when every model of its chain is at its adaptive concurrency limit, for a caller that waits for
   * the room outside its own concurrency slot (`PoolPort.modelRoom`), as `balance` does. Default false.
   */
  refuseAtModelLimit?: boolean;
  /**
   * Attempts a model gets per request before the other models of its chain are preferred. Default
   * 2. It counts every attempt on the model, but a failure of the model itself (scope `model`: a
   * 5xx, a provider's 429, a timeout, a cut stream) does not wait for it: the request moves on to
   * the next model of its chain at once, after one attempt on the failing model. So it bounds the
   * retries on one model of failures that are not the model's (a transport error, a key's
   * refusal), and the same-model retries on the last model of the chain; after that, the models
   * the request moved on from may serve it again. A lone model is retried past it: the retry
   * operators' `maxAttempts` bound the attempts of a request in all.
   */
  maxAttemptsPerModel?: number;
  /**
   * How many of the chain's next models to also hand OpenRouter as its server-side `models`
   * fallback on each attempt (0 to 2; OpenRouter takes 3 in all). Default 0: the library walks
   * the chain itself and keeps per-model health.
   */
  serverFallbacks?: 0 | 1 | 2;
  /**
   * Per-attempt timeouts (`attemptTimeouts`), applied inside each attempt so that a model that
   * timed out is struck from the request's route like any failing model. Default: none.
   */
  timeouts?: AttemptTimeoutsConfig;
}

/** A `priority` option: a number, or a function of the request. */
export const priorityOption = z.custom<number | ((request: ChatRequest) => number)>(
  (value) => (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'function',
  { message: 'expected a number or a function of the request returning one' },
);

/** A `serverFallbacks` option: OpenRouter takes 3 models in all. */
export const serverFallbacksOption = z.literal([0, 1, 2]);

/** `withKeyRotation`'s options at its edge (`balance` checks its own, which it passes on). */
export const withKeyRotationOptions = z.strictObject({
  strategy: z.optional(strategyOption),
  priority: z.optional(priorityOption),
  queueTimeoutMs: z.optional(positiveInt),
  maxQueuedModelParkMs: z.optional(nonnegativeInt),
  refuseAtModelLimit: z.optional(z.boolean()),
  maxAttemptsPerModel: z.optional(positiveInt),
  serverFallbacks: z.optional(serverFallbacksOption),
  timeouts: z.optional(attemptTimeoutsOptions),
});

/** A request's admission priority as `priority` gives it (a number, or a function of the request, which may throw). */
export function priorityOf(priority: WithKeyRotationConfig['priority'], request: ChatRequest): number | undefined {
  return typeof priority === 'function' ? priority(request) : priority;
}

const poolArgument = z.object({
  pool: z.custom<PoolCore>((value) => typeof value === 'object' && value !== null && POOL_PORT in value, {
    message: 'expected a key pool made by createKeyPool',
  }),
});

/** An operator's `pool` argument at the edge: anything but a pool fails here, naming it, not as a TypeError from inside. */
export function checkPoolArgument(pool: unknown, operator: string): void {
  checkOptions(poolArgument, { pool }, `${operator} arguments`);
}
