import { Observable, type SchedulerLike, type Subscription } from 'rxjs';
import { scheduleAfter } from '../core/timers.js';
import { comesBefore, type PlaceInLine } from '../pool/capacity-waiters.js';

interface QuotaWaiter extends PlaceInLine {
  /** The models of its request's chain. */
  readonly models: readonly string[];
  /** When it looks again, at the latest. */
  readonly dueAt: number;
  readonly wake: () => void;
}

/**
 * The requests of one `balance` subscription waiting, outside their slots, for their models' own
 * quotas (a per-model quota, the account's free-model bucket) to have room. Each says when it
 * would look again; when one is due, every waiter sharing a model with it looks again too, in line
 * (priority, then arrival): they take their slots back and enter the admission's queue in that
 * order. A timer of its own per waiter would let whichever looked first after the window turned
 * take the room, and a request with an unlucky phase lose it window after window until it gave up.
 */
export class QuotaWaitLine {
  private readonly waiters: QuotaWaiter[] = [];
  private timer: Subscription | undefined;
  private timerDueAt = Infinity;

  constructor(private readonly scheduler: SchedulerLike) {}

  /** Emits once, then completes, when the waiter should look again (within `afterMs`); unsubscribing leaves the line. */
  wait(place: PlaceInLine, models: readonly string[], afterMs: number): Observable<void> {
    return new Observable<void>((subscriber) => {
      const waiter: QuotaWaiter = {
        priority: place.priority,
        since: place.since,
        ...(place.arrival === undefined ? {} : { arrival: place.arrival }),
        models,
        dueAt: this.scheduler.now() + afterMs,
        wake: () => {
          subscriber.next();
          subscriber.complete();
        },
      };
      const { waiters } = this;
      let index = waiters.length;
      while (index > 0 && comesBefore(waiter, waiters[index - 1]!)) index--;
      waiters.splice(index, 0, waiter);
      this.armFor(waiter.dueAt);
      return () => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        if (this.waiters.length === 0) this.disarm();
      };
    });
  }

  private armFor(dueAt: number): void {
    if (dueAt >= this.timerDueAt) return;
    this.disarm();
    this.timerDueAt = dueAt;
    this.timer = scheduleAfter(this.scheduler, dueAt - this.scheduler.now(), () => this.wakeDue());
  }

  private disarm(): void {
    this.timer?.unsubscribe();
    this.timer = undefined;
    this.timerDueAt = Infinity;
  }

  /** Wakes, in line, the waiters due and every waiter sharing a model with one of them. */
  private wakeDue(): void {
    this.timer = undefined;
    this.timerDueAt = Infinity;
    const now = this.scheduler.now();
    const dueModels = new Set<string>();
    for (const waiter of this.waiters) if (waiter.dueAt <= now) for (const model of waiter.models) dueModels.add(model);
    const woken: QuotaWaiter[] = [];
    const staying: QuotaWaiter[] = [];
    for (const waiter of this.waiters) (waiter.models.some((model) => dueModels.has(model)) ? woken : staying).push(waiter);
    // Those woken may wait again at once (their room still a window away), joining the line anew.
    this.waiters.splice(0, this.waiters.length, ...staying);
    for (const waiter of staying) this.armFor(waiter.dueAt);
    for (const waiter of woken) waiter.wake();
  }
}
