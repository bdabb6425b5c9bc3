import { map, of, type Observable, type OperatorFunction } from 'rxjs';
import * as z from 'zod/mini';
import { withFields } from '../core/objects.js';
import { POOL_PORT, type PoolCore } from '../pool/types.js';
import { invalidRequestError, validateBalancedRequest } from '../routing/balanced-request.js';
import type { StrategyLike } from '../pool/strategies.js';
import { strategyOption } from '../pool/config.js';
import type { ChatRequest } from '../core/types.js';
import { checkOptions, nonnegativeInt, positiveInt } from '../core/validation.js';
import { QuotaWaitLine } from './quota-wait-line.js';
import { toBalanceEvents, type RequestArrival, type RequestWaits } from './balance-events.js';
import type { BalanceEvent } from './balance-event-types.js';
import { attemptTimeoutSettings, defaultAttemptTimeouts, type AttemptTimeoutsConfig } from './attempt-timeouts.js';
import { modelFallbackPolicy, modelFallbackSettings, type FallbackOnModelErrorConfig } from './fallback-on-model-error.js';
import { rateLimitRetryPolicy, rateLimitRetrySettings, type RetryOnRateLimitConfig } from './retry-on-rate-limit.js';
import { transientRetryPolicy, transientRetrySettings, type RetryTransientConfig } from './retry-transient.js';
import { nestedRetryLoops, type MidStreamErrorMode, type RetryPolicy } from './retry-loop.js';
import { keyRotationAttempts, type WithKeyRotationConfig } from './with-key-rotation.js';
import { checkPoolArgument, priorityOption, serverFallbacksOption } from './key-rotation-options.js';
import { mergeWithSlots, type Slot } from './merge-with-slots.js';

export type { BalanceEvent, ChunkEvent, CompletionEvent, FailedEvent, RestartEvent } from './balance-event-types.js';

/** Options of `balance`; an unknown or invalid field makes `balance` throw a `ValidationError`. */
export interface BalanceOptions {
  /** Requests in flight at once (mergeMap's cap). Default 16. */
  concurrency?: number;
  /** Overrides the pool's key strategy. */
  strategy?: StrategyLike;
  /** Admission priority, higher first. Default 0. */
  priority?: number | ((request: ChatRequest) => number);
  /**
   * How long a request may wait for a key before failing with `QueueTimeoutError`: in the pool's
   * queue, or outside it for room at its models' concurrency limits. Default the pool's `queue.timeoutMs`.
   */
  queueTimeoutMs?: number;
  /** `retryOnRateLimit` settings, or `false` to fail on the first refusal. */
  rateLimit?: Omit<RetryOnRateLimitConfig, 'scheduler' | 'onMidStreamError'> | false;
  /** `retryTransient` settings, or `false` to fail on the first transient error. */
  transient?: Omit<RetryTransientConfig, 'scheduler' | 'onMidStreamError'> | false;
  /** After content was delivered: fail (`'error'`, default) or run again elsewhere after a `restart` event. */
  onMidStreamError?: MidStreamErrorMode;
  /**
   * Attempts a model gets per request before its chain moves on to the other models. Default 2.
   * A failure of the model itself (a 5xx, a provider's 429, a timeout, a cut stream) does not
   * wait for it: while the chain has a next model, the request moves there at once, after one
   * attempt on the failing model (fallback first). It bounds the retries on one model of other
   * failures (a network error, a key's refusal), and the same-model retries (with backoff) on the
   * last model of the chain; past it, the models the request moved on from may serve it again. A
   * lone model is retried past it. In all, each retry operator's `maxAttempts` bounds the attempts
   * of its kind of failure, moves to the next model included (`transient` 3 by default).
   */
  maxAttemptsPerModel?: number;
  /** `fallbackOnModelError` settings, or `false` to fail when a model refuses the request. */
  fallback?: Omit<FallbackOnModelErrorConfig, 'scheduler' | 'onMidStreamError'> | false;
  /** Per-attempt timeouts (`totalMs`, `firstTokenMs`, `idleMs`), or `false` for none. */
  timeouts?: Omit<AttemptTimeoutsConfig, 'scheduler'> | false;
  /** Next models of the chain also handed to OpenRouter's server-side fallback (0 to 2). Default 0. */
  serverFallbacks?: 0 | 1 | 2;
  /**
   * How long a request may wait, each time, while every model of its chain is out of service
   * (breaker open, or half-open with its probe out, or parked by a provider's 429) before it fails
   * with `ModelUnavailableError`, or every key's breaker is open (`NoKeyAvailableError`); a model or
   * key not due back within it fails the request at once. It
   * waits without its concurrency slot, so requests for other models run meanwhile, and its
   * retries bound how many times it waits; so does a retry's backoff (after a 5xx, say), which
   * takes the slot again before the next attempt, ahead of inputs not started yet. Default 60 s (the longest default 429 park without a
   * hint, and at least the longest default breaker cooldown); 0 fails at once. A request whose
   * every model is at its concurrency limit is in service: it waits outside its slot for as long
   * as the model takes to free room (with 0, in the admission queue, holding its slot, as a
   * backoff then does too), except
   * after finding its models out of service since its last attempt: until one of them answers a
   * request again, that wait is part of the outage, and counts in `modelWaitMs`.
   */
  modelWaitMs?: number;
}

