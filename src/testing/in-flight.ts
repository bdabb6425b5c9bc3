/**
 * Requests in flight per name (a model, an account): taken when a request is admitted, given back
 * when its exchange ends, whether the response completed, the client aborted or the server dropped it.
 */
import type { Exchange } from './exchange.js';

export class InFlightGauge {
  private readonly counts = new Map<string, number>();

  count(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  /** Counts the exchange under `name` until it ends. */
  hold(name: string, exchange: Exchange): void {
    this.counts.set(name, this.count(name) + 1);
    exchange.whenEnded(() => {
      const left = this.count(name) - 1;
      if (left > 0) this.counts.set(name, left);
      else this.counts.delete(name);
    });
  }
}
