/**
 * Quotas the pool was not told but found out: from a platform 429's `X-RateLimit-*` headers
 * (`learned`) or from `GET /api/v1/key` (`key-info`). They add to the configured limits, never
 * replace them, so a learned quota can only make admission stricter than the configuration.
 */

/**
 * Where a quota shown in health comes from: `configured`; `learned` from this scope's own 429;
 * `key-info`; or `assumed`, another scope's learned quota (one request looser) taken for this one
 * until its own 429 teaches its limit or it passes the assumed one without a 429.
 */
export type QuotaSource = 'configured' | 'learned' | 'key-info' | 'assumed';

/** A request quota found out at run time. */
export interface LearnedQuota {
  /** Requests the window admits. */
  readonly requests: number;
  /** Length of the window; for `utc-day` a day, counted per calendar day. */
  readonly windowMs: number;
  /** `utc-day`: the count starts again at 00:00 UTC (OpenRouter's per-day buckets); else a sliding window. */
  readonly calendar?: 'utc-day';
  /** How it was found out. */
  readonly source: Exclude<QuotaSource, 'configured'>;
  /**
   * The bucket it is the quota of, as the 429 named it (`free-models-per-day`), or a name for an
   * unnamed one: a scope has one learned quota per bucket, and a new limit or window for a bucket
   * replaces the old.
   */
  readonly bucket: string;
}

/** What the server said of the window when the quota was found out, to line ours up with it. */
export interface QuotaSeed {
  /** What the server's window still admitted (`X-RateLimit-Remaining`; 0 with a 429). */
  readonly remaining: number;
  /** Milliseconds until the server's window has room again (`X-RateLimit-Reset`). */
  readonly resetAfterMs: number;
}

const SECOND_MS = 1_000;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Window lengths rate limiters use; an estimate is rounded up to the nearest (a longer window only errs on the safe side). */
const COMMON_WINDOWS_MS = [
  SECOND_MS,
  2 * SECOND_MS,
  5 * SECOND_MS,
  10 * SECOND_MS,
  15 * SECOND_MS,
  30 * SECOND_MS,
  MINUTE_MS,
  2 * MINUTE_MS,
  5 * MINUTE_MS,
  10 * MINUTE_MS,
  15 * MINUTE_MS,
  30 * MINUTE_MS,
  HOUR_MS,
  6 * HOUR_MS,
  12 * HOUR_MS,
  DAY_MS,
];

/** The window a bucket's name states (`free-models-per-min`, `...-per-day`), if it states one. */
export function windowOfBucket(bucket: string | undefined): Pick<LearnedQuota, 'windowMs' | 'calendar'> | undefined {
  if (bucket === undefined) return undefined;
  if (/per-?day|daily/.test(bucket)) return { windowMs: DAY_MS, calendar: 'utc-day' };
  if (/per-?h(ou)?r|hourly/.test(bucket)) return { windowMs: HOUR_MS };
  if (/per-?min/.test(bucket)) return { windowMs: MINUTE_MS };
  if (/per-?s(ec)?(ond)?\b/.test(bucket)) return { windowMs: SECOND_MS };
  return undefined;
}

/**
 * Rounds an estimated window to a common length it is close to (an estimate from send times is
 * long by the trip to the server: a window of 61 s is a minute, one of 1.2 s a second), else up
 * to the next common length: a longer window only errs on the safe side.
 */
export function snapWindowMs(estimateMs: number): number {
  // Errs long, by the trip to the server and a busy sender's delays: up to a quarter over, 5 % under.
  const near = COMMON_WINDOWS_MS.find((windowMs) => estimateMs >= windowMs * 0.95 && estimateMs <= windowMs * 1.25);
  return near ?? COMMON_WINDOWS_MS.find((windowMs) => windowMs >= estimateMs) ?? DAY_MS;
}

/**
 * The window of a quota of `limit` requests whose window has room again `resetAfterMs` from
 * `now`, from this pool's own sends to that scope that the server had counted when it refused one
 * (`sendTimes`, oldest first: those up to the refused request's, itself left out, and later ones
 * already answered). The server's window holds `limit` requests, the oldest leaving at the reset;
 * ours are among them, so the oldest of our last `limit` sends opened it at the earliest: from it
 * to the reset is the longest the window can be, and the one taken (snapped to a common length),
 * since a window too long only errs on the safe side. Exact when this pool is the scope's only
 * sender; with other senders on the scope it errs long. Undefined without `limit` sends on
 * record: then nothing tells a window's length, and the 429's wait is all there is to go by.
 */
export function estimateWindowMs(limit: number, sendTimes: readonly number[], now: number, resetAfterMs: number): number | undefined {
  if (sendTimes.length < limit) return undefined;
  const opened = sendTimes[sendTimes.length - limit]!;
  const resetAt = now + resetAfterMs;
  return resetAt > opened ? snapWindowMs(resetAt - opened) : undefined;
}
