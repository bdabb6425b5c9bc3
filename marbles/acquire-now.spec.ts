import { describe, expect, it } from 'vitest';
import { NEVER, of } from 'rxjs';
import { OpenRouterError } from '../src/core/errors.js';
import type { KeyHealth } from '../src/health/records.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import type { ChatRequest } from '../src/core/types.js';
import { POOL_PORT, type HeldLease, type KeyLease } from '../src/pool/types.js';
import { MemoryStateStore, type ReserveResult } from '../src/store/state-store.js';
import type { TestScheduler } from 'rxjs/testing';
import { MODEL, chatRequest, newTestScheduler, predictablePool } from './support.js';

/**
 * `acquireNow`: the lease `acquire` would grant at once, without the acquisition an attempt would
 * hold for its whole life. It never jumps the line, frees as an acquisition frees, and fails at
 * once only where `acquire` would.
 */

const ONE_SLOT = [{ key: 'sk-test-1', label: 'k1', limits: { maxConcurrent: 1 } }];

function granted(result: HeldLease | OpenRouterError | undefined): HeldLease {
  if (result === undefined || result instanceof OpenRouterError) throw new Error(`no lease: ${String(result)}`);
  return result;
}

/** A one-slot pool that never answers, and its two ways to a key for a request of `content`. */
function oneSlotPool(scheduler: TestScheduler) {
  const pool = predictablePool(scheduler, () => NEVER, ONE_SLOT);
  const port = pool[POOL_PORT];
  return {
    pool,
    atOnce: (content: string) => port.acquireNow!(chatRequest(content), { models: [MODEL] }),
    inLine: (content: string) => port.acquire(chatRequest(content), { models: [MODEL] }),
  };
}

/** What `acquireNow` said, for a log line. */
function said(result: HeldLease | OpenRouterError | undefined): string {
  return result === undefined ? 'undefined' : result instanceof OpenRouterError ? result.message : `a lease on ${result.label}`;
}

