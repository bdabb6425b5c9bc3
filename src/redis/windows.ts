import type { LimitsConfig } from '../health/limits.js';

const MINUTE_MS = 60_000;

/** Every quota of a scope as `{unit, limit, windowMs}`, as `Limiter` reads them. */
export function windowsOf(limits: LimitsConfig): { unit: 'requests' | 'tokens'; limit: number; windowMs: number }[] {
  const windows: { unit: 'requests' | 'tokens'; limit: number; windowMs: number }[] = [];
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
  return {
    ...(limits.rpm === undefined ? {} : { rpm: scale(limits.rpm)! }),
    ...(limits.tpm === undefined ? {} : { tpm: scale(limits.tpm)! }),
    ...(limits.quotas === undefined
      ? {}
      : {
          quotas: limits.quotas.map((quota) => ({
            windowMs: quota.windowMs,
            ...(quota.requests === undefined ? {} : { requests: scale(quota.requests)! }),
            ...(quota.tokens === undefined ? {} : { tokens: scale(quota.tokens)! }),
          })),
        }),
  };
}
