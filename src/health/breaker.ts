import { cappedBackoffMs } from '../core/timers.js';
import { WindowedCount } from './windowed-count.js';

/**
 * The circuit breaker of one key or one model: a pure state machine driven by outcomes and by the
 * time passed in, so the pool can run it on any scheduler (and marble tests on virtual time).
 *
 * - **closed** admits everything. It opens after `consecutiveFailures` failures in a row, or when
 *   the failure rate over the last `windowMs` reaches `failureRateThreshold` with at least
 *   `minimumCalls` calls in that window.
 * - **open** admits nothing until `openUntil`, then turns **half-open**.
 * - **half-open** admits `halfOpenProbes` calls at a time. A success closes the breaker; a failure
 *   opens it again with the next, longer cooldown: `cooldownMs · cooldownMultiplier^n`, capped at
 *   `maxCooldownMs`, where n counts the openings since the breaker was last closed.
 * - A cooldown is only ever extended, never shortened, by a later signal.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** When a key's or model's breaker opens and how long it stays open (see `BreakerState`). */
export interface BreakerPolicy {
  /** Failures in a row that open a closed breaker. */
  consecutiveFailures: number;
  /** Failure rate over `windowMs` (0 to 1) that opens it, given `minimumCalls`. */
  failureRateThreshold: number;
  /** Calls the window must hold before the failure rate counts. */
  minimumCalls: number;
  /** Length of the sliding window the failure rate is measured over. */
  windowMs: number;
  /** Cooldown of the first opening. */
  cooldownMs: number;
  /** Factor each further opening (before the breaker closes again) multiplies the cooldown by. */
  cooldownMultiplier: number;
  /** Cap on the cooldown. */
  maxCooldownMs: number;
  /** Calls a half-open breaker admits at a time. */
  halfOpenProbes: number;
}

/** Defaults of a pool config's `breaker` and `modelBreaker`; a field given there overrides its own. */
export const defaultBreakerPolicy: Readonly<BreakerPolicy> = Object.freeze({
  consecutiveFailures: 5,
  failureRateThreshold: 0.5,
  minimumCalls: 10,
  windowMs: 60_000,
  cooldownMs: 5_000,
  cooldownMultiplier: 2,
  maxCooldownMs: 30_000,
  halfOpenProbes: 1,
});

/** Success and failure counts over the breaker's sliding window. */
class OutcomeWindow {
  private readonly successes: WindowedCount;
  private readonly failures: WindowedCount;

  constructor(windowMs: number) {
    this.successes = new WindowedCount(windowMs);
    this.failures = new WindowedCount(windowMs);
  }

  record(now: number, failed: boolean): void {
    (failed ? this.failures : this.successes).add(now);
  }

  counts(now: number): { successes: number; failures: number } {
    return { successes: this.successes.total(now), failures: this.failures.total(now) };
  }

  clear(): void {
    this.successes.clear();
    this.failures.clear();
  }
}

/**
 * The breaker's state with the data that belongs to it (cockatiel's `InnerState`): how long an
 * open breaker stays open, how many probes a half-open one has out, and, for both, how many times
 * it opened since it was last closed (which sets the next cooldown).
 */
type BreakerInner =
  | { readonly value: 'closed' }
  | { value: 'open'; until: number; openings: number }
  | { value: 'half-open'; probes: number; openings: number };

/**
 * Every closed breaker's state, one object: the pool reads each sampled key's breaker state, and
 * one shared object stays in the cache where a thousand keys' own would each be a line to fetch.
 */
const CLOSED: BreakerInner = Object.freeze({ value: 'closed' });

export class Breaker {
  consecutiveFailures = 0;
  private inner: BreakerInner = CLOSED;
  private readonly window: OutcomeWindow;

  constructor(readonly policy: BreakerPolicy) {
    this.window = new OutcomeWindow(policy.windowMs);
  }

  get state(): BreakerState {
    return this.inner.value;
  }

  /** When an open breaker turns half-open; 0 when it is not open. */
  get openUntil(): number {
    return this.inner.value === 'open' ? this.inner.until : 0;
  }

  /** Applies the passage of time: an open breaker whose cooldown ended turns half-open. */
  advance(now: number): boolean {
    if (this.inner.value === 'open' && now >= this.inner.until) {
      this.inner = { value: 'half-open', probes: 0, openings: this.inner.openings };
      return true;
    }
    return false;
  }

  /** Whether a new attempt may start now. Call `advance` first. */
  admits(): boolean {
    if (this.inner.value === 'closed') return true;
    if (this.inner.value === 'half-open') return this.inner.probes < this.policy.halfOpenProbes;
    return false;
  }

  /** Marks the start of an admitted attempt; returns whether it is a half-open probe. */
  begin(): boolean {
    if (this.inner.value !== 'half-open') return false;
    this.inner.probes++;
    return true;
  }

  /**
   * Frees a probe's place when its attempt ends. The verdict (`succeed` or `fail`) is recorded
   * separately, before the slot is freed, so that no new probe slips in between the two.
   */
  abandon(probe: boolean): void {
    if (probe && this.inner.value === 'half-open' && this.inner.probes > 0) this.inner.probes--;
  }

  /** Records a success; returns whether the state changed. */
  succeed(now: number): boolean {
    this.window.record(now, false);
    this.consecutiveFailures = 0;
    if (this.inner.value !== 'half-open') return false;
    this.inner = CLOSED;
    this.window.clear();
    return true;
  }

  /** Records a failure; returns whether the state changed. */
  fail(now: number): boolean {
    this.window.record(now, true);
    this.consecutiveFailures++;
    if (this.inner.value === 'half-open') return this.open(now);
    if (this.inner.value === 'closed' && this.trips(now)) return this.open(now);
    return false;
  }

  /** Holds the breaker open until at least `until`, whatever its state (a server hint). */
  holdOpenUntil(until: number): boolean {
    const inner = this.inner;
    if (inner.value === 'open') {
      if (until <= inner.until) return false;
      this.inner = Object.assign({}, inner, { until });
      return true;
    }
    this.inner = { value: 'open', until, openings: inner.value === 'half-open' ? inner.openings : 0 };
    return true;
  }

  counts(now: number): { successes: number; failures: number } {
    return this.window.counts(now);
  }

  private trips(now: number): boolean {
    if (this.consecutiveFailures >= this.policy.consecutiveFailures) return true;
    const { successes, failures } = this.window.counts(now);
    const calls = successes + failures;
    return calls >= this.policy.minimumCalls && failures / calls >= this.policy.failureRateThreshold;
  }

  private open(now: number): boolean {
    const { cooldownMs, cooldownMultiplier, maxCooldownMs } = this.policy;
    const openings = this.inner.value === 'closed' ? 0 : this.inner.openings;
    const cooldown = cappedBackoffMs(cooldownMs, cooldownMultiplier, openings, maxCooldownMs);
    // The window keeps the failures that opened it, for health to show; closing clears it.
    // A cooldown is only ever extended: a hint may already hold the breaker open for longer.
    this.inner = { value: 'open', until: Math.max(this.openUntil, now + cooldown), openings: openings + 1 };
    return true;
  }
}
