/**
 * The wall clock stepped back (an NTP correction, a VM resumed, a user setting the time) while
 * requests wait on the pool's timers: a backoff or a key's rest must end after the time it was
 * given, not after that time plus the step.
 */
import { filter, firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { balance, createKeyPool, type BalanceEvent, type PoolEvent } from '../src/index.js';
import { startFakeOpenRouter } from '../src/testing/index.js';
import { SteadyClock } from '../src/core/steady-clock.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const HOUR_MS = 3_600_000;

/** Sets `Date.now` back by `stepMs` from the moment it is called on. */
function stepClockBack(stepMs: number): void {
  const realNow = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => realNow() - stepMs);
}

describe('the wall clock stepped back', () => {
  it('delays neither a rate-limited key’s rest nor the retry waiting on it', async () => {
    const keys = [{ key: TEST_KEYS.alpha, label: 'alpha' }];
    const fake = await startFakeOpenRouter({
      keys,
      models: { 'test/model': { faults: [{ type: 'rate-limit', retryAfterSeconds: 1, times: 1 }] } },
    });
    cleanups.push(() => fake.close());
    const pool = createKeyPool({ baseURL: fake.baseURL, keys, discoverAccounts: false });
    cleanups.push(() => pool.dispose());
    const parked = firstValueFrom(
      pool.events$.pipe(filter((event): event is Extract<PoolEvent, { type: 'cooldown' }> => event.type === 'cooldown')),
    );
    const started = performance.now();
    const outcome = lastValueFrom(
      from([{ id: 'r1', model: 'test/model', messages: [{ role: 'user' as const, content: 'hi' }] }]).pipe(balance(pool), toArray()),
    );
    // The 429 parks the key for its Retry-After; the clock goes back an hour while it rests.
    const cooldown = await parked;
    expect(cooldown.until - cooldown.at).toBeGreaterThanOrEqual(900);
    stepClockBack(HOUR_MS);
    const events: BalanceEvent[] = await outcome;
    expect(events.map((event) => event.type)).toEqual(['completion']);
    expect(performance.now() - started).toBeLessThan(5_000);
  }, 15_000);
});

describe('SteadyClock', () => {
  /** A clock over a wall clock and a monotonic one that the test moves by hand. */
  function clockOver() {
    const readings = { wall: 1_000_000, monotonic: 50 };
    const clock = new SteadyClock(
      () => readings.wall,
      () => readings.monotonic,
    );
    const advance = (ms: number) => {
      readings.wall += ms;
      readings.monotonic += ms;
    };
    return { clock, readings, advance };
  }

  it('reads the wall clock while it goes forward, jumps included', () => {
    const { clock, readings, advance } = clockOver();
    expect(clock.now()).toBe(1_000_000);
    advance(250);
    expect(clock.now()).toBe(1_000_250);
    // A machine waking from sleep: the wall clock moved, the monotonic one did not.
    readings.wall += HOUR_MS;
    expect(clock.now()).toBe(1_000_250 + HOUR_MS);
  });

  it('goes on from its last reading by the monotonic time since when the wall clock steps back, then catches up with it', () => {
    const { clock, readings, advance } = clockOver();
    expect(clock.now()).toBe(1_000_000);
    advance(400);
    readings.wall -= HOUR_MS;
    expect(clock.now()).toBe(1_000_400);
    // A tenth slower than the wall clock until it meets it: 100 ms later, 90 ms on.
    advance(100);
    expect(clock.now()).toBe(1_000_490);
    advance(5 * HOUR_MS);
    expect(clock.now()).toBe(readings.wall + HOUR_MS - 10 - HOUR_MS / 2);
    advance(10 * HOUR_MS);
    expect(clock.now()).toBe(readings.wall);
  });

  it('gives its lead back to a step forward, and holds still through a step back of less than a second', () => {
    const { clock, readings, advance } = clockOver();
    clock.now();
    advance(200);
    readings.wall -= HOUR_MS;
    expect(clock.now()).toBe(1_000_200);
    // The clock set right again: the lead goes, where a step forward from the wall clock's own time is followed.
    advance(1);
    readings.wall += HOUR_MS;
    expect(clock.now()).toBe(readings.wall);
    advance(1);
    readings.wall += HOUR_MS;
    expect(clock.now()).toBe(readings.wall);
    // A drifting clock stepped back by NTP: still until it reads what it read.
    const before = clock.now();
    readings.wall -= 300;
    advance(100);
    expect(clock.now()).toBe(before);
    advance(250);
    expect(clock.now()).toBe(readings.wall);
  });

  it('never reads less than it read before, even in the same instant', () => {
    const { clock, readings } = clockOver();
    const first = clock.now();
    readings.wall -= 5;
    expect(clock.now()).toBe(first);
  });
});
