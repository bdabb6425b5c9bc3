/**
 * A concurrency limit found out from overload answers (AIMD, as in Netflix's concurrency-limits
 * and TCP's congestion window): where no header states a provider's capacity, the pool sends up
 * to the limit and holds the rest back in its queue instead of sending them to draw a 429.
 *
 * - It grows as requests are accepted (their first answer byte: a provider at capacity refuses
 *   at once, so acceptance need not wait for a long answer to end), only while at least half of
 *   it is in use (idle room proves nothing): by one per acceptance until the first overload
 *   (doubling per round trip, TCP's slow start), but never past twice what it was 200 ms before
 *   (`SLOW_START_MIN_ROUND_MS`), then by one per round trip (1/limit per acceptance), and twenty
 *   times slower than that on the last step to the level where the last
 *   overload came (as CUBIC does near its last maximum), so a steady capacity costs one refused
 *   request in many, not one per few round trips. Once that level is served for a round trip
 *   (as many acceptances with that many in flight, of requests sent since it was allowed, and no
 *   refusal among them, for twice as long as refusals have taken to come back lately, so that a
 *   late refusal of the probe itself is in), the capacity is past it (it grew, or the
 *   overload was not all its own: slots still busy at the provider with requests their callers
 *   left), and it grows by one per round trip again: a limit brought low by
 *   such a burst comes back in a few round trips, not in twenty per slot. One acceptance at that
 *   level proves nothing: at capacity, the request sent into a slot an answer is leaving is served,
 *   and the next is refused.
 * - It drops to three quarters on an overload answer (a provider 429, a 529 or capacity 503, an
 *   in-flight budget 402, a timeout), once per burst: answers to requests sent before the last
 *   decrease answer the load that decrease already stands for. A probe at or past the limit of the
 *   last overload that draws one steps back to what was served instead (one below the limit): the
 *   capacity is where it was, and a cut would idle a slot for a round trip. The later answers of a
 *   burst also cap it at what the capacity served while each was out: the others in flight when it
 *   came, or the acceptances since it was sent if more (a refusal that takes as long as an answer
 *   comes back beside the answers it was refused for, and their slots are not refilled above the
 *   lowered limit). So a burst of refusals brings the limit down to what was served, not to a fixed
 *   fraction; each cap is a decrease of its own, whose burst is the requests sent before it. The
 *   first answer of a burst is not capped so: a slot whose answer came in the same instant is
 *   handed on only at the next turn, so the count in flight may fall short of what was served.
 * - A whole answer that runs out its total time may be a provider queueing past its capacity (then
 *   fewer at once are answered in time) or an answer that would not have ended in time at any load
 *   (a long generation, a body the upstream never finishes). A request of the model that ran alone
 *   and still ran out its time (`stall`) says the timeouts just before it were likely of the second
 *   kind: the cuts total timeouts made within the last `RECENT_CUT_LAGS` of their lengths (and since
 *   the last overload of another kind) are undone. Else a model that answers some requests and
 *   never ends others is cut to one at a time, and every request for it, answerable or not, drains
 *   through that slot at one timeout per attempt that runs out. The stall is no proof (other
 *   customers' requests may fill a provider's queue ahead of a lone one, or other processes' fill
 *   its capacity), so it undoes only recent cuts and changes nothing after: total timeouts that
 *   come again with many in flight cut the limit again.
 * - It stays within [min, max].
 */
export interface AdaptiveLimitPolicy {
  /** The limit before any answer. */
  readonly initial: number;
  /** The floor: requests always go out this many at a time. */
  readonly min: number;
  /** The ceiling, even when nothing ever pushes back. */
  readonly max: number;
}

export const DEFAULT_ADAPTIVE_LIMIT: AdaptiveLimitPolicy = { initial: 8, min: 1, max: 1_024 };

/** The share of the limit kept on an overload. */
const DECREASE_FACTOR = 0.75;
/** How much slower the limit grows at and past the last overload. */
const PROBE_SLOWDOWN = 20;
/** Growth per accepted request before the first overload: a slot, so doubling per round trip. */
const SLOW_START_STEP = 1;
/**
 * Slow start's shortest round trip: the limit grows to at most twice what it was this long before.
 * Answers of a few ms would otherwise double it every few ms, and a quota nobody told fills while
 * dozens more are on their way to it (bench row saturation-unknown). Round trips this long or
 * longer bring at most as many acceptances in that time as there were slots then: no change.
 */
const SLOW_START_MIN_ROUND_MS = 200;
/** Acceptance times kept: a refused request's round trip is compared with as many (a cap of this many at most). */
const ACCEPTANCES_KEPT = 256;
/**
 * How fast a slow refusal is forgotten (its lag halves every this many ms): one that came with the
 * last decreases still times the proof of the slow level, an old one hardly does.
 */
