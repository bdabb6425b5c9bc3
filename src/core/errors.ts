import type { Usage } from './types.js';

/**
 * The typed errors of openrouter-rx. Every failure the library reports is an `OpenRouterError`
 * (or a subclass), so callers branch on `kind`, `scope` and `retryable` instead of parsing text.
 *
 * `scope` says which health record a failure touches (see `openrouter-wire.md` §5):
 * - `key`: this API key only (401, 403 key limit);
 * - `account`: every key of the same account (402, platform 429 on free models);
 * - `model`: the model and its providers, for every key (upstream 429, 5xx, timeouts, streams cut or broken);
 * - `request`: this payload only; health is never touched (400, 404, context length, moderation);
 * - `transport`: the connection of one attempt before any response (network error, reset).
 *
 * No message or field ever holds API key text: keys appear as their label and fingerprint.
 */

export type ErrorScope = 'key' | 'account' | 'model' | 'request' | 'transport';

/**
 * The quota a platform 429 reports (`X-RateLimit-Limit`, `X-RateLimit-Reset`, mirrored in
 * `error.metadata.headers`) and the bucket its message names. The pool learns the limit from it.
 */
export interface RateLimitInfo {
  /** `X-RateLimit-Limit`: requests the bucket admits per window. */
  readonly limit: number;
  /** `X-RateLimit-Remaining`, when sent. */
  readonly remaining?: number;
  /** Milliseconds from the answer until `X-RateLimit-Reset` (an epoch-ms time on the wire). */
  readonly resetAfterMs: number;
  /** The bucket the message names (`free-models-per-min`, `free-models-per-day`, ...), when it names one. */
  readonly bucket?: string;
}

/** What failed, as a value to branch on (the three timeout classes share `'timeout'`). */
export type ErrorKind =
  | 'authentication'
  | 'key_limit'
  | 'insufficient_credits'
  | 'permission_denied'
  | 'rate_limit'
  | 'bad_request'
  | 'context_length'
  | 'content_policy'
  | 'not_found'
  | 'upstream'
  | 'network'
  | 'timeout'
  | 'stream'
  | 'malformed_response'
  | 'no_key_available'
  | 'queue_timeout'
  | 'queue_full'
  | 'model_unavailable'
  | 'store_unavailable'
  | 'attempts_exhausted'
  | 'aborted'
  | 'configuration';

/** What an `OpenRouterError` is built from; each field becomes the property of the same name. */
export interface OpenRouterErrorOptions {
  /** Human-readable description; never holds key text. */
  message: string;
  /** Which health record the failure touches. */
  scope: ErrorScope;
  /** Whether another attempt of the same request may succeed elsewhere (or later). */
  retryable: boolean;
  /** HTTP status of the response, when there was one. */
  status?: number;
  /** OpenRouter's `error.code` (usually the HTTP status, sometimes a string). */
  code?: number | string;
  /** OpenRouter's `error_type` (`context_length_exceeded`, `rate_limit_exceeded`, ...). */
  errorType?: string;
  /** Milliseconds to wait before this target may be tried again, from the most specific hint. */
  retryAfterMs?: number;
  /** The upstream provider that answered, when OpenRouter names it. */
  providerName?: string;
  /** `error.metadata`, as sent (provider raw text, reasons, limit source). */
  metadata?: Readonly<Record<string, unknown>>;
  /** Label of the key the attempt used (never the key itself). */
  keyLabel?: string;
  /** Model the attempt used. */
  model?: string;
  /** Tokens billed for the failed attempt (an in-band error can carry usage). */
  usage?: Usage;
  /** The quota a platform 429 reports. */
  rateLimit?: RateLimitInfo;
  /** The underlying error, passed on as `Error.cause`. */
  cause?: unknown;
}

