/**
 * A sliding-window log: the sum of amounts (requests or tokens) admitted in the last `windowMs`.
 * It is exact, unlike fixed windows, so a key never exceeds its quota in any window of that
 * length, whatever the phase of the server's own window.
 */
export interface WindowEntry {
  /** When the entry counts from (see `SlidingWindow.add` and `touch`). */
  at: number;
  amount: number;
  /** False once the entry has left the window. */
  live: boolean;
}

/**
 * How many entries a window may hold unpruned while it answers `fits` without pruning: entries
 * whose amount was reconciled down to 0 add nothing to the total, and would otherwise pile up.
 */
const MAX_UNPRUNED = 1_024;

export class SlidingWindow {
  private entries: WindowEntry[] = [];
  private head = 0;
  private total = 0;
  /** `entries.length - head`, kept here so that `fits` reads this object alone. */
  private unpruned = 0;

  constructor(
    /** Mutable: a learned limit is re-probed upward in place, its entries kept. */
    public limit: number,
    readonly windowMs: number,
  ) {}

  /** What is left of the quota at `now`. */
  remaining(now: number): number {
    this.prune(now);
    return this.limit - this.total;
  }

  /**
   * What is left of the quota at any time from now on, without pruning (pruning only frees room);
   * -Infinity once the log is long enough to want pruning (see `MAX_UNPRUNED`), so that no amount,
   * not even 0, is taken to fit before it is pruned.
   */
  get sureRoom(): number {
    return this.unpruned < MAX_UNPRUNED ? this.limit - this.total : -Infinity;
  }

  /** Whether `amount` fits at `now`. An amount above the limit fits only in an empty window. */
  fits(now: number, amount: number): boolean {
    // Pruning only lowers the total: what fits without it fits, and the log is left untouched (at
    // 1,000 keys, the log's oldest entry is one more read from memory for every key sampled).
    if (this.total + Math.min(amount, this.limit) <= this.limit && this.unpruned < MAX_UNPRUNED) return true;
    this.prune(now);
    return this.total === 0 || this.total + Math.min(amount, this.limit) <= this.limit;
  }

  /**
   * Counts `amount` from `countFrom`. The server counts a request when it arrives, after we sent
   * it, so the caller passes the send time plus a margin for the trip: our window then stays at or
   * behind the server's, and a key never draws a 429 for a quota we track.
   */
  add(countFrom: number, amount: number): WindowEntry {
    const entry: WindowEntry = { at: countFrom, amount, live: true };
    this.entries.push(entry);
    this.unpruned++;
    this.total += amount;
    return entry;
  }

  /**
   * The first response byte arrived at `now`: the request reached the server before then, so the
   * entry may count from `now` if that is earlier than the margin assumed. An entry moved earlier
   * than others ahead of it expires late, which errs on the safe side.
   */
  touch(entry: WindowEntry, now: number): void {
    if (now < entry.at) entry.at = now;
  }

  /**
   * The request went out at last: the entry counts from `at` (its send plus the trip's margin),
   * later or earlier than the admission-time guess. A send delayed past that guess (a transport
   * still loading, a stalled event loop) would otherwise leave our window ahead of the server's;
   * an entry that had already left the window on the guess counts again.
   */
  retime(entry: WindowEntry, at: number): void {
    entry.at = at;
    if (entry.live) return;
    entry.live = true;
    this.entries.push(entry);
    this.unpruned++;
    this.total += entry.amount;
  }

  /** Sets an entry's amount, e.g. reconciling a token estimate with the billed usage. */
  resize(entry: WindowEntry, amount: number): void {
    if (!entry.live) return;
    this.total += amount - entry.amount;
    entry.amount = amount;
  }

  /** The entries still in the window at `now`, oldest first. */
  liveEntries(now: number): readonly WindowEntry[] {
    this.prune(now);
    return this.entries.slice(this.head);
  }

  /**
   * Counts copies of `entries` (another window's, see `Limiter.absorb`) among its own, in the
   * order they leave the window, so that pruning from the oldest stays exact.
   */
  absorb(entries: readonly WindowEntry[], now: number): void {
    const merged = [...this.liveEntries(now), ...entries.map((entry) => ({ at: entry.at, amount: entry.amount, live: true }))];
    this.entries = merged.sort((a, b) => a.at - b.at);
    this.head = 0;
    this.unpruned = merged.length;
    this.total = merged.reduce((sum, entry) => sum + entry.amount, 0);
  }

  /** The earliest time at which `amount` fits, or `now` if it fits already. */
  nextFitAt(now: number, amount: number): number {
    this.prune(now);
    const needed = Math.min(amount, this.limit);
    if (this.total === 0 || this.total + needed <= this.limit) return now;
    let freed = 0;
    let expiry = now;
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i] as WindowEntry;
      freed += entry.amount;
      expiry = Math.max(expiry, entry.at + this.windowMs);
      const left = this.total - freed;
      if (left === 0 || left + needed <= this.limit) return expiry;
    }
    return expiry;
  }

  /**
   * When the oldest entry counted now leaves the window, so that `remaining` rises; null while
   * nothing is counted. The oldest in the log, as `prune` takes them.
   */
  freesAt(now: number): number | null {
    this.prune(now);
    const oldest = this.entries[this.head];
    return oldest === undefined ? null : oldest.at + this.windowMs;
  }

  private prune(now: number): void {
    const entries = this.entries;
    while (this.head < entries.length) {
      const entry = entries[this.head] as WindowEntry;
      if (entry.at + this.windowMs > now) break;
      this.total -= entry.amount;
      entry.live = false;
      this.head++;
      this.unpruned--;
    }
    if (this.head > 64 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
  }
}
