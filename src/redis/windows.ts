import type { LearnedQuota } from '../health/learned-quota.js';
import type { LimitsConfig } from '../health/limits.js';
import type { WindowEntry } from '../health/sliding-window.js';
import type { AdmissionPlan } from '../store/state-store.js';

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

/** A window a reservation counts in: its Redis keys, and the amount it put there. */
export interface WindowPart {
  readonly window: string;
  readonly sum: string;
  readonly unit: 'requests' | 'tokens';
  readonly amount: number;
  readonly windowMs: number;
}

/** What the reserve script takes a plan as (1-based indexes into its keys). */
export type LayoutPart =
  { slot: number; max: number } | { window: number; sum: number; unit: 'requests' | 'tokens'; limit: number; windowMs: number };

/** A plan's Redis keys for one reservation of `tokens`: its slot sets, and its windows with their `:sum` counters. */
export interface PlanLayout {
  readonly keys: string[];
  readonly layout: LayoutPart[];
  readonly windows: WindowPart[];
  readonly slots: string[];
}

/** The Redis key of a scope's window for `quota` (a learned quota's is its own, see `planLayout`). */
export function windowKey(prefix: string, scopeId: string, quota: Pick<WindowSpec, 'unit' | 'windowMs' | 'learned'>): string {
  return `${prefix}:window:${scopeId}:${quota.unit}:${quota.windowMs}${quota.learned === true ? ':learned' : ''}`;
}

/**
 * Lays `plan` out under `prefix`: a slot set per scope with `maxConcurrent`, and a window per
 * configured or learned quota (`learnedOf` a scope's learned quotas). A learned quota counts in a
 * window of its own: a configured one of the same length has its own entries.
 */
export function planLayout(
  prefix: string,
  plan: AdmissionPlan,
  tokens: number,
  learnedOf: (scopeId: string) => readonly LearnedQuota[],
): PlanLayout {
  const keys: string[] = [];
  const layout: LayoutPart[] = [];
  const windows: WindowPart[] = [];
  const slots: string[] = [];
  for (const scope of plan) {
    if (scope.limits.maxConcurrent !== undefined) {
      keys.push(`${prefix}:slots:${scope.id}`);
      slots.push(keys[keys.length - 1]!);
      layout.push({ slot: keys.length, max: scope.limits.maxConcurrent });
    }
    for (const quota of [...windowsOf(scope.limits), ...learnedWindowsOf(learnedOf(scope.id))]) {
      const window = windowKey(prefix, scope.id, quota);
      keys.push(window, `${window}:sum`);
      layout.push({ window: keys.length - 1, sum: keys.length, unit: quota.unit, limit: quota.limit, windowMs: quota.windowMs });
      const amount = quota.unit === 'requests' ? 1 : Math.min(tokens, quota.limit);
      windows.push({ window, sum: `${window}:sum`, unit: quota.unit, amount, windowMs: quota.windowMs });
    }
  }
  return { keys, layout, windows, slots };
}

/**
 * A change to a reservation's entries on Redis: `tokens` resizes its token entries, `refund` empties
 * them all, and `move` moves them back to Redis's now plus its margin (`touch`: a first byte) or sets
 * them there, re-counting one pruned meanwhile (`retime`: the send).
 */
export interface WindowChange {
  tokens?: number;
  refund?: true;
  move?: { mode: 'touch' | 'retime'; marginMs: number };
}

/** The keys and arguments of the `ADJUST` script that makes `change` to reservation `id`'s entries in `windows`. */
export function adjustCallOf(
  id: string,
  windows: readonly WindowPart[],
  change: WindowChange,
): { keys: string[]; args: (string | number)[] } {
  const keys = windows.flatMap((window) => [window.window, window.sum]);
  const parts = windows.map((window) => ({
    unit: window.unit,
    amount: window.amount,
    windowMs: window.windowMs,
    ...(change.refund ? { resize: 0 } : change.tokens !== undefined && window.unit === 'tokens' ? { resize: change.tokens } : {}),
  }));
  const move = change.move === undefined ? '0' : change.move.mode === 'touch' ? '1' : '2';
  return { keys, args: [id, JSON.stringify(parts), move, change.move?.marginMs ?? 0] };
}

/**
 * The two keys and the arguments of the `SEED` script that starts the Redis window of a quota
 * learned for `scopeId` with `entries` (the learning process's window, oldest first), as ages from
 * `now`; `names` prefixes its entries' names.
 */
export function seedCallOf(
  prefix: string,
  scopeId: string,
  windowMs: number,
  entries: readonly WindowEntry[],
  now: number,
  names: string,
): (string | number)[] {
  const window = windowKey(prefix, scopeId, { unit: 'requests', windowMs, learned: true });
  // Oldest first, as the script tops the window up from the oldest: the local window holds its own
  // sends ahead of the rest of the server's count, which is older.
  const ages = entries.map((entry) => now - entry.at).sort((a, b) => b - a);
  return [window, `${window}:sum`, windowMs, JSON.stringify(ages), names];
}