/** Base of every error the library reports; see `ErrorKind` and `ErrorScope`. */
export class OpenRouterError extends Error {
  /** The class name, so logs and `toJSON()` tell the subclasses apart. */
  override name = 'OpenRouterError';
  /** What failed, as a value to branch on; see `ErrorKind`. */
  readonly kind: ErrorKind = 'bad_request';
  /** Which health record the failure touches (key, account, model, request or transport). */
  readonly scope: ErrorScope;
  /** Whether another attempt of the same request may succeed on a target `scope` does not rule out. */
  readonly retryable: boolean;
  /** HTTP status of the response, when there was one. */
  readonly status?: number;
  /** OpenRouter's `error.code` (usually the HTTP status, sometimes a string). */
  readonly code?: number | string;
  /** OpenRouter's `error_type` (`context_length_exceeded`, `rate_limit_exceeded`, ...). */
  readonly errorType?: string;
  /** Milliseconds to wait before this target may be tried again, from the most specific hint. */
  readonly retryAfterMs?: number;
  /** The upstream provider that answered, when OpenRouter names it. */
  readonly providerName?: string;
  /** `error.metadata`, as sent (provider raw text, reasons, limit source). */
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** Label of the key the attempt used (never the key itself); `withKeyRotation` sets it. */
  keyLabel?: string;
  /** Model the attempt used; `withKeyRotation` sets it. */
  model?: string;
  /** Tokens billed for the failed attempt, when the stream reported usage before failing. */
  usage?: Usage;
  /** The quota a platform 429 reports (`X-RateLimit-*` and its bucket); the pool learns limits from it. */
  readonly rateLimit?: RateLimitInfo;
  /**
   * Set when no other key or model of the request's route can serve it any more: retry
   * operators never retry such an error.
   */
  routeExhausted = false;
  /**
   * Every attempt of the request this error ended, in order, the last one included (0 for a
   * request that never got a key). Set on the error a request fails with (`failed` events,
   * `complete()` and `stream()`); its `cause` is then the last attempt's error when this error is
   * not that error itself (a pool left without keys after a 401 names the 401).
   */
  readonly attempts?: readonly AttemptRecord[];

  constructor(options: OpenRouterErrorOptions) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.scope = options.scope;
    this.retryable = options.retryable;
    this.status = options.status;
    this.code = options.code;
    this.errorType = options.errorType;
    this.retryAfterMs = options.retryAfterMs;
    this.providerName = options.providerName;
    this.metadata = options.metadata;
    this.keyLabel = options.keyLabel;
    this.model = options.model;
    this.usage = options.usage;
    this.rateLimit = options.rateLimit;
  }

  /** A log-safe plain object (no stack, no cause chain, no key text). */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      kind: this.kind,
      message: this.message,
      scope: this.scope,
      retryable: this.retryable,
      status: this.status,
      code: this.code,
      errorType: this.errorType,
      retryAfterMs: this.retryAfterMs,
      rateLimit: this.rateLimit,
      providerName: this.providerName,
      keyLabel: this.keyLabel,
      model: this.model,
      ...(this.attempts === undefined ? {} : { attempts: this.attempts }),
    };
  }
}

/** What `copyError` may set on its copy. */
export interface ErrorAnnotations {
  keyLabel?: string;
  model?: string;
  routeExhausted?: boolean;
  attempts?: readonly AttemptRecord[];
  cause?: unknown;
}

/**
 * A copy of `error` (same class, same fields, same stack) with `annotations` set on it. The
 * library annotates its own copy of an error as it passes through routing, never the object a
 * transport threw: a custom transport may hold on to that one, or throw it again.
 */
export function copyError<E extends OpenRouterError>(error: E, annotations: ErrorAnnotations): E {
  // A genuine Error of the same class (`Reflect.construct` with it as new.target), so that
  // `Object.prototype.toString`, inspection and structured cloning treat it as the original, but
  // without running a subclass constructor: every field comes over as it is.
  const copy = Reflect.construct(Error, [error.message], error.constructor) as E;
  Object.defineProperties(copy, Object.getOwnPropertyDescriptors(error));
  for (const [name, value] of Object.entries(annotations)) {
    if (value === undefined) continue;
    // A field keeps its enumerability; `cause` is not enumerable, as `new Error(..., { cause })` makes it.
    const enumerable = Object.getOwnPropertyDescriptor(copy, name)?.enumerable ?? name !== 'cause';
    Object.defineProperty(copy, name, { value, writable: true, configurable: true, enumerable });
  }
  return copy;
}

/** 401: the key is invalid, disabled or deleted. The pool disables it. */
export class AuthenticationError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'AuthenticationError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'authentication' as const;
}

/** 403 `Key limit exceeded`: the key's own spending cap. The pool marks it exhausted. */
export class KeyLimitError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'KeyLimitError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'key_limit' as const;
}

/** 402: the account lacks credits. Every key of the account is exhausted. */
export class InsufficientCreditsError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'InsufficientCreditsError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'insufficient_credits' as const;
}

