import { Observable, type SchedulerLike, type Subscription } from 'rxjs';
import type { ModelEntry } from './entities.js';

/** A request's place in line for room: higher priority first, then the earlier arrival. */
export interface PlaceInLine {
  readonly priority: number;
  /** When the request first waited. */
  readonly since: number;
  /** Its number among arrivals of the same instant (a batch taken in at once), where its caller counts them. */
  readonly arrival?: number;
}

/** Whether `a` goes before `b` in line. */
export function comesBefore(a: PlaceInLine, b: PlaceInLine): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.since !== b.since) return a.since < b.since;
  return a.arrival !== undefined && b.arrival !== undefined && a.arrival < b.arrival;
}

/** Puts `place` into `line` (in line order) at its place, behind those it does not go before. */
export function insertInLine<P extends PlaceInLine>(line: P[], place: P): void {
  let at = line.length;
  while (at > 0 && comesBefore(place, line[at - 1]!)) at--;
  line.splice(at, 0, place);
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

/**
 * Requests refused because every model of their chain was at its concurrency limit, waiting
 * outside their caller's slot (`balance`) so that requests for other models keep every slot. When
 * an answer frees a slot of a model or its adaptive limit grows, the room goes to those in line
 * for it, in the admission's queue or here, by priority then the time each first waited: a woken
 * request takes a slot again and asks for a key, so the model is never left idle while requests
 * wait for it, and nobody polls.
 */
export class CapacityWaiters {
  private readonly waiters: Waiter[] = [];
  /** Models whose room is served at the next turn (see `serveSoon`), and the task that serves them. */
  private readonly toServe = new Set<ModelEntry>();
  private serving: Subscription | undefined;

  constructor(
    private readonly scheduler: SchedulerLike,
    /** The admission's queue, in line. */
    private readonly queue: readonly QueuedPlace[],
    /** Admits from the queue while keys and models have room. */
    private readonly drainQueue: () => void,
  ) {}

  /**
   * Emits once, then completes, when one of `models` has room for this waiter; unsubscribing leaves
   * the line. A request that waits again (the room it was woken for was gone) gives the time it
   * first waited, and keeps its place ahead of those that came after it.
   */
  wait(models: readonly string[], since = this.scheduler.now(), priority = 0, arrival?: number): Observable<void> {
    return new Observable<void>((subscriber) => {
      const waiter: Waiter = {
        models,
        since,
        priority,
        arrival,
        wake: () => {
          subscriber.next();
          subscriber.complete();
        },
      };
      insertInLine(this.waiters, waiter);
      return () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
      };
    });
  }

  /**
   * Room at `model` (a slot an answer freed), now, in line: the waiters that go before the queue's
   * first request for it ask for a key first (taking their places in the queue if they find none),
   * then the queue is drained, then the other waiters are woken while it has room. Each takes it
   * now: a turn later, a request its caller sends on reading this answer would take it first; and
   * were the queue served first, one that always held a request for the model would take all its room.
   */
  serve(model: ModelEntry): void {
    if (this.wakeAheadOfQueue(model) && !model.atConcurrencyLimit) {
      // One woken did not ask for it at once: its caller's slots are busy, often only until the
      // answer that made this room is delivered. The queue waits a turn for it, no longer.
      this.serveSoon(model);
      return;
    }
    this.drainQueue();
    this.wakeWhileRoom(model);
  }

  /**
   * As `serve`, at the next turn of the scheduler, for room freed where nobody may be woken now (a
   * teardown, an answer being handled): the models of one turn are served together.
   */
  serveSoon(model: ModelEntry): void {
    if (this.waiters.length === 0 && this.queue.length === 0) return;
    this.toServe.add(model);
    if (this.serving !== undefined) return;
    let served = false;
    const serving = this.scheduler.schedule(() => {
      served = true;
      this.serving = undefined;
      const models = [...this.toServe];
      this.toServe.clear();
      for (const each of models) this.wakeAheadOfQueue(each);
      this.drainQueue();
      for (const each of models) this.wakeWhileRoom(each);
    });
    // A scheduler that runs the task at once (`queueScheduler`) has served the room already.
    if (!served) this.serving = serving;
  }

  /** The pool is closing: nothing is served any more (its waiters hear of the disposal themselves). */
  close(): void {
    this.serving?.unsubscribe();
    this.serving = undefined;
    this.toServe.clear();
  }

  /**
   * Wakes the waiters for `model` that go before the first request of the queue for it; returns
   * whether one of them did not ask for a key for it at once.
   */
  private wakeAheadOfQueue(model: ModelEntry): boolean {
    if (this.waiters.length === 0) return false;
    return this.wakeWhileRoom(
      model,
      this.queue.find((queued) => queued.options.models.includes(model.model)),
    );
  }

  /**
   * Wakes the waiters of `model` (before `place` in line, if given) in line, each once, until it
   * has no room left: a waiter that cannot take the room now (its caller's slots are all busy, or
   * it took another model of its chain) leaves it to the next, instead of the model idling until
   * someone looks again; one that finds no key waits in the queue, in its place in line. Returns
   * whether one did not ask for a key for `model` at once.
   */
  private wakeWhileRoom(model: ModelEntry, place?: PlaceInLine): boolean {
    let notAsked = false;
    if (this.waiters.length === 0) return notAsked;
    const candidates = this.waiters.filter((waiter) => waiter.models.includes(model.model));
    for (const waiter of candidates) {
      if (model.atConcurrencyLimit || (place !== undefined && !comesBefore(waiter, place))) break;
      const index = this.waiters.indexOf(waiter);
      // It left the line meanwhile (woken by another model of its chain, or timed out).
      if (index < 0) continue;
      this.waiters.splice(index, 1);
      // Asking for a key takes a slot of the model or a place in the queue.
      const asked = model.inFlight + this.queue.length;
      waiter.wake();
      notAsked ||= model.inFlight + this.queue.length === asked;
    }
    return notAsked;
  }
}
