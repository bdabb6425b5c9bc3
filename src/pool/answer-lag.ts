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
 */
export class AnswerLag {
  private fastestMs = Infinity;
  private answers = 0;

  /**
   * Records an accepted answer sent at `sentAt` whose first byte came at `respondedAt`; returns the
   * latest time the server counted it: its send plus how much longer it took than the fastest
   * answer so far plus `slackMs`, or its first byte if that is sooner (always, while too few
   * answers are known or the fastest is short).
   */
  countedBy(sentAt: number, respondedAt: number, slackMs: number): number {
    const lagMs = respondedAt - sentAt;
    if (lagMs < this.fastestMs) this.fastestMs = lagMs;
    this.answers += 1;
    if (this.answers < TRUSTED_AFTER || this.fastestMs < LONG_ANSWER_MS) return respondedAt;
    return Math.min(respondedAt, sentAt + lagMs - this.fastestMs + slackMs);
  }
}
