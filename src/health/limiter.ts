import type { LimitsConfig } from './limits.js';
import { nextUtcMidnight, UtcDayWindow } from './utc-day-window.js';
import type { LearnedQuota, QuotaSeed, QuotaSource } from './learned-quota.js';
import type { QuotaRemaining } from './records.js';
import { SlidingWindow, type EntryHandle, type WindowEntry } from './sliding-window.js';

const MINUTE_MS = 60_000;
/** How far the server's midnight may be from ours and still be taken for it (clocks drift, some by minutes). */
const DAY_BOUNDARY_SKEW_MS = 60 * MINUTE_MS;

type Window = SlidingWindow | UtcDayWindow;

/**
 * A sure room as a small integer: any room from `MAX_SMALL_ROOM` up counts as that much, and no
 * room (a window past its limit, or one that wants pruning) as -1. `fits` then answers more
 * requests the long way, and none wrongly, while V8 keeps the two fields in the limiter itself: a
 * field that has ever held `Infinity` holds a boxed number, one more line of memory to read for
 * every key a strategy samples.
 */
const MAX_SMALL_ROOM = 1_000_000_000;

function smallRoom(room: number): number {
  if (room >= MAX_SMALL_ROOM) return MAX_SMALL_ROOM;
  return room < 0 ? -1 : Math.floor(room);
}

interface QuotaWindow {
  readonly unit: 'requests' | 'tokens';
  readonly window: Window;
  readonly source: QuotaSource;
  /** For a learned quota, its bucket. */
  readonly bucket?: string;
}

/**
 * What one admitted attempt holds in a limiter, to adjust or give back later: its entry in each
 * window the limiter had when it was taken (the limiter replaces its windows array when it
 * learns, never changes one in place), as the entry's handle and what it counts, as last set while
 * it was in the window (an entry that left the window before its request went out counts that
 * again, see `SlidingWindow.retime`).
 *
 * A class, its first window's entry in fields and the others' (a limiter of several quotas) in an
 * array made only then, never a literal or an array per hold: V8 moves the allocation site of a
 * literal or an array to the old generation once most of what it makes lives long, as the holds
 * of requests in flight do, and then every hold, even one released at once, is born there. With an
 * array per hold a pick at 1,000 keys took 1.36× as long (`bench/ab-pick.ts`; the same under
 * `--no-allocation-site-pretenuring`).
 */
export class LimiterHold {
  #handle = 0;
  #amount = 0;
  /** From the second window on, two numbers per window: the entry's handle, and what it counts. */
  #others: number[] | undefined = undefined;

  constructor(
    readonly limiter: Limiter,
    readonly windows: readonly QuotaWindow[],
  ) {}

  /** The handle of the entry in `windows[index]`. */
  handleAt(index: number): EntryHandle {
    return index === 0 ? this.#handle : this.#others![2 * index - 2]!;
  }

  /** What the entry in `windows[index]` counts. */
  amountAt(index: number): number {
    return index === 0 ? this.#amount : this.#others![2 * index - 1]!;
  }

  set(index: number, handle: EntryHandle, amount: number): void {
    if (index === 0) {
      this.#handle = handle;
      this.#amount = amount;
      return;
    }
    this.#others ??= new Array<number>(2 * this.windows.length - 2);
    this.#others[2 * index - 2] = handle;
    this.#others[2 * index - 1] = amount;
  }
}

/**
 * The quotas (requests and tokens per window) and the concurrency cap of one scope: a key, an
 * account, or a model within an account. Configured quotas come from the config; learned ones
 * (`learn`) are added while the pool runs and are enforced the same way, on top.
 */
export class Limiter {
  private readonly configured: QuotaWindow[] = [];
  /** By bucket: the quota as learned, and the window that enforces it. */
  private readonly learned = new Map<string, { quota: LearnedQuota; window: QuotaWindow }>();
  /** Configured and learned windows: what `fits` checks and `take` counts in. */
  private windows: QuotaWindow[];
  readonly maxConcurrent: number | null;
  inFlight = 0;
  /**
   * How many more requests, and tokens, every window has room for whatever the time (see
   * `SlidingWindow.sureRoom`), kept as the windows fill: `fits` answers from this object alone while
   * they suffice (as small integers: see `smallRoom`). At 1,000 keys each window of a sampled key read
   * is one more line of memory to fetch.
   */
  private sureRequests = 0;
  private sureTokens = 0;

