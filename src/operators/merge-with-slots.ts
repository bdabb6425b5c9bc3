import { Observable, Subscription, type OperatorFunction } from 'rxjs';

/** The concurrency slot one input's work holds in `mergeWithSlots`. */
export interface Slot {
  /**
   * Gives the slot up while the work waits on something this gate does not control (a model out
   * of service), so that another input can run meanwhile. Idempotent.
   */
  release(): void;
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
      // Inputs not started yet, read from `waitingHead`: `shift()` would copy the array for every
      // input, quadratic in a batch of thousands piped in at once.
      let waiting: T[] = [];
      let waitingHead = 0;
      const resuming: Array<() => void> = [];
      // The work in flight: a Set, since `Subscription.remove` scans its finalizers, quadratic
      // with thousands of requests in flight.
      const works = new Set<Subscription>();
      let held = 0;
      let unfinished = 0;
      let sourceDone = false;
      let pumping = false;
      let pumpAgain = false;

      const pump = () => {
        if (pumping) {
          pumpAgain = true;
          return;
        }
        pumping = true;
        do {
          pumpAgain = false;
          while (!subscriber.closed && held < concurrency && (resuming.length > 0 || waitingHead < waiting.length)) {
            held++;
            const resume = resuming.shift();
            if (resume !== undefined) resume();
            else start(takeWaiting());
          }
        } while (pumpAgain);
        pumping = false;
        if (sourceDone && unfinished === 0 && waitingHead === waiting.length) subscriber.complete();
      };

      const takeWaiting = (): T => {
        const value = waiting[waitingHead]!;
        waiting[waitingHead++] = undefined as T;
        if (waitingHead === waiting.length) {
          waiting = [];
          waitingHead = 0;
        } else if (waitingHead >= 1024 && waitingHead * 2 >= waiting.length) {
          waiting = waiting.slice(waitingHead);
          waitingHead = 0;
        }
        return value;
      };

      const start = (value: T) => {
        unfinished++;
        let holds = true;
        const free = () => {
          if (!holds) return;
          holds = false;
          held--;
        };
        const slot: Slot = {
          release: () => {
            if (!holds) return;
            free();
            pump();
          },
          reacquire: () =>
            new Observable<void>((waiter) => {
              if (holds) {
                waiter.next();
                waiter.complete();
                return undefined;
              }
              const grant = () => {
                holds = true;
                waiter.next();
                waiter.complete();
              };
              resuming.push(grant);
              pump();
              return () => {
                const index = resuming.indexOf(grant);
                if (index >= 0) resuming.splice(index, 1);
              };
            }),
        };
        const work = new Subscription();
        works.add(work);
        work.add(
          project(value, slot).subscribe({
            next: (result) => subscriber.next(result),
            error: (error: unknown) => subscriber.error(error),
            complete: () => {
              unfinished--;
              free();
              works.delete(work);
              pump();
            },
          }),
        );
      };

      const input = source.subscribe({
        next: (value) => {
          waiting.push(value);
          pump();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          sourceDone = true;
          pump();
        },
      });
      return () => {
        input.unsubscribe();
        for (const work of works) work.unsubscribe();
        works.clear();
      };
    });
}
