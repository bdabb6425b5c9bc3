import { Observable, Subscription, map, of, type OperatorFunction } from 'rxjs';
import * as z from 'zod/mini';
import {
  AttemptsExhaustedError,
  BadRequestError,
  copyError,
  ModelUnavailableError,
  StreamError,
  toOpenRouterError,
  type AttemptRecord,
  type OpenRouterError,
} from '../core/errors.js';
import { POOL_PORT, type PoolCore, type PoolPort } from '../pool/types.js';
import { validateBalancedRequest } from '../routing/balanced-request.js';
import type { StrategyLike } from '../pool/strategies.js';
import type { ChatRequest, Completion, Usage } from '../core/types.js';
import { formatZodError, safeParseEnglish, ValidationError } from '../core/validation.js';
import { attemptRecordOf, retriedErrorOf, type AttemptEvent, type AttemptStart } from './attempt-event.js';
import { defaultAttemptTimeouts, type AttemptTimeoutsConfig } from './attempt-timeouts.js';
import { fallbackOnModelError, type FallbackOnModelErrorConfig } from './fallback-on-model-error.js';
import { retryOnRateLimit, type RetryOnRateLimitConfig } from './retry-on-rate-limit.js';
import { retryTransient, type RetryTransientConfig } from './retry-transient.js';
import type { MidStreamErrorMode } from './retry-loop.js';
import { withKeyRotation } from './with-key-rotation.js';
import { mergeWithSlots, type Slot } from './merge-with-slots.js';
import { scheduleAfter } from '../core/timers.js';

/** Options of `balance`; an unknown or invalid field makes `balance` throw a `ValidationError`. */
export interface BalanceOptions {
  /** Requests in flight at once (mergeMap's cap). Default 16. */
  concurrency?: number;
  /** Overrides the pool's key strategy. */
  strategy?: StrategyLike;
  /** Admission priority, higher first. Default 0. */
  priority?: number | ((request: ChatRequest) => number);
  /** How long a request may wait for a key before failing with `QueueTimeoutError`. */
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
   * How long a request may wait while every model of its chain is out of service (breaker open,
   * or half-open with its probe out) before it fails with `ModelUnavailableError`. It waits
   * without its concurrency slot, so requests for other models run meanwhile. Default 30 s (the
   * longest default breaker cooldown); 0 fails at once.
   */
  modelWaitMs?: number;
}

const positiveInt = z.int().check(z.positive());
const settingsOrOff = z.optional(z.union([z.literal(false), z.record(z.string(), z.unknown())]));

/** `BalanceOptions` at the edge: a typo or a cap that can only stall fails here, naming the field. */
const balanceOptionsSchema = z.strictObject({
  concurrency: z.optional(z.union([positiveInt, z.literal(Infinity)])),
  strategy: z.optional(z.unknown()),
  priority: z.optional(
    z.union([
      z.number(),
      z.custom<(request: ChatRequest) => number>((value) => typeof value === 'function', 'expected a number or a function'),
    ]),
  ),
  queueTimeoutMs: z.optional(positiveInt),
  rateLimit: settingsOrOff,
  transient: settingsOrOff,
  onMidStreamError: z.optional(z.enum(['error', 'restart'])),
  maxAttemptsPerModel: z.optional(positiveInt),
  fallback: settingsOrOff,
  timeouts: z.optional(
    z.union([
      z.literal(false),
      z.strictObject({ totalMs: z.optional(positiveInt), firstTokenMs: z.optional(positiveInt), idleMs: z.optional(positiveInt) }),
    ]),
  ),
  serverFallbacks: z.optional(z.union([z.literal(0), z.literal(1), z.literal(2)])),
  modelWaitMs: z.optional(z.int().check(z.nonnegative())),
});

/** How often a request waiting on a half-open model (its probe out) looks again. */
const MODEL_PROBE_POLL_MS = 250;

