import { Observable, type SchedulerLike } from 'rxjs';
import type { ModelEntry } from './entities.js';

interface Waiter {
  /** The models of its request's chain: room in any of them wakes it. */
  readonly models: readonly string[];
  /** When its request first found them at their limits: its place in the line. */
  readonly since: number;
  readonly wake: () => void;
}

/**
 * Requests refused because every model of their chain was at its concurrency limit, waiting
 * outside their caller's slot (`balance`) so that requests for other models keep every slot. When
 * an answer frees a slot of a model or its adaptive limit grows, its waiters are woken in the order
 * they first waited, while it has room: a woken request takes a slot again and asks for a key, so
 * the model is never left idle while requests wait for it, and nobody polls.
 */
export class CapacityWaiters {
  private readonly waiters: Waiter[] = [];

  constructor(private readonly scheduler: SchedulerLike) {}

  /**
   * Emits once, then completes, when one of `models` has room for this waiter; unsubscribing leaves
   * the line. A request that waits again (the room it was woken for was gone) gives the time it
   * first waited, and keeps its place ahead of those that came after it.
   */
  wait(models: readonly string[], since = this.scheduler.now()): Observable<void> {
    return new Observable<void>((subscriber) => {
      const waiter: Waiter = {
        models,
        since,
        wake: () => {
          subscriber.next();
          subscriber.complete();
        },
      };
      let place = this.waiters.length;
      while (place > 0 && this.waiters[place - 1]!.since > since) place--;
      this.waiters.splice(place, 0, waiter);
      return () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
      };
    });
  }

  /**
   * A slot of `model` freed, or its limit grew: wakes its waiters while it has room (see
   * `wakeWhileRoom`). `atOnce` (a slot an answer freed, the admission's own queue served first)
   * wakes them now, before the answer goes on to its caller, who may send a new request for the
   * room as it reads it; else at the next turn of the scheduler, outside the answer or acquisition
   * being handled.
   */
  roomFor(model: ModelEntry, atOnce = false): void {
    if (this.waiters.length === 0 || model.atConcurrencyLimit) return;
    if (atOnce) this.wakeWhileRoom(model, Infinity);
    else this.scheduler.schedule(() => this.wakeWhileRoom(model, Infinity));
  }

  /** When the oldest waiter of `model` first waited; undefined when nobody waits for it. */
  oldestWaitingFor(model: string): number | undefined {
    return this.waiters.find((waiter) => waiter.models.includes(model))?.since;
  }

  /** As `roomFor` at once, for the waiters that first waited before `before` alone. */
  roomForThoseBefore(model: ModelEntry, before: number): void {
    if (!model.atConcurrencyLimit) this.wakeWhileRoom(model, before);
  }

  /**
   * Wakes the waiters of `model` that first waited before `before`, oldest first, each once, until
   * it has no room left: a waiter that cannot take the room now (its caller's slots are all busy,
   * or it took another model of its chain) leaves it to the next, instead of the model idling
   * until someone looks again.
   */
  private wakeWhileRoom(model: ModelEntry, before: number): void {
    const candidates = this.waiters.filter((waiter) => waiter.since < before && waiter.models.includes(model.model));
    for (const waiter of candidates) {
      if (model.atConcurrencyLimit) return;
      const index = this.waiters.indexOf(waiter);
      // It left the line meanwhile (woken by another model of its chain, or timed out).
      if (index < 0) continue;
      this.waiters.splice(index, 1);
      waiter.wake();
    }
  }
}