const REFUSAL_LAG_HALF_LIFE_MS = 300_000;

/** A stall undoes the cuts by total timeouts within this many of their lengths (see the class). */
const RECENT_CUT_LAGS = 3;

/** What a cut changes: kept before the first cut by a total timeout, for a stall to undo them. */
interface LimitState {
  readonly estimate: number;
  readonly decreasedAt: number;
  readonly overloadedAt: number;
  readonly overloadLevelServed: boolean;
  readonly servedAtSlowLevel: number;
  readonly slowLevelSince: number;
  readonly refusalLagMs: number;
  readonly refusalLagAt: number;
  readonly slowStartGrowth: readonly number[];
}

export class AdaptiveLimit {
  /** Fractional while it grows by less than one per success. */
  private estimate: number;
  /** Scheduler time of the last decrease: overload answers to requests sent before it are its burst. */
  private decreasedAt = -Infinity;
  /** The limit at the last overload (Infinity before any): a refusal at or past it is a probe's. */
  private overloadedAt = Infinity;
  /** Whether the level of the last overload was served for a round trip since (see the class): until then, the last step to it is slow. */
  private overloadLevelServed = false;
  /** Acceptances at the level of the last overload, of requests sent since the limit allowed it (`slowLevelSince`; NaN before). */
  private servedAtSlowLevel = 0;
  private slowLevelSince = NaN;
  /**
   * How long the refusals that lowered the limit took to come back, the slowest of them, forgotten
   * by half every `REFUSAL_LAG_HALF_LIFE_MS` (and when it was last set): a request at the slow level
   * is known to be served only after that long. Kept across decreases, because a provider may
   * refuse the extra request one way (a fast 429) and then the probe another (a timeout).
   */
  private refusalLagMs = 0;
  private refusalLagAt = 0;
  /** When the last acceptances came (a ring; NaN where none yet): what a burst's refusals were served beside. */
  private readonly acceptances = new Float64Array(ACCEPTANCES_KEPT).fill(NaN);
  private nextAcceptance = 0;
  /** In slow start, when the limit grew by one, each time within the last round (oldest first): what it was a round before. */
  private readonly slowStartGrowth: number[] = [];
  /**
   * Before the recent cuts by total timeouts, since the last overload of another kind (undefined if
   * none), and until when a stall restores it (see the class).
   */
  private beforeTotalTimeouts: { readonly state: LimitState; readonly until: number } | undefined;

  constructor(private readonly policy: AdaptiveLimitPolicy) {
    this.estimate = policy.initial;
  }

  /** The limit it started from. */
  get initial(): number {
    return this.policy.initial;
  }

  /** Whether it is down at its floor: an overload now has nothing left to lower. */
  get atFloor(): boolean {
    return this.limit <= this.policy.min;
  }

  /** A refusal that lowered the limit took `lagMs` to come back (see `refusalLagMs`). */
  private noteRefusalLag(lagMs: number, now: number): void {
    const remembered = this.refusalLagMs * 0.5 ** ((now - this.refusalLagAt) / REFUSAL_LAG_HALF_LIFE_MS);
    this.refusalLagMs = Math.max(lagMs, remembered);
    this.refusalLagAt = now;
  }

  /** Acceptances after `from`, counted back from the newest. */
  private acceptedAfter(from: number): number {
    let count = 0;
    for (let step = 1; step <= ACCEPTANCES_KEPT; step++) {
      const at = this.acceptances[(this.nextAcceptance - step + ACCEPTANCES_KEPT) % ACCEPTANCES_KEPT]!;
      if (!(at > from)) break;
      count++;
    }
    return count;
  }

  /**
   * The limit `SLOW_START_MIN_ROUND_MS` before `at`, during slow start: the limit less its growth
   * since. A clock that went back (a scheduler of the user's on the wall clock) makes the whole
   * record a round old, rather than hold the limit until the clock caught up.
   */
  private limitARoundBefore(at: number): number {
    const growth = this.slowStartGrowth;
    if (at < (growth[growth.length - 1] ?? -Infinity)) growth.length = 0;
    while (growth.length > 0 && growth[0]! <= at - SLOW_START_MIN_ROUND_MS) growth.shift();
    return this.limit - growth.length;
  }

  /** Requests allowed in flight at once. */
  get limit(): number {
    return Math.floor(this.estimate);
  }

  /** Whether one more request may go out while `inFlight` are out. */
  hasRoom(inFlight: number): boolean {
    return inFlight < this.limit;
  }

