import type { EntryHandle, WindowEntry } from './sliding-window.js';

const DAY_MS = 86_400_000;

/** An entry a day counts, by the handle that names it (see `EntryHandle`). */
interface DayEntry extends WindowEntry {
  readonly handle: EntryHandle;
  amount: number;
}

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
  private entries: DayEntry[] = [];
  /**
   * What counts on the day after `day` too: a request admitted in the last moments of a day counts
   * from after midnight (admission plus the trip's margin), but may reach the server before it.
   * It counts on both days, erring on the safe side, and is the next day's first once it comes.
   */
  private nextTotal = 0;
  private nextEntries: DayEntry[] = [];
  /** The entries counted today or tomorrow, by handle: one a day no longer counts is not found. */
  private readonly counted = new Map<EntryHandle, DayEntry>();
  private nextHandle = 0;

  constructor(public limit: number) {}

  remaining(now: number): number {
    this.roll(now);
    return this.limit - this.total;
  }

  /** What is left of the day's quota at any time from now on (a new day only frees room). */
  get sureRoom(): number {
    return this.limit - this.total;
  }

  fits(now: number, amount: number): boolean {
    this.roll(now);
    return this.total === 0 || this.total + Math.min(amount, this.limit) <= this.limit;
  }

  /**
   * Counts `amount` on the day of `countFrom`: the day counted now; the next one, and the day
   * counted now as well (see `nextTotal`); or a later one (nothing counted now is of use then). An
   * entry for a day before the one counted now counts on it, erring on the safe side.
   */
  add(countFrom: number, amount: number): EntryHandle {
    const day = Math.floor(countFrom / DAY_MS);
    if (day > this.day + 1 || this.day < 0) this.roll(countFrom);
    const entry: DayEntry = { handle: this.nextHandle++, at: countFrom, amount };
    this.counted.set(entry.handle, entry);
    if (day === this.day + 1) {
      this.nextEntries.push(entry);
      this.nextTotal += amount;
    } else this.entries.push(entry);
    this.total += amount;
    return entry.handle;
  }

  /** The day an entry counts on does not move with its first byte. */
  touch(): void {}

  /** A day counts by the day: when within it a request went out does not matter. */
  retime(handle: EntryHandle): EntryHandle {
    return handle;
  }

  /** Sets an entry's amount; false (and nothing done) once its day has ended. */
  resize(handle: EntryHandle, amount: number): boolean {
    const entry = this.counted.get(handle);
    if (entry === undefined) return false;
    // An entry of the next day counts on both (see `nextTotal`).
    if (Math.floor(entry.at / DAY_MS) > this.day) this.nextTotal += amount - entry.amount;
    this.total += amount - entry.amount;
    entry.amount = amount;
    return true;
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
    for (const entry of this.entries) this.counted.delete(entry.handle);
    const nextDay = day === this.day + 1;
    if (!nextDay) for (const entry of this.nextEntries) this.counted.delete(entry.handle);
    this.day = day;
    this.total = nextDay ? this.nextTotal : 0;
    this.entries = nextDay ? this.nextEntries : [];
    this.nextTotal = 0;
    this.nextEntries = [];
  }
}
