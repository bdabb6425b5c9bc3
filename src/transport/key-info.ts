import { Observable } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { checkOptions, safeParseEnglish } from '../core/validation.js';
import * as z from 'zod/mini';
import { MalformedResponseError, OpenRouterError } from '../core/errors.js';
import type { KeyCredential } from '../core/types.js';
import { parseJsonBody } from '../wire/values.js';
import { clientOptionsSchema, type OpenRouterClientOptions } from './client-options.js';
import { bodyText } from './abortable-fetch.js';
import { errorFromFetch, openRouterFetch } from './http.js';
import { redactError, redactValue } from '../core/redact.js';

/** What `GET /api/v1/key` reports about a key (openrouter-wire.md §7); amounts in USD. */
export interface KeyInfo {
  /** OpenRouter's label for the key (key text in it redacted). */
  label: string;
  /** Spending cap, or `null` for none. */
  limit: number | null;
  /** What is left of `limit`; `null` when there is no limit (or an old deployment omits it). */
  limitRemaining: number | null;
  /** When usage toward `limit` resets; `null` for never. */
  limitReset: 'daily' | 'weekly' | 'monthly' | (string & {}) | null;
  /** Credits used by the key in all. */
  usage: number;
  /** Credits used in the current UTC day. */
  usageDaily?: number;
  /** Credits used in the current UTC week (from Monday). */
  usageWeekly?: number;
  /** Credits used in the current UTC month. */
  usageMonthly?: number;
  /** True when the account never bought credits (free-model quota of 50/day). */
  isFreeTier: boolean;
  /** True for a management (provisioning) key, which manages keys rather than calling models. */
  isManagementKey?: boolean;
  /** When the key expires (an ISO 8601 timestamp); `null` for never. */
  expiresAt?: string | null;
  /** Deprecated by OpenRouter; present on older deployments (`{requests: 50, interval: "10s"}`). It means nothing: ignore it. */
  rateLimit?: { requests: number; interval: string };
  /** The user whose account made the key: keys with the same one share the account's limits and balance. */
  creatorUserId?: string;
  /** The account's free-model quota for the current UTC day, when OpenRouter reports it. */
  freeModelDailyRequests?: { used: number; limit: number; remaining: number };
}

/** A field OpenRouter added later, or deprecated: garbage there is dropped, not fatal. */
const optionalNumber = z.catch(z.optional(z.number()), undefined);

const keyResponseSchema = z.looseObject({
  data: z.looseObject({
    label: z.string(),
    limit: z.nullable(z.number()),
    limit_remaining: z.optional(z.nullable(z.number())),
    limit_reset: z.catch(z.optional(z.nullable(z.string())), undefined),
    usage: z.number(),
    usage_daily: optionalNumber,
    usage_weekly: optionalNumber,
    usage_monthly: optionalNumber,
    is_free_tier: z.boolean(),
    is_management_key: z.catch(z.optional(z.boolean()), undefined),
    expires_at: z.catch(z.optional(z.nullable(z.string())), undefined),
    rate_limit: z.catch(z.optional(z.looseObject({ requests: z.number(), interval: z.string() })), undefined),
    creator_user_id: z.catch(z.optional(z.nullable(z.string().check(z.minLength(1)))), undefined),
    free_model_daily_requests: z.catch(
      z.optional(
        z.nullable(
          z.looseObject({
            used: z.int().check(z.nonnegative()),
            limit: z.int().check(z.positive()),
            remaining: z.optional(z.int().check(z.nonnegative())),
          }),
        ),
      ),
      undefined,
    ),
  }),
});

const CURRENT_PATH = '/key';
/** Older deployments only answer the undocumented legacy route. */
const LEGACY_PATH = '/auth/key';

/** What a request needs of its key: the secret, and the names its errors show instead of it. */
const keyCredentialSchema = z.looseObject({
  key: z.string().check(z.minLength(1)),
  label: z.string(),
  fingerprint: z.optional(z.string()),
});

/**
 * Reads a key's limits and usage: `GET {baseURL}/key`, falling back to the legacy `/auth/key` on
 * 404. Emits one `KeyInfo` and completes; unsubscribing aborts the request. Fails with the typed
 * error of the response (401 `AuthenticationError`, ...) or `MalformedResponseError`. Throws a
 * `ValidationError` naming the field for options that could only fail.
 */
export function fetchKeyInfo(key: KeyCredential, options: OpenRouterClientOptions = {}): Observable<KeyInfo> {
  // The key text alone (a string), or a credential without it, would fail only inside the request's
  // promise chain, where nobody hears of it.
  checkOptions(keyCredentialSchema, key, 'key credential');
  checkOptions(clientOptionsSchema, options, 'transport options');
  return new Observable<KeyInfo>((subscriber) => {
    const controller = new AbortController();
    const getText = async (path: string): Promise<string> =>
      bodyText(
        await openRouterFetch(options, steadyScheduler(), { key, method: 'GET', path, signal: controller.signal }),
        controller.signal,
      );

    getText(CURRENT_PATH)
      .catch((error: unknown) => {
        if (error instanceof OpenRouterError && error.status === 404) return getText(LEGACY_PATH);
        throw error;
      })
      .then((text) => parseKeyInfo(text, key))
      .then(
        (info) => {
          subscriber.next(info);
          subscriber.complete();
        },
        (error: unknown) => {
          // An abort from our own teardown is not a failure.
          if (!controller.signal.aborted) subscriber.error(errorFromFetch(error, { key }));
        },
      );
    return () => controller.abort();
  });
}

/** Parses a `/key` or `/auth/key` body (a JSON string or an object); key text in it (a label, say) is redacted. */
export function parseKeyInfo(body: unknown, key: KeyCredential): KeyInfo {
  const result = safeParseEnglish(keyResponseSchema, redactValue(parseJsonBody(body), key));
  if (!result.success) {
    throw redactError(
      new MalformedResponseError({
        message: `key info response is not the documented shape: ${result.error.issues
          .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
          .join('; ')}`,
        scope: 'transport',
        retryable: true,
        keyLabel: key.label,
      }),
      key,
    );
  }
  const data = result.data.data;
  const info: KeyInfo = {
    label: data.label,
    limit: data.limit,
    limitRemaining: data.limit_remaining ?? null,
    limitReset: data.limit_reset ?? null,
    usage: data.usage,
    isFreeTier: data.is_free_tier,
  };
  if (data.usage_daily !== undefined) info.usageDaily = data.usage_daily;
  if (data.usage_weekly !== undefined) info.usageWeekly = data.usage_weekly;
  if (data.usage_monthly !== undefined) info.usageMonthly = data.usage_monthly;
  if (data.is_management_key !== undefined) info.isManagementKey = data.is_management_key;
  if (data.expires_at !== undefined) info.expiresAt = data.expires_at;
  if (typeof data.creator_user_id === 'string') info.creatorUserId = data.creator_user_id;
  const daily = data.free_model_daily_requests;
  if (daily !== undefined && daily !== null) {
    info.freeModelDailyRequests = {
      used: daily.used,
      limit: daily.limit,
      remaining: daily.remaining ?? Math.max(0, daily.limit - daily.used),
    };
  }
  if (data.rate_limit !== undefined) info.rateLimit = { requests: data.rate_limit.requests, interval: data.rate_limit.interval };
  return info;
}
