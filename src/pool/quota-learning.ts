import type { OpenRouterError } from '../core/errors.js';
import { estimateWindowMs, windowOfBucket, type LearnedQuota, type QuotaSeed } from '../health/learned-quota.js';
import type { AdmissionPlan, ScopeDefinition, StateChange } from '../store/state-store.js';
import type { PoolContext } from './context.js';
import type { AccountEntry, KeyEntry, ModelEntry } from './entities.js';
import { hasRequestQuota, refusedScope } from './scopes.js';
import { SendLog } from './send-log.js';

/** The share of a quota's limit found on record before a refused send that lets sends in flight stand in for the rest. */
const MOST_OF_LIMIT = 0.75;

/** Sends remembered per scope, to estimate a window from: quotas up to 256 requests per unnamed window. */
const SEND_LOG_CAPACITY = 256;

const LEARNED_STATE_TTL_MS = 86_400_000;

/** The bucket of a 429 whose message names none. */
const UNNAMED_BUCKET = 'rate-limit';

/** OpenRouter's bucket of the free-model requests per UTC day; key info reports its quota. */
export const FREE_MODELS_DAILY_BUCKET = 'free-models-per-day';

interface Learned {
  quota: LearnedQuota;
  /** When the quota of this window was first learned (a re-probe or a new limit keeps it). */
  readonly learnedAt: number;
  /** When a quiet spell at the limit may raise it (Infinity: never, as for a calendar day or an assumed quota). */
  reprobeAt: number;
}

/** The key, account or account-model scopes of the same kind as `scope` in this pool, `scope` left out. */
function siblingScopes(context: PoolContext, scope: ScopeDefinition): ScopeDefinition[] {
  const { registry } = context;
  if (scope.kind === 'key') return registry.keys.map((entry) => entry.scope).filter((other) => other.id !== scope.id);
  const accounts = [...registry.accounts.values()];
  const scopes =
    scope.kind === 'account' ? accounts.map((account) => account.scope) : accounts.map((account) => account.modelScope(scope.model!));
  return scopes.filter((other) => other.id !== scope.id);
}

/**
 * Limits found out, not configured: a platform 429's `X-RateLimit-Limit` and `-Reset` become a
 * quota of the scope it refused (a key, an account, an account's free models) enforced like a
 * configured one on top of the config; the window comes from the bucket's name, else from this
 * pool's own sends. A limit is re-probed upward after a quiet spell at it, so a raised limit is
 * found; a 429 naming another limit replaces it. Learned quotas travel through the store.
 *
 * Keys (accounts) of one pool usually have one plan's limits, and keys filled side by side reach
 * them together: a quota learned for one is assumed, one request looser, for every sibling whose
 * own is unknown, so the rest stop at it too instead of each finding it with a burst of 429s. The
 * extra request is the test: a sibling with the same limit is refused it and learns its own (one
 * 429); a sibling that passes it without a 429 has a larger limit, and the assumption is dropped.
 */
export class QuotaLearning {
  private readonly logs = new Map<string, SendLog>();
  /**
   * Scope ids whose logs went to another scope's when their account was left empty (a key joined
   * the account key info named): a lease admitted before still reports its send under the old id.
   */
  private readonly movedLogs = new Map<string, string>();
  /**
   * A plan's logs, looked up once: every admission logs its send in each, and a lookup by scope id
   * in a map of thousands of scopes costs more than the logging. Made anew when logs move.
   */
  private planLogs = new WeakMap<AdmissionPlan, readonly SendLog[]>();
  /** By scope id, then by bucket: a success looks up its plan's scopes, not every quota learned. */
  private readonly learned = new Map<string, Map<string, Learned>>();
  /** `<scope id> <bucket>` of assumed quotas their scope passed: not assumed again. */
  private readonly disproved = new Set<string>();

  constructor(
    private readonly context: PoolContext,
    /** Shares a learned quota with the other pools on the store. */
    private readonly origin: string,
  ) {}

  /**
   * Logs a send to every scope of the plan that may refuse one with a quota to learn: not those
   * with a configured request quota, which is the truth for them (see `onRefused`).
   */
  recordSend(plan: AdmissionPlan, at: number): void {
    let logs = this.planLogs.get(plan);
    if (logs === undefined) {
      logs = plan.filter((scope) => !hasRequestQuota(scope)).map((scope) => this.logOf(scope.id));
      this.planLogs.set(plan, logs);
    }
    for (let index = 0; index < logs.length; index++) logs[index]!.record(at);
  }

