/** The least slack added to an answered request's excess over the fastest answer. */
const ANSWERED_SLACK_MS = 10;

/**
 * How long after the transport sends a request the server may count it: the pool counts the
 * attempt in its quota windows from the send plus this margin, so a slow answer does not hold
 * quota the server has already freed. How long the trip takes is unknown (a loaded event loop
 * delays a send by tens of milliseconds), so the margin is found out:
 *
 * - it starts wide (`startMs`) and narrows by 1 % per success toward the configured floor, so
 *   it crosses the trips' upper tail slowly, from above;
 * - a refusal the pool's window did not expect (a platform 429 on a scope whose quota was known
 *   when the request went out) proves it short: it widens to twice the time that request took to
 *   be refused (an upper bound of its trip), and does not narrow below that time again until many
 *   successes have passed without another such refusal.
 *
 * Once an answer is in, its entry counts from its send plus how much longer it took than the
 * model's fastest answer (see `AnswerLag`) plus `answeredSlackMs`, for the trip jitter the fastest
 * answer did not show; a surprise refusal widens that slack too.
 */
export class SendMargin {
  private marginMs: number;
  /** The longest trip a refusal proved, fading slowly with successes. */
  private provenMs = 0;

  constructor(
    private readonly floorMs: number,
    startMs: number,
    /** Never wider than the margin assumed before a send is known: past it, counting from the send gains nothing. */
    private readonly ceilingMs: number,
  ) {
    this.marginMs = Math.min(ceilingMs, Math.max(floorMs, startMs));
  }

  get currentMs(): number {
    return this.marginMs;
  }

  /** Added to an answered request's excess over its model's fastest answer: twice any trip a refusal proved, at least 10 ms. */
  get answeredSlackMs(): number {
    return Math.min(this.ceilingMs, Math.max(ANSWERED_SLACK_MS, 2 * this.provenMs));
  }

  /** A known quota's server refused a request sent `lagMs` before the refusal came back. */
  widen(lagMs: number): void {
    this.provenMs = Math.max(this.provenMs, lagMs);
    this.marginMs = Math.min(this.ceilingMs, Math.max(this.marginMs, 2 * lagMs));
  }

  narrow(): void {
    this.provenMs *= 0.9999;
    this.marginMs = Math.max(this.floorMs, this.provenMs, this.marginMs * 0.99);
  }
}
