import type { WindowEntry } from './sliding-window.js';

const DAY_MS = 86_400_000;

/** The next 00:00 UTC after `now`. */
export function nextUtcMidnight(now: number): number {
  return (Math.floor(now / DAY_MS) + 1) * DAY_MS;
}

/**
 * A quota per UTC calendar day, as OpenRouter counts `free-models-per-day`: everything admitted on
 * one day counts until 00:00 UTC, when the count starts again. Same operations as `SlidingWindow`.
 */
export class UtcDayWindow {
  readonly windowMs = DAY_MS;
  private day = -1;
  private total = 0;
  private entries: WindowEntry[] = [];

  constructor(public limit: number) {}

  remaining(now: number): number {
    this.roll(now);
    return this.limit - this.total;
  }

  fits(now: number, amount: number): boolean {
    this.roll(now);
    return this.total === 0 || this.total + Math.min(amount, this.limit) <= this.limit;
  }

  /** Counts `amount` on the day of `countFrom` (an entry for a later day than today's count waits for it). */
  add(countFrom: number, amount: number): WindowEntry {
    this.roll(countFrom);
    const entry: WindowEntry = { at: countFrom, amount, live: true };
    this.entries.push(entry);
    this.total += amount;
    return entry;
  }

  /** The day an entry counts on does not move with its first byte. */
  touch(): void {}

  /** A day counts by the day: when within it a request went out does not matter. */
  retime(): void {}

  resize(entry: WindowEntry, amount: number): void {
    if (!entry.live) return;
    this.total += amount - entry.amount;
    entry.amount = amount;
  }

  /** The entries counted today, as of `now`. */
  liveEntries(now: number): readonly WindowEntry[] {
    this.roll(now);
    return this.entries;
  }

  /** Counts copies of another day window's `entries` (see `Limiter.absorb`); they are today's. */
  absorb(entries: readonly WindowEntry[], now: number): void {
    this.roll(now);
    for (const entry of entries) this.add(entry.at, entry.amount);
  }

  nextFitAt(now: number, amount: number): number {
    return this.fits(now, amount) ? now : nextUtcMidnight(now);
  }

  /** When what is counted now leaves the window (00:00 UTC), so that `remaining` rises; null while nothing is counted. */
  freesAt(now: number): number | null {
    this.roll(now);
    return this.total > 0 ? nextUtcMidnight(now) : null;
  }

  private roll(now: number): void {
    const day = Math.floor(now / DAY_MS);
    if (day <= this.day) return;
    this.day = day;
    this.total = 0;
    for (const entry of this.entries) entry.live = false;
    this.entries = [];
  }
}
