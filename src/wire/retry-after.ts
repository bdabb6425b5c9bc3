import { toHeaderLookup, type HeaderLookup } from './headers.js';
import { isRecord, numberField, parseJsonBody, recordField } from './values.js';

/**
 * The wait hint of an error response, in milliseconds, from the most specific source
 * (openrouter-wire.md §5, "Wait hints"):
 * 1. `retry-after-ms` header (milliseconds, the OpenAI convention);
 * 2. `Retry-After` header (seconds, or an HTTP date);
 * 3. `X-RateLimit-Reset` header (epoch milliseconds, platform 429 only);
 * 4. `error.metadata.retry_after_seconds`;
 * 5. `error.metadata.headers` (the response headers copied into the body; same rules as 1–3);
 * 6. `error.availability.retry_after` (seconds, the minimum across the providers tried).
 *
 * A source that holds garbage is skipped, not trusted. The answer is never negative: a date or a
 * reset time already past means "now" (0), and never more than `MAX_RETRY_AFTER_MS`.
 */
export function retryAfterMsFrom(headers: HeaderLookup, body: unknown, nowMs: number): number | undefined {
  const hint = unclampedRetryAfterMs(headers, body, nowMs);
  return hint === undefined ? undefined : Math.min(hint, MAX_RETRY_AFTER_MS);
}

/**
 * The longest wait a server hint may impose: one day, the longest real OpenRouter window (a daily
 * free-model cap resets at the next 00:00 UTC). A longer `Retry-After` is a broken or hostile
 * upstream; the target is tried again after a day, and a refusal then parks it again.
 */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

function unclampedRetryAfterMs(headers: HeaderLookup, body: unknown, nowMs: number): number | undefined {
  const fromHeaders = retryAfterMsFromHeaders(headers, nowMs);
  if (fromHeaders !== undefined) return fromHeaders;

  const parsed = parseJsonBody(body);
  const error = isRecord(parsed) ? recordField(parsed['error']) : undefined;
  if (error === undefined) return undefined;
  const metadata = recordField(error['metadata']);

  const seconds = nonNegative(numberField(metadata?.['retry_after_seconds']));
  if (seconds !== undefined) return secondsToMs(seconds);

  const copiedHeaders = recordField(metadata?.['headers']);
  if (copiedHeaders !== undefined) {
    const fromCopied = retryAfterMsFromHeaders(toHeaderLookup(copiedHeaders), nowMs);
    if (fromCopied !== undefined) return fromCopied;
  }

  const availabilitySeconds = nonNegative(numberField(recordField(error['availability'])?.['retry_after']));
  return availabilitySeconds === undefined ? undefined : secondsToMs(availabilitySeconds);
}

function retryAfterMsFromHeaders(headers: HeaderLookup, nowMs: number): number | undefined {
  const milliseconds = nonNegative(numberField(headers('retry-after-ms')));
  if (milliseconds !== undefined) return Math.ceil(milliseconds);

  const retryAfter = headers('retry-after');
  if (typeof retryAfter === 'string') {
    const seconds = nonNegative(numberField(retryAfter));
    if (seconds !== undefined) return secondsToMs(seconds);
    const date = parseHttpDate(retryAfter);
    if (date !== undefined) return Math.max(0, date - nowMs);
  }

  const reset = numberField(headers('x-ratelimit-reset'));
  if (reset !== undefined && isPlausibleEpochMs(reset)) return Math.max(0, Math.ceil(reset - nowMs));
  return undefined;
}

function secondsToMs(seconds: number): number {
  return Math.ceil(seconds * 1000);
}

function nonNegative(value: number | undefined): number | undefined {
  return value !== undefined && value >= 0 ? value : undefined;
}

/** An IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) or another form `Date.parse` accepts. */
function parseHttpDate(text: string): number | undefined {
  // Date.parse accepts bare numbers and odd fragments as dates; an HTTP date always names a month.
  if (!/[a-z]{3}/i.test(text)) return undefined;
  const time = Date.parse(text);
  return Number.isNaN(time) ? undefined : time;
}

/**
 * OpenRouter documents `X-RateLimit-Reset` as epoch milliseconds. A value below 10^12 (before
 * 2001 in milliseconds) is some other unit or garbage, and is ignored rather than read as "now".
 */
function isPlausibleEpochMs(value: number): boolean {
  return value >= 1e12;
}
