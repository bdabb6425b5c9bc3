import { Observable, type Subscription, type OperatorFunction, type Subscriber } from 'rxjs';
import { keptUnless } from '../core/subscriptions.js';

/** The concurrency slot one input's work holds in `mergeWithSlots`. */
export interface Slot {
  /**
   * Gives the slot up while the work waits on something this gate does not control (a model out
   * of service), so that another input can run meanwhile. Idempotent. `forRoom`: the work waits
   * for room at a limit that is being served (a model at its concurrency limit); see `mergeWithSlots`.
   */
  release(forRoom?: boolean): void;
  /**
   * Emits once, then completes, when the work holds a slot again: at once if it still holds one,
   * else as soon as one frees, before any input that has not started yet. Unsubscribing gives up
   * the place in line.
   */
  reacquire(): Observable<void>;
}

/**
 * `mergeMap` with a concurrency cap whose slots the running work can step out of and back into.
 * `project` gets each input with its `Slot`; at most `concurrency` inputs hold a slot at once.
 * Work that resumes goes before inputs that have not started, so stepping aside never costs a
 * request its place. While `concurrency` works wait aside for room at a limit being served, an
 * input that `waitsForRoom` says would wait for such room too is held back in the line of inputs,
 * and the next one that would not starts instead (looking at most `LOOK_AHEAD` inputs ahead):
 * each held-back input would be refused the room at once, step aside and start the next, and a
 * whole batch would leave the line of inputs at once, to wait for the room outside it in the order
 * the refusals came, its queue timeouts running from then. A work that waits for a model out of
 * service holds nothing back. Work that ends synchronously starts the next input from a loop, not from a
 * nested call, so thousands of inputs refused in a row do not grow the stack.
 */
export function mergeWithSlots<T, R>(
  project: (value: T, slot: Slot) => Observable<R>,
  concurrency: number,
  waitsForRoom: (value: T) => boolean = () => false,
): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      const gate = new SlotGate(project, concurrency, waitsForRoom, subscriber);
      const input = source.subscribe(gate);
      return () => {
        input.unsubscribe();
        gate.stop();
      };
    });
}

/** How many inputs not started the gate looks through for one that would not wait for room (see `mergeWithSlots`). */
const LOOK_AHEAD = 64;

/** Marks an input started out of turn, in the line of inputs. */
const STARTED: unique symbol = Symbol('started');

/** One subscription of `mergeWithSlots`: the inputs waiting, the work running, the slots held. It observes the inputs. */
class SlotGate<T, R> {
  // Inputs not started yet, read from `waitingHead` (never a `STARTED` mark): `shift()` would copy
  // the array for every input, quadratic in a batch of thousands piped in at once.
  private waiting: Array<T | typeof STARTED> = [];
  private waitingHead = 0;
  private waitingCount = 0;
  /** Work that stepped aside and wants a slot back: it goes before inputs not started. */
  readonly resuming: Array<() => void> = [];
  // The work in flight: a Set, since `Subscription.remove` scans its finalizers, quadratic with
  // thousands of requests in flight.
  private readonly works = new Set<SlotWork<T, R>>();
  held = 0;
  /** Works aside for room at a limit being served (`Slot.release(true)`). */
  asideForRoom = 0;
  private unfinished = 0;
  private sourceDone = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(
    readonly project: (value: T, slot: Slot) => Observable<R>,
    private readonly concurrency: number,
    private readonly waitsForRoom: (value: T) => boolean,
    readonly subscriber: Subscriber<R>,
  ) {}

  next(value: T): void {
    this.waiting.push(value);
    this.waitingCount++;
    this.pump();
  }

  error(error: unknown): void {
    this.subscriber.error(error);
  }

  complete(): void {
    this.sourceDone = true;
    this.pump();
  }

  stop(): void {
    for (const work of this.works) work.stop();
    this.works.clear();
  }