/** Requests at once when `concurrency` is not given. */
const DEFAULT_CONCURRENCY = 16;

const orOff = <T extends z.ZodMiniType>(settings: T) => z.optional(z.union([z.literal(false), settings]));

/** `BalanceOptions` at the edge: a typo or a cap that can only stall fails here, naming the field. */
const balanceOptionsSchema = z.strictObject({
  concurrency: z.optional(z.union([positiveInt, z.literal(Infinity)])),
  strategy: z.optional(strategyOption),
  priority: z.optional(priorityOption),
  queueTimeoutMs: z.optional(positiveInt),
  rateLimit: orOff(rateLimitRetrySettings),
  transient: orOff(transientRetrySettings),
  onMidStreamError: z.optional(z.enum(['error', 'restart'])),
  maxAttemptsPerModel: z.optional(positiveInt),
  fallback: orOff(modelFallbackSettings),
  timeouts: orOff(attemptTimeoutSettings),
  serverFallbacks: z.optional(serverFallbacksOption),
  modelWaitMs: z.optional(nonnegativeInt),
});

/**
 * The library's main operator: routes each request through `withKeyRotation`, `attemptTimeouts`,
 * `retryOnRateLimit`, `fallbackOnModelError` and `retryTransient` (the rotation records every outcome
 * into health), at most `concurrency` at a time, and reports it as
 * `BalanceEvent`s. Fallback first: a failure of a model moves its request to the next model of
 * its chain at once; only the last model (or a lone one) is retried after a backoff. Every input
 * gets exactly one terminal event (`completion` or `failed`); a failing request never errors the
 * output stream. Unsubscribing aborts every request in flight.
 */