  /**
   * A key left account `from` for `to` (key info named its account): the sends it logged under
   * `from` and its model scopes count under `to`'s from now on, for the quotas `to` learns or
   * assumes next (a window `to` holds already is not made again).
   */
  onKeyJoined(from: AccountEntry, to: AccountEntry): void {
    const moves: [string, string][] = [[from.scope.id, to.scope.id]];
    for (const [pattern, scope] of from.modelScopeEntries) moves.push([scope.id, to.modelScope(pattern).id]);
    for (const [fromId, toId] of moves) {
      const sends = this.logs.get(fromId);
      if (sends === undefined) continue;
      this.logOf(toId).absorb(sends);
      // The key was the account's last (a key's own until key info came): its sends live on in `to`.
      if (from.keys.length === 0) {
        this.logs.delete(fromId);
        this.movedLogs.set(fromId, toId);
        this.planLogs = new WeakMap();
      }
    }
  }

  /** The log of a scope, or of the scope its log moved to. */
  private logFor(scopeId: string): SendLog | undefined {
    let id: string | undefined = scopeId;
    // A chain is as long as the moves made at most; the bound stops a cycle (an account emptied
    // into another that was later emptied back into it).
    for (let hops = 0; id !== undefined && hops <= this.movedLogs.size; hops++) {
      const log = this.logs.get(id);
      if (log !== undefined) return log;
      id = this.movedLogs.get(id);
    }
    return undefined;
  }

  /**
   * The logs a send on `plan` went to: as logged, or, for a plan logged before its logs moved (a
   * lease admitted before its key joined an account), wherever they went.
   */
  private sentLogs(plan: AdmissionPlan): readonly (SendLog | undefined)[] {
    return this.planLogs.get(plan) ?? plan.map((scope) => this.logFor(scope.id));
  }

  /** A send logged at admission (`from`) went out at `to`. */
  moveSend(plan: AdmissionPlan, from: number, to: number): void {
    if (from === to) return;
    for (const log of this.sentLogs(plan)) log?.moveSent(from, to);
  }

  /** The send at `sentAt` was counted by the server by `at` at the latest (its first response byte). */
  markCounted(plan: AdmissionPlan, sentAt: number, at: number): void {
    for (const log of this.sentLogs(plan)) log?.markCounted(sentAt, at);
  }

  /** The server refused a send without counting it: it leaves the logs. */
  forgetSend(plan: AdmissionPlan, sentAt: number): void {
    for (const log of this.sentLogs(plan)) log?.forget(sentAt);
  }

  private logOf(scopeId: string): SendLog {
    let log = this.logs.get(scopeId);
    if (log === undefined) {
      log = new SendLog(SEND_LOG_CAPACITY);
      this.logs.set(scopeId, log);
      // A scope in use again keeps its own log from now on.
      this.movedLogs.delete(scopeId);
    }
    return log;
  }

  /** Since when the scope's request quota is known: -Infinity when configured, Infinity when neither configured nor learned. */
  quotaKnownAt(scope: ScopeDefinition): number {
    if (hasRequestQuota(scope)) return -Infinity;
    let at = Infinity;
    // An assumed quota is a guess: its first 429 is the expected lesson, not a miscount.
    for (const learned of this.learned.get(scope.id)?.values() ?? [])
      if (learned.quota.source !== 'assumed') at = Math.min(at, learned.learnedAt);
    return at;
  }

  /** Learns from a platform 429 that reports its quota (`error.rateLimit`). */
  onRefused(entry: KeyEntry, model: ModelEntry, error: OpenRouterError, now: number, sentAt: number): void {
    const info = error.rateLimit;
    const scope = info === undefined ? undefined : refusedScope(entry, model, error);
    // A configured request quota is the truth for its scope: a 429 beside it comes from other
    // senders (a fleet on memory stores), and this pool's sends cannot tell its window.
    if (info === undefined || scope === undefined || hasRequestQuota(scope)) return;
    // The window from what the server had counted: the sends up to the refused one's (the refund
    // took it out of the log) and, since a refused request can reach the server after sends made
    // after it (a slower connection), later ones already answered. Overtaken by a few not yet
    // answered, it finds most of the limit on record: the latest sends stand in for those few
    // (erring short by them; the next 429 corrects it). Never from far fewer: the rest of the
    // window was another sender's (a process before this one), and sends in flight, which may be
    // refused too, would make it look short.
    const log = this.logs.get(scope.id);
    const counted = log?.countedBefore(sentAt) ?? [];
    const overtaken = counted.length < info.limit && counted.length >= info.limit * MOST_OF_LIMIT;
    const sends = overtaken ? log!.sentThrough(now) : counted;
    const estimatedMs = estimateWindowMs(info.limit, sends, now, info.resetAfterMs);
    const window = windowOfBucket(info.bucket) ?? (estimatedMs === undefined ? undefined : { windowMs: estimatedMs });
    // Nothing tells the window: the 429's park is all this answer teaches.
    if (window === undefined) return;
    const quota: LearnedQuota = { requests: info.limit, ...window, source: 'learned', bucket: info.bucket ?? UNNAMED_BUCKET };
    const seed: QuotaSeed = { remaining: info.remaining ?? 0, resetAfterMs: info.resetAfterMs };
    const known = this.learned.get(scope.id)?.get(quota.bucket)?.quota;
    // The window starts with every send on record, those still in flight included (they count
    // too), each from when the server had counted it at the latest, so it never runs ahead: an
    // answered one from its first byte, one still out from its send plus twice the refused
    // request's round trip (as `SendMargin` bounds a trip a refusal proved).
    const unansweredTripMs = 2 * Math.max(0, now - sentAt);
    this.apply(scope, quota, now, 'learned', seed, log?.countedTimes(unansweredTripMs) ?? []);
    this.share(scope, quota);
    if (known?.source !== 'learned' || known.requests !== quota.requests || known.windowMs !== quota.windowMs)
      this.assumeForSiblings(scope, quota, now, unansweredTripMs);
  }

