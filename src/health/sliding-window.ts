/**
 * A sliding-window log: the sum of amounts (requests or tokens) admitted in the last `windowMs`.
 * It is exact, unlike fixed windows, so a key never exceeds its quota in any window of that
 * length, whatever the phase of the server's own window.
 */

/** An entry as a window reports it: for another window to absorb, or a shared store to start from. */
export interface WindowEntry {
  /** When the entry counts from (see `SlidingWindow.add` and `touch`). */
  readonly at: number;
  readonly amount: number;
}

/**
 * What names an entry a window added, for the attempt that holds it to adjust it later: every
 * entry ever added has its own, so that one that has left the window is known for it.
 */
export type EntryHandle = number;

/**
 * How many entries a window may hold unpruned while it answers `fits` without pruning: entries
 * whose amount was reconciled down to 0 add nothing to the total, and would otherwise pile up.
 */
const MAX_UNPRUNED = 1_024;

/** Numbers per entry in a log: when it counts from, and its amount. */
const AT = 0;
const AMOUNT = 1;
const FIELDS = 2;

export class SlidingWindow {
  /**
   * The entries, oldest first from `head`, as numbers side by side, not objects: every admission
   * adds one, which stays a window's length (a minute, or more), and as objects a pick at 1,000
   * keys took 1.34× as long (`bench/ab-pick.ts`).
   */
  private log: number[] = [];
  /** Entries before this one (in entries, not numbers) have left the window. */
  private head = 0;
  /** The handle of the log's first entry: pruned entries dropped from the log keep the handles of those behind them. */
  private firstHandle = 0;
  /**
   * Copies of another window's entries (see `absorb`), in the order they leave the window. Kept
   * apart from `log`, whose entries attempts hold by their place in it: nothing holds a copy.
   */
  private absorbed: number[] = [];
  private absorbedHead = 0;
  private total = 0;
  /** Entries in both logs not pruned yet, kept here so that `fits` reads this object alone. */
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
  add(countFrom: number, amount: number): EntryHandle {
    const log = this.log;
    const end = log.length;
    log[end + AT] = countFrom;
    log[end + AMOUNT] = amount;
    this.unpruned++;
    this.total += amount;
    return this.firstHandle + end / FIELDS;
  }

  /** Where the entry of `handle` is in `log`, or -1 once it has left the window. */
  private offsetOf(handle: EntryHandle): number {
    const index = handle - this.firstHandle;
    return index >= this.head && index * FIELDS < this.log.length ? index * FIELDS : -1;
  }

  /**
   * The first response byte arrived at `now`: the request reached the server before then, so the
   * entry may count from `now` if that is earlier than the margin assumed. An entry moved earlier
   * than others ahead of it expires late, which errs on the safe side.
   */
  touch(handle: EntryHandle, now: number): void {
    const offset = this.offsetOf(handle);
    if (offset >= 0 && now < this.log[offset + AT]!) this.log[offset + AT] = now;
  }

  /**
   * The request went out at last: the entry counts from `at` (its send plus the trip's margin),
   * later or earlier than the admission-time guess. A send delayed past that guess (a transport
   * still loading, a stalled event loop) would otherwise leave our window ahead of the server's;
   * an entry that had already left the window on the guess counts again, with `amount` (what it
   * counted when it left), under the handle returned.
   */
  retime(handle: EntryHandle, at: number, amount: number): EntryHandle {
    const offset = this.offsetOf(handle);
    if (offset < 0) return this.add(at, amount);
    this.log[offset + AT] = at;
    return handle;
  }

  /** Sets an entry's amount, e.g. reconciling a token estimate with the billed usage; false (and nothing done) once it has left the window. */
  resize(handle: EntryHandle, amount: number): boolean {
    const offset = this.offsetOf(handle);
    if (offset < 0) return false;
    this.total += amount - this.log[offset + AMOUNT]!;
    this.log[offset + AMOUNT] = amount;
    return true;
  }

