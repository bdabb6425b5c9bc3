import type { RateLimitInfo } from '../core/errors.js';
import { toHeaderLookup, type HeaderLookup } from './headers.js';
import { MAX_RETRY_AFTER_MS } from './retry-after.js';
import { isRecord, numberField, parseJsonBody, recordField } from './values.js';

/**
 * The quota a platform 429 reports: `X-RateLimit-Limit` and `X-RateLimit-Reset` (epoch ms) from
 * the response headers, else from their mirror in `error.metadata.headers`, and the bucket its
 * message names (`Rate limit exceeded: free-models-per-min`). Undefined unless both the limit (a
 * positive integer) and a plausible reset are there: garbage teaches the pool nothing.
 */
export function rateLimitInfoFrom(headers: HeaderLookup, body: unknown, message: string, nowMs: number): RateLimitInfo | undefined {
  const fromHeaders = readHeaders(headers, nowMs);
  const parsed = parseJsonBody(body);
  const error = isRecord(parsed) ? recordField(parsed['error']) : undefined;
  const copied = recordField(recordField(error?.['metadata'])?.['headers']);
  const found = fromHeaders ?? (copied === undefined ? undefined : readHeaders(toHeaderLookup(copied), nowMs));
  if (found === undefined) return undefined;
  const bucket = bucketNamedIn(message);
  return bucket === undefined ? found : Object.assign({}, found, { bucket });
}

/** The bucket a platform 429's message names (`Rate limit exceeded: free-models-per-min` names `free-models-per-min`), lower case. */
export function bucketNamedIn(message: string): string | undefined {
  return /rate limit exceeded:\s*([a-z0-9][a-z0-9_-]*)/i.exec(message)?.[1]?.toLowerCase();
}

function readHeaders(headers: HeaderLookup, nowMs: number): RateLimitInfo | undefined {
  const limit = numberField(headers('x-ratelimit-limit'));
  const reset = numberField(headers('x-ratelimit-reset'));
  if (limit === undefined || !Number.isInteger(limit) || limit < 1 || reset === undefined || reset < 1e12) return undefined;
  const remaining = numberField(headers('x-ratelimit-remaining'));
  return {
    limit,
    resetAfterMs: Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.ceil(reset - nowMs))),
    ...(remaining !== undefined && Number.isFinite(remaining) && remaining >= 0 ? { remaining: Math.min(remaining, limit) } : {}),
  };
}
