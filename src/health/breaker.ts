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

export interface BreakerPolicy {
  consecutiveFailures: number;
  failureRateThreshold: number;
  minimumCalls: number;
  windowMs: number;
  cooldownMs: number;
  cooldownMultiplier: number;
  maxCooldownMs: number;
  halfOpenProbes: number;
}

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

export class Breaker {
  state: BreakerState = 'closed';
  /** When an open breaker turns half-open; 0 when it never opened. */
  openUntil = 0;
  consecutiveFailures = 0;
  private openings = 0;
  private probesInFlight = 0;
  private readonly window: OutcomeWindow;

  constructor(readonly policy: BreakerPolicy) {
    this.window = new OutcomeWindow(policy.windowMs);
  }

  /** Applies the passage of time: an open breaker whose cooldown ended turns half-open. */
  advance(now: number): boolean {
    if (this.state === 'open' && now >= this.openUntil) {
      this.state = 'half-open';
      this.probesInFlight = 0;
      return true;
    }
    return false;
  }

  /** Whether a new attempt may start now. Call `advance` first. */
  admits(): boolean {
    if (this.state === 'closed') return true;
    if (this.state === 'half-open') return this.probesInFlight < this.policy.halfOpenProbes;
    return false;
  }

  /** Marks the start of an admitted attempt; returns whether it is a half-open probe. */
  begin(): boolean {
    if (this.state !== 'half-open') return false;
    this.probesInFlight++;
    return true;
  }

  /**
   * Frees a probe's place when its attempt ends. The verdict (`succeed` or `fail`) is recorded
   * separately, before the slot is freed, so that no new probe slips in between the two.
   */
  abandon(probe: boolean): void {
    if (probe && this.probesInFlight > 0) this.probesInFlight--;
  }

  /** Records a success; returns whether the state changed. */
  succeed(now: number): boolean {
    this.window.record(now, false);
    this.consecutiveFailures = 0;
    if (this.state !== 'half-open') return false;
    this.state = 'closed';
    this.openings = 0;
    this.window.clear();
    return true;
  }

  /** Records a failure; returns whether the state changed. */
  fail(now: number): boolean {
    this.window.record(now, true);
    this.consecutiveFailures++;
    if (this.state === 'half-open') return this.open(now);
    if (this.state === 'closed' && this.trips(now)) return this.open(now);
    return false;
  }

  /** Holds the breaker open until at least `until`, whatever its state (a server hint). */
  holdOpenUntil(until: number): boolean {
    const changed = this.state !== 'open' || until > this.openUntil;
    this.state = 'open';
    this.openUntil = Math.max(this.openUntil, until);
    return changed;
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
    const cooldown = Math.min(maxCooldownMs, cooldownMs * cooldownMultiplier ** this.openings);
    this.openings++;
    this.window.clear();
    return this.holdOpenUntil(now + cooldown);
  }
}
