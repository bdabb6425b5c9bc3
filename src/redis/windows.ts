import type { LearnedQuota } from '../health/learned-quota.js';
import type { LimitsConfig } from '../health/limits.js';

const MINUTE_MS = 60_000;

/** One quota window as the reserve script takes it. */
export interface WindowSpec {
  readonly unit: 'requests' | 'tokens';
  readonly limit: number;
  readonly windowMs: number;
  /** A learned quota: it counts in a Redis window of its own. */
  readonly learned?: boolean;
}

/**
 * A scope's learned quotas as windows. A `utc-day` quota is a sliding day on Redis: stricter than
 * the calendar day near midnight, never looser.
 */
export function learnedWindowsOf(quotas: readonly LearnedQuota[]): WindowSpec[] {
  return quotas.map((quota) => ({ unit: 'requests', limit: quota.requests, windowMs: quota.windowMs, learned: true }));
}

/** Every configured quota of a scope as a window, as `Limiter` reads them. */
export function windowsOf(limits: LimitsConfig): WindowSpec[] {
  const windows: WindowSpec[] = [];
  if (limits.rpm !== undefined) windows.push({ unit: 'requests', limit: limits.rpm, windowMs: MINUTE_MS });
  if (limits.tpm !== undefined) windows.push({ unit: 'tokens', limit: limits.tpm, windowMs: MINUTE_MS });
  for (const quota of limits.quotas ?? []) {
    if (quota.requests !== undefined) windows.push({ unit: 'requests', limit: quota.requests, windowMs: quota.windowMs });
    if (quota.tokens !== undefined) windows.push({ unit: 'tokens', limit: quota.tokens, windowMs: quota.windowMs });
  }
  return windows;
}

/** One limit scaled to one process's share, for when Redis is down. */
export function scaled(value: number, share: number): number {
  return Math.max(1, Math.floor(value * share));
}

/**
 * A scope's quotas scaled to one process's share, for when Redis is down. `maxConcurrent` is
 * left out: the store counts slots itself, across modes (see `RedisStateStore.slotsHeld`).
 */
export function shareOf(limits: LimitsConfig, share: number): LimitsConfig {
  const scale = (value: number | undefined) => (value === undefined ? undefined : scaled(value, share));
  return Object.assign(
    {},
    limits.rpm === undefined ? {} : { rpm: scale(limits.rpm)! },
    limits.tpm === undefined ? {} : { tpm: scale(limits.tpm)! },
    limits.quotas === undefined
      ? {}
      : {
          quotas: limits.quotas.map((quota) => ({
            windowMs: quota.windowMs,
            ...(quota.requests === undefined ? {} : { requests: scale(quota.requests)! }),
            ...(quota.tokens === undefined ? {} : { tokens: scale(quota.tokens)! }),
          })),
        },
  );
}
