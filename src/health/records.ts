import type { BreakerState } from './breaker.js';
import type { ErrorKind } from '../core/errors.js';
import type { QuotaSource } from './learned-quota.js';

/**
 * The public, immutable health records the pool publishes through BehaviorSubjects. They hold
 * labels and fingerprints, never key text, so they are safe to log and to send to a browser.
 */

/** `disabled`: revoked (401). `exhausted`: out of credit or over its spending cap (402, 403). */
export type KeyState = BreakerState | 'disabled' | 'exhausted';

/** Why a key or model is `open`: its breaker tripped, or a 429 parked it until a reset time. */
export type OpenReason = 'failures' | 'rate-limit';

/** The latest failure of a key or model, as health shows it. */
export interface LastError {
  /** Kind of the error. */
  readonly kind: ErrorKind;
  /** Its HTTP status, when there was one. */
  readonly status?: number;
  /** Its message (never holds key text). */
  readonly message: string;
  /** Scheduler time of the failure. */
  readonly at: number;
}

/** What one quota (e.g. `rpm`) of a key, an account or a model has left in its sliding window. */
export interface QuotaRemaining {
  /** Whose quota it is. */
  readonly scope: 'key' | 'account' | 'model';
  /** `requests` or `tokens`. */
  readonly unit: 'requests' | 'tokens';
  /** Most `unit`s the window admits. */
  readonly limit: number;
  /**
   * What the window admits now (never below 0). On a shared store (Redis), as this process counts
   * it: the store enforces the fleet's total at admission, but this figure is not the fleet's.
   */
  readonly remaining: number;
  /**
   * Scheduler time at which the oldest unit counted now leaves the window, and `remaining` rises
   * (a UI's "frees in 12 s"); null while the window counts nothing. `health$` publishes the rise.
   */
  readonly freesAt: number | null;
  /** Length of the sliding window. */
  readonly windowMs: number;
  /** For `model` quotas, the model pattern they apply to. */
  readonly model?: string;
  /** Told in the config, learned from a 429's `X-RateLimit-*`, or read from `GET /api/v1/key`. */
  readonly source: QuotaSource;
  /** For a learned quota, the bucket the server named (`free-models-per-day`). */
  readonly bucket?: string;
}

/** Running totals of requests and billed usage, for a key, a model or the pool. */
export interface UsageTotals {
  /** Successful attempts (failed ones add their billed tokens but no request). */
  readonly requests: number;
  /** Prompt tokens billed. */
  readonly promptTokens: number;
  /** Completion tokens billed. */
  readonly completionTokens: number;
  /** Total tokens billed. */
  readonly totalTokens: number;
  /** Credits (USD) billed, as reported by OpenRouter. */
  readonly cost: number;
}

/** A key's spending as `GET /api/v1/key` last reported it; amounts in USD. */
export interface Credit {
  /** The key's spending cap, or `null` for none. */
  readonly limit: number | null;
  /** What is left of `limit`; `null` when there is no limit. */
  readonly limitRemaining: number | null;
  /** Credits the key has used. */
  readonly usage: number;
  /** True when the account never bought credits. */
  readonly isFreeTier: boolean;
  /** Scheduler time of the `GET /api/v1/key` call. */
  readonly checkedAt: number;
}

/** What key and model records share: breaker state, in-flight count, outcomes, latency, usage. */
export interface EntityHealth {
  /** Its breaker's state, or (keys only) `disabled` or `exhausted`. */
  readonly state: KeyState;
  /** Why it is `open`; null in any other state. */
  readonly openReason: OpenReason | null;
  /** Scheduler time until which it is parked, open, or exhausted; null when none applies. */
  readonly cooldownUntil: number | null;
  /** Attempts holding a slot now. */
  readonly inFlight: number;
  /**
   * The adaptive concurrency limit (found from overload answers): for a model, its requests in
   * flight at once; for a key, its account's. Null when adaptive concurrency is off.
   */
  readonly concurrencyLimit: number | null;
  /** Outcomes in the breaker's current sliding window. */
  readonly successes: number;
  /** Failures in the breaker's current sliding window. */
  readonly failures: number;
  /** Failures since the last success. */
  readonly consecutiveFailures: number;
  /** The latest failure; null before the first. */
  readonly lastError: LastError | null;
  /** Exponential moving averages, in ms; null before the first sample. */
  readonly latencyMs: number | null;
  /** Moving average of the time from the lease to the first content, in ms; null before a sample. */
  readonly timeToFirstTokenMs: number | null;
  /** What its successful attempts (and failed ones' billed tokens) used. */
  readonly usage: UsageTotals;
}

