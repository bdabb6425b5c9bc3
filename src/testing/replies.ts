/**
 * The JSON answers of the fake server: OpenRouter's error bodies (wire reference §3) for the
 * platform checks and the injected faults, and the two key endpoints (§7). Pure functions.
 */
import type { FakeFault } from './types.js';

/** A complete JSON answer: status, extra headers and the body to serialise. */
export interface JsonReply {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

type ErrorMetadata = Record<string, unknown>;

/** OpenRouter's error body; `message` comes before `code` as on the wire. */
function errorReply(status: number, message: string, metadata?: ErrorMetadata, userId?: string): JsonReply {
  const error = metadata === undefined ? { message, code: status } : { message, code: status, metadata };
  return { status, body: userId === undefined ? { error } : { error, user_id: userId } };
}

/** OpenRouter's `error_type` for a status (openapi `ApiErrorType`). */
export function errorTypeForStatus(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request';
    case 401:
      return 'authentication';
    case 402:
      return 'payment_required';
    case 403:
      return 'permission_denied';
    case 404:
      return 'not_found';
    case 408:
    case 504:
    case 524:
      return 'timeout';
    case 413:
      return 'payload_too_large';
    case 422:
      return 'unprocessable';
    case 429:
      return 'rate_limit_exceeded';
    case 500:
      return 'server';
    case 502:
      return 'provider_unavailable';
    case 503:
    case 529:
      return 'provider_overloaded';
    default:
      return 'unmapped';
  }
}

function defaultStatusMessage(status: number, model: string): string {
  switch (status) {
    case 404:
      return `No endpoints found for ${model}.`;
    case 408:
      return 'Request timed out';
    case 429:
      return 'Rate limit exceeded';
    case 500:
      return 'Internal Server Error';
    case 502:
      return 'Provider returned error';
    case 503:
      return 'No allowed providers are available for the selected model.';
    case 524:
      return 'Provider timed out';
    case 529:
      return 'Provider is overloaded';
    default:
      return `Fake error ${status}`;
  }
}

// Platform answers, before any model is involved.

export function noCredentialsReply(): JsonReply {
  return errorReply(401, 'No auth credentials found');
}

export function userNotFoundReply(): JsonReply {
  return errorReply(401, 'User not found.');
}

export function badRequestReply(message: string): JsonReply {
  return errorReply(400, message);
}

export function notFoundReply(path: string): JsonReply {
  return errorReply(404, `Not Found: ${path}`);
}

export function internalErrorReply(message: string): JsonReply {
  return errorReply(500, message);
}

export function keyLimitReply(userId: string): JsonReply {
  return errorReply(403, 'Key limit exceeded (total limit)', { limit_source: 'openrouter_key_limit' }, userId);
}

export function insufficientCreditsReply(maxTokens: number, userId: string): JsonReply {
  const message =
    `This request requires more credits, or fewer max_tokens. You requested up to ${maxTokens} tokens, ` +
    'but can only afford 0. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account';
  return errorReply(402, message, { provider_name: null }, userId);
}

/** How long a client should wait on an in-flight 402 when the account sets no `retryAfterSeconds`. */
export const DEFAULT_IN_FLIGHT_RETRY_AFTER_SECONDS = 2;

/**
 * The in-flight spending budget 402: too much already in flight for the account's balance. It is
 * transient, so it carries `Retry-After` (and `metadata.retry_after_seconds`).
 */
export function inFlightBudgetReply(retryAfterSeconds: number, userId: string): JsonReply {
  const message =
    'Too many paid requests in flight for your credit balance (in_flight_budget_exhausted). Retry after ' +
    `${retryAfterSeconds} seconds, or add credits at https://openrouter.ai/settings/credits to raise your in-flight budget`;
  const metadata = {
    provider_name: null,
    reason: 'in_flight_budget_exhausted',
    limit_source: 'openrouter_in_flight_budget',
    retry_after_seconds: retryAfterSeconds,
  };
  return withRetryAfter(errorReply(402, message, metadata, userId), retryAfterSeconds);
}

