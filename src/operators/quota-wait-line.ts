import { Observable, type SchedulerLike, type Subscription } from 'rxjs';
import { scheduleAfter } from '../core/timers.js';
import { comesBefore, insertInLine, type PlaceInLine } from '../pool/capacity-waiters.js';
import { FREE_MODELS_PATTERN, isFreeModel } from '../pool/scopes.js';

interface QuotaWaiter extends PlaceInLine {
  /** The room it waits for: its chain's models, and the account's free-model bucket for a `:free` one. */
  readonly rooms: readonly string[];
  /** When it looks again, unless the line wakes it sooner or puts it off (see `wakeDue`). */
  dueAt: number;
  /** When its wait ends: it looks then, whatever the line does. */
  readonly deadlineAt: number;
  readonly wake: () => void;
}

/**
 * The requests of one `balance` waiting, outside their slots, for their models' own quotas (a
 * per-model quota, the account's free-model bucket) to have room. Each says when it would look
 * again; when one is due, the waiters for the same room look again in line (priority, then
 * arrival), so that they take their slots back and enter the admission's queue in that order, until
 * one finds the room still more than a moment away and waits again at once: those behind it would
 * find the same, and wait on without being woken. A timer of its own per waiter let whichever
 * looked first after the window turned take the room, and a request that looked just before the
 * others lose it window after window until it gave up.
 */
export class QuotaWaitLine {
  private waiters: QuotaWaiter[] = [];
  private timer: Subscription | undefined;
  private timerDueAt = Infinity;
  /** The last waiter to join: one that joins while being woken found no room. */
  private lastJoined: QuotaWaiter | undefined;

  constructor(private readonly scheduler: SchedulerLike) {}

  /**
   * Emits once, then completes, when the waiter should look again: within `afterMs`, or later if
   * one ahead of it in line for the same room has just found none, but never past `deadlineMs`.
   * Unsubscribing leaves the line.
   */
  wait(place: PlaceInLine, models: readonly string[], afterMs: number, deadlineMs: number): Observable<void> {
    return new Observable<void>((subscriber) => {
      const now = this.scheduler.now();
      const waiter: QuotaWaiter = {
        priority: place.priority,
        since: place.since,
        ...(place.arrival === undefined ? {} : { arrival: place.arrival }),
        rooms: roomsOf(models),
        dueAt: now + Math.min(afterMs, deadlineMs),
        deadlineAt: now + deadlineMs,
        wake: () => {
          subscriber.next();
          subscriber.complete();
        },
      };
      insertInLine(this.waiters, waiter);
      this.lastJoined = waiter;
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

  /**
   * Wakes, in line, the waiters for the room of those due (and those whose wait ends), until one
   * waits again at once; the rest of that room's line looks again when that one does.
   */
  private wakeDue(): void {
    this.timer = undefined;
    this.timerDueAt = Infinity;
    const now = this.scheduler.now();
    const dueRooms = new Set<string>();
    for (const waiter of this.waiters) if (waiter.dueAt <= now) for (const room of waiter.rooms) dueRooms.add(room);
    const called: QuotaWaiter[] = [];
    const staying: QuotaWaiter[] = [];
    for (const waiter of this.waiters)
      (waiter.deadlineAt <= now || waiter.rooms.some((room) => dueRooms.has(room)) ? called : staying).push(waiter);
    this.waiters = staying;
    // Rooms found still a window away, and when the waiter that found so looks again.
    const noRoomUntil = new Map<string, number>();
    const putOff: QuotaWaiter[] = [];
    for (const waiter of called) {
      const again = waiter.rooms.reduce((latest, room) => Math.min(latest, noRoomUntil.get(room) ?? -Infinity), Infinity);
      if (waiter.deadlineAt > now && again > now) {
        waiter.dueAt = Math.min(again, waiter.deadlineAt);
        putOff.push(waiter);
        continue;
      }
      this.lastJoined = undefined;
      waiter.wake();
      const rejoined = this.lastJoined as QuotaWaiter | undefined;
      if (rejoined !== undefined) for (const room of rejoined.rooms) noRoomUntil.set(room, rejoined.dueAt);
    }
    if (putOff.length > 0) this.waiters = mergedInLine(this.waiters, putOff);
    for (const waiter of this.waiters) this.armFor(waiter.dueAt);
  }
}

/** What a waiter for `models` waits for: each model's own quota, and the account's free-model bucket, which every `:free` model shares. */
function roomsOf(models: readonly string[]): readonly string[] {
  return models.some(isFreeModel) ? [...models, FREE_MODELS_PATTERN] : models;
}

/** Two lines, each in order, as one, in one pass (`insertInLine` per waiter would be quadratic: thousands may be put off at once). */
function mergedInLine(a: readonly QuotaWaiter[], b: readonly QuotaWaiter[]): QuotaWaiter[] {
  const merged: QuotaWaiter[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) merged.push(comesBefore(b[j]!, a[i]!) ? b[j++]! : a[i++]!);
  while (i < a.length) merged.push(a[i++]!);
  while (j < b.length) merged.push(b[j++]!);
  return merged;
}