export function balance(pool: PoolCore, options: BalanceOptions = {}): OperatorFunction<ChatRequest, BalanceEvent> {
  checkPoolArgument(pool, 'balance');
  checkOptions(balanceOptionsSchema, options, 'balance options');
  const onMidStreamError = options.onMidStreamError ?? 'error';
  // A request whose every model is parked is refused, not queued: it waits for the model below
  // (`modelWaitMs`) without its concurrency slot, which a request for another model takes meanwhile.
  // A request whose models are at their concurrency limits waits for room the same way (unless
  // `modelWaitMs` is 0: then in the queue, as a chain composed by hand would).
  const modelWaitMs = options.modelWaitMs ?? 60_000;
  const rotation: WithKeyRotationConfig = { maxQueuedModelParkMs: 0, refuseAtModelLimit: modelWaitMs > 0 };
  const waitOptions = {
    modelWaitMs,
    queueTimeoutMs: options.queueTimeoutMs ?? pool[POOL_PORT].queueTimeoutMs,
    priority: options.priority,
  };
  if (options.strategy !== undefined) rotation.strategy = options.strategy;
  if (options.priority !== undefined) rotation.priority = options.priority;
  if (options.queueTimeoutMs !== undefined) rotation.queueTimeoutMs = options.queueTimeoutMs;
  if (options.maxAttemptsPerModel !== undefined) rotation.maxAttemptsPerModel = options.maxAttemptsPerModel;
  if (options.serverFallbacks !== undefined) rotation.serverFallbacks = options.serverFallbacks;
  if (options.timeouts !== false) rotation.timeouts = Object.assign({}, defaultAttemptTimeouts, options.timeouts);
  const attemptsOf = keyRotationAttempts(pool, rotation);
  // retryOnRateLimit, fallbackOnModelError and retryTransient, innermost first, as one loop per
  // request (`nestedRetryLoops`): the same events as piping the three operators, with one
  // subscriber instead of three for every request in flight.
  const retryPolicies: RetryPolicy[] = [];
  const { scheduler } = pool;
  if (options.rateLimit !== false)
    retryPolicies.push(rateLimitRetryPolicy(Object.assign({}, options.rateLimit, { onMidStreamError, scheduler })));
  if (options.fallback !== false)
    retryPolicies.push(modelFallbackPolicy(Object.assign({}, options.fallback, { onMidStreamError, scheduler })));
  if (options.transient !== false)
    retryPolicies.push(transientRetryPolicy(Object.assign({}, options.transient, { onMidStreamError, scheduler })));
  // A backoff ends with the pool: the retry's acquisition then fails the request at once.
  const disposed$ = pool[POOL_PORT].disposed$;
  // Ids for requests that bring none: unique to this operator among every other's on the pool's
  // `events$` (and in logs and traces), and unlike an id a user would write (`req-2`).
  const idPrefix = `req-${Math.floor(Math.random() * 36 ** 6).toString(36)}-`;
  let sequence = 0;

  const run = (arrival: Arrival, slot: Slot, waits: RequestWaits): Observable<BalanceEvent> => {
    const { input } = arrival;
    const requestId = typeof input?.id === 'string' ? input.id : `${idPrefix}${++sequence}`;
    let request: ChatRequest;
    try {
      // A copy: routes are per request object, and one input object may be sent twice. Not a
      // spread literal: V8 gave every `{ ...input, id }` made here a hidden class of its own
      // (10,000 requests in flight held 10,000 maps).
      request = withFields(validateBalancedRequest(input), { id: requestId });
    } catch (error) {
      return of<BalanceEvent>({ type: 'failed', requestId, error: invalidRequestError(error), attempts: [] });
    }
    // Resumable: a wait for a model (below, outside the slot) resubscribes them, and the request
    // goes on with the retries it has left, not a new set per wait.
    const attempts$ =
      retryPolicies.length === 0
        ? attemptsOf(request)
        : nestedRetryLoops(attemptsOf(request), retryPolicies, {
            cutShort$: disposed$,
            resumable: true,
            // A backoff waits on a failing model as a model wait does: outside the slot, unless
            // `modelWaitMs` is 0 (then in it, as in a chain composed by hand).
            ...(modelWaitMs > 0 ? { slot } : {}),
          });
    return toBalanceEvents(pool[POOL_PORT], requestId, arrival, attempts$, slot, waits, request, attemptsOf.retriesOf);
  };

  // Arrival is stamped before the concurrency cap, so latency includes the wait for a slot; its
  // number orders the requests of one instant (a batch) in a line for a model's room.
  return (requests) => {
    let arrivals = 0;
    const waits: RequestWaits = { quotaLine: new QuotaWaitLine(pool.scheduler), ...waitOptions };
    return requests.pipe(
      map((input): Arrival => ({ input, at: pool.scheduler.now(), number: arrivals++ })),
      mergeWithSlots((arrival, slot) => run(arrival, slot, waits), options.concurrency ?? DEFAULT_CONCURRENCY),
    );
  };
}

/** An input as `balance` takes it in: one object per request, which its report keeps as its arrival. */
interface Arrival extends RequestArrival {
  readonly input: ChatRequest;
}
