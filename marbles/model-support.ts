/**
 * Shared helpers of the suites that run requests through `balance` over a chain of models
 * (attempt-timeouts, first-token-gating, mid-stream-restart, model-fallback): a pool whose fake
 * transport is scripted per model and call number, and builders for what request `r1` meets on
 * model `a` through key `k1`, the defaults of every builder here.
 */
import { EMPTY, filter, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { KeyPoolInput } from '../src/pool/config.js';
import type { PoolEvent } from '../src/pool/events.js';
import type { KeyPool } from '../src/create-pool.js';
import type { AttemptStart } from '../src/operators/attempt-event.js';
import type { BalanceEvent, BalanceOptions, CompletionEvent } from '../src/operators/balance.js';
import { RateLimitError, UpstreamError } from '../src/core/errors.js';
import type { ChatRequest, Completion, Transport, TransportEvent, Usage } from '../src/core/types.js';
import { predictablePool, type PoolOverrides, type TransportScripts } from './support.js';

// ------------------------------------------------------------------ pool

/** One call of the model-scripted transport. */
export interface ModelCall {
  model: string;
  /** 1 for the model's first call, 2 for its second... */
  n: number;
  /** The label of the key the call went out with. */
  key: string;
  /** Scheduler time of the call. */
  at: number;
}

/**
 * Makes a suite's `makePool(scheduler, scripts, overrides?)`: a `predictablePool` of `keys` over a
 * fake transport that answers the n-th call to a model with `scripts[model][n-1]` (cold observables
 * the test keeps, to assert their subscriptions). An unscripted call gets EMPTY (the request, not
 * the test, fails) and shows up in `calls`, which the tests assert.
 */
export function modelScriptedPoolFactory(
  keys: KeyPoolInput['keys'],
): (scheduler: TestScheduler, scripts: TransportScripts, overrides?: PoolOverrides) => { pool: KeyPool; calls: ModelCall[] } {
  return (scheduler, scripts, overrides = {}) => {
    const calls: ModelCall[] = [];
    const transport: Transport = (key, request) => {
      const model = request.model ?? '';
      const n = calls.filter((call) => call.model === model).length + 1;
      calls.push({ model, n, key: key.label, at: scheduler.now() });
      return scripts[model]?.[n - 1] ?? EMPTY;
    };
    return { pool: predictablePool(scheduler, transport, keys, overrides), calls };
  };
}

/** `pool.events$`, only the events of the given types. */
export function eventsOf<T extends PoolEvent['type']>(pool: KeyPool, ...types: T[]): Observable<Extract<PoolEvent, { type: T }>> {
  return pool.events$.pipe(filter((event): event is Extract<PoolEvent, { type: T }> => (types as string[]).includes(event.type)));
}

// ------------------------------------------------------------------ requests and options

/** Request r1 to model a, streamed, with the user message 'hi'. */
export function streamedRequest(overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { id: 'r1', model: 'a', messages: [{ role: 'user', content: 'hi' }], stream: true, ...overrides };
}

/** Transient retries after floor(0.5 * 4) = 2, then floor(0.5 * 8) = 4 frames, with no retry budget. */
export const transientRetries = { baseDelayMs: 4, random: () => 0.5, budget: false } satisfies BalanceOptions['transient'];

/** The provider's 503 ("provider returned 503"): a retryable failure of the model. */
export const providerUnavailable = () =>
  new UpstreamError({ message: 'provider returned 503', scope: 'model', retryable: true, status: 503 });

/** A provider's 429 ("Provider returned error"): the model's own rate limit (scope `model`), not the key's, with its `Retry-After` if given. */
export const providerRateLimited = (retryAfterMs?: number) =>
  new RateLimitError({
    message: 'Provider returned error',
    scope: 'model',
    retryable: true,
    status: 429,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
/** A platform 429 that parks the key for `retryAfterMs`. */
export const keyRateLimited = (retryAfterMs: number) =>
  new RateLimitError({ message: 'Rate limit exceeded', scope: 'key', retryable: true, status: 429, retryAfterMs });

// ------------------------------------------------------------------ transport events

/** A role-only chunk (empty delta): no content yet. */
export const roleChunk = (model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', model });
/** A chunk whose delta, reasoning and tool calls are all empty: no content either. */
export const emptyChunk = (model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', reasoning: '', toolCalls: [], model });
export const textChunk = (delta: string, model = 'a'): TransportEvent => ({ type: 'chunk', delta, model });
/** A reasoning-only chunk: content, for the first-token gate and timeout. */
export const reasoningChunk = (reasoning: string, model = 'a'): TransportEvent => ({ type: 'chunk', delta: '', reasoning, model });
/** The last event of a stream, with `usage` when given. */
export const streamEnd = (id: string, model = 'a', usage?: Usage): TransportEvent => ({
  type: 'end',
  id,
  model,
  finishReason: 'stop',
  ...(usage === undefined ? {} : { usage }),
});

/** A finished answer, with `usage` when given. */
export const answer = (id: string, content: string, model = 'a', usage?: Usage): Completion => ({
  id,
  model,
  content,
  finishReason: 'stop',
  raw: null,
  ...(usage === undefined ? {} : { usage }),
});
/** A non-streamed answer: the one event of its call. */
export const answerEvent = (id: string, content: string, model = 'a'): TransportEvent => ({
  type: 'completion',
  completion: answer(id, content, model),
});

// ------------------------------------------------------------------ attempt and balance events

/** The `attempt` marker of r1 (on the attempt stream and on `pool.events$`) when its key was leased at `at`. */
export function attemptStart(attempt: number, at: number, { keyLabel = 'k1', model = 'a', stream = true } = {}): AttemptStart {
  return { type: 'attempt', requestId: 'r1', attempt, keyLabel, model, stream, at };
}

/** A content chunk of r1 as `balance` delivers it. */
export const deliveredChunk = (delta: string, keyLabel = 'k1', model = 'a'): BalanceEvent => ({
  type: 'chunk',
  requestId: 'r1',
  delta,
  keyLabel,
  model,
});

/** How a request completed: `attempts` made, `latencyMs` since it arrived, and (when given) its usage. */
export interface CompletionDetails extends Pick<CompletionEvent, 'attempts' | 'latencyMs' | 'usage' | 'billedUsage'> {
  keyLabel?: string;
  requestId?: string;
}

/** The `completion` event that `balance` ends a request with; its model is the answer's. */
export function deliveredCompletion(
  completion: Completion,
  { keyLabel = 'k1', requestId = 'r1', ...details }: CompletionDetails,
): BalanceEvent {
  return { type: 'completion', requestId, completion, keyLabel, model: completion.model, ...details };
}