  constructor(
    limits: LimitsConfig,
    readonly scope: QuotaRemaining['scope'],
    readonly model?: string,
  ) {
    const configure = (unit: QuotaWindow['unit'], limit: number, windowMs: number) =>
      this.configured.push({ unit, window: new SlidingWindow(limit, windowMs), source: 'configured' });
    if (limits.rpm !== undefined) configure('requests', limits.rpm, MINUTE_MS);
    if (limits.tpm !== undefined) configure('tokens', limits.tpm, MINUTE_MS);
    for (const quota of limits.quotas ?? []) {
      if (quota.requests !== undefined) configure('requests', quota.requests, quota.windowMs);
      if (quota.tokens !== undefined) configure('tokens', quota.tokens, quota.windowMs);
    }
    this.windows = this.configured;
    this.maxConcurrent = limits.maxConcurrent ?? null;
    this.refreshSureRoom();
  }

  /** Whether it limits anything at all; limiters that don't (and have learned nothing) are skipped on the hot path. */
  get isBounded(): boolean {
    return this.windows.length > 0 || this.maxConcurrent !== null;
  }

  get hasConcurrencyRoom(): boolean {
    return this.maxConcurrent === null || this.inFlight < this.maxConcurrent;
  }

  fits(now: number, tokens: number): boolean {
    if (!this.hasConcurrencyRoom) return false;
    if (this.sureRequests >= 1 && this.sureTokens >= tokens) return true;
    // Indexed loops here and in `take`: they run for every key a strategy samples.
    const windows = this.windows;
    let fits = true;
    for (let index = 0; index < windows.length && fits; index++) {
      const quota = windows[index]!;
      fits = quota.window.fits(now, quota.unit === 'requests' ? 1 : tokens);
    }
    // The windows it checked were pruned on the way: their room may have grown.
    this.refreshSureRoom();
    return fits;
  }

  /** Recounts `sureRequests` and `sureTokens`; after anything that may have changed a window's count or limit. */
  private refreshSureRoom(): void {
    let requests = Infinity;
    let tokens = Infinity;
    const windows = this.windows;
    for (let index = 0; index < windows.length; index++) {
      const quota = windows[index]!;
      if (quota.unit === 'requests') requests = Math.min(requests, quota.window.sureRoom);
      else tokens = Math.min(tokens, quota.window.sureRoom);
    }
    this.sureRequests = smallRoom(requests);
    this.sureTokens = smallRoom(tokens);
  }

  /** Takes a slot and counts the attempt in every window from `countFrom` (see `SlidingWindow.add`). */
  take(countFrom: number, tokens: number): LimiterHold {
    this.inFlight++;
    const windows = this.windows;
    const hold = new LimiterHold(this, windows);
    for (let index = 0; index < windows.length; index++) {
      const quota = windows[index]!;
      const amount = quota.unit === 'requests' ? 1 : tokens;
      hold.set(index, quota.window.add(countFrom, amount), amount);
    }
    this.refreshSureRoom();
    return hold;
  }

  /** Drops the entries that have left their windows at `now` (what `fits` does as it checks). */
  prune(now: number): void {
    for (const { window } of this.windows) window.remaining(now);
    this.refreshSureRoom();
  }

