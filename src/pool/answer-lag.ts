import type { Reservation, StateStore } from '../store/state-store.js';

/** Answers measured before the fastest is trusted: the first few include new connections. */
const TRUSTED_AFTER = 16;
/** Below this, the fastest answer's first byte is close enough to the count; the trip jitter (tens of ms on a loaded host) would eat the gain. */
const LONG_ANSWER_MS = 100;

/**
 * How long a model's accepted answers take from their send to their first response byte, kept
 * to bound when the server counted an answered request more tightly than the first byte does.
 *
 * A request's time to first byte is its trip to the server, the server's work, and the trip back.
 * An answer that took `excess` longer than the fastest spent about `excess` more than the fastest
 * on its way out at most, and a later request reaches the server no faster than the fastest trip
 * out. So an answered request's quota entry may count from its send plus its excess, plus a slack
 * (`SendMargin.answeredSlackMs`), instead of from its first byte: with answers of even length the
 * server's window and the pool's then free a slot within milliseconds of each other, where
 * counting from the first byte idles every slot for one answer's length per window.
 *
 * This is an estimate, not a proof: the fastest answer had the shortest total, not necessarily the
 * shortest trip out, and an answer whose trip out grew while the server's work shrank by as much
 * (a long prompt served from a cache, say) counts too early by the difference beyond the slack.
 * Its cost is a refusal the pool's window did not expect, which widens the slack to twice that
 * refusal's round trip (see `SendMargin`).
 *
 * The bound is only as good as the fastest answer's trip was short, so it is used where it pays:
 * when even the fastest answer takes long against the trips' jitter (a short answer's first byte
 * is already within its length of the count). Answers of uneven length (most real generations)
 * have large excesses, and the first byte stays the bound: nothing is lost against counting
 * from it.
 *
 * The answers that came before the fastest was trusted count from their first byte at first, and
 * are counted again by the same bound once it is: else each of their quota slots would idle for
 * one answer's length, and stay that far behind (sixteen answers of 250 ms cost four requests'
 * worth of quota). An early answer's lag includes any connection it opened, which only widens its
 * excess: its bound is as safe as a later answer's. On a shared store the second count moves only
 * the local window (the store's own entry already counts from the first byte of its clock).
 */
export class AnswerLag {
  private fastestMs = Infinity;
  private answers = 0;
  /** Answers counted from their first byte while the fastest was not trusted yet (at most `TRUSTED_AFTER`). */
  private early: EarlyAnswer[] = [];

  /**
   * Records an accepted answer sent at `sentAt` whose first byte came at `respondedAt`; returns the
   * latest time the server counted it: its send plus how much longer it took than the fastest
   * answer so far plus `slackMs`, or its first byte if that is sooner (always, while too few
   * answers are known or the fastest is short). An answer counted by its first byte while too few
   * were known is counted again in `store` (the pool's one store) once enough are.
   */
  countedBy(sentAt: number, respondedAt: number, slackMs: number, store: StateStore, reservation: Reservation): number {
    const lagMs = respondedAt - sentAt;
    if (lagMs < this.fastestMs) this.fastestMs = lagMs;
    this.answers += 1;
    if (this.answers < TRUSTED_AFTER) {
      this.early.push({ sentAt, lagMs, reservation });
      return respondedAt;
    }
    if (this.early.length > 0) this.recountEarly(slackMs, store);
    if (this.fastestMs < LONG_ANSWER_MS) return respondedAt;
    return this.bound(sentAt, lagMs, slackMs);
  }

  private bound(sentAt: number, lagMs: number, slackMs: number): number {
    return sentAt + Math.min(lagMs, lagMs - this.fastestMs + slackMs);
  }

  /** The fastest is trusted now: the answers before it count by its bound too (`markResponded` only moves an entry earlier). */
  private recountEarly(slackMs: number, store: StateStore): void {
    const early = this.early;
    this.early = [];
    if (this.fastestMs < LONG_ANSWER_MS) return;
    for (const answer of early) store.markResponded(answer.reservation, this.bound(answer.sentAt, answer.lagMs, slackMs));
  }
}

interface EarlyAnswer {
  readonly sentAt: number;
  readonly lagMs: number;
  readonly reservation: Reservation;
}
