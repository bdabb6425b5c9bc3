import { Observable, type Subscription, type OperatorFunction, type Subscriber } from 'rxjs';
import { keptUnless } from '../core/subscriptions.js';

/** The concurrency slot one input's work holds in `mergeWithSlots`. */
export interface Slot {
  /**
   * Gives the slot up while the work waits on something this gate does not control (a model out
   * of service), so that another input can run meanwhile. Idempotent. `onTurn` (once per release)
   * says when the wait starts to count, for a queue timeout: once the work is among the first
   * `concurrency` works aside, by the order they started. Each slot given up starts another input,
   * which may step aside too; those further back would have waited among the inputs not started,
   * where no timeout runs.
   */
  release(onTurn?: () => void): void;
  /**
   * The work stepped aside with `onTurn` got what it waited for (a request, its key): it leaves the
   * works aside, and the next one has its turn. Until then, a work that holds its slot again (to
   * look once more) keeps its place and its turn. A no-op for work not aside.
   */
  served(): void;
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
 * request its place. Work that ends synchronously starts the next input from a loop, not from a
 * nested call, so thousands of inputs refused in a row do not grow the stack.
 */
export function mergeWithSlots<T, R>(project: (value: T, slot: Slot) => Observable<R>, concurrency: number): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      const gate = new SlotGate(project, concurrency, subscriber);
      const input = source.subscribe(gate);
      return () => {
        input.unsubscribe();
        gate.stop();
      };
    });
}

/** One subscription of `mergeWithSlots`: the inputs waiting, the work running, the slots held. It observes the inputs. */
class SlotGate<T, R> {
  // Inputs not started yet, read from `waitingHead`: `shift()` would copy the array for every
  // input, quadratic in a batch of thousands piped in at once.
  private waiting: T[] = [];
  private waitingHead = 0;
  /** Work that stepped aside and wants a slot back: it goes before inputs not started. */
  readonly resuming: Array<() => void> = [];
  // The work in flight: a Set, since `Subscription.remove` scans its finalizers, quadratic with
  // thousands of requests in flight.
  private readonly works = new Set<SlotWork<T, R>>();
  /** Works aside that asked for their turn (`Slot.release(onTurn)`), in the order they started. */
  private readonly aside: Array<SlotWork<T, R>> = [];
  private started = 0;
  held = 0;
  private unfinished = 0;
  private sourceDone = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(
    readonly project: (value: T, slot: Slot) => Observable<R>,
    private readonly concurrency: number,
    readonly subscriber: Subscriber<R>,
  ) {}

  next(value: T): void {
    this.waiting.push(value);
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
      while (!subscriber.closed && this.held < this.concurrency && (this.resuming.length > 0 || this.waitingHead < this.waiting.length)) {
        this.held++;
        const resume = this.resuming.shift();
        if (resume !== undefined) resume();
        else this.start(this.takeWaiting());
      }
    } while (this.pumpAgain);
    this.pumping = false;
    if (this.sourceDone && this.unfinished === 0 && this.waitingHead === this.waiting.length) subscriber.complete();
  }

  /** A work's end: its slot, if it held one, frees. */
  finished(work: SlotWork<T, R>): void {
    this.unfinished--;
    this.works.delete(work);
    this.pump();
  }

  private takeWaiting(): T {
    const value = this.waiting[this.waitingHead]!;
    this.waiting[this.waitingHead++] = undefined as T;
    if (this.waitingHead === this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    } else if (this.waitingHead >= 1024 && this.waitingHead * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
    return value;
  }

  /** `work` stepped aside, in line for its turn. */
  stepAside(work: SlotWork<T, R>): void {
    const { aside } = this;
    let place = aside.length;
    while (place > 0 && aside[place - 1]!.seq > work.seq) place--;
    aside.splice(place, 0, work);
    if (place < this.concurrency) work.takeTurn();
  }

  /** `work` is no longer aside: the first one behind it that had no turn yet has it now. */
  leftAside(work: SlotWork<T, R>): void {
    const { aside } = this;
    const index = aside.indexOf(work);
    if (index < 0) return;
    aside.splice(index, 1);
    for (let at = index; at < aside.length && at < this.concurrency; at++) aside[at]!.takeTurn();
  }

  private start(value: T): void {
    this.unfinished++;
    const work = new SlotWork(this, this.started++);
    this.works.add(work);
    work.run(value);
  }
}

/** One input's work and the slot it holds: the `Slot` handed to `project`, and the observer of its results. */
class SlotWork<T, R> implements Slot {
  private holds = true;
  /** While aside in line for a turn: what to call when it comes (cleared once called). */
  private onTurn: (() => void) | undefined;
  private inLine = false;
  /** The projected work, once `subscribe` has returned (it may end, or be stopped, inside it). */
  private work: Subscription | undefined;
  private stopped = false;

  constructor(
    private readonly gate: SlotGate<T, R>,
    /** Its place among the inputs started. */
    readonly seq: number,
  ) {}

  run(value: T): void {
    this.work = keptUnless(this.gate.project(value, this).subscribe(this), this.stopped);
  }

  stop(): void {
    this.stopped = true;
    this.leaveLine();
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
    this.leaveLine();
    this.gate.finished(this);
  }

  release(onTurn?: () => void): void {
    if (!this.holds) return;
    this.free();
    if (onTurn !== undefined && !this.inLine) {
      this.onTurn = onTurn;
      this.inLine = true;
      this.gate.stepAside(this);
    }
    this.gate.pump();
  }

  served(): void {
    this.leaveLine();
  }

  takeTurn(): void {
    const onTurn = this.onTurn;
    this.onTurn = undefined;
    onTurn?.();
  }

  private leaveLine(): void {
    if (!this.inLine) return;
    this.inLine = false;
    this.onTurn = undefined;
    this.gate.leftAside(this);
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

  private free(): void {
    if (!this.holds) return;
    this.holds = false;
    this.gate.held--;
  }
}