/** A piece of a streamed answer; chunks without text, reasoning or tool calls are held back. */
export interface ChunkEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'chunk';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Text added by this chunk; `''` when it carries only reasoning or tool calls. */
  delta: string;
  /** Reasoning text added by this chunk. */
  reasoning?: string;
  /** The chunk's `tool_calls` deltas, as sent. */
  toolCalls?: ReadonlyArray<Record<string, unknown>>;
  /** Label of the key the attempt leased. */
  keyLabel: string;
  /** Model the attempt was sent to. */
  model: string;
}

/** Content already delivered for this request is void: a new attempt starts over. */
export interface RestartEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'restart';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Number of the attempt that failed after delivering content. */
  attempt: number;
  /** Kind of the error that attempt failed with. */
  reason: OpenRouterError['kind'];
}

/** The request's answer: its terminal event on success. */
export interface CompletionEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'completion';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** The answer; for a stream, assembled from its chunks (with `raw: null`). */
  completion: Completion;
  /** Label of the key the successful attempt leased. */
  keyLabel: string;
  /** Model the successful attempt was sent to (`completion.model` is what OpenRouter reports). */
  model: string;
  /** Attempts made, this one included. */
  attempts: number;
  /** From the request's arrival to its completion, in scheduler ms. */
  latencyMs: number;
  /** The successful attempt's usage. */
  usage?: Usage;
  /** Usage summed over every attempt that reported any: what OpenRouter billed. */
  billedUsage?: Usage;
}

/** The request failed: its terminal event on failure (the output stream itself never errors). */
export interface FailedEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'failed';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Always typed; an invalid request fails with a `BadRequestError` whose cause is the `ValidationError`. */
  error: OpenRouterError;
  /** Every attempt's reason, in order. */
  attempts: readonly AttemptRecord[];
}

/** One input gets `chunk`s (streams only), maybe `restart`s, then exactly one `completion` or `failed`. */
export type BalanceEvent = ChunkEvent | RestartEvent | CompletionEvent | FailedEvent;

function addUsage(total: Usage | undefined, usage: Usage | undefined): Usage | undefined {
  if (usage === undefined) return total;
  if (total === undefined) return { ...usage };
  return {
    promptTokens: total.promptTokens + usage.promptTokens,
    completionTokens: total.completionTokens + usage.completionTokens,
    totalTokens: total.totalTokens + usage.totalTokens,
    ...(total.cost === undefined && usage.cost === undefined ? {} : { cost: (total.cost ?? 0) + (usage.cost ?? 0) }),
  };
}

interface StreamedAnswer {
  content: string;
  reasoning: string;
  toolCalls: Record<string, unknown>[];
}

/**
 * Turns one request's attempt events into balance events, and guarantees one terminal event:
 * errors become `failed`, and a pipeline that completes without an answer becomes a `failed`
 * with a truncation error, never a silent success.
 */