  /** Frees the concurrency slot; the quota entries stay until they leave their windows. */
  release(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  touch(hold: LimiterHold, now: number): void {
    for (let index = 0; index < hold.windows.length; index++) hold.windows[index]!.window.touch(hold.handleAt(index), now);
  }

  /** The attempt went out: its entries count from `at` (see `SlidingWindow.retime`). */
  retime(hold: LimiterHold, at: number): void {
    for (let index = 0; index < hold.windows.length; index++) {
      const amount = hold.amountAt(index);
      hold.set(index, hold.windows[index]!.window.retime(hold.handleAt(index), at, amount), amount);
    }
    // An entry that had left its window on the guess counts again.
    this.refreshSureRoom();
  }

  /** Replaces the token estimate with the billed count. */
  reconcileTokens(hold: LimiterHold, tokens: number): void {
    for (let index = 0; index < hold.windows.length; index++) {
      if (hold.windows[index]!.unit === 'tokens') this.resize(hold, index, tokens);
    }
    this.refreshSureRoom();
  }

  /** The server refused the attempt without counting it (a platform 429): it leaves every window. */
  refund(hold: LimiterHold): void {
    for (let index = 0; index < hold.windows.length; index++) this.resize(hold, index, 0);
    this.refreshSureRoom();
  }

  /** Sets what the hold's entry in its `index`th window counts, if it is still in it. */
  private resize(hold: LimiterHold, index: number, amount: number): void {
    if (hold.windows[index]!.window.resize(hold.handleAt(index), amount)) hold.set(index, hold.handleAt(index), amount);
  }

  /**
   * Adds a learned request quota, or replaces the one learned for the same bucket. A new window
   * starts with `sendTimes` (when the server had counted this pool's sends to the scope at the
   * latest, oldest first), none leaving before the server's oldest count does at its reset; with a
   * `seed` (the server's word at a 429) what the server counted beyond them (other senders) fills
   * the rest until the reset, so the window opens as the server's does, one send at a time,
   * instead of all at once. Without a seed (a re-probe, or a quota another pool learned) an
   * existing window keeps its entries under the new limit.
   */
  learn(quota: LearnedQuota, now: number, seed?: QuotaSeed, sendTimes: readonly number[] = []): void {
    const existing = this.learned.get(quota.bucket);
    const sameWindow = existing !== undefined && existing.quota.windowMs === quota.windowMs && existing.quota.calendar === quota.calendar;
    if (existing !== undefined && sameWindow && seed === undefined) {
      existing.window.window.limit = quota.requests;
      this.learned.set(quota.bucket, { quota, window: Object.assign({}, existing.window, { source: quota.source }) });
    } else {
      const window = quota.calendar === 'utc-day' ? new UtcDayWindow(quota.requests) : new SlidingWindow(quota.requests, quota.windowMs);
      const since = quota.calendar === 'utc-day' ? nextUtcMidnight(now) - quota.windowMs : now - quota.windowMs;
      // All of ours in the window: more than the server counted only while some are still on their way.
      const ours = sendTimes.filter((at) => at > since);
      // The server's oldest count leaves its window at the reset: none of ours leaves ours before.
      // A day's window counts what falls on today: no seed moves it on to tomorrow (a send still
      // out counts from later than now), which would drop today's count and hold tomorrow's.
      const earliest = seed === undefined ? -Infinity : now + seed.resetAfterMs - quota.windowMs;
      const latest = quota.calendar === 'utc-day' ? nextUtcMidnight(now) - 1 : Infinity;
      for (const at of ours) window.add(Math.min(latest, Math.max(at, earliest)), 1);
      // The rest of the server's count leaves its window at the reset, at the earliest. A day's
      // count is today's only if it ends at our midnight (give or take the clocks' skew): one that
      // ends sooner is a day the server's clock has not ended yet, and ours already has.
      if (seed !== undefined && (quota.calendar !== 'utc-day' || now + seed.resetAfterMs >= nextUtcMidnight(now) - DAY_BOUNDARY_SKEW_MS)) {
        const counted = Math.max(0, quota.requests - seed.remaining);
        const othersFrom = Math.min(latest, Math.max(since, Math.min(now, earliest)));
        for (let index = ours.length; index < counted; index++) window.add(othersFrom, 1);
      }
      this.learned.set(quota.bucket, { quota, window: { unit: 'requests', window, source: quota.source, bucket: quota.bucket } });
    }
    this.rebuildWindows();
  }

  /**
   * Counts what `other` (a key's old account scope) holds in its windows in this limiter's windows
   * of the same unit, length and kind as well: the key's sends there were the server's count of
   * this scope all along.
   */
  absorb(other: Limiter, now: number): void {
    for (const quota of this.windows) {
      const twin = other.windows.find(
        (candidate) =>
          candidate.unit === quota.unit &&
          candidate.window.windowMs === quota.window.windowMs &&
          candidate.window instanceof SlidingWindow === quota.window instanceof SlidingWindow,
      );
      if (twin !== undefined) quota.window.absorb(twin.window.liveEntries(now), now);
    }
    this.refreshSureRoom();
  }

  /** What the window of the quota learned for `bucket` holds now, oldest first: what a shared store's window of it starts with. */
  learnedEntries(bucket: string, now: number): readonly WindowEntry[] {
    return this.learned.get(bucket)?.window.window.liveEntries(now) ?? [];
  }

  /** Drops the quota learned for `bucket` (an assumed one its scope has passed). */
  unlearn(bucket: string): void {
    if (this.learned.delete(bucket)) this.rebuildWindows();
  }

  private rebuildWindows(): void {
    this.windows = [...this.configured, ...[...this.learned.values()].map((learned) => learned.window)];
    this.refreshSureRoom();
  }

  /** The learned request quotas, as `learn` took them. */
  learnedQuotas(): LearnedQuota[] {
    return [...this.learned.values()].map((learned) => learned.quota);
  }

  /** The earliest time the quotas admit `tokens` (concurrency aside). */
  nextFitAt(now: number, tokens: number): number {
    let at = now;
    for (const { unit, window } of this.windows) at = Math.max(at, window.nextFitAt(now, unit === 'requests' ? 1 : tokens));
    return at;
  }

  remaining(now: number): QuotaRemaining[] {
    return this.windows.map(({ unit, window, source, bucket }) => ({
      scope: this.scope,
      unit,
      limit: window.limit,
      remaining: Math.max(0, window.remaining(now)),
      freesAt: window.freesAt(now),
      windowMs: window.windowMs,
      source,
      ...(bucket === undefined ? {} : { bucket }),
      ...(this.model === undefined ? {} : { model: this.model }),
    }));
  }
}