/** The 402 for one request whose `max_tokens` can never fit the in-flight budget: a request error, no retry hint. */
export function weightExceedsBudgetReply(maxTokens: number, affordable: number, userId: string): JsonReply {
  const message =
    `This request requires more credits, or fewer max_tokens. You requested up to ${maxTokens} tokens, ` +
    `but can only afford ${affordable}. To increase, visit https://openrouter.ai/settings/credits and add more credits ` +
    '(weight_exceeds_budget)';
  const metadata = { provider_name: null, reason: 'weight_exceeds_budget', limit_source: 'openrouter_credits' };
  return errorReply(402, message, metadata, userId);
}

export interface QuotaRejection {
  bucket: string;
  limit: number;
  /** Epoch ms when the quota has room again: the oldest admission leaves the window, or the next 00:00 UTC. */
  resetAt: number;
  /** Said after the bucket in the message. */
  hint?: string;
}

/** The platform 429: `X-RateLimit-*` headers, mirrored into `error.metadata.headers`. */
export function platformRateLimitReply(rejection: QuotaRejection, now: number, userId: string): JsonReply {
  const rateLimitHeaders = {
    'X-RateLimit-Limit': String(rejection.limit),
    'X-RateLimit-Remaining': '0',
    'X-RateLimit-Reset': String(rejection.resetAt),
  };
  const reply = errorReply(
    429,
    `Rate limit exceeded: ${rejection.bucket}${rejection.hint ?? ''}`,
    { headers: rateLimitHeaders, provider_name: null, error_type: 'rate_limit_exceeded' },
    userId,
  );
  const retryAfterSeconds = Math.max(1, Math.ceil((rejection.resetAt - now) / 1000));
  return Object.assign({}, reply, { headers: { 'Retry-After': String(retryAfterSeconds), ...rateLimitHeaders } });
}

// Injected faults that answer with an error before any content.

/** Where a fault's error is raised: names and numbers its message reports. */
export interface FaultContext {
  model: string;
  provider: string;
  userId: string;
  promptTokens: number;
  contextLength: number | undefined;
}

type FaultOf<Type extends FakeFault['type']> = Extract<FakeFault, { type: Type }>;

function withRetryAfter(reply: JsonReply, retryAfterSeconds: number | undefined): JsonReply {
  return retryAfterSeconds === undefined ? reply : Object.assign({}, reply, { headers: { 'Retry-After': String(retryAfterSeconds) } });
}

export function statusFaultReply(fault: FaultOf<'status'>, context: FaultContext): JsonReply {
  const message = fault.message ?? defaultStatusMessage(fault.status, context.model);
  const reply = errorReply(fault.status, message, { error_type: errorTypeForStatus(fault.status) }, context.userId);
  return withRetryAfter(reply, fault.retryAfterSeconds);
}

/** The upstream 429: generic message, the provider's reason in `metadata.raw`. */
export function upstreamRateLimitReply(fault: FaultOf<'rate-limit'>, context: FaultContext): JsonReply {
  return providerRateLimitReply(context.model, fault.providerName ?? context.provider, context.userId, fault.retryAfterSeconds);
}

/**
 * OpenRouter's 429 when every provider of the model is rate-limited or at capacity: no
 * `X-RateLimit-*`, and `Retry-After` only when a retry hint is given.
 */
export function providerRateLimitReply(model: string, providerName: string, userId: string, retryAfterSeconds?: number): JsonReply {
  const raw =
    `${model} is temporarily rate-limited upstream. Please retry shortly, or add your own key ` +
    'to accumulate your rate limits: https://openrouter.ai/settings/integrations';
  const retryHint =
    retryAfterSeconds === undefined
      ? {}
      : { retry_after_seconds: retryAfterSeconds, headers: { 'Retry-After': String(retryAfterSeconds) } };
  const metadata = { raw, provider_name: providerName, is_byok: false, ...retryHint };
  return withRetryAfter(errorReply(429, 'Provider returned error', metadata, userId), retryAfterSeconds);
}