/** One key's health record. */
export interface KeyHealth extends EntityHealth {
  /** The key's label. */
  readonly label: string;
  /** Short non-reversible hash of the key, to tell keys with the same label apart. */
  readonly fingerprint: string;
  /** Id of the account the key belongs to. */
  readonly account: string;
  /** The key's `maxConcurrent` limit; null when it has none. */
  readonly maxConcurrent: number | null;
  /** What the key's quotas, then its account's, then its account's per-model limits (`models`, the free-model bucket) have left. */
  readonly quota: readonly QuotaRemaining[];
  /** Its spending, once `GET /api/v1/key` has been polled; null before. */
  readonly credit: Credit | null;
}

/** One model's health record, shared by every key. */
export interface ModelHealth extends EntityHealth {
  /** The model slug. */
  readonly model: string;
  /** A model is never disabled or exhausted: only its breaker's states. */
  readonly state: BreakerState;
}

/** A snapshot of the whole pool's health. */
export interface PoolHealth {
  /** Every key's record. */
  readonly keys: readonly KeyHealth[];
  /** A record per model the pool tracks (idle, healthy ones are dropped past `maxModelRecords`). */
  readonly models: readonly ModelHealth[];
  /** Sums over every key. */
  readonly usage: UsageTotals;
  /** Requests waiting for a key. */
  readonly queued: number;
  /** Scheduler time of this snapshot. */
  readonly at: number;
}

export function emptyUsage(): UsageTotals {
  return { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, cost: 0 };
}

/**
 * Totals with an attempt's billed usage added, and the attempt itself when it counts as a request
 * (a failed attempt's tokens are billed, but it served no request). A new object: records compare
 * usage by reference.
 */
export function addUsage(totals: UsageTotals, usage: Partial<UsageTotals> | undefined, countRequest: boolean): UsageTotals {
  return {
    requests: totals.requests + (countRequest ? 1 : 0) + (usage?.requests ?? 0),
    promptTokens: totals.promptTokens + (usage?.promptTokens ?? 0),
    completionTokens: totals.completionTokens + (usage?.completionTokens ?? 0),
    totalTokens: totals.totalTokens + (usage?.totalTokens ?? 0),
    cost: totals.cost + (usage?.cost ?? 0),
  };
}

/** The record of a failure, as health shows it (the message is already key-free). */
export function lastErrorOf(error: { kind: ErrorKind; message: string; status?: number | undefined }, at: number): LastError {
  return { kind: error.kind, message: error.message, at, ...(error.status === undefined ? {} : { status: error.status }) };
}

export function sameLastError(a: LastError | null, b: LastError | null): boolean {
  return a === b || (a !== null && b !== null && a.kind === b.kind && a.status === b.status && a.message === b.message && a.at === b.at);
}

/** The fields key and model records share, compared by value: a health stream never repeats itself. */
export function sameEntityHealth(a: EntityHealth, b: EntityHealth): boolean {
  return (
    a.state === b.state &&
    a.openReason === b.openReason &&
    a.cooldownUntil === b.cooldownUntil &&
    a.inFlight === b.inFlight &&
    a.concurrencyLimit === b.concurrencyLimit &&
    a.successes === b.successes &&
    a.failures === b.failures &&
    a.consecutiveFailures === b.consecutiveFailures &&
    sameLastError(a.lastError, b.lastError) &&
    a.latencyMs === b.latencyMs &&
    a.timeToFirstTokenMs === b.timeToFirstTokenMs &&
    a.usage === b.usage
  );
}

/** A key record by value: the shared fields, its credit and what its quotas have left. */
export function sameKeyHealth(a: KeyHealth, b: KeyHealth): boolean {
  return (
    sameEntityHealth(a, b) &&
    a.credit === b.credit &&
    a.quota.length === b.quota.length &&
    a.quota.every((quota, index) => quota.remaining === b.quota[index]!.remaining && quota.limit === b.quota[index]!.limit) &&
    a.account === b.account
  );
}
