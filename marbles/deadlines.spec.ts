/**
 * `DeadlineQueue`: many deadlines on one scheduler timer. Each fires at its own due frame, those
 * due together in the order they were armed; a cancelled one never fires; and once nothing is
 * left to fire, no timer is pending, whether the deadlines fired or were cancelled. Deadlines count
 * the time the process was awake: a stall of the process (a timer woken late) moves the pending ones.
 */
import { describe, expect, it, vi } from 'vitest';
import { asyncScheduler, type SchedulerAction, type SchedulerLike } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { DeadlineQueue } from '../src/core/deadlines.js';
import { MAX_TIMER_DELAY_MS } from '../src/core/timers.js';
import { newTestScheduler } from './support.js';
import { seededRandom } from '../test/helpers/seeded-random.js';

/** Pending actions of the TestScheduler (its own queue): what a leaked timer would leave. */
function pending(scheduler: TestScheduler): number {
  return (scheduler as unknown as { actions: unknown[] }).actions.length;
}

/**
 * The TestScheduler's clock, to which `stall(ms)` adds `ms` at once, as a process whose event loop
 * was blocked for `ms` finds its clock moved on: every timer pending then wakes `ms` late.
 */
function stallingClock(scheduler: TestScheduler): { clock: SchedulerLike; stall: (ms: number) => void } {
  let stalledMs = 0;
  const clock: SchedulerLike = {
    now: () => scheduler.now() + stalledMs,
    schedule: scheduler.schedule.bind(scheduler),
  };
  return { clock, stall: (ms) => (stalledMs += ms) };
}

/** The TestScheduler's clock, with every timer's delay turned into `delayOf(delay)`: timers that fire late. */
function timersDelayed(scheduler: TestScheduler, delayOf: (delayMs: number) => number): SchedulerLike {
  const schedule = (work: (this: SchedulerAction<unknown>, state?: unknown) => void, delay = 0, state?: unknown) =>
    scheduler.schedule(work, delayOf(delay), state);
  return { now: () => scheduler.now(), schedule: schedule };
}

