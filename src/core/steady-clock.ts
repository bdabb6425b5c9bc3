import { asyncScheduler, type SchedulerAction, type SchedulerLike, type Subscription } from 'rxjs';

/**
 * The default scheduler of the pool, the operators and the transports: `asyncScheduler`'s timers,
 * with a clock that reads the wall clock's time but never goes back. Every due time is a point on
 * this clock (a key's rest, a backoff, a queue deadline), and `scheduleAfter` waits until the clock
 * reaches it. On the wall clock itself, an NTP step or a VM's clock set back an hour would hold
 * every request waiting on a timer for that hour more; here, time goes on from its last reading by
 * what the monotonic clock measured since, then catches up with the wall clock slowly (see
 * `SteadyClock`). A clock that jumps forward is followed: that may be real time (a machine waking
 * from sleep, which the monotonic clock does not count), and ending a wait early costs a request at
 * most a refusal.
 *
 * A new one per pool or operator, so that no state is shared between modules' instances; each reads
 * the wall clock as its own, so they agree while it goes forward. After a step back, one made
 * before it reads ahead of one made after, by the step at most, until it has caught up.
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

/**
 * A jump of the wall clock against the monotonic clock larger than this is a step: a smaller one
 * (an NTP step of a drifting clock) holds the clock still until the wall clock has caught up.
 */
const STEP_MS = 1_000;

/**
 * After a step back, the clock runs this much slower than the wall clock until it meets it again,
 * so that what reads the calendar from it (the UTC day of a daily quota) is right again after a
 * while: an hour set back is caught up in ten, and a wait then takes at most a ninth longer.
 */
const CATCH_UP_RATE = 0.1;

/** The wall clock's time, held from going back by a monotonic clock (see `steadyScheduler`). */
export class SteadyClock {
  /** The last time read, and the wall and monotonic clocks' readings then. */
  private last = -Infinity;
  private lastWall = NaN;
  private lastMonotonic = 0;
  /** How far ahead of the wall clock it reads, after a step back not yet caught up. */
  private offset = 0;

  constructor(
    private readonly wallNow: () => number,
    private readonly monotonicNow: () => number,
  ) {}

  now(): number {
    const wall = this.wallNow();
    // Read many times a millisecond on the hot path: the wall clock has not moved, nor has this.
    if (wall === this.lastWall) return this.last;
    const monotonic = this.monotonicNow();
    const elapsed = this.last === -Infinity ? 0 : Math.max(0, monotonic - this.lastMonotonic);
    // Only a lead it had before this reading is caught up on.
    const caughtUp = Math.min(this.offset, elapsed * CATCH_UP_RATE);
    let offset = this.offset;
    // How far the wall clock moved against the monotonic one since the last reading.
    const drift = wall + offset - (this.last + elapsed);
    // Set back: time goes on by the monotonic clock. Set forward while ahead of it: the step gives
    // back what it can of the lead (a step forward otherwise is followed: it may be a machine that
    // slept, which the monotonic clock does not count).
    if (drift < -STEP_MS) offset -= drift;
    else if (drift > STEP_MS) offset -= Math.min(offset, drift);
    this.offset = Math.max(0, offset - caughtUp);
    const now = Math.max(this.last, wall + this.offset);
    this.last = now;
    this.lastWall = wall;
    this.lastMonotonic = monotonic;
    return now;
  }
}
