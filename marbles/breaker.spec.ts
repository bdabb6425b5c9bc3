import { describe, expect, it } from 'vitest';
import { Breaker, defaultBreakerPolicy, type BreakerPolicy } from '../src/health/breaker.js';

/** A policy where only what a test sets can trip the breaker. */
function policy(overrides: Partial<BreakerPolicy>): BreakerPolicy {
  return {
    ...defaultBreakerPolicy,
    consecutiveFailures: 1_000,
    minimumCalls: 1_000,
    failureRateThreshold: 0.5,
    windowMs: 1_000,
    cooldownMs: 100,
    cooldownMultiplier: 2,
    maxCooldownMs: 300,
    halfOpenProbes: 1,
    ...overrides,
  };
}

/** Opens a fresh breaker at `now` through `consecutiveFailures: 1`. */
function openedAt(now: number, overrides: Partial<BreakerPolicy> = {}): Breaker {
  const breaker = new Breaker(policy({ consecutiveFailures: 1, ...overrides }));
  expect(breaker.fail(now)).toBe(true);
  return breaker;
}

describe('Breaker: closed', () => {
  it('opens after N consecutive failures, and not before', () => {
    const breaker = new Breaker(policy({ consecutiveFailures: 3 }));
    expect(breaker.fail(0)).toBe(false);
    expect(breaker.fail(1)).toBe(false);
    expect(breaker.state).toBe('closed');
    expect(breaker.admits()).toBe(true);
    expect(breaker.fail(2)).toBe(true);
    expect(breaker.state).toBe('open');
    expect(breaker.openUntil).toBe(2 + 100);
    expect(breaker.consecutiveFailures).toBe(3);
    expect(breaker.admits()).toBe(false);
    // The failures that opened it stay in its counts, for health to show, until it closes.
    expect(breaker.counts(2)).toEqual({ successes: 0, failures: 3 });
    breaker.advance(102);
    breaker.begin();
    expect(breaker.succeed(103)).toBe(true);
    expect(breaker.counts(103)).toEqual({ successes: 0, failures: 0 });
  });

  it('a success resets the consecutive count', () => {
    const breaker = new Breaker(policy({ consecutiveFailures: 3 }));
    breaker.fail(0);
    breaker.fail(1);
    breaker.succeed(2);
    expect(breaker.consecutiveFailures).toBe(0);
    breaker.fail(3);
    breaker.fail(4);
    expect(breaker.state).toBe('closed');
    expect(breaker.fail(5)).toBe(true);
  });

  it('trips on the failure rate once the window holds minimumCalls (threshold reached, >=)', () => {
    const breaker = new Breaker(policy({ minimumCalls: 4, failureRateThreshold: 0.5 }));
    breaker.succeed(0);
    breaker.fail(10);
    breaker.succeed(20);
    expect(breaker.state).toBe('closed');
    // 4 calls, 2 failures: 50 % reaches the threshold.
    expect(breaker.fail(30)).toBe(true);
    expect(breaker.state).toBe('open');
    expect(breaker.openUntil).toBe(130);
  });

  it('does not trip on the failure rate below minimumCalls, even at 100 %', () => {
    const breaker = new Breaker(policy({ minimumCalls: 4, failureRateThreshold: 0.5 }));
    expect(breaker.fail(0)).toBe(false);
    expect(breaker.fail(1)).toBe(false);
    expect(breaker.fail(2)).toBe(false);
    expect(breaker.state).toBe('closed');
    expect(breaker.counts(2)).toEqual({ successes: 0, failures: 3 });
  });

  it('does not trip on a failure rate below the threshold', () => {
    const breaker = new Breaker(policy({ minimumCalls: 4, failureRateThreshold: 0.5 }));
    breaker.succeed(0);
    breaker.succeed(1);
    breaker.succeed(2);
    breaker.fail(3);
    breaker.succeed(4);
    // 5 calls, 2 failures: 40 %.
    expect(breaker.fail(5)).toBe(false);
    expect(breaker.state).toBe('closed');
  });

  it('counts the rate over a sliding window: outcomes older than windowMs no longer count', () => {
    const breaker = new Breaker(policy({ minimumCalls: 4, failureRateThreshold: 0.5, windowMs: 1_000 }));
    breaker.fail(0);
    breaker.fail(0);
    breaker.fail(0);
    expect(breaker.counts(0)).toEqual({ successes: 0, failures: 3 });
    // Two windows later the three failures are gone: one call in the window, under minimumCalls.
    expect(breaker.fail(2_000)).toBe(false);
    expect(breaker.counts(2_000)).toEqual({ successes: 0, failures: 1 });
    expect(breaker.state).toBe('closed');
  });
});

