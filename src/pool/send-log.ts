/**
 * The recent send times of one scope: what the pool compares a 429's reset with to find out the
 * quota's window, and what a learned window starts from. A ring of the last `capacity` sends, so
 * a pool of many keys holds a few kilobytes per scope; a quota larger than the ring is estimated
 * from its reset alone (or its bucket's name). Updates search from the newest send, where they
 * almost always land, so they cost a few steps on the hot path.
 */
export class SendLog {
  private readonly times: number[] = [];
  /** Where the next send goes once the ring is full: the oldest. */
  private next = 0;

  constructor(private readonly capacity: number) {}

  record(at: number): void {
    if (this.times.length < this.capacity) this.times.push(at);
    else {
      this.times[this.next] = at;
      this.next = (this.next + 1) % this.capacity;
    }
  }

  /** A send logged at `from` went out at `to` (the transport reported it). */
  move(from: number, to: number): void {
    const index = this.newest(from);
    if (index >= 0) this.times[index] = to;
  }

  /** The server did not count a send (it answered a platform 429): it leaves the log. */
  forget(at: number): void {
    const index = this.newest(at);
    if (index >= 0) this.times[index] = NaN;
  }

  /** Send times up to `at` (inclusive), oldest first. */
  through(at: number): number[] {
    const ordered = [...this.times.slice(this.next), ...this.times.slice(0, this.next)];
    return ordered.filter((time) => time <= at);
  }

  /** The index of the newest send logged at `at`, or -1. */
  private newest(at: number): number {
    const length = this.times.length;
    for (let step = 1; step <= length; step++) {
      const index = (this.next - step + length) % length;
      if (this.times[index] === at) return index;
    }
    return -1;
  }
}
