import type { WindowPart } from './windows.js';

/** A send as Redis's windows take it: its reservation id, its windows, and when it counts from. */
export interface LocalSend {
  readonly id: string;
  /** The windows it counts in, with the amount it put in each at admission (empty when its plan has none). */
  readonly windows: readonly WindowPart[];
  /** Pool time its entries count from: admission plus the arrival margin, then its send, then its first byte. */
  countsFrom: number;
  /** Its billed tokens, once reconciled: what its token entries hold since. */
  billedTokens?: number;
  /** The server did not count it (a platform 429): it holds nothing. */
  refunded?: boolean;
}

/**
 * This process's sends still in a quota window, whichever mode admitted them, to put into Redis's
 * windows when it answers again: those admitted while it was down never reached it, and a Redis
 * that restarted lost the others. Without them the fleet's windows would show room this process
 * used, and other processes would fill it a second time. Bounded: a send that has left all its
 * windows goes, and beyond `capacity` the oldest do (a stricter view would cost more memory than
 * an outage is worth).
 */
export class LocalSends {
  private sends: LocalSend[] = [];
  /** Index of the oldest send kept: those before it are gone, compacted away now and then. */
  private head = 0;
  /** Sends compacted away: `sends[i]` is the `compacted + i`th send ever added. */
  private compacted = 0;

  constructor(private readonly capacity = 20_000) {}

  /** How many sends were ever added: `since` takes those added after such a count. */
  get added(): number {
    return this.compacted + this.sends.length;
  }

  add(send: LocalSend, now: number): void {
    this.sends.push(send);
    // Admitted in order: those at the front leave their windows first.
    while (this.head < this.sends.length && (this.sends.length - this.head > this.capacity || !stillCounts(this.sends[this.head]!, now))) {
      this.head++;
    }
    if (this.head > 1_024 && this.head * 2 > this.sends.length) {
      this.sends = this.sends.slice(this.head);
      this.compacted += this.head;
      this.head = 0;
    }
  }

  /** The sends added after the `added` count `from`, still in a window at `now` and still counted, oldest first. */
  since(from: number, now: number): LocalSend[] {
    const start = Math.max(this.head, from - this.compacted);
    return this.sends.slice(start).filter((send) => send.refunded !== true && stillCounts(send, now));
  }
}

function stillCounts(send: LocalSend, now: number): boolean {
  return send.windows.some((window) => send.countsFrom + window.windowMs > now);
}

/** The `BACKFILL` script's keys and parts for `sends`, their ages taken at `now`. */
export function backfillOf(sends: readonly LocalSend[], now: number): { keys: string[]; parts: string } {
  const keys = sends.flatMap((send) => send.windows.flatMap((window) => [window.window, window.sum]));
  const parts = sends.flatMap((send) =>
    send.windows.map((window) => {
      // A token entry reconciled since holds the billed count; Redis holds it under the count it
      // had when Redis last saw it (`ADJUST` renames the member), so either name means it is there.
      const amount = window.unit === 'tokens' && send.billedTokens !== undefined ? send.billedTokens : window.amount;
      const members = amount === window.amount ? [`${send.id}|${amount}`] : [`${send.id}|${window.amount}`, `${send.id}|${amount}`];
      return { members, amount, windowMs: window.windowMs, ageMs: Math.round(now - send.countsFrom) };
    }),
  );
  return { keys, parts: JSON.stringify(parts) };
}
