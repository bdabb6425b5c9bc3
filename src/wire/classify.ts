import {
  AuthenticationError,
  BadRequestError,
  ContentPolicyError,
  ContextLengthError,
  InsufficientCreditsError,
  KeyLimitError,
  NotFoundError,
  type OpenRouterError,
  PermissionDeniedError,
  RateLimitError,
  UpstreamError,
  type ErrorScope,
  type OpenRouterErrorOptions,
} from '../core/errors.js';
import { numericCode, parseErrorBody, type ParsedErrorBody } from './error-body.js';
import { toHeaderLookup, type HeaderSource } from './headers.js';
import { bucketNamedIn, rateLimitInfoFrom } from './rate-limit-info.js';
import { retryAfterMsFrom } from './retry-after.js';

/**
 * Classification of OpenRouter error responses into the typed errors of `errors.ts`, following
 * the SCOPE table of openrouter-wire.md §5.
 *
 * `scope` says which health record the failure touches. `retryable` answers one question: may
 * another attempt of the *same request* succeed somewhere the scope does not rule out (another
 * key, another account's key, another model, or the same target after `retryAfterMs`)? So every
 * key-, account-, model- and transport-scoped error is retryable, and every request-scoped one is
 * not, because no target accepts that payload as it is. An `availability.retryable: true` from
 * OpenRouter also makes an error retryable (it names transient capacity). Consequences worth
 * knowing:
 * - 401 is retryable: the key is dead (scope `key`), a sibling key may serve the request;
 * - 402 credits and 403 guardrail are retryable: another account's key may serve it;
 * - 404 (unknown model, no endpoint left after the request's filters) is request-scoped and not
 *   retryable: a misspelt model id is a configuration error, not a sick model, so it never opens
 *   the model's breaker;
 * - 404, context length and moderation are request-scoped and not retryable, although a fallback
 *   chain may still hand the request to a different model (they are "request × model" in §5;
 *   branch on `kind` `not_found` / `context_length` / `content_policy`).
 */

type ErrorConstructor = new (options: OpenRouterErrorOptions) => OpenRouterError;

interface Decision {
  type: ErrorConstructor;
  scope: ErrorScope;
}

export interface HttpErrorInput {
  status: number;
  headers?: HeaderSource;
  /** The response body: a JSON string, a parsed object, or anything else (never trusted). */
  body: unknown;
  /** Current time in ms since the epoch, for HTTP-date and epoch-ms wait hints. */
  nowMs: number;
  model?: string;
  keyLabel?: string;
}

/** Classifies a non-2xx response. Never throws, whatever the body holds. */
export function classifyHttpError(input: HttpErrorInput): OpenRouterError {
  return classifyErrorResponse(Object.assign({}, input, { origin: 'response' as const }));
}

export interface ErrorPayloadInput extends HttpErrorInput {
  /**
   * `in-band`: the error arrived inside a 200 stream or body. The platform checks keys, credits
   * and rate limits before it answers, so a 429 found here comes from the model's provider.
   */
  origin: 'response' | 'in-band';
}

/** Shared by the HTTP classifier and the in-band stream/body validators. */
export function classifyErrorResponse(input: ErrorPayloadInput): OpenRouterError {
  const lookup = toHeaderLookup(input.headers);
  const parsed = parseErrorBody(input.body);
  const decision = decide(input.status, parsed, input.origin);
  const retryable = decision.scope !== 'request' || parsed?.availability?.retryable === true;
  // Only the platform's own 429s report a quota; a provider's never does (its capacity has no number).
  const rateLimit =
    input.status === 429 && decision.scope !== 'model'
      ? rateLimitInfoFrom(lookup, input.body, parsed?.message ?? '', input.nowMs)
      : undefined;
  return new decision.type({
    message: `${input.status} ${parsed?.message ?? 'status code (no body)'}`,
    ...(rateLimit === undefined ? {} : { rateLimit }),
    scope: decision.scope,
    retryable,
    status: input.status,
    code: parsed?.code,
    errorType: parsed?.errorType,
    retryAfterMs: retryAfterMsFrom(lookup, input.body, input.nowMs),
    providerName: parsed?.providerName,
    metadata: parsed?.metadata,
    keyLabel: input.keyLabel,
    model: input.model,
  });
}

/**
 * The HTTP status an in-band error stands for: its numeric `code` when that is an error status,
 * else the status its `error_type` (or string code) maps to, else `undefined`.
 */
export function statusOfErrorPayload(parsed: ParsedErrorBody): number | undefined {
  const code = numericCode(parsed.code);
  if (code !== undefined && code >= 400 && code <= 599) return code;
  for (const name of [parsed.errorType, typeof parsed.code === 'string' ? parsed.code : undefined]) {
    const status = name === undefined ? undefined : STATUS_BY_ERROR_TYPE.get(name);
    if (status !== undefined) return status;
  }
  return undefined;
}