describe('DeadlineQueue', () => {
  it('fires each deadline at its frame, ties in arming order, and leaves no timer after the last', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      const fired: string[] = [];
      const note = (name: string) => () => fired.push(`${name}@${scheduler.now()}`);
      queue.add(30, note('c'));
      queue.add(10, note('a'));
      queue.add(30, note('d'));
      queue.add(20, note('b'));
      expect(pending(scheduler)).toBe(1);
      flush();
      expect(fired).toEqual(['a@10', 'b@20', 'c@30', 'd@30']);
      expect(pending(scheduler)).toBe(0);
    });
  });

  it('never fires a cancelled deadline, and frees the timer when every deadline is cancelled', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      const fired: number[] = [];
      const first = queue.add(10, () => fired.push(10));
      const second = queue.add(20, () => fired.push(20));
      first.cancel();
      second.cancel();
      second.cancel();
      expect(pending(scheduler)).toBe(0);
      flush();
      expect(fired).toEqual([]);
    });
  });

  it('re-arms for an earlier deadline added later, and for the next one after a fire', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      const fired: string[] = [];
      queue.add(100, () => fired.push(`late@${scheduler.now()}`));
      queue.add(5, () => {
        fired.push(`early@${scheduler.now()}`);
        // Armed while firing: it counts from now.
        queue.add(10, () => fired.push(`chained@${scheduler.now()}`));
      });
      flush();
      expect(fired).toEqual(['early@5', 'chained@15', 'late@100']);
      expect(pending(scheduler)).toBe(0);
    });
  });

  it('sweeps cancelled deadlines so that finished attempts do not pile up', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      const keep = queue.add(300_000, () => undefined);
      for (let index = 0; index < 10_000; index++) queue.add(300_000 + index, () => undefined).cancel();
      expect((queue as unknown as { heap: unknown[] }).heap.length).toBeLessThan(4);
      keep.cancel();
      expect(pending(scheduler)).toBe(0);
      flush();
    });
  });

  it('arms nothing for an infinite delay, and sleeps a delay past 2^31-1 ms in steps', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      const fired: number[] = [];
      queue.add(Infinity, () => fired.push(-1)).cancel();
      expect(pending(scheduler)).toBe(0);
      const far = MAX_TIMER_DELAY_MS * 2 + 7;
      queue.add(far, () => fired.push(scheduler.now()));
      flush();
      expect(fired).toEqual([far]);
    });
  });

  it('a deadline whose work throws leaves the others armed (on the async scheduler, whose other timers run on)', () => {
    // The TestScheduler drops every pending action after one throws; Node's timers do not.
    vi.useFakeTimers();
    try {
      const queue = new DeadlineQueue(asyncScheduler);
      const fired: string[] = [];
      const startedAt = Date.now();
      queue.add(10, () => {
        throw new Error('a teardown threw');
      });
      queue.add(10, () => fired.push(`same@${Date.now() - startedAt}`));
      queue.add(20, () => fired.push(`later@${Date.now() - startedAt}`));
      expect(() => vi.advanceTimersByTime(10)).toThrow('a teardown threw');
      vi.advanceTimersByTime(20);
      // The one due with it runs on the re-armed timer: at once, or Node's 1 ms later.
      expect(fired).toEqual([expect.stringMatching(/^same@1[01]$/), 'later@20']);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("moves pending deadlines by the process's own stall, measured on the way to them, and not later ones", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { clock, stall } = stallingClock(scheduler);
      const queue = new DeadlineQueue(clock);
      const fired: string[] = [];
      const note = (name: string) => () => fired.push(`${name}@${clock.now()}`);
      queue.add(1_000, note('pending'));
      // Long before the deadline, the loop is blocked for 2 s: measured by the next wake-up.
      scheduler.schedule(() => stall(2_000), 300);
      // Armed once the stall is over and measured: it owes the stall nothing.
      scheduler.schedule(() => queue.add(100, note('later')), 600);
      flush();
      expect(fired).toEqual(['later@2700', 'pending@3000']);
      expect(queue.now()).toBe(1_000);
      expect(pending(scheduler)).toBe(0);
    });
  });

  it('takes a wake-up a little late (under 100 ms) for the load it is, not for a stall: the deadline stays', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { clock, stall } = stallingClock(scheduler);
      const queue = new DeadlineQueue(clock);
      const fired: number[] = [];
      queue.add(1_000, () => fired.push(clock.now()));
      scheduler.schedule(() => stall(99), 300);
      flush();
      expect(fired).toEqual([1_000]);
    });
  });

  it('wakes on the way to a far deadline a bounded number of times', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const queue = new DeadlineQueue(scheduler);
      let wakeUps = 0;
      const schedule = scheduler.schedule.bind(scheduler);
      vi.spyOn(scheduler, 'schedule').mockImplementation((work, delay, state) => {
        wakeUps++;
        return schedule(work, delay, state);
      });
      queue.add(300_000, () => undefined);
      flush();
      // Each after an eighth of the time left, at least 250 ms apart: 77 in all for the default total timeout.
      expect(wakeUps).toBeLessThan(100);
    });
  });

  it('counts a lag that persists at every wake-up once (a loaded loop): a 10 s deadline fires within two lags of its time', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const lagMs = 500;
      // Every timer fires `lagMs` late, while the clock runs on.
      const lagging = timersDelayed(scheduler, (delay) => delay + lagMs);
      const queue = new DeadlineQueue(lagging);
      const fired: number[] = [];
      queue.add(10_000, () => fired.push(scheduler.now()));
      flush();
      // Counted at each of its wake-ups, the lag pushed it to 20.5 s.
      expect(fired).toEqual([10_768]);
    });
  });

  it('under timers held to the next whole minute (a hidden browser tab), 10 s and 300 s deadlines fire within a minute or two of their time', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const throttled = timersDelayed(scheduler, (delay) => Math.ceil((scheduler.now() + delay) / 60_000) * 60_000 - scheduler.now());
      const queue = new DeadlineQueue(throttled);
      const fired: string[] = [];
      queue.add(10_000, () => fired.push(`first-token@${scheduler.now() / 60_000}min`));
      queue.add(300_000, () => fired.push(`total@${scheduler.now() / 60_000}min`));
      flush();
      // Each wake-up's minute counted as a stall made them 21 and 67 minutes.
      expect(fired).toEqual(['first-token@2min', 'total@6min']);
    });
  });

  it('a deadline armed after a stall, before the late wake-up, owes the stall nothing: the clock read counts it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { clock, stall } = stallingClock(scheduler);
      const queue = new DeadlineQueue(clock);
      const fired: string[] = [];
      queue.add(5_000, () => undefined);
      // Blocked for 2 s at 300 while the next wake-up was due at 625: the sockets read at 301 arm a deadline.
      scheduler.schedule(() => stall(2_000), 300);
      scheduler.schedule(() => {
        const armedAt = clock.now();
        queue.add(100, () => fired.push(`after ${clock.now() - armedAt}`));
      }, 301);
      flush();
      // Node wakes an overdue timer at once; this clock wakes it at its frame (625), whose 324 ms
      // of the stall the clock read at 301 could not know yet. Counted only at the wake-up, 2,100.
      expect(fired).toEqual(['after 424']);
    });
  });

  it('never goes back when the clock steps back (a wall clock set back) while deadlines fire', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      let offsetMs = 0;
      const clock: SchedulerLike = { now: () => scheduler.now() + offsetMs, schedule: scheduler.schedule.bind(scheduler) };
      const queue = new DeadlineQueue(clock);
      const reads: number[] = [];
      let rearmed = 0;
      // An idle deadline's check: re-armed for what is left of its wait, measured on the queue's clock.
      const lastEventAt = queue.now();
      const check = (): void => {
        offsetMs -= 100;
        const quietMs = queue.now() - lastEventAt;
        reads.push(quietMs);
        if (quietMs < 400 && rearmed++ < 5) queue.add(400 - quietMs, check);
      };
      queue.add(400, check);
      flush();
      // The clock stepped back by 100 ms: before, the deadline came due again in the same pass, for ever.
      expect(reads).toEqual([400]);
    });
  });

  it('counts two stalls close together whole: the wake-up right after a late one finds the first over', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { clock, stall } = stallingClock(scheduler);
      const queue = new DeadlineQueue(clock);
      const fired: number[] = [];
      queue.add(10_000, () => fired.push(clock.now()));
      scheduler.schedule(() => stall(2_000), 300);
      // Just after the wake-up that measured the first (at 1,250: an eighth of the wait).
      scheduler.schedule(() => stall(2_000), 1_260);
      flush();
      // Counted as one lag that persisted, the second added nothing: 12,000.
      expect(fired).toEqual([14_000]);
    });
  });

  it('counts a jittery lag (every timer 100-600 ms late, at random) as its largest, not its jitter added up', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const random = seededRandom(42);
      const queue = new DeadlineQueue(timersDelayed(scheduler, (delay) => delay + 100 + Math.floor(random() * 500)));
      const fired: number[] = [];
      queue.add(10_000, () => fired.push(scheduler.now()));
      flush();
      // Each wake-up crediting what it was later than the one before: 12.56 s.
      expect(fired[0]).toBeLessThanOrEqual(11_200);
    });
  });

  it('counts a stall in a loop that stays loaded whole, even after an earlier one as long', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      let stalledMs = 0;
      const loaded = timersDelayed(scheduler, (delay) => delay + 150);
      // Every timer 150 ms late, and the clock jumps 2 s at 300 and again at 3,000.
      const clock: SchedulerLike = { now: () => scheduler.now() + stalledMs, schedule: loaded.schedule.bind(loaded) };
      const queue = new DeadlineQueue(clock);
      const fired: number[] = [];
      queue.add(10_000, () => fired.push(clock.now()));
      scheduler.schedule(() => (stalledMs += 2_000), 300);
      scheduler.schedule(() => (stalledMs += 2_000), 3_000);
      flush();
      // 10 s awake, the lag once, and both stalls; with the first stall as the lag for good: 12.2 s.
      expect(fired[0]).toBeGreaterThanOrEqual(13_900);
    });
  });
});