  /**
   * Assumes `quota` (one request looser) for the siblings of `scope` that know no quota of its
   * bucket; their sends still out count from their send plus `unansweredTripMs` (see `onRefused`).
   */
  private assumeForSiblings(scope: ScopeDefinition, quota: LearnedQuota, now: number, unansweredTripMs: number): void {
    if (!this.context.config.learning.assumeForSiblings) return;
    const assumed: LearnedQuota = Object.assign({}, quota, { requests: quota.requests + 1, source: 'assumed' as const });
    for (const sibling of siblingScopes(this.context, scope)) {
      const known = this.learned.get(sibling.id)?.get(quota.bucket)?.quota;
      if (
        hasRequestQuota(sibling) ||
        (known !== undefined && known.source !== 'assumed') ||
        this.disproved.has(`${sibling.id} ${quota.bucket}`)
      )
        continue;
      if (known !== undefined && known.requests === assumed.requests && known.windowMs === assumed.windowMs) continue;
      // The sibling's own sends fill the window: if it has sent as many as the quota, it waits too
      // (unless they were answered: then it passed the quota, see `checkAssumption`).
      this.apply(sibling, assumed, now, 'assumed', undefined, this.logs.get(sibling.id)?.countedTimes(unansweredTripMs) ?? []);
    }
  }

  /**
   * Assumes a quota the server is documented to enforce (OpenRouter's free-model requests per
   * minute) for a scope that knows none of its bucket: one request looser, tested and dropped as
   * a sibling's assumption is (see the class). It spares an account the burst of 429s that finding
   * a limit from scratch costs; a server that counts otherwise refuses the extra request (and
   * names its own bucket) or passes it, and either way the assumption soon gives way. The window
   * holds the scope's sends; a key that joins the scope's account brings those it sent before
   * (`onKeyJoined`), so the window is made again each time one does.
   */
  assume(scope: ScopeDefinition, quota: LearnedQuota, now: number): void {
    const known = this.learned.get(scope.id)?.get(quota.bucket)?.quota;
    if ((known !== undefined && known.source !== 'assumed') || this.disproved.has(`${scope.id} ${quota.bucket}`) || hasRequestQuota(scope))
      return;
    const assumed: LearnedQuota = Object.assign({}, quota, { requests: quota.requests + 1, source: 'assumed' as const });
    // The seed says the server counted nothing beyond these sends: the window is made anew from them.
    this.apply(
      scope,
      assumed,
      now,
      'assumed',
      { remaining: assumed.requests, resetAfterMs: 0 },
      this.logs.get(scope.id)?.countedTimes() ?? [],
    );
  }

  /** Whether the scope has a quota of `bucket`, learned or assumed, or had one disproved. */
  knowsQuota(scope: ScopeDefinition, bucket: string): boolean {
    return this.learned.get(scope.id)?.has(bucket) === true || this.disproved.has(`${scope.id} ${bucket}`);
  }

  /** Learns a quota from key info (`free_model_daily_requests`): the server's count for the day is the seed. */
  fromKeyInfo(scope: ScopeDefinition, quota: LearnedQuota, seed: QuotaSeed | undefined, now: number): void {
    const known = this.learned.get(scope.id)?.get(quota.bucket);
    // A 429 is fresher than key info: key info only fills what no 429 taught.
    if (known !== undefined && known.quota.source === 'learned') return;
    this.apply(scope, quota, now, 'key-info', seed, []);
    this.share(scope, quota);
  }