describe('Breaker: open and half-open', () => {
  it('turns half-open exactly at openUntil', () => {
    const breaker = openedAt(50);
    expect(breaker.openUntil).toBe(150);
    expect(breaker.advance(149)).toBe(false);
    expect(breaker.state).toBe('open');
    expect(breaker.admits()).toBe(false);
    expect(breaker.advance(150)).toBe(true);
    expect(breaker.state).toBe('half-open');
    expect(breaker.admits()).toBe(true);
    // A second advance is not a transition.
    expect(breaker.advance(151)).toBe(false);
  });

  it('half-open admits halfOpenProbes attempts at a time', () => {
    const breaker = openedAt(0, { halfOpenProbes: 2 });
    breaker.advance(100);
    expect(breaker.admits()).toBe(true);
    expect(breaker.begin()).toBe(true);
    expect(breaker.admits()).toBe(true);
    expect(breaker.begin()).toBe(true);
    expect(breaker.admits()).toBe(false);
    // An abandoned probe frees its place.
    breaker.abandon(true);
    expect(breaker.admits()).toBe(true);
  });

  it('an attempt begun while closed is not a probe', () => {
    const breaker = new Breaker(policy({}));
    expect(breaker.begin()).toBe(false);
  });

  it('a probe success closes the breaker and clears its window', () => {
    const breaker = openedAt(0);
    breaker.advance(100);
    breaker.begin();
    expect(breaker.succeed(110)).toBe(true);
    expect(breaker.state).toBe('closed');
    expect(breaker.consecutiveFailures).toBe(0);
    expect(breaker.counts(110)).toEqual({ successes: 0, failures: 0 });
    expect(breaker.admits()).toBe(true);
  });

  it('a probe failure reopens with a cooldown growing by the multiplier, capped at maxCooldownMs', () => {
    // cooldownMs 100, multiplier 2, cap 300: 100, 200, 300 (not 400), 300.
    const breaker = openedAt(0);
    expect(breaker.openUntil).toBe(100);
    const cooldowns: number[] = [];
    let now = 100;
    for (let i = 0; i < 3; i++) {
      expect(breaker.advance(now)).toBe(true);
      breaker.begin();
      expect(breaker.fail(now + 5)).toBe(true);
      expect(breaker.state).toBe('open');
      cooldowns.push(breaker.openUntil - (now + 5));
      now = breaker.openUntil;
    }
    expect(cooldowns).toEqual([200, 300, 300]);
  });

  it('the cooldown starts over from cooldownMs once the breaker closed again', () => {
    const breaker = openedAt(0);
    breaker.advance(100);
    breaker.fail(100); // reopens for 200
    breaker.advance(300);
    breaker.succeed(300);
    expect(breaker.state).toBe('closed');
    breaker.fail(400);
    expect(breaker.state).toBe('open');
    expect(breaker.openUntil).toBe(500);
  });
});

describe('Breaker: holdOpenUntil', () => {
  it('opens a closed breaker until the hint', () => {
    const breaker = new Breaker(policy({}));
    expect(breaker.holdOpenUntil(250)).toBe(true);
    expect(breaker.state).toBe('open');
    expect(breaker.openUntil).toBe(250);
  });

  it('only ever extends: an earlier hint changes nothing, a later one extends', () => {
    const breaker = openedAt(0); // open until 100
    expect(breaker.holdOpenUntil(60)).toBe(false);
    expect(breaker.openUntil).toBe(100);
    expect(breaker.holdOpenUntil(400)).toBe(true);
    expect(breaker.openUntil).toBe(400);
    expect(breaker.holdOpenUntil(399)).toBe(false);
    expect(breaker.openUntil).toBe(400);
    expect(breaker.advance(399)).toBe(false);
    expect(breaker.advance(400)).toBe(true);
  });

  it('a half-open breaker goes back to open on a hint, and a late failure keeps the hint', () => {
    const breaker = new Breaker(policy({ consecutiveFailures: 1 }));
    breaker.holdOpenUntil(1_000);
    expect(breaker.advance(1_000)).toBe(true);
    expect(breaker.holdOpenUntil(5_000)).toBe(true);
    expect(breaker.state).toBe('open');
    // A failure of an attempt begun earlier must not pull the cooldown back to 1001 + 100.
    breaker.fail(1_001);
    expect(breaker.state).toBe('open');
    expect(breaker.openUntil).toBe(5_000);
  });
});