  /** A request sent at `sentAt` was accepted at `at` while `inFlight` (its own slot included) were out; returns whether the limit changed. */
  accept(inFlight: number, at: number, sentAt: number): boolean {
    this.acceptances[this.nextAcceptance] = at;
    this.nextAcceptance = (this.nextAcceptance + 1) % ACCEPTANCES_KEPT;
    const level = this.overloadedAt;
    if (!this.overloadLevelServed && inFlight >= level && sentAt >= this.slowLevelSince && ++this.servedAtSlowLevel >= level) {
      this.overloadLevelServed = at - this.slowLevelSince >= 2 * this.refusalLagMs;
    }
    if (inFlight * 2 < this.limit) return false;
    const before = this.limit;
    let step: number;
    if (level === Infinity) {
      const doubled = 2 * this.limitARoundBefore(at);
      step = Math.max(0, Math.min(SLOW_START_STEP, doubled - this.estimate));
    } else if (this.overloadLevelServed || this.estimate + 1 < level) step = 1 / this.estimate;
    else step = 1 / (this.estimate * PROBE_SLOWDOWN);
    this.estimate = Math.min(this.policy.max, this.estimate + step);
    if (level === Infinity) for (let grown = before; grown < this.limit; grown++) this.slowStartGrowth.push(at);
    if (this.limit >= level && Number.isNaN(this.slowLevelSince)) this.slowLevelSince = at;
    return this.limit !== before;
  }

  /**
   * An overload answer to a request sent at `sentAt`, with `inFlight` out (its own included); a
   * whole answer's total timeout if `totalTimeout`. Returns whether the limit changed.
   */
  overload(inFlight: number, sentAt: number, now: number, totalTimeout = false): boolean {
    if (!totalTimeout) this.beforeTotalTimeouts = undefined;
    else if (this.beforeTotalTimeouts === undefined || this.beforeTotalTimeouts.until < now)
      this.beforeTotalTimeouts = { state: this.state(), until: now + RECENT_CUT_LAGS * (now - sentAt) };
    const before = this.limit;
    this.servedAtSlowLevel = 0;
    this.slowLevelSince = NaN;
    if (sentAt >= this.decreasedAt) {
      // At or past the level of the last overload, the limit was probing for more: the capacity is
      // where it was, and the level that was served (its in-flight count before this request) is
      // kept. A cut to three quarters would idle a slot for a round trip after every probe.
      const probing = before >= this.overloadedAt;
      this.decreasedAt = now;
      this.overloadedAt = Math.max(this.policy.min, before);
      // Slow start is over for good: its record of the growth is not needed again.
      this.slowStartGrowth.length = 0;
      this.overloadLevelServed = false;
      this.noteRefusalLag(now - sentAt, now);
      this.estimate = Math.max(this.policy.min, probing ? before - 1 : Math.floor(before * DECREASE_FACTOR));
      // Not capped by the requests in flight now (see the class).
      return this.limit !== before;
    }
    // What the capacity served while this request was out: the others in flight now, or, where
    // they have ended since (refusals that take as long as answers come back beside them, and
    // their slots are not refilled above the lowered limit), the acceptances in the meantime.
    const served = Math.max(this.policy.min, inFlight - 1, this.acceptedAfter(sentAt));
    if (this.estimate > served) {
      this.estimate = served;
      this.overloadedAt = Math.min(this.overloadedAt, served + 1);
      this.overloadLevelServed = false;
      this.noteRefusalLag(now - sentAt, now);
      // A lowering too: requests sent before it went out at a level it no longer allows.
      this.decreasedAt = now;
    }
    return this.limit !== before;
  }

  /**
   * A whole answer ran out its total time with none other of the model in flight beside it: not
   * an overload, and the total timeouts that lowered the limit just before were likely answers
   * like it (see the class). Returns whether the limit changed.
   */
  stall(now: number): boolean {
    const before = this.limit;
    const recent = this.beforeTotalTimeouts;
    this.beforeTotalTimeouts = undefined;
    if (recent !== undefined && recent.until >= now) {
      const restored = recent.state;
      this.estimate = Math.max(this.estimate, restored.estimate);
      this.decreasedAt = restored.decreasedAt;
      this.overloadedAt = restored.overloadedAt;
      this.overloadLevelServed = restored.overloadLevelServed;
      this.servedAtSlowLevel = restored.servedAtSlowLevel;
      this.slowLevelSince = restored.slowLevelSince;
      this.refusalLagMs = restored.refusalLagMs;
      this.refusalLagAt = restored.refusalLagAt;
      this.slowStartGrowth.splice(0, this.slowStartGrowth.length, ...restored.slowStartGrowth);
    }
    return this.limit !== before;
  }

  private state(): LimitState {
    return {
      estimate: this.estimate,
      decreasedAt: this.decreasedAt,
      overloadedAt: this.overloadedAt,
      overloadLevelServed: this.overloadLevelServed,
      servedAtSlowLevel: this.servedAtSlowLevel,
      slowLevelSince: this.slowLevelSince,
      refusalLagMs: this.refusalLagMs,
      refusalLagAt: this.refusalLagAt,
      slowStartGrowth: [...this.slowStartGrowth],
    };
  }
}
