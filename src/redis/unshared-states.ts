import type { StateChange } from '../store/state-store.js';

/**
 * State changes this process made while Redis did not answer (a key an operator disabled, a 401,
 * an exhaustion, a learned quota), by the Redis key each is stored under, the latest of each: once
 * Redis answers again they are stored and published for the fleet, with what is left of their
 * time, so that a change made during an outage does not stay this process's alone.
 */
export class UnsharedStates {
  private readonly changes = new Map<string, { change: StateChange; at: number }>();

  /** `change`, stored under `key`, was made at `now` while Redis did not answer. */
  remember(key: string, change: StateChange, now: number): void {
    this.changes.set(key, { change, at: now });
  }

  /**
   * Every change remembered, with its time left as of `now` (those whose time ran out dropped), and
   * forgets them. An enabling has no time (it deletes the stored state): it is always shared. A
   * change remembered before the store knew the pool's time keeps all of its own.
   */
  take(now: number): Array<[key: string, change: StateChange]> {
    const due: Array<[string, StateChange]> = [];
    for (const [key, { change, at }] of this.changes) {
      if (change.state === 'enabled') {
        due.push([key, change]);
        continue;
      }
      const elapsedMs = now - at;
      const remainingMs = change.remainingMs - (Number.isFinite(elapsedMs) ? Math.max(0, elapsedMs) : 0);
      if (remainingMs > 0) due.push([key, Object.assign({}, change, { remainingMs })]);
    }
    this.changes.clear();
    return due;
  }
}