/** 403 other than a key limit: guardrail, workspace budget, region, management route. */
export class PermissionDeniedError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'PermissionDeniedError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'permission_denied' as const;
}

/** 429: rate limited by the platform (key or account) or upstream (model). */
export class RateLimitError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'RateLimitError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'rate_limit' as const;
}

/** 400, 413, 422 and other request errors: fix the request; never retried on the same model. */
export class BadRequestError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'BadRequestError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind: ErrorKind = 'bad_request';
}

/** 400 context or token limit: a model with a larger context may take it. */
export class ContextLengthError extends BadRequestError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'ContextLengthError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'context_length' as const;
}

/** Moderation, refusal or `finish_reason: content_filter`: another model may accept it. */
export class ContentPolicyError extends BadRequestError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'ContentPolicyError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'content_policy' as const;
}

/** 404: unknown model, no endpoints, or no provider left after the routing filters. */
export class NotFoundError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'NotFoundError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'not_found' as const;
}

/** 500, 502, 503, 524, 529 and an upstream 408: the model or its providers failed. */
export class UpstreamError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'UpstreamError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'upstream' as const;
}

/** The connection failed or was reset before a complete answer. */
export class NetworkError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'NetworkError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'network' as const;
}

/** Which attempt timeout fired: the whole attempt, the first token's wait, or a gap between chunks. */
export type TimeoutPhase = 'total' | 'first-token' | 'idle';

/** Base of the three attempt timeouts; `phase` says which limit fired and `limitMs` its value. */
export class AttemptTimeoutError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'AttemptTimeoutError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'timeout' as const;
  /** Which limit fired. */
  readonly phase: TimeoutPhase;
  /** The limit that fired, in milliseconds. */
  readonly limitMs: number;

  constructor(phase: TimeoutPhase, limitMs: number, options: Omit<OpenRouterErrorOptions, 'message'> & { message?: string }) {
    super(Object.assign({}, options, { message: options.message ?? `${phase} timeout: no answer within ${limitMs} ms` }));
    this.phase = phase;
    this.limitMs = limitMs;
  }

  /** A log-safe plain object (no stack, no cause chain, no key text), with `phase` and `limitMs`. */
  override toJSON(): Record<string, unknown> {
    return Object.assign(super.toJSON(), { phase: this.phase, limitMs: this.limitMs });
  }
}

/** No first content token within `firstTokenMs`. */
export class FirstTokenTimeoutError extends AttemptTimeoutError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'FirstTokenTimeoutError';
}

/** A gap between chunks longer than `idleMs`. */
export class IdleTimeoutError extends AttemptTimeoutError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'IdleTimeoutError';
}

/** The attempt as a whole took longer than `totalMs`. */
export class TotalTimeoutError extends AttemptTimeoutError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'TotalTimeoutError';
}

/**
 * A stream that failed after HTTP 200: an in-band error event after content (before any, it is the error its code
 * names, the `cause` here), `finish_reason: "error"`, `native_finish_reason: "network_error"`, or a socket closed
 * without `[DONE]` and without a `finish_reason` (`truncated: true`); or a non-streamed answer's body cut off (`truncated`).
 */
export class StreamError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'StreamError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'stream' as const;
  /** The stream ended early: without `[DONE]` and without a `finish_reason`. */
  readonly truncated: boolean;

  constructor(options: OpenRouterErrorOptions & { truncated?: boolean }) {
    super(options);
    this.truncated = options.truncated ?? false;
  }
}

/** A body or SSE event that is not valid JSON, or not the shape OpenRouter documents. */
export class MalformedResponseError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'MalformedResponseError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'malformed_response' as const;
}

/**
 * Every key is disabled or exhausted, so nothing can ever serve the request; or its strategy took none of the
 * keys that could, while no attempt in flight could free another (scope `request`); or every key's breaker is
 * open (retryable; `retryAfterMs` until the first half-opens, which `balance` waits for up to `modelWaitMs`).
 */
export class NoKeyAvailableError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'NoKeyAvailableError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'no_key_available' as const;
}

/** The request waited in the admission queue longer than `queueTimeoutMs`. */
export class QueueTimeoutError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'QueueTimeoutError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'queue_timeout' as const;
}

