import type { BreakerState } from './breaker.js';
import type { ErrorKind } from '../core/errors.js';

/**
 * The public, immutable health records the pool publishes through BehaviorSubjects. They hold
 * labels and fingerprints, never key text, so they are safe to log and to send to a browser.
 */

/** `disabled`: revoked (401). `exhausted`: out of credit or over its spending cap (402, 403). */
export type KeyState = BreakerState | 'disabled' | 'exhausted';

/** Why a key or model is `open`: its breaker tripped, or a 429 parked it until a reset time. */
export type OpenReason = 'failures' | 'rate-limit';

export interface LastError {
  kind: ErrorKind;
  status?: number;
  message: string;
  /** Scheduler time of the failure. */
  at: number;
}

export interface QuotaRemaining {
  scope: 'key' | 'account' | 'model';
  /** `requests` or `tokens`. */
  unit: 'requests' | 'tokens';
  limit: number;
  remaining: number;
  windowMs: number;
  /** For `model` quotas, the model pattern they apply to. */
  model?: string;
}

export interface UsageTotals {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Credits (USD) billed, as reported by OpenRouter. */
  cost: number;
}

export interface Credit {
  limit: number | null;
  limitRemaining: number | null;
  usage: number;
  isFreeTier: boolean;
  /** Scheduler time of the `GET /api/v1/key` call. */
  checkedAt: number;
}

/** What key and model records share: breaker state, in-flight count, outcomes, latency, usage. */
export interface EntityHealth {
  state: KeyState;
  openReason: OpenReason | null;
  /** Scheduler time until which it is parked, open, or exhausted; null when none applies. */
  cooldownUntil: number | null;
  inFlight: number;
  /** Outcomes in the breaker's current sliding window. */
  successes: number;
  failures: number;
  consecutiveFailures: number;
  lastError: LastError | null;
  /** Exponential moving averages, in ms; null before the first sample. */
  latencyMs: number | null;
  timeToFirstTokenMs: number | null;
  usage: UsageTotals;
}

export interface KeyHealth extends EntityHealth {
  label: string;
  fingerprint: string;
  account: string;
  maxConcurrent: number | null;
  quota: readonly QuotaRemaining[];
  credit: Credit | null;
}

export interface ModelHealth extends EntityHealth {
  model: string;
  /** A model is never disabled or exhausted: only its breaker's states. */
  state: BreakerState;
}

export interface PoolHealth {
  keys: readonly KeyHealth[];
  models: readonly ModelHealth[];
  /** Sums over every key. */
  usage: UsageTotals;
  /** Requests waiting for a key. */
  queued: number;
  /** Scheduler time of this snapshot. */
  at: number;
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
    a.quota.every((quota, index) => quota.remaining === b.quota[index]!.remaining)
  );
}
