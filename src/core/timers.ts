import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs';

/**
 * The longest delay a timer may be given: Node (like browsers) keeps timer delays in a signed
 * 32-bit integer, and runs a longer one after 1 ms with a `TimeoutOverflowWarning`, so an RxJS
 * scheduler asked for a month would fire every millisecond.
 */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Runs `work` once, `delayMs` after now on `scheduler`. A delay longer than `MAX_TIMER_DELAY_MS`
 * (a key exhausted until the end of the month) is slept in steps no longer than that limit, each
 * checking the scheduler's clock against the due time; an infinite delay arms nothing.
 * Unsubscribing cancels whichever step is pending.
 */
export function scheduleAfter(scheduler: SchedulerLike, delayMs: number, work: () => void): Subscription {
  if (delayMs === Infinity) return Subscription.EMPTY;
  const delay = Number.isFinite(delayMs) ? Math.max(0, delayMs) : 0;
  const dueAt = scheduler.now() + delay;
  return scheduler.schedule(
    function (this: SchedulerAction<unknown>) {
      const leftMs = dueAt - scheduler.now();
      if (leftMs > 0) this.schedule(undefined, Math.min(leftMs, MAX_TIMER_DELAY_MS));
      else work();
    },
    Math.min(delay, MAX_TIMER_DELAY_MS),
  );
}

/**
 * `baseMs · factor^steps`, at most `capMs`. A base of 0 stays 0: `0 × factor^steps` turns NaN once
 * the power overflows, and a NaN cooldown would never end nor be extended.
 */
export function cappedBackoffMs(baseMs: number, factor: number, steps: number, capMs: number): number {
  return baseMs === 0 ? 0 : Math.min(capMs, baseMs * factor ** steps);
}
