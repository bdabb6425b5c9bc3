import { asyncScheduler, type SchedulerAction, type SchedulerLike, type Subscription } from 'rxjs';

/**
 * The default scheduler of the pool, the operators and the transports: `asyncScheduler`'s timers,
 * with a clock that reads the wall clock's time but never goes back. Every due time is a point on
 * this clock (a key's rest, a backoff, a queue deadline), and `scheduleAfter` waits until the clock
 * reaches it. On the wall clock itself, an NTP step or a VM's clock set back an hour would hold
 * every request waiting on a timer for that hour more; here, time goes on from its last reading by
 * what the monotonic clock measured since. A clock that jumps forward is followed: that may be real
 * time (a machine waking from sleep, which the monotonic clock does not count), and ending a wait
 * early costs a request at most a refusal.
 *
 * A new one per pool or operator, so that no state is shared between modules' instances; each reads
 * the wall clock as its own, so they agree while it goes forward, and after a step back they agree
 * to within the time between two readings.
 */
export function steadyScheduler(): SchedulerLike {
  const clock = new SteadyClock(
    () => asyncScheduler.now(),
    () => globalThis.performance?.now() ?? 0,
  );
  return {
    now: () => clock.now(),
    schedule<T>(work: (this: SchedulerAction<T>, state?: T) => void, delay?: number, state?: T): Subscription {
      return asyncScheduler.schedule(work, delay, state);
    },
  };
}

/** The wall clock's time, held from going back by a monotonic clock (see `steadyScheduler`). */
export class SteadyClock {
  /** The last time read, and the monotonic clock's reading then. */
  private last = -Infinity;
  private lastMonotonic = 0;
  /** What the wall clock has gone back by in all, added to its readings. */
  private offset = 0;

  constructor(
    private readonly wallNow: () => number,
    private readonly monotonicNow: () => number,
  ) {}

  now(): number {
    const monotonic = this.monotonicNow();
    let now = this.wallNow() + this.offset;
    if (now < this.last) {
      const resumed = this.last + Math.max(0, monotonic - this.lastMonotonic);
      this.offset += resumed - now;
      now = resumed;
    }
    this.last = now;
    this.lastMonotonic = monotonic;
    return now;
  }
}