  /**
   * A success on `plan`: a learned limit that saw no 429 for a while (a quiet spell) and runs at
   * its limit is raised by a tenth (at least one), to find out whether the limit went up. If not,
   * the next 429 names the limit again and replaces the raised one.
   */
  onSuccess(plan: AdmissionPlan, now: number): void {
    if (this.learned.size === 0) return;
    for (const scope of plan) {
      for (const learned of this.learned.get(scope.id)?.values() ?? []) {
        if (learned.quota.source === 'assumed') {
          this.checkAssumption(scope, learned, now);
          continue;
        }
        if (now < learned.reprobeAt) continue;
        learned.reprobeAt = now + this.reprobeAfterMs(learned.quota);
        const atLimit = this.context.store
          .remaining(scope.id, now)
          .some((quota) => quota.bucket === learned.quota.bucket && quota.remaining <= quota.limit / 10);
        if (!atLimit) continue;
        const raised: LearnedQuota = Object.assign({}, learned.quota, {
          requests: learned.quota.requests + Math.max(1, Math.ceil(learned.quota.requests / 10)),
        });
        this.apply(scope, raised, now, 'reprobe');
        this.share(scope, raised);
      }
    }
  }

  /**
   * A success on a scope with an assumed quota, or the assumption itself: once as many sends as
   * the quota admits were answered within one window, none refused, the scope has passed it without
   * a 429, so its limit is not the sibling's. Checked as it is assumed too (`apply`): a scope that has passed
   * it already would otherwise be held by a window its own sends fill, with no success to come that
   * could drop it, until they leave the window (a minute).
   */
  private checkAssumption(scope: ScopeDefinition, learned: Learned, now: number): void {
    const answered = this.logs.get(scope.id)?.answeredAfter(now - learned.quota.windowMs) ?? 0;
    if (answered < learned.quota.requests) return;
    this.context.store.unlearn(scope.id, learned.quota.bucket);
    const buckets = this.learned.get(scope.id)!;
    buckets.delete(learned.quota.bucket);
    // A pool left with nothing learned skips the success bookkeeping again.
    if (buckets.size === 0) this.learned.delete(scope.id);
    this.disproved.add(`${scope.id} ${learned.quota.bucket}`);
    this.context.emit({ type: 'limit-learned', scope: scope.kind, target: scope.id, quota: learned.quota, cause: 'disproved', at: now });
  }

  /** Applies another pool's learned quota, and assumes it for the siblings, as for a 429 of this pool's. */
  applyShared(change: StateChange, scope: ScopeDefinition): void {
    if (change.quota === undefined) return;
    const now = this.context.scheduler.now();
    this.apply(scope, change.quota, now, 'shared');
    // No refusal of this pool's bounds the trips: its sends still out count as its quota windows count them.
    if (change.quota.source === 'learned') this.assumeForSiblings(scope, change.quota, now, this.context.sendMargin.currentMs);
  }

  private apply(
    scope: ScopeDefinition,
    quota: LearnedQuota,
    now: number,
    cause: 'learned' | 'reprobe' | 'shared' | 'key-info' | 'assumed',
    seed?: QuotaSeed,
    sendTimes?: readonly number[],
  ): void {
    this.context.store.learn(scope, quota, now, seed, sendTimes);
    let buckets = this.learned.get(scope.id);
    if (buckets === undefined) {
      buckets = new Map();
      this.learned.set(scope.id, buckets);
    }
    const previous = buckets.get(quota.bucket);
    const learnedAt = previous !== undefined && previous.quota.source !== 'assumed' ? previous.learnedAt : now;
    const learned: Learned = { quota, learnedAt, reprobeAt: quota.source === 'assumed' ? Infinity : now + this.reprobeAfterMs(quota) };
    buckets.set(quota.bucket, learned);
    // The other 429s of a burst teach the same quota again (their seeds resync the window): one event says it.
    const same =
      previous !== undefined &&
      previous.quota.source === quota.source &&
      previous.quota.requests === quota.requests &&
      previous.quota.windowMs === quota.windowMs;
    if (!same) this.context.emit({ type: 'limit-learned', scope: scope.kind, target: scope.id, quota, cause, at: now });
    // A scope may have passed what it is assumed already (see `checkAssumption`).
    if (cause === 'assumed') this.checkAssumption(scope, learned, now);
  }

  /** A calendar-day quota changes with the account's credits, which key info reports: never probed. */
  private reprobeAfterMs(quota: LearnedQuota): number {
    if (quota.calendar === 'utc-day') return Infinity;
    return Math.max(this.context.config.learning.reprobeAfterMs, 10 * quota.windowMs);
  }

  private share(scope: ScopeDefinition, quota: LearnedQuota): void {
    // Kept a day on a shared store, so a process that starts later learns it too.
    this.context.store.publish({
      scope: scope.kind,
      target: scope.id,
      state: 'learned',
      remainingMs: LEARNED_STATE_TTL_MS,
      origin: this.origin,
      quota,
    });
  }
}
