import type { SchedulerLike, Subscription } from 'rxjs';
import { scheduleAfter } from './timers.js';

/** A deadline's handle: cancelling it is O(1) and arms or frees no timer. */
export interface Deadline {
  cancel(): void;
}

class Entry implements Deadline {
  cancelled = false;

  constructor(
    private readonly queue: DeadlineQueue,
    readonly dueAt: number,
    readonly seq: number,
    readonly work: () => void,
  ) {}

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.queue.noteCancelled();
  }
}

/**
 * Lateness of a wake-up, in ms, from which the queue counts it as the process's own stall. Node's
 * timers are a few ms late under load; a timer later than this ran in a process whose event loop
 * was blocked (a long synchronous task, a garbage collection, a starved CPU).
 */
const STALL_THRESHOLD_MS = 100;
/** The shortest sleep between two wake-ups that measure stalls (see `DeadlineQueue`). */
const MIN_STALL_PROBE_MS = 250;
/** Late wake-ups in a row whose largest lateness is the lag that persists (see `DeadlineQueue`). */
const LAG_EPISODE_WAKE_UPS = 8;
/** The sleep after a late wake-up, to see whether the process is still late (see `DeadlineQueue`). */
const LAG_CHECK_MS = 1;
/** While deadlines are pending, the queue sleeps at most this share of the time left to the earliest. */
const STALL_PROBE_SHARE = 1 / 8;

/**
 * Many deadlines on one scheduler timer: the earliest one's. Per-attempt timeouts are armed and
 * cancelled once per request and almost never fire; a scheduler action (and a Node timer) per
 * attempt costs more than the attempt's own routing. A binary heap by due time (then order of
 * arming) holds them; a cancelled one is dropped when it reaches the top, or in a sweep once
 * cancelled ones outnumber the live, so finished attempts' 5-minute timeouts do not pile up.
 * Deadlines due at the same time fire in the order they were armed, each at its due time on the
 * scheduler, as separate timers would. When none is left, no timer is armed.
 *
 * Deadlines count the time the process was awake (`now()`), not the time that passed: when the
 * timer wakes over `STALL_THRESHOLD_MS` late, the process was stalled, and every pending deadline
 * moves by the lateness. A stalled client reads its sockets late, and Node fires the timers that
 * fell due before it reads them: without this, a long synchronous task would time out every
 * attempt in flight, answered or not, and blame healthy models for it.
 * - A stall that begins long before the earliest deadline is measured by wake-ups on the way to it,
 *   each after an eighth of the time left, and at least `MIN_STALL_PROBE_MS` apart.
 * - A stall is counted as soon as anything reads the clock after it (`now()`, as the sockets read
 *   after a stall arm new deadlines), so that deadlines armed then do not owe it.
 * - A lag that persists from one wake-up to the next (a loaded loop, a hidden browser tab that runs
 *   timers once a second or once a minute) is counted once, where it begins: a process that is late
 *   by the same lag at every wake-up reads its sockets that lag late, not that lag once per wake-up.
 *   A late wake-up is followed by one 1 ms later: on time, the lag is over, and the next stall
 *   counts whole; late again, it persists.
 * - `now()` never goes back, should the clock (a wall clock stepped back) do so.
 * On a `TestScheduler` timers are never late, and deadlines fire at their frames.
 */
export class DeadlineQueue {
  private heap: Entry[] = [];
  private cancelledCount = 0;
  private seq = 0;
  private timer: Subscription | undefined;
  /** When the timer should wake, on the scheduler's clock. */
  private timerAt = Infinity;
  /** The stalls measured so far: the scheduler's clock minus `now()`. */
  private stalledMs = 0;
  /**
   * The latenesses of the latest late wake-ups in a row, `LAG_EPISODE_WAKE_UPS` at most (none after
   * a timely one): their largest is a lag that persists, not a new stall. Of the latest few only:
   * under a loop that stays loaded a stall long past is not the measure of the next.
   */
  private readonly recentLagsMs: number[] = [];
  /** What the pending wake-up's lateness has added to `stalledMs` so far. */
  private creditedMs = 0;
  /** The latest `now()` returned. */
  private lastNow = -Infinity;

  constructor(private readonly scheduler: SchedulerLike) {}

  /** The time the process was awake: the scheduler's clock less the stalls measured, in ms; never less than before. */
  now(): number {
    const clock = this.scheduler.now();
    this.noteLateness(clock);
    const awake = clock - this.stalledMs;
    if (awake > this.lastNow) this.lastNow = awake;
    return this.lastNow;
  }

