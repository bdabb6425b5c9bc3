import type { KeyHealth, PoolHealth } from '../health/records.js';

/**
 * The newest snapshot `health$` sent: what the gauges report at each collection, and where spans
 * and counters look up a key's fingerprint and account. The label index is built on the first
 * lookup after a new snapshot, not on every snapshot: `health$` may send many between attempts.
 */
export class LatestHealth {
  private current: PoolHealth | undefined;
  private indexed: PoolHealth | undefined;
  private readonly byLabel = new Map<string, KeyHealth>();

  update(health: PoolHealth): void {
    this.current = health;
  }

  get snapshot(): PoolHealth | undefined {
    return this.current;
  }

  key(label: string): KeyHealth | undefined {
    if (this.indexed !== this.current) {
      this.byLabel.clear();
      for (const key of this.current?.keys ?? []) this.byLabel.set(key.label, key);
      this.indexed = this.current;
    }
    return this.byLabel.get(label);
  }
}