  /** The entries still in the window at `now`, in the order they leave it. */
  liveEntries(now: number): readonly WindowEntry[] {
    this.prune(now);
    const entries: WindowEntry[] = [];
    this.inExpiryOrder((at, amount) => {
      entries.push({ at, amount });
      return false;
    });
    return entries;
  }

  /**
   * Counts copies of `entries` (another window's, see `Limiter.absorb`), in the order they leave
   * the window with the copies it holds already, so that pruning from the oldest stays exact.
   */
  absorb(entries: readonly WindowEntry[], now: number): void {
    this.prune(now);
    const copies: WindowEntry[] = [];
    for (let offset = this.absorbedHead * FIELDS; offset < this.absorbed.length; offset += FIELDS) {
      copies.push({ at: this.absorbed[offset + AT]!, amount: this.absorbed[offset + AMOUNT]! });
    }
    // A loop, not `push(...entries)`: a window of tokens may hold more entries than a call takes arguments.
    for (const entry of entries) {
      copies.push(entry);
      this.total += entry.amount;
    }
    copies.sort((a, b) => a.at - b.at);
    this.unpruned += entries.length;
    this.absorbed = copies.flatMap((entry) => [entry.at, entry.amount]);
    this.absorbedHead = 0;
  }

  /** The earliest time at which `amount` fits, or `now` if it fits already. */
  nextFitAt(now: number, amount: number): number {
    this.prune(now);
    const needed = Math.min(amount, this.limit);
    if (this.total === 0 || this.total + needed <= this.limit) return now;
    let freed = 0;
    let expiry = now;
    this.inExpiryOrder((at, entryAmount) => {
      freed += entryAmount;
      expiry = Math.max(expiry, at + this.windowMs);
      const left = this.total - freed;
      return left === 0 || left + needed <= this.limit;
    });
    return expiry;
  }

  /**
   * When the oldest entry counted now leaves the window, so that `remaining` rises; null while
   * nothing is counted. The first of either log, as `prune` takes them.
   */
  freesAt(now: number): number | null {
    this.prune(now);
    let oldest = Infinity;
    this.inExpiryOrder((at) => {
      oldest = at;
      return true;
    });
    return oldest === Infinity ? null : oldest + this.windowMs;
  }

  /**
   * Calls `visit` with every entry still counted, both logs merged by when they count from, until
   * it returns true. Each log is taken in its own order, as `prune` takes it.
   */
  private inExpiryOrder(visit: (at: number, amount: number) => boolean): void {
    const { log, absorbed } = this;
    let own = this.head * FIELDS;
    let copy = this.absorbedHead * FIELDS;
    while (own < log.length || copy < absorbed.length) {
      const takeOwn = copy >= absorbed.length || (own < log.length && log[own + AT]! <= absorbed[copy + AT]!);
      const offset = takeOwn ? own : copy;
      const from = takeOwn ? log : absorbed;
      if (takeOwn) own += FIELDS;
      else copy += FIELDS;
      if (visit(from[offset + AT]!, from[offset + AMOUNT]!)) return;
    }
  }

  private prune(now: number): void {
    const head = this.leftSince(this.log, this.head, now);
    this.head = head;
    // More than half the log has left: it is copied without them, their handles passing to `firstHandle`.
    if (head > 64 && head * FIELDS * 2 > this.log.length) {
      this.log = this.log.slice(head * FIELDS);
      this.firstHandle += head;
      this.head = 0;
    }
    this.absorbedHead = this.leftSince(this.absorbed, this.absorbedHead, now);
    if (this.absorbedHead * FIELDS === this.absorbed.length && this.absorbedHead > 0) {
      this.absorbed = [];
      this.absorbedHead = 0;
    }
  }

  /** Uncounts the entries of `log` from `head` on that have left the window at `now`; returns the first still in it. */
  private leftSince(log: readonly number[], head: number, now: number): number {
    let first = head;
    while (first * FIELDS < log.length && log[first * FIELDS + AT]! + this.windowMs <= now) {
      this.total -= log[first * FIELDS + AMOUNT]!;
      this.unpruned--;
      first++;
    }
    return first;
  }
}
