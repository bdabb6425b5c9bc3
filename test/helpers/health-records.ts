import type { KeyHealth, PoolHealth } from '../../src/index.js';

/** Nothing used yet. */
const NO_USAGE: KeyHealth['usage'] = { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, cost: 0 };

/** A key's health record as a fresh, idle, closed key has it; `extra` sets what a test looks at. */
export function idleKeyHealth(label: string, extra: Partial<KeyHealth> = {}): KeyHealth {
  return {
    label,
    fingerprint: '#abcdef',
    account: `key:${label}`,
    state: 'closed',
    openReason: null,
    cooldownUntil: null,
    inFlight: 0,
    concurrencyLimit: null,
    maxConcurrent: null,
    successes: 0,
    failures: 0,
    consecutiveFailures: 0,
    lastError: null,
    latencyMs: null,
    timeToFirstTokenMs: null,
    quota: [],
    credit: null,
    usage: { ...NO_USAGE },
    ...extra,
  };
}

/** A pool snapshot of `keys` at `at`, with no models and nothing queued. */
export function poolHealthOf(keys: KeyHealth[], at: number): PoolHealth {
  return { keys, models: [], usage: { ...NO_USAGE }, queued: 0, at };
}