describe('acquireNow', () => {
  it('grants a free key at once, counts its slot, and a request in line takes the slot when it is released', () => {
    const scheduler = newTestScheduler();
    const log: string[] = [];
    scheduler.run(() => {
      const { pool, atOnce, inLine } = oneSlotPool(scheduler);
      const lease = granted(atOnce('a'));
      log.push(`a on ${lease.label} at ${lease.acquiredAt}, in flight ${pool.snapshot().keys[0]!.inFlight}`);
      // The only slot is taken: at once there is nothing, and `acquire` waits in line.
      log.push(`b at once: ${said(atOnce('b'))}`);
      inLine('b').subscribe((next: KeyLease) => log.push(`b on ${next.label} at ${scheduler.now()}`));
      scheduler.schedule(() => lease.release(), 40);
    });
    expect(log).toEqual(['a on k1 at 0, in flight 1', 'b at once: undefined', 'b on k1 at 40']);
  });

  it('never jumps the line: while a request waits in the queue it grants nothing, even with a slot free', () => {
    const scheduler = newTestScheduler();
    const log: string[] = [];
    scheduler.run(() => {
      const { atOnce, inLine } = oneSlotPool(scheduler);
      const first = granted(atOnce('a'));
      inLine('b').subscribe((next) => {
        log.push(`b at ${scheduler.now()}`);
        scheduler.schedule(() => next.release(), 10);
      });
      scheduler.schedule(() => {
        // The slot is free for one instant, and b is first in line for it.
        first.release();
        log.push(`c at once: ${said(atOnce('c'))}`);
        inLine('c').subscribe(() => log.push(`c at ${scheduler.now()}`));
      }, 20);
    });
    expect(log).toEqual(['b at 20', 'c at once: undefined', 'c at 30']);
  });

  it('releaseOnTeardown hands the slot on at the next turn, as the teardown of an acquisition does', () => {
    const scheduler = newTestScheduler();
    const log: string[] = [];
    scheduler.run(() => {
      const { atOnce, inLine } = oneSlotPool(scheduler);
      const lease = granted(atOnce('a'));
      inLine('b').subscribe(() => log.push(`b at ${scheduler.now()}`));
      scheduler.schedule(() => {
        lease.releaseOnTeardown();
        log.push('a released');
        lease.releaseOnTeardown();
        lease.release();
      }, 15);
    });
    expect(log).toEqual(['a released', 'b at 15']);
  });

  it('an attempt that took its key at once frees the slot when its subscriber leaves, for the request in line', () => {
    const scheduler = newTestScheduler();
    const log: string[] = [];
    scheduler.run(() => {
      const { pool, inLine } = oneSlotPool(scheduler);
      const attempt = of(chatRequest('a')).pipe(withKeyRotation(pool)).subscribe();
      log.push(`in flight ${pool.snapshot().keys[0]!.inFlight}`);
      inLine('b').subscribe(() => log.push(`b at ${scheduler.now()}`));
      scheduler.schedule(() => attempt.unsubscribe(), 25);
    });
    expect(log).toEqual(['in flight 1', 'b at 25']);
  });

  it("a strategy that throws fails the attempt with the strategy's error, and is asked once", () => {
    const scheduler = newTestScheduler();
    let asked = 0;
    let failure: unknown;
    scheduler.run(() => {
      const strategy = (_eligible: readonly KeyHealth[]): KeyHealth | undefined => {
        asked++;
        throw new Error('no pick today');
      };
      const pool = predictablePool(scheduler, () => NEVER, ONE_SLOT, { strategy });
      of(chatRequest('a'))
        .pipe(withKeyRotation(pool))
        .subscribe({ error: (error: unknown) => (failure = error) });
    });
    expect(asked).toBe(1);
    expect(failure).toBeInstanceOf(OpenRouterError);
    expect((failure as Error).message).toContain('no pick today');
  });

  it('a disposed pool grants nothing, and acquire fails the request', () => {
    const scheduler = newTestScheduler();
    let failure: unknown;
    let atOnce: unknown = 'unset';
    scheduler.run(() => {
      const { pool, atOnce: grant, inLine } = oneSlotPool(scheduler);
      pool.dispose();
      atOnce = grant('a');
      inLine('a').subscribe({ error: (error: unknown) => (failure = error) });
    });
    expect(atOnce).toBeUndefined();
    expect(failure).toBeInstanceOf(OpenRouterError);
  });

  it("a request that must wait asks the strategy no more often than through acquire alone (a review's finding)", () => {
    const scheduler = newTestScheduler();
    const asked: string[] = [];
    scheduler.run(() => {
      // Only k1 serves; k2 is never chosen (a user's own policy: a key kept in reserve).
      const strategy = (eligible: readonly KeyHealth[], request: ChatRequest): KeyHealth | undefined => {
        asked.push(`${JSON.stringify(request.messages[0]!.content)}@${scheduler.now()}`);
        return eligible.find((key) => key.label === 'k1');
      };
      const pool = predictablePool(scheduler, () => NEVER, [...ONE_SLOT, { key: 'sk-test-2', label: 'k2', limits: { maxConcurrent: 1 } }], {
        strategy,
      });
      of(chatRequest('a')).pipe(withKeyRotation(pool)).subscribe();
      of(chatRequest('b')).pipe(withKeyRotation(pool)).subscribe();
    });
    // a once; b as before acquireNow: at its acquire, then by the drain after it is queued.
    expect(asked).toEqual(['"a"@0', '"b"@0', '"b"@0']);
  });

  it("the default strategy draws from the pool's random source as it did through acquire alone", () => {
    const scheduler = newTestScheduler();
    let draws = 0;
    scheduler.run(() => {
      const pool = predictablePool(scheduler, () => NEVER, [...ONE_SLOT, { key: 'sk-test-2', label: 'k2', limits: { maxConcurrent: 1 } }], {
        strategy: 'powerOfTwo',
        random: () => (draws++, 0.5),
      });
      for (const content of ['a', 'b', 'c']) of(chatRequest(content)).pipe(withKeyRotation(pool)).subscribe();
    });
    // Counted on the code before acquireNow (e556413): a seeded pool picks the same keys as it did.
    expect(draws).toBe(34);
  });

  it('a subclass of the memory store goes through acquire, whose reservation is guarded: a reserve that throws fails the request and gives its slot back', () => {
    class ThrowingStore extends MemoryStateStore {
      override reserve(): ReserveResult {
        throw new Error('store down');
      }
    }
    const scheduler = newTestScheduler();
    let failure: unknown;
    let atOnce: unknown = 'unset';
    let inFlight: number | undefined;
    scheduler.run(() => {
      const pool = predictablePool(scheduler, () => NEVER, ONE_SLOT, { store: new ThrowingStore() });
      atOnce = pool[POOL_PORT].acquireNow!(chatRequest('a'), { models: [MODEL] });
      of(chatRequest('b'))
        .pipe(withKeyRotation(pool))
        .subscribe({ error: (error: unknown) => (failure = error) });
      inFlight = pool.snapshot().keys[0]!.inFlight;
    });
    expect(atOnce).toBeUndefined();
    expect((failure as Error).message).toContain('store down');
    expect(inFlight).toBe(0);
  });
});
