/**
 * The pool's time as the store knows it: the latest `now` a call brought, moved on by the time that
 * has passed since on the process's monotonic clock. A store only hears the pool's time when it is
 * called, and an idle process's latest is old: sends aged by it would look younger than they are,
 * and be put back into Redis's windows (a recovery, a reconnect) after they had left them.
 */
export class IdleClock {
  private latest = -Infinity;
  private latestAt = 0;

  /** A call brought the pool's time `now`. */
  note(now: number): void {
    if (now < this.latest) return;
    this.latest = now;
    this.latestAt = performance.now();
  }

  /** The pool's time now, by the latest it brought. */
  get now(): number {
    return this.latest + (performance.now() - this.latestAt);
  }
}
