import { SlidingWindow, type WindowEntry } from './sliding-window.js';
import type { LimitsConfig } from './limits.js';
import type { QuotaRemaining } from './records.js';

const MINUTE_MS = 60_000;

interface QuotaWindow {
  unit: 'requests' | 'tokens';
  window: SlidingWindow;
}

/** What one admitted attempt holds in a limiter, to adjust or give back later. */
export interface LimiterHold {
  readonly limiter: Limiter;
  readonly entries: readonly WindowEntry[];
}

/**
 * The quotas (requests and tokens per sliding window) and the concurrency cap of one scope: a
 * key, an account, or a model within an account.
 */
export class Limiter {
  private readonly windows: QuotaWindow[] = [];
  readonly maxConcurrent: number | null;
  inFlight = 0;

  constructor(
    limits: LimitsConfig,
    readonly scope: QuotaRemaining['scope'],
    readonly model?: string,
  ) {
    if (limits.rpm !== undefined) this.windows.push({ unit: 'requests', window: new SlidingWindow(limits.rpm, MINUTE_MS) });
    if (limits.tpm !== undefined) this.windows.push({ unit: 'tokens', window: new SlidingWindow(limits.tpm, MINUTE_MS) });
    for (const quota of limits.quotas ?? []) {
      if (quota.requests !== undefined) this.windows.push({ unit: 'requests', window: new SlidingWindow(quota.requests, quota.windowMs) });
      if (quota.tokens !== undefined) this.windows.push({ unit: 'tokens', window: new SlidingWindow(quota.tokens, quota.windowMs) });
    }
    this.maxConcurrent = limits.maxConcurrent ?? null;
  }

  /** Whether it limits anything at all; limiters that don't are skipped on the hot path. */
  get isBounded(): boolean {
    return this.windows.length > 0 || this.maxConcurrent !== null;
  }

  get hasConcurrencyRoom(): boolean {
    return this.maxConcurrent === null || this.inFlight < this.maxConcurrent;
  }

  fits(now: number, tokens: number): boolean {
    if (!this.hasConcurrencyRoom) return false;
    for (const { unit, window } of this.windows) {
      if (!window.fits(now, unit === 'requests' ? 1 : tokens)) return false;
    }
    return true;
  }

  /** Takes a slot and counts the attempt in every window from `countFrom` (see `SlidingWindow.add`). */
  take(countFrom: number, tokens: number): LimiterHold {
    this.inFlight++;
    const entries = this.windows.map(({ unit, window }) => window.add(countFrom, unit === 'requests' ? 1 : tokens));
    return { limiter: this, entries };
  }

  /** Frees the concurrency slot; the quota entries stay until they leave their windows. */
  release(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  touch(hold: LimiterHold, now: number): void {
    hold.entries.forEach((entry, index) => this.windows[index]!.window.touch(entry, now));
  }

  /** Replaces the token estimate with the billed count. */
  reconcileTokens(hold: LimiterHold, tokens: number): void {
    hold.entries.forEach((entry, index) => {
      const quota = this.windows[index]!;
      if (quota.unit === 'tokens') quota.window.resize(entry, tokens);
    });
  }

  /** The earliest time the quotas admit `tokens` (concurrency aside). */
  nextFitAt(now: number, tokens: number): number {
    let at = now;
    for (const { unit, window } of this.windows) at = Math.max(at, window.nextFitAt(now, unit === 'requests' ? 1 : tokens));
    return at;
  }

  remaining(now: number): QuotaRemaining[] {
    return this.windows.map(({ unit, window }) => ({
      scope: this.scope,
      unit,
      limit: window.limit,
      remaining: Math.max(0, window.remaining(now)),
      windowMs: window.windowMs,
      ...(this.model === undefined ? {} : { model: this.model }),
    }));
  }
}
