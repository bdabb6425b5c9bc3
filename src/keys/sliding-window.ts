/**
 * A sliding-window log: the sum of amounts (requests or tokens) admitted in the last `windowMs`.
 * It is exact, unlike fixed windows, so a key never exceeds its quota in any window of that
 * length, whatever the phase of the server's own window.
 */
export interface WindowEntry {
  /** When the entry counts from; only ever moved later (see `SlidingWindow.touch`). */
  at: number;
  amount: number;
  /** False once the entry has left the window. */
  live: boolean;
  /**
   * Sent but not yet answered: the server counts it from an arrival we cannot see, so it does not
   * leave the window before it is `touch`ed with its first response.
   */
  pending: boolean;
}

export class SlidingWindow {
  private entries: WindowEntry[] = [];
  private head = 0;
  private total = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {}

  /** What is left of the quota at `now`. */
  remaining(now: number): number {
    this.prune(now);
    return this.limit - this.total;
  }

  /** Whether `amount` fits at `now`. An amount above the limit fits only in an empty window. */
  fits(now: number, amount: number): boolean {
    this.prune(now);
    return this.total === 0 || this.total + Math.min(amount, this.limit) <= this.limit;
  }

  add(now: number, amount: number): WindowEntry {
    const entry: WindowEntry = { at: now, amount, live: true, pending: true };
    this.entries.push(entry);
    this.total += amount;
    return entry;
  }

  /**
   * Moves an entry to a later time. The server counts a request when it arrives, which is after
   * we sent it; counting ours from the first response byte keeps our window at or behind the
   * server's. Entries after it may now be older: they then expire late, which errs on the safe side.
   */
  touch(entry: WindowEntry, now: number): void {
    if (!entry.pending) return;
    entry.pending = false;
    if (now > entry.at) entry.at = now;
  }

  /** Sets an entry's amount, e.g. reconciling a token estimate with the billed usage. */
  resize(entry: WindowEntry, amount: number): void {
    if (!entry.live) return;
    this.total += amount - entry.amount;
    entry.amount = amount;
  }

  /** Takes back an entry that never reached the server (the attempt failed before sending). */
  remove(entry: WindowEntry): void {
    this.resize(entry, 0);
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
      // A pending entry's expiry is unknown until it is answered; the wake-up then comes from that.
      if (entry.pending) return Infinity;
      freed += entry.amount;
      expiry = Math.max(expiry, entry.at + this.windowMs);
      const left = this.total - freed;
      if (left === 0 || left + needed <= this.limit) return expiry;
    }
    return expiry;
  }

  private prune(now: number): void {
    const entries = this.entries;
    while (this.head < entries.length) {
      const entry = entries[this.head] as WindowEntry;
      if (entry.pending || entry.at + this.windowMs > now) break;
      this.total -= entry.amount;
      entry.live = false;
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
  }
}