export function contextLengthReply(fault: FaultOf<'context-length'>, context: FaultContext): JsonReply {
  const maximum = context.contextLength ?? fault.maxPromptTokens;
  const message =
    `This endpoint's maximum context length is ${maximum} tokens. However, you requested about ` +
    `${context.promptTokens} tokens (${context.promptTokens} of text input). Please reduce the length of ` +
    'either one, or use the "middle-out" transform to compress your prompt automatically.';
  return errorReply(400, message, { error_type: 'context_length_exceeded', provider_name: null }, context.userId);
}

export function contentPolicyReply(fault: FaultOf<'content-policy'>, context: FaultContext): JsonReply {
  const reasons = fault.reasons ?? ['harassment'];
  const message =
    `${context.model} requires moderation on ${context.provider}. Your input was flagged for ` +
    `"${reasons.join(', ')}". No credits were charged.`;
  const metadata = {
    reasons,
    flagged_input: '...',
    provider_name: context.provider,
    model_slug: context.model,
    error_type: 'content_policy_violation',
  };
  return errorReply(403, message, metadata, context.userId);
}

export function prefillRejectedReply(context: FaultContext): JsonReply {
  const message = 'This model does not support assistant message prefill. The conversation must end with a user message.';
  return errorReply(400, message, { error_type: 'invalid_request', provider_name: context.provider }, context.userId);
}

/** The non-streaming counterpart of an in-band stream error: status 200, body only `{error}`. */
export function inBandErrorReply(code: number | string, message: string, errorType: string, usage?: unknown): JsonReply {
  const error = { code, message, metadata: { error_type: errorType } };
  return { status: 200, body: usage === undefined ? { error } : { error, usage } };
}

// Key endpoints.

/** `free_model_daily_requests` of `GET /api/v1/key`. */
export interface FreeModelDailyView {
  used: number;
  limit: number;
  remaining: number;
}

export interface KeyView {
  label: string;
  limit: number | null;
  limitReset: 'daily' | 'weekly' | 'monthly' | null;
  usage: number;
  isFreeTier: boolean;
  creatorUserId: string | null;
  /** `null`: the field is left out. */
  freeModelDaily: FreeModelDailyView | null;
}

function limitRemaining(key: KeyView): number | null {
  return key.limit === null ? null : key.limit - key.usage;
}

/** `GET /api/v1/key`. */
export function currentKeyReply(key: KeyView): JsonReply {
  return {
    status: 200,
    body: {
      data: {
        label: key.label,
        limit: key.limit,
        limit_reset: key.limitReset,
        limit_remaining: limitRemaining(key),
        include_byok_in_limit: false,
        usage: key.usage,
        usage_daily: key.usage,
        usage_weekly: key.usage,
        usage_monthly: key.usage,
        byok_usage: 0,
        byok_usage_daily: 0,
        byok_usage_weekly: 0,
        byok_usage_monthly: 0,
        is_free_tier: key.isFreeTier,
        is_management_key: false,
        is_provisioning_key: false,
        creator_user_id: key.creatorUserId,
        expires_at: null,
        ...(key.freeModelDaily === null ? {} : { free_model_daily_requests: key.freeModelDaily }),
      },
    },
  };
}

/** The legacy `GET /api/v1/auth/key`: no daily/weekly/monthly or BYOK fields. */
export function legacyKeyReply(key: KeyView): JsonReply {
  return {
    status: 200,
    body: {
      data: {
        label: key.label,
        limit: key.limit,
        usage: key.usage,
        is_provisioning_key: false,
        limit_remaining: limitRemaining(key),
        is_free_tier: key.isFreeTier,
        rate_limit: { requests: 50, interval: '10s' },
      },
    },
  };
}