/** openapi `ApiErrorType` (§3) plus OpenAI-style `type` values seen in streams. */
const STATUS_BY_ERROR_TYPE: ReadonlyMap<string, number> = new Map([
  ['context_length_exceeded', 400],
  ['max_tokens_exceeded', 400],
  ['token_limit_exceeded', 400],
  ['string_too_long', 400],
  ['invalid_request', 400],
  ['invalid_prompt', 400],
  ['content_policy_violation', 400],
  ['refusal', 400],
  ['invalid_request_error', 400],
  ['authentication', 401],
  ['payment_required', 402],
  ['permission_denied', 403],
  ['not_found', 404],
  ['payload_too_large', 413],
  ['unprocessable', 422],
  ['rate_limit_exceeded', 429],
  ['server', 500],
  ['unmapped', 500],
  ['server_error', 500],
  ['provider_unavailable', 502],
  ['provider_overloaded', 503],
  ['timeout', 504],
]);

const CONTEXT_LENGTH_TYPES = new Set(['context_length_exceeded', 'max_tokens_exceeded', 'token_limit_exceeded']);
const CONTEXT_LENGTH_TEXT = /maximum context length|context length|context window|too many tokens|token limit|prompt is too long/i;
const CONTENT_POLICY_TYPES = new Set(['content_policy_violation', 'refusal']);
/** A bucket the account's keys share: a free-model one, or one whose name says so (`requests-per-account`). */
const ACCOUNT_BUCKET = /^free-models-per-|account|user|organi[sz]ation|workspace/;

function decide(status: number, parsed: ParsedErrorBody | undefined, origin: ErrorPayloadInput['origin']): Decision {
  const message = parsed?.message ?? '';
  const errorType = parsed?.errorType;
  const signals = [message, errorType, typeof parsed?.code === 'string' ? parsed.code : undefined, parsed?.availability?.code]
    .filter((part): part is string => part !== undefined)
    .join(' ');

  switch (status) {
    case 400:
      if ((errorType !== undefined && CONTEXT_LENGTH_TYPES.has(errorType)) || CONTEXT_LENGTH_TEXT.test(message)) {
        return { type: ContextLengthError, scope: 'request' };
      }
      if (errorType !== undefined && CONTENT_POLICY_TYPES.has(errorType)) return { type: ContentPolicyError, scope: 'request' };
      return { type: BadRequestError, scope: 'request' };
    case 401:
      return { type: AuthenticationError, scope: 'key' };
    case 402:
      if (/weight_exceeds_budget/i.test(signals)) return { type: InsufficientCreditsError, scope: 'request' };
      // `in_flight_budget_exhausted` is transient, the rest is an empty balance: both hit the account.
      return { type: InsufficientCreditsError, scope: 'account' };
    case 403:
      if (/key limit exceeded/i.test(message) || parsed?.metadata?.['limit_source'] === 'openrouter_key_limit') {
        return { type: KeyLimitError, scope: 'key' };
      }
      if (isModeration(parsed, signals)) return { type: ContentPolicyError, scope: 'request' };
      return { type: PermissionDeniedError, scope: 'account' };
    case 404:
      return { type: NotFoundError, scope: 'request' };
    case 408:
      // The request timed out on the way: transient, tied to this attempt rather than a target.
      return { type: UpstreamError, scope: 'transport' };
    case 429:
      if (origin === 'in-band' || isUpstreamRateLimit(parsed)) return { type: RateLimitError, scope: 'model' };
      // Free-model buckets belong to the account, as does any bucket named for it: rotating its
      // keys does not help (§8), and learning such a quota per key lets the account's keys
      // together overshoot it as many times over as it has keys.
      if (ACCOUNT_BUCKET.test(bucketNamedIn(message) ?? '')) return { type: RateLimitError, scope: 'account' };
      return { type: RateLimitError, scope: 'key' };
    default:
      if (status >= 400 && status < 500) return { type: BadRequestError, scope: 'request' };
      // 500, 502, 503, 504, 524, 529, and anything unexpected: the model or its providers failed.
      return { type: UpstreamError, scope: 'model' };
  }
}

function isUpstreamRateLimit(parsed: ParsedErrorBody | undefined): boolean {
  return (
    parsed?.providerName !== undefined ||
    parsed?.message.startsWith('Provider returned error') === true ||
    parsed?.availability?.code === 'capacity_exhausted'
  );
}

function isModeration(parsed: ParsedErrorBody | undefined, signals: string): boolean {
  const reasons = parsed?.metadata?.['reasons'];
  return (
    (Array.isArray(reasons) && reasons.length > 0) ||
    (parsed?.errorType !== undefined && CONTENT_POLICY_TYPES.has(parsed.errorType)) ||
    /moderation|flagged|content polic/i.test(signals)
  );
}
