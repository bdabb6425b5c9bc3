/** Buckets a window is cut into: counts expire a tenth of the window at a time. */
const BUCKETS = 10;

/**
 * A count over a sliding time window, kept in `BUCKETS` buckets on the caller's clock: constant
 * memory and time however many events, at the price of expiring a bucket at a time.
 */
export class WindowedCount {
  private readonly bucketMs: number;
  private readonly epochs = new Array<number>(BUCKETS).fill(-1);
  private readonly counts = new Array<number>(BUCKETS).fill(0);

  constructor(windowMs: number) {
    this.bucketMs = Math.max(1, windowMs / BUCKETS);
  }

  add(now: number): void {
    const epoch = Math.floor(now / this.bucketMs);
    const slot = epoch % BUCKETS;
    if (this.epochs[slot] !== epoch) {
      this.epochs[slot] = epoch;
      this.counts[slot] = 0;
    }
    this.counts[slot]! += 1;
  }

  /** What was added over the last window. */
  total(now: number): number {
    const current = Math.floor(now / this.bucketMs);
    let total = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const epoch = this.epochs[slot]!;
      if (epoch >= 0 && current - epoch < BUCKETS) total += this.counts[slot]!;
    }
    return total;
  }

  clear(): void {
    this.epochs.fill(-1);
  }
}
