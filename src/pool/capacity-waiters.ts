import { Observable, type SchedulerLike } from 'rxjs';
import type { ModelEntry } from './entities.js';

/** A request's place in line for room: higher priority first, then the earlier arrival. */
export interface PlaceInLine {
  readonly priority: number;
  /** When the request first waited. */
  readonly since: number;
}

/** Whether `a` goes before `b` in line. */
export function comesBefore(a: PlaceInLine, b: PlaceInLine): boolean {
  return a.priority > b.priority || (a.priority === b.priority && a.since < b.since);
}

/** A request waiting in the admission's queue. */
export interface QueuedPlace extends PlaceInLine {
  readonly options: { readonly models: readonly string[] };
}

interface Waiter extends PlaceInLine {
  /** The models of its request's chain: room in any of them wakes it. */
  readonly models: readonly string[];
  readonly wake: () => void;
}

/** Wakes one waiter (`wake`), its place in line at hand for what it asks for meanwhile. */
export type WakeInPlace = (place: PlaceInLine, wake: () => void) => void;

/**
 * Requests refused because every model of their chain was at its concurrency limit, waiting
 * outside their caller's slot (`balance`) so that requests for other models keep every slot. When
 * an answer frees a slot of a model or its adaptive limit grows, its waiters are woken in line
 * (priority, then the time they first waited) while it has room: a woken request takes a slot
 * again and asks for a key, so the model is never left idle while requests wait for it, and nobody polls.
 */
export class CapacityWaiters {
  private readonly waiters: Waiter[] = [];

  constructor(
    private readonly scheduler: SchedulerLike,
    private readonly wakeInPlace: WakeInPlace,
  ) {}

  /**
   * Emits once, then completes, when one of `models` has room for this waiter; unsubscribing leaves
   * the line. A request that waits again (the room it was woken for was gone) gives the time it
   * first waited, and keeps its place ahead of those that came after it.
   */
  wait(models: readonly string[], since = this.scheduler.now(), priority = 0): Observable<void> {
    return new Observable<void>((subscriber) => {
      const waiter: Waiter = {
        models,
        since,
        priority,
        wake: () => {
          subscriber.next();
          subscriber.complete();
        },
      };
      let place = this.waiters.length;
      while (place > 0 && comesBefore(waiter, this.waiters[place - 1]!)) place--;
      this.waiters.splice(place, 0, waiter);
      return () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
      };
    });
  }

  /**
   * A slot of `model` freed, or its limit grew: wakes its waiters while it has room (see
   * `wakeWhileRoom`). `atOnce` (a slot an answer freed) wakes them now, before the answer goes on
   * to its caller, who may send a new request for the room as it reads it; else at the next turn
   * of the scheduler, outside the answer or acquisition being handled.
   */
  roomFor(model: ModelEntry, atOnce = false): void {
    if (this.waiters.length === 0 || model.atConcurrencyLimit) return;
    if (atOnce) this.wakeWhileRoom(model);
    else this.scheduler.schedule(() => this.wakeWhileRoom(model));
  }

  /** As `roomFor` at once, for the waiters that go before the first request of `queue` (in line) for `model` alone. */
  roomAheadOf(model: ModelEntry, queue: readonly QueuedPlace[]): void {
    if (this.waiters.length === 0 || model.atConcurrencyLimit) return;
    this.wakeWhileRoom(
      model,
      queue.find((queued) => queued.options.models.includes(model.model)),
    );
  }

  /**
   * Wakes the waiters of `model` (before `place` in line, if given) in line, each once, until it
   * has no room left: a waiter that cannot take the room now (its caller's slots are all busy, or
   * it took another model of its chain) leaves it to the next, instead of the model idling until
   * someone looks again; one that finds no key waits in the queue, in its place in line.
   */
  private wakeWhileRoom(model: ModelEntry, place?: PlaceInLine): void {
    const candidates = this.waiters.filter((waiter) => waiter.models.includes(model.model));
    for (const waiter of candidates) {
      if (model.atConcurrencyLimit || (place !== undefined && !comesBefore(waiter, place))) return;
      const index = this.waiters.indexOf(waiter);
      // It left the line meanwhile (woken by another model of its chain, or timed out).
      if (index < 0) continue;
      this.waiters.splice(index, 1);
      this.wakeInPlace(waiter, waiter.wake);
    }
  }
}
