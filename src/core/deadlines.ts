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
 * Many deadlines on one scheduler timer: the earliest one's. Per-attempt timeouts are armed and
 * cancelled once per request and almost never fire; a scheduler action (and a Node timer) per
 * attempt costs more than the attempt's own routing. A binary heap by due time (then order of
 * arming) holds them; a cancelled one is dropped when it reaches the top, or in a sweep once
 * cancelled ones outnumber the live, so finished attempts' 5-minute timeouts do not pile up.
 * Deadlines due at the same time fire in the order they were armed, each at its due time on the
 * scheduler, as separate timers would. When none is left, no timer is armed.
 */
export class DeadlineQueue {
  private heap: Entry[] = [];
  private cancelledCount = 0;
  private seq = 0;
  private timer: Subscription | undefined;
  private timerAt = Infinity;

  constructor(private readonly scheduler: SchedulerLike) {}

  /** Runs `work` `delayMs` from now, unless cancelled first; an infinite delay arms nothing. */
  add(delayMs: number, work: () => void): Deadline {
    const dueAt = this.scheduler.now() + (Number.isFinite(delayMs) ? Math.max(0, delayMs) : delayMs > 0 ? Infinity : 0);
    const entry = new Entry(this, dueAt, this.seq++, work);
    if (dueAt === Infinity) {
      // Never due: nothing to hold, and nothing to count when it is cancelled.
      entry.cancelled = true;
      return entry;
    }
    this.push(entry);
    if (dueAt < this.timerAt) this.arm();
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
  }

  /** Sets the timer to the earliest live deadline. */
  private arm(): void {
    this.dropCancelledTop();
    const first = this.heap[0];
    if (first === undefined) {
      this.disarm();
      return;
    }
    if (first.dueAt === this.timerAt && this.timer !== undefined) return;
    this.timer?.unsubscribe();
    this.timerAt = first.dueAt;
    this.timer = scheduleAfter(this.scheduler, first.dueAt - this.scheduler.now(), () => this.fire());
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.scheduler.now();
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