  /** Starts waiting work while slots are free; work that ends synchronously loops here instead of nesting. */
  pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    const { subscriber } = this;
    do {
      this.pumpAgain = false;
      while (!subscriber.closed && this.held < this.concurrency) {
        const resume = this.resuming.shift();
        if (resume !== undefined) {
          this.held++;
          resume();
          continue;
        }
        const index = this.nextToStart();
        if (index < 0) break;
        this.held++;
        this.start(this.takeWaiting(index));
      }
    } while (this.pumpAgain);
    this.pumping = false;
    if (this.sourceDone && this.unfinished === 0 && this.waitingCount === 0) subscriber.complete();
  }

  /** The index of the input to start next, or -1: the first, unless it is held back (see `mergeWithSlots`). */
  private nextToStart(): number {
    if (this.waitingCount === 0) return -1;
    if (this.asideForRoom < this.concurrency) return this.waitingHead;
    const { waiting } = this;
    let looked = 0;
    for (let index = this.waitingHead; index < waiting.length && looked < LOOK_AHEAD; index++) {
      const value = waiting[index]!;
      if (value === STARTED) continue;
      looked++;
      if (!this.waitsForRoom(value)) return index;
    }
    return -1;
  }

  /** A work's end: its slot, if it held one, frees. */
  finished(work: SlotWork<T, R>): void {
    this.unfinished--;
    this.works.delete(work);
    this.pump();
  }

  private takeWaiting(index: number): T {
    const value = this.waiting[index] as T;
    this.waiting[index] = STARTED;
    this.waitingCount--;
    while (this.waiting[this.waitingHead] === STARTED) this.waiting[this.waitingHead++] = undefined as unknown as T;
    if (this.waitingHead === this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    } else if (this.waitingHead >= 1024 && this.waitingHead * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
    return value;
  }

  private start(value: T): void {
    this.unfinished++;
    const work = new SlotWork(this);
    this.works.add(work);
    work.run(value);
  }
}

/** One input's work and the slot it holds: the `Slot` handed to `project`, and the observer of its results. */
class SlotWork<T, R> implements Slot {
  private holds = true;
  /** Aside for room at a limit being served: counted in `SlotGate.asideForRoom`. */
  private asideForRoom = false;
  /** The projected work, once `subscribe` has returned (it may end, or be stopped, inside it). */
  private work: Subscription | undefined;
  private stopped = false;

  constructor(private readonly gate: SlotGate<T, R>) {}

  run(value: T): void {
    this.work = keptUnless(this.gate.project(value, this).subscribe(this), this.stopped);
  }

  stop(): void {
    this.stopped = true;
    this.back();
    this.work?.unsubscribe();
  }

  next(result: R): void {
    this.gate.subscriber.next(result);
  }

  error(error: unknown): void {
    this.gate.subscriber.error(error);
  }

  complete(): void {
    this.free();
    this.back();
    this.gate.finished(this);
  }

  release(forRoom = false): void {
    if (!this.holds) return;
    this.free();
    if (forRoom) {
      this.asideForRoom = true;
      this.gate.asideForRoom++;
    }
    this.gate.pump();
  }

  reacquire(): Observable<void> {
    return new Observable<void>((waiter) => {
      if (this.holds) {
        waiter.next();
        waiter.complete();
        return undefined;
      }
      // Rare (every model of the request out of service): a closure per wait is fine here.
      const grant = () => {
        this.holds = true;
        this.back();
        waiter.next();
        waiter.complete();
      };
      const resuming = this.gate.resuming;
      resuming.push(grant);
      this.gate.pump();
      return () => {
        const index = resuming.indexOf(grant);
        if (index >= 0) resuming.splice(index, 1);
      };
    });
  }

  /** No longer aside for room: new inputs may start in its stead. */
  private back(): void {
    if (!this.asideForRoom) return;
    this.asideForRoom = false;
    this.gate.asideForRoom--;
  }

  private free(): void {
    if (!this.holds) return;
    this.holds = false;
    this.gate.held--;
  }
}