  /**
   * Runs `work` once `delayMs` of awake time from now have passed, unless cancelled first; an
   * infinite delay arms nothing.
   */
  add(delayMs: number, work: () => void): Deadline {
    const dueAt = this.now() + (Number.isFinite(delayMs) ? Math.max(0, delayMs) : delayMs > 0 ? Infinity : 0);
    const entry = new Entry(this, dueAt, this.seq++, work);
    if (dueAt === Infinity) {
      // Never due: nothing to hold, and nothing to count when it is cancelled.
      entry.cancelled = true;
      return entry;
    }
    this.push(entry);
    if (dueAt + this.stalledMs < this.timerAt) this.arm();
    return entry;
  }

  /** A deadline was cancelled before it fired (see `Entry.cancel`). */
  noteCancelled(): void {
    this.cancelledCount++;
    if (this.cancelledCount * 2 > this.heap.length) this.sweep();
  }

  /** Drops every cancelled deadline and frees the timer when nothing is left. */
  private sweep(): void {
    const live = this.heap.filter((entry) => !entry.cancelled);
    this.heap = [];
    this.cancelledCount = 0;
    for (const entry of live) this.push(entry);
    if (this.heap.length === 0) this.disarm();
  }

  private disarm(): void {
    this.timer?.unsubscribe();
    this.timer = undefined;
    this.timerAt = Infinity;
    // The lag of a wake-up before an idle spell says nothing of the next.
    this.recentLagsMs.length = 0;
  }

  /** Sets the timer to the earliest live deadline, or to a wake-up on the way to it. */
  private arm(): void {
    this.dropCancelledTop();
    const first = this.heap[0];
    if (first === undefined) {
      this.disarm();
      return;
    }
    const clock = this.scheduler.now();
    const leftMs = Math.max(0, first.dueAt + this.stalledMs - clock);
    // After a late wake-up, one right behind it tells a lag that persists (late again) from a stall that is over.
    const sleepMs = this.recentLagsMs.length > 0 ? LAG_CHECK_MS : Math.max(MIN_STALL_PROBE_MS, leftMs * STALL_PROBE_SHARE);
    const wakeAt = clock + Math.min(leftMs, sleepMs);
    if (wakeAt === this.timerAt && this.timer !== undefined) return;
    this.timer?.unsubscribe();
    this.timerAt = wakeAt;
    this.creditedMs = 0;
    this.timer = scheduleAfter(this.scheduler, wakeAt - clock, () => this.fire());
  }

  /** Counts the pending wake-up's lateness at `clock` as a stall, less the lag of the wake-up before (see the class). */
  private noteLateness(clock: number): void {
    const latenessMs = clock - this.timerAt;
    if (latenessMs < STALL_THRESHOLD_MS) return;
    // Late after late wake-ups, only what exceeds their lag is a stall.
    const creditMs = this.recentLagsMs.length === 0 ? latenessMs : Math.max(0, latenessMs - Math.max(...this.recentLagsMs));
    if (creditMs <= this.creditedMs) return;
    this.stalledMs += creditMs - this.creditedMs;
    this.creditedMs = creditMs;
  }

  private fire(): void {
    const clock = this.scheduler.now();
    this.noteLateness(clock);
    const latenessMs = clock - this.timerAt;
    // The lag of late wake-ups in a row is the largest of the latest: a jittery loaded loop adds no stall per wake-up.
    if (latenessMs < STALL_THRESHOLD_MS) this.recentLagsMs.length = 0;
    else if (this.recentLagsMs.push(latenessMs) > LAG_EPISODE_WAKE_UPS) this.recentLagsMs.shift();
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    try {
      for (;;) {
        this.dropCancelledTop();
        const first = this.heap[0];
        if (first === undefined || first.dueAt > now) break;
        this.pop();
        first.cancelled = true;
        first.work();
      }
    } finally {
      // A deadline's work that throws must not leave the others without a timer.
      this.arm();
    }
  }

  private dropCancelledTop(): void {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) {
      this.pop();
      this.cancelledCount--;
    }
  }

  private push(entry: Entry): void {
    const heap = this.heap;
    heap.push(entry);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!earlier(entry, heap[parent]!)) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = entry;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && earlier(heap[right]!, heap[left]!) ? right : left;
      if (!earlier(heap[child]!, last)) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = last;
  }
}

function earlier(a: Entry, b: Entry): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq);
}