/**
 * Every model of the request's chain is out of service (its breaker open after failures, or half-open with its
 * probes already out, or parked by a provider's 429 for longer than the acquisition waits out in the queue), so
 * the request failed at once instead of holding a concurrency slot that requests for other models could use.
 * `retryAfterMs` says when the first of its models is expected back (absent while a probe decides); the cause is
 * that model's last error. Nothing was sent and no health was touched.
 */
export class ModelUnavailableError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'ModelUnavailableError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'model_unavailable' as const;
  /** In service, but their own quotas are spent until `retryAfterMs`: `balance` waits for that room as long as the queue would. */
  quotaSpent = false;
  /** The models, in service but each at its concurrency limit (else empty): `balance` waits outside its slot for room in one. */
  modelsAtCapacity: readonly string[] = [];
}

/**
 * The transport cannot run here: no `fetch`, or the `openai` SDK in a browser; use
 * `createFetchTransport()` there. Or a callback of the user's (`priority`, a strategy) threw, and
 * the request fails with scope `request`. No key or model is at fault, so health is untouched and
 * no retry is made.
 */
export class ConfigurationError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'ConfigurationError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'configuration' as const;
}

/** The request was cancelled by its caller. */
export class AbortedError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'AbortedError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'aborted' as const;
}

/** One attempt of a request, as recorded in `AttemptsExhaustedError.attempts` and in events. */
export interface AttemptRecord {
  /** Number of the attempt within its request, from 1 (0 if it failed before leasing a key). */
  attempt: number;
  /** Label of the key it used. */
  keyLabel?: string;
  /** Model it used. */
  model?: string;
  /** Kind of the error it ended with. */
  kind: ErrorKind;
  /** HTTP status of that error, when there was one. */
  status?: number;
  /** Message of that error. */
  message: string;
  /** Scheduler time when the attempt ended. */
  at: number;
}

/** Retries gave up; `attempts` holds the reason of every attempt, in order. */
export class AttemptsExhaustedError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'AttemptsExhaustedError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'attempts_exhausted' as const;
  /** Every attempt, in order, with the error it ended with. */
  override readonly attempts: readonly AttemptRecord[];
  /** The last attempt's error, whose kind and scope this error repeats. */
  readonly lastError: OpenRouterError;

  constructor(lastError: OpenRouterError, attempts: readonly AttemptRecord[]) {
    super({
      message: `gave up after ${attempts.length} attempt${attempts.length === 1 ? '' : 's'}: ${lastError.message}`,
      scope: lastError.scope,
      retryable: false,
      status: lastError.status,
      code: lastError.code,
      errorType: lastError.errorType,
      retryAfterMs: lastError.retryAfterMs,
      providerName: lastError.providerName,
      keyLabel: lastError.keyLabel,
      model: lastError.model,
      cause: lastError,
    });
    this.attempts = attempts;
    this.lastError = lastError;
  }

  /** A log-safe plain object (no stack, no cause chain, no key text), with `attempts` and `lastError`. */
  override toJSON(): Record<string, unknown> {
    return Object.assign(super.toJSON(), { lastError: this.lastError.toJSON() });
  }
}

/** Whether `value` is an `OpenRouterError` (of any subclass). */
export function isOpenRouterError(value: unknown): value is OpenRouterError {
  return value instanceof OpenRouterError;
}

/**
 * What a user callback (`priority`, a strategy) threw, as its request's failure: a typed error as
 * it is, anything else a `ConfigurationError` naming the callback. Neither a key, a model nor the
 * network is at fault, so nothing is retried (`toOpenRouterError` would call it a network error).
 */
export function callbackError(thrown: unknown, callback: string): OpenRouterError {
  if (thrown instanceof OpenRouterError) return thrown;
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  return new ConfigurationError({ message: `${callback} threw: ${message}`, scope: 'request', retryable: false, cause: thrown });
}

/** Wraps anything thrown into an `OpenRouterError`, keeping typed errors as they are. */
export function toOpenRouterError(value: unknown): OpenRouterError {
  if (value instanceof OpenRouterError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new NetworkError({ message, scope: 'transport', retryable: true, cause: value });
}

/** The admission queue is at its `maxSize`; retry later or raise the limit. */
export class QueueFullError extends OpenRouterError {
  /** {@inheritDoc OpenRouterError.name} */
  override name = 'QueueFullError';
  /** {@inheritDoc OpenRouterError.kind} */
  override readonly kind = 'queue_full' as const;
}