function toBalanceEvents(
  pool: PoolPort,
  requestId: string,
  startedAt: number,
  attempts$: Observable<AttemptEvent>,
  slot: Slot,
  modelWaitMs: number,
): Observable<BalanceEvent> {
  return new Observable<BalanceEvent>((subscriber) => {
    const records: AttemptRecord[] = [];
    let attempts = 0;
    let lastStart: AttemptStart | undefined;
    let billed: Usage | undefined;
    let answer: StreamedAnswer = { content: '', reasoning: '', toolCalls: [] };
    let settled = false;
    /** The error of the last attempt a retry operator retried. */
    let retriedError: OpenRouterError | undefined;
    const fail = (error: OpenRouterError) => {
      settled = true;
      // The final attempt's own reason, not the wrapper's "gave up" summary.
      const reason = error instanceof AttemptsExhaustedError ? error.lastError : error;
      // A failure after retries that came without an attempt of its own (no key left, the queue
      // timed out) adds no record: the last record is the attempt that led to it.
      const endedAnAttempt = attempts > records.length || attempts === 0;
      if (endedAnAttempt) records.push(attemptRecordOf(reason, lastStart, pool.scheduler.now()));
      // The request's story on the error it fails with: every attempt, and the last attempt's
      // error as the cause of a failure without an attempt (a pool left without keys names the 401).
      const lastCause = !endedAnAttempt && error.cause === undefined ? retriedError : undefined;
      const failure = copyError(error, { attempts: records, ...(lastCause === undefined ? {} : { cause: lastCause }) });
      subscriber.next({ type: 'failed', requestId, error: failure, attempts: records });
      subscriber.complete();
    };
    const complete = (event: Omit<CompletionEvent, 'type' | 'requestId' | 'attempts' | 'latencyMs' | 'billedUsage'>) => {
      settled = true;
      subscriber.next({
        type: 'completion',
        requestId,
        attempts,
        latencyMs: pool.scheduler.now() - startedAt,
        ...event,
        ...(billed === undefined ? {} : { billedUsage: billed }),
      });
      subscriber.complete();
    };
    const subscription = new Subscription();
    /** When every model of the request was first found out of service. */
    let modelsOutSince: number | undefined;
    /**
     * Every model out of service: wait outside the concurrency slot (requests for other models
     * take it meanwhile) until the first model is due back, then take a slot again and retry.
     * Returns false once `modelWaitMs` is spent: then the refusal is the outcome.
     */
    const awaitModels = (error: ModelUnavailableError): boolean => {
      const now = pool.scheduler.now();
      modelsOutSince ??= now;
      const leftMs = modelsOutSince + modelWaitMs - now;
      // No use waiting for a model known to stay out past the deadline.
      if (leftMs <= 0 || (error.retryAfterMs ?? 0) > leftMs) return false;
      slot.release();
      // A half-open model's return hangs on its probe: look again soon.
      const waitMs = Math.min(leftMs, error.retryAfterMs ?? MODEL_PROBE_POLL_MS);
      subscription.add(
        scheduleAfter(pool.scheduler, waitMs, () =>
          subscription.add(slot.reacquire().subscribe(() => subscription.add(attempts$.subscribe(observer)))),
        ),
      );
      return true;
    };
    const observer = {
      next: (event: AttemptEvent) => {
        switch (event.type) {
          case 'attempt':
            attempts = event.attempt;
            lastStart = event;
            pool.emit(event);
            return;
          case 'retry':
            billed = addUsage(billed, event.usage);
            retriedError = retriedErrorOf(event) ?? retriedError;
            records.push({
              attempt: event.attempt,
              kind: event.reason,
              message: event.message,
              at: event.at,
              ...(event.status === undefined ? {} : { status: event.status }),
              ...(event.keyLabel === undefined ? {} : { keyLabel: event.keyLabel }),
              ...(event.model === undefined ? {} : { model: event.model }),
            });
            pool.emit(event);
            return;
          case 'restart':
            answer = { content: '', reasoning: '', toolCalls: [] };
            pool.emit(event);
            subscriber.next({ type: 'restart', requestId, attempt: event.attempt, reason: event.reason });
            return;
          case 'chunk': {
            const hasContent = event.delta.length > 0 || (event.reasoning?.length ?? 0) > 0 || (event.toolCalls?.length ?? 0) > 0;
            // Role-only and empty deltas are held back: the subscriber sees content only.
            if (!hasContent) return;
            answer.content += event.delta;
            if (event.reasoning !== undefined) answer.reasoning += event.reasoning;
            if (event.toolCalls !== undefined) answer.toolCalls.push(...event.toolCalls);
            subscriber.next({
              type: 'chunk',
              requestId,
              delta: event.delta,
              keyLabel: event.keyLabel,
              model: event.model,
              ...(event.reasoning === undefined ? {} : { reasoning: event.reasoning }),
              ...(event.toolCalls === undefined ? {} : { toolCalls: event.toolCalls }),
            });
            return;
          }
          case 'end': {
            billed = addUsage(billed, event.usage);
            const completion: Completion = {
              id: event.id,
              model: event.model,
              content: answer.content,
              finishReason: event.finishReason,
              raw: null,
              ...(event.provider === undefined ? {} : { provider: event.provider }),
              ...(answer.reasoning.length === 0 ? {} : { reasoning: answer.reasoning }),
              ...(answer.toolCalls.length === 0 ? {} : { toolCalls: answer.toolCalls }),
              ...(event.usage === undefined ? {} : { usage: event.usage }),
            };
            complete({
              completion,
              keyLabel: event.keyLabel,
              model: event.model,
              ...(event.usage === undefined ? {} : { usage: event.usage }),
            });
            return;
          }
          case 'completion':
            billed = addUsage(billed, event.completion.usage);
            complete({
              completion: event.completion,
              keyLabel: event.keyLabel,
              model: event.model,
              ...(event.completion.usage === undefined ? {} : { usage: event.completion.usage }),
            });
            return;
        }
      },
      error: (thrown: unknown) => {
        const error = toOpenRouterError(thrown);
        if (error instanceof ModelUnavailableError && awaitModels(error)) return;
        billed = addUsage(billed, error.usage);
        fail(error);
      },
      complete: () => {
        if (!settled)
          fail(new StreamError({ message: 'the attempt ended without an answer', scope: 'transport', retryable: false, truncated: true }));
      },
    };
    subscription.add(attempts$.subscribe(observer));
    return subscription;
  });
}

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
  const checked = safeParseEnglish(balanceOptionsSchema, options);
  if (!checked.success) throw new ValidationError(formatZodError(checked.error, 'balance options'), checked.error.issues);
  const onMidStreamError = options.onMidStreamError ?? 'error';
  const rotation = withKeyRotation(pool, {
    ...(options.strategy === undefined ? {} : { strategy: options.strategy }),
    ...(options.priority === undefined ? {} : { priority: options.priority }),
    ...(options.queueTimeoutMs === undefined ? {} : { queueTimeoutMs: options.queueTimeoutMs }),
    ...(options.maxAttemptsPerModel === undefined ? {} : { maxAttemptsPerModel: options.maxAttemptsPerModel }),
    ...(options.serverFallbacks === undefined ? {} : { serverFallbacks: options.serverFallbacks }),
    ...(options.timeouts === false ? {} : { timeouts: { ...defaultAttemptTimeouts, ...options.timeouts } }),
  });
  const modelFallback =
    options.fallback === false ? undefined : fallbackOnModelError({ ...options.fallback, onMidStreamError, scheduler: pool.scheduler });
  const rateLimitRetry =
    options.rateLimit === false ? undefined : retryOnRateLimit({ ...options.rateLimit, onMidStreamError, scheduler: pool.scheduler });
  const transientRetry =
    options.transient === false ? undefined : retryTransient({ ...options.transient, onMidStreamError, scheduler: pool.scheduler });
  let sequence = 0;

  const modelWaitMs = options.modelWaitMs ?? 30_000;

  const run = ({ input, arrivedAt }: { input: ChatRequest; arrivedAt: number }, slot: Slot): Observable<BalanceEvent> => {
    const requestId = typeof input?.id === 'string' ? input.id : `req-${++sequence}`;
    let request: ChatRequest;
    try {
      // A copy: routes are per request object, and one input object may be sent twice.
      request = { ...validateBalancedRequest(input), id: requestId };
    } catch (error) {
      const message = error instanceof ValidationError ? error.message : String(error);
      const failure = new BadRequestError({ message, scope: 'request', retryable: false, cause: error });
      return of<BalanceEvent>({ type: 'failed', requestId, error: failure, attempts: [] });
    }
    let attempts$ = of(request).pipe(rotation);
    if (rateLimitRetry !== undefined) attempts$ = attempts$.pipe(rateLimitRetry);
    if (modelFallback !== undefined) attempts$ = attempts$.pipe(modelFallback);
    if (transientRetry !== undefined) attempts$ = attempts$.pipe(transientRetry);
    return toBalanceEvents(pool[POOL_PORT], requestId, arrivedAt, attempts$, slot, modelWaitMs);
  };

  // Arrival is stamped before the concurrency cap, so latency includes the wait for a slot.
  return (requests) =>
    requests.pipe(
      map((input) => ({ input, arrivedAt: pool.scheduler.now() })),
      mergeWithSlots(run, options.concurrency ?? 16),
    );
}
