import { ERROR_POLICY } from '../core/error-policy.js';
import { cappedBackoffMs } from '../core/timers.js';
import { AttemptTimeoutError, type ErrorScope, type OpenRouterError } from '../core/errors.js';
import { addUsage, lastErrorOf } from '../health/records.js';
import { nextUtcMidnight } from '../health/utc-day-window.js';
import type { StateChange } from '../store/state-store.js';
import type { PoolContext } from './context.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import { overloadScopeOf } from './overload.js';
import type { QuotaLearning } from './quota-learning.js';
import { hasRequestQuota, isPlatformRefusal, refusedScope } from './scopes.js';
import type { AttemptOutcome } from './types.js';

function movingAverage(previous: number | null, sample: number, alpha: number): number {
  return previous === null ? sample : previous + alpha * (sample - previous);
}

/** A key, account or model as a 429 parks it. */
type Parkable = Pick<KeyEntry, 'rateLimitStreak' | 'parkedUntil' | 'parkStartedAt'>;

/** The next boundary of an OpenRouter key limit period, in UTC. */
export function nextLimitReset(now: number, period: string | null): number | undefined {
  const date = new Date(now);
  const nextMidnight = nextUtcMidnight(now);
  switch (period) {
    case 'daily':
      return nextMidnight;
    case 'weekly':
      // Weeks start on Monday (day 1): the midnight that opens the next one.
      return nextMidnight + ((7 - date.getUTCDay()) % 7) * 86_400_000;
    case 'monthly':
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    default:
      return undefined;
  }
}

/**
 * The outcome policy: what each attempt's outcome does to key, account and model health (see the
 * SCOPE table, openrouter-wire.md §5), and what other pools on the store report. A success closes
 * and refreshes; a failure acts by its kind (401 disables, key limit and 402 exhaust, 429 parks),
 * else counts against the breaker of the scope it names; a request-scoped error touches nothing.
 */
export class OutcomePolicy {
  private closed = false;

  constructor(
    private readonly context: PoolContext,
    /** Tells this pool's state changes apart from other pools' on a shared store. */
    private readonly origin: string,
    /** Runs after every change: a waiting request may fit now. */
    private readonly afterChange: () => void,
    /** Learns quotas from 429s; undefined when learning is off. */
    private readonly learning: QuotaLearning | undefined,
  ) {}

  close(): void {
    this.closed = true;
  }

  /** Returns whether the outcome was a refusal that taught the pool a quota it did not know when the request went out (see `PoolPort.record`). */
  record(outcome: AttemptOutcome): boolean {
    if (this.closed) return false;
    let taught = false;
    const entry = this.context.registry.key(outcome.keyLabel);
    const model = this.context.registry.model(outcome.model);
    const now = this.context.scheduler.now();
    const alpha = this.context.config.latencySmoothing;
    if (outcome.type === 'success') {
      if (entry !== undefined) {
        entry.breaker.succeed(now);
        entry.rateLimitStreak = 0;
        entry.account.rateLimitStreak = 0;
        entry.latencyMs = movingAverage(entry.latencyMs, outcome.latencyMs, alpha);
        if (outcome.timeToFirstTokenMs !== undefined) {
          entry.timeToFirstTokenMs = movingAverage(entry.timeToFirstTokenMs, outcome.timeToFirstTokenMs, alpha);
        }
        entry.usage = addUsage(entry.usage, outcome.usage, true);
        this.context.sendMargin.narrow();
        this.learning?.onSuccess(entry.plan(model.model) ?? [], now);
        this.context.publisher.markKey(entry);
      }
      model.breaker.succeed(now);
      model.rateLimitStreak = 0;
      model.latencyMs = movingAverage(model.latencyMs, outcome.latencyMs, alpha);
      if (outcome.timeToFirstTokenMs !== undefined) {
        model.timeToFirstTokenMs = movingAverage(model.timeToFirstTokenMs, outcome.timeToFirstTokenMs, alpha);
      }
      model.usage = addUsage(model.usage, outcome.usage, true);
      this.context.publisher.markModel(model);
      if (this.context.eventsWatched()) {
        this.context.emit(Object.assign({}, outcome, { at: now }));
      }
    } else {
      if (this.context.eventsWatched()) {
        const { error } = outcome;
        this.context.emit({
          type: 'failure',
          ...(outcome.requestId === undefined ? {} : { requestId: outcome.requestId }),
          ...(outcome.attempt === undefined ? {} : { attempt: outcome.attempt }),
          keyLabel: outcome.keyLabel,
          model: outcome.model,
          kind: error.kind,
          scope: error.scope,
          ...(error.status === undefined ? {} : { status: error.status }),
          message: error.message,
          at: now,
        });
      }
      const sentAt = outcome.sentAt ?? now;
      // Before the park decision, which asks whether the refusal taught its scope's quota.
      if (entry !== undefined && isPlatformRefusal(outcome.error))
        taught = this.onPlatformRefusal(entry, model, outcome.error, now, sentAt);
      if (outcome.error.scope === 'request') this.settleProbes(entry, model, now);
      else this.applyFailure(entry, model, outcome.error, now, sentAt, outcome.countsAgainstHealth !== false);
      // After the park decision, which asks whether the limit was already at its floor.
      if (outcome.afterContent !== true) this.lowerConcurrency(entry, model, outcome.error, now, sentAt);
      if (outcome.usage !== undefined) {
        // Billed tokens of a failed attempt still count: OpenRouter charged them.
        if (entry !== undefined) entry.usage = addUsage(entry.usage, outcome.usage, false);
        model.usage = addUsage(model.usage, outcome.usage, false);
      }
    }
    this.context.publisher.flush();
    this.afterChange();
    return taught;
  }

  /**
   * A platform 429: a quota to learn if it reports one; and if the scope's quota was known when
   * the request went out, the pool's window had room the server's did not, so the request took
   * longer to be counted than the send margin allowed.
   */
  private onPlatformRefusal(entry: KeyEntry, model: ModelEntry, error: OpenRouterError, now: number, sentAt: number): boolean {
    const scope = refusedScope(entry, model, error);
    const knownAt =
      scope === undefined ? Infinity : (this.learning?.quotaKnownAt(scope) ?? (hasRequestQuota(scope) ? -Infinity : Infinity));
    if (sentAt > knownAt) this.context.sendMargin.widen(now - sentAt);
    if (error.rateLimit === undefined || this.learning === undefined || scope === undefined) return false;
    this.learning.onRefused(entry, model, error, now, sentAt);
    // A lesson: the quota was unknown when the request went out, and this refusal (or another of
    // the same burst) taught it. Each scope teaches once, so a request gets few such refusals.
    return sentAt <= knownAt && this.learning.quotaKnownAt(scope) <= now;
  }

  /**
   * An overload answer lowers the adaptive limit of the scope it names (once per burst). A whole
   * answer's total timeout after an attempt that ran alone (its own the only one of the model in
   * flight from its send on) is a stall instead (see `AdaptiveLimit.stall`).
   */
  private lowerConcurrency(entry: KeyEntry | undefined, model: ModelEntry, error: OpenRouterError, now: number, sentAt: number): void {
    const scope = overloadScopeOf(error);
    const totalTimeout = scope === 'model' && error instanceof AttemptTimeoutError && error.phase === 'total';
    const changed =
      totalTimeout && model.ranAloneSince(sentAt)
        ? model.concurrency?.stall(now)
        : scope === 'model' && model.concurrency?.overload(model.inFlight, sentAt, now, totalTimeout);
    if (changed === true) {
      this.concurrencyChanged('model', model.model, model.concurrency!.limit, now);
      this.context.publisher.markModel(model);
    }
    const account = entry?.account;
    if (scope === 'account' && account?.adaptiveLimit()?.overload(account.inFlight, sentAt, now) === true) {
      this.concurrencyChanged('account', account.id, account.concurrency!.limit, now);
      this.context.publisher.markAccount(account);
    }
  }

  private concurrencyChanged(scope: 'model' | 'account', target: string, limit: number, now: number): void {
    this.context.emit({ type: 'concurrency', scope, target, limit, at: now });
  }

  /**
   * A request-scoped error (400, 404, context length, moderation): the key authenticated and the
   * model answered, the payload was at fault. That is no failure of either, and it settles a
   * half-open probe: a model probed only by requests it refuses (a 404 for a misspelt id) would
   * otherwise stay half-open for good.
   */
  private settleProbes(entry: KeyEntry | undefined, model: ModelEntry, now: number): void {
    if (entry !== undefined && entry.breaker.state === 'half-open') {
      entry.breaker.succeed(now);
      this.context.publisher.markKey(entry);
    }
    if (model.breaker.state === 'half-open') {
      model.breaker.succeed(now);
      this.context.publisher.markModel(model);
    }
  }

  /** `counts`: whether the failure counts against health (see `AttemptOutcome.countsAgainstHealth`). */
  private applyFailure(
    entry: KeyEntry | undefined,
    model: ModelEntry,
    error: OpenRouterError,
    now: number,
    sentAt: number,
    counts: boolean,
  ): void {
    const lastError = lastErrorOf(error, now);
    // A key shows the errors that touch it; a model's (an upstream 503) show on the model.
    if (counts && (error.scope === 'key' || error.scope === 'account' || error.scope === 'transport') && entry !== undefined) {
      entry.lastError = lastError;
      this.context.publisher.markKey(entry);
    }
    if (counts && error.scope === 'model') {
      model.lastError = lastError;
      this.context.publisher.markModel(model);
    }
    switch (ERROR_POLICY[error.kind].health) {
      case 'disable-key':
        if (entry !== undefined) this.disableKey(entry, now);
        return;
      case 'exhaust-key':
        if (entry !== undefined) {
          const until =
            error.retryAfterMs !== undefined
              ? now + error.retryAfterMs
              : (nextLimitReset(now, entry.limitReset) ?? now + this.context.config.exhaustedRetryMs);
          entry.exhaustedUntil = Math.max(entry.exhaustedUntil, until);
          this.share('key', entry.label, 'exhausted', until, now);
          this.context.emit({
            type: 'cooldown',
            scope: 'key',
            target: entry.label,
            reason: 'exhausted',
            until,
            errorKind: error.kind,
            at: now,
          });
        }
        return;
      case 'credits':
        if (entry !== undefined && error.scope === 'account') {
          const account = entry.account;
          if (error.retryable && error.retryAfterMs !== undefined) {
            // A transient in-flight budget: wait the hint out, the credit is there.
            account.parkedUntil = Math.max(account.parkedUntil, now + error.retryAfterMs);
            this.share('account', account.id, 'parked', account.parkedUntil, now);
            this.context.emit({
              type: 'cooldown',
              scope: 'account',
              target: account.id,
              reason: 'rate-limit',
              until: account.parkedUntil,
              errorKind: error.kind,
              at: now,
            });
          } else {
            account.exhaustedUntil = Math.max(account.exhaustedUntil, now + (error.retryAfterMs ?? this.context.config.exhaustedRetryMs));
            this.share('account', account.id, 'exhausted', account.exhaustedUntil, now);
            this.context.emit({
              type: 'cooldown',
              scope: 'account',
              target: account.id,
              reason: 'exhausted',
              until: account.exhaustedUntil,
              errorKind: error.kind,
              at: now,
            });
          }
          this.context.publisher.markAccount(account);
        }
        return;
      case 'park':
        this.park(entry, model, error, now, sentAt);
        return;
      case 'failure':
        if (counts) this.countFailure(entry, model, error.scope, now, error.retryAfterMs);
        return;
      case 'none':
        return;
    }
  }

  /** A 429 parks its scope until the reset without counting as a health failure. */
  private park(entry: KeyEntry | undefined, model: ModelEntry, error: OpenRouterError, now: number, sentAt: number): void {
    const { rateLimitCooldownMs, maxRateLimitCooldownMs } = this.context.config;
    const holder: Parkable | undefined = error.scope === 'model' ? model : error.scope === 'account' ? entry?.account : entry;
    if (holder === undefined) return;
    // The account's free-model bucket refused, and taught its quota: the learned window holds the
    // account's free models until the reset, and its paid models, which the bucket does not
    // limit, go on (a park would hold the whole account).
    if (error.scope === 'account' && entry !== undefined && this.freeBucketLearned(entry, model, error, now)) return;
    // A provider at capacity without a hint, with other requests in flight: the adaptive limit
    // holds the excess back, and parking the whole model would idle the capacity it has. A
    // refusal of a request sent alone (or with the limit at its floor) is no excess: it parks.
    const concurrency = model.concurrency;
    const excess = concurrency !== undefined && model.inFlight > 1 && !concurrency.atFloor;
    if (error.scope === 'model' && error.retryAfterMs === undefined && excess) return;
    // One burst is one signal: a 429 to a request sent before the scope was last parked answers
    // the overload that park already stands for. Without a hint it changes nothing; a burst of
    // simultaneous answers can never park a scope for longer than one step.
    const sameBurst = sentAt < holder.parkStartedAt;
    if (sameBurst && error.retryAfterMs === undefined && error.rateLimit === undefined) return;
    // Without a hint, back off: the wait doubles only for a 429 to a request sent after the
    // previous park ended (the limit held even after the wait), up to the cap; with equal jitter
    // (half fixed, half random), so what is parked together does not resume together.
    const grows = !sameBurst && sentAt >= holder.parkedUntil;
    const steps = grows ? holder.rateLimitStreak : Math.max(0, holder.rateLimitStreak - 1);
    const backoffMs = cappedBackoffMs(rateLimitCooldownMs, 2, steps, maxRateLimitCooldownMs);
    // A platform 429's `X-RateLimit-Reset` is exact to the millisecond; `Retry-After` rounds it up to
    // whole seconds. A hint of no wait (a reset already past: the server's clock behind ours) says
    // nothing: the next hint, else the backoff, stands, or the key would be retried into 429 after 429.
    const hintMs = positiveOrUndefined(error.rateLimit?.resetAfterMs) ?? positiveOrUndefined(error.retryAfterMs);
    const waitMs = hintMs ?? backoffMs / 2 + (this.context.config.random() * backoffMs) / 2;
    if (grows) holder.rateLimitStreak++;
    if (!sameBurst) holder.parkStartedAt = now;
    holder.parkedUntil = Math.max(holder.parkedUntil, now + waitMs);
    const scope = error.scope === 'model' ? 'model' : error.scope === 'account' ? 'account' : 'key';
    const target = scope === 'model' ? model.model : scope === 'account' ? entry!.account.id : entry!.label;
    this.share(scope, target, 'parked', holder.parkedUntil, now);
    this.context.emit({ type: 'cooldown', scope, target, reason: 'rate-limit', until: holder.parkedUntil, errorKind: error.kind, at: now });
    if (scope === 'model') this.context.publisher.markModel(model);
    else if (scope === 'account') this.context.publisher.markAccount(entry!.account);
    else this.context.publisher.markKey(entry!);
  }

  private countFailure(
    entry: KeyEntry | undefined,
    model: ModelEntry,
    scope: ErrorScope,
    now: number,
    retryAfterMs: number | undefined,
  ): void {
    if (scope === 'model') {
      const opened = model.breaker.fail(now);
      if (retryAfterMs !== undefined) model.breaker.holdOpenUntil(now + retryAfterMs);
      this.context.publisher.markModel(model);
      if (opened || retryAfterMs !== undefined) {
        this.share('model', model.model, 'open', model.breaker.openUntil, now);
        this.context.emit({
          type: 'cooldown',
          scope: 'model',
          target: model.model,
          reason: 'failures',
          until: model.breaker.openUntil,
          at: now,
        });
      }
    } else if ((scope === 'transport' || scope === 'key') && entry !== undefined) {
      const opened = entry.breaker.fail(now);
      this.context.publisher.markKey(entry);
      if (opened) {
        this.share('key', entry.label, 'open', entry.breaker.openUntil, now);
        this.context.emit({
          type: 'cooldown',
          scope: 'key',
          target: entry.label,
          reason: 'failures',
          until: entry.breaker.openUntil,
          at: now,
        });
      }
    }
  }

  /**
   * Whether an account's 429 refused its free-model bucket (the one model scope a platform 429
   * names) and its quota is learned, not configured: the learned window holds those models then.
   */
  private freeBucketLearned(entry: KeyEntry, model: ModelEntry, error: OpenRouterError, now: number): boolean {
    const refused = refusedScope(entry, model, error);
    return refused?.kind === 'model' && !hasRequestQuota(refused) && (this.learning?.quotaKnownAt(refused) ?? Infinity) <= now;
  }

  /** Shares a state change with the other pools on the store. */
  share(
    scope: StateChange['scope'],
    target: string,
    state: StateChange['state'],
    until: number,
    now: number,
    reason?: StateChange['reason'],
  ): void {
    this.context.store.publish({
      scope,
      target,
      state,
      remainingMs: until - now,
      origin: this.origin,
      at: now,
      ...(reason === undefined ? {} : { reason }),
    });
  }

  /** Applies another pool's state change; cooldowns only ever extend, as with local signals. */
  applyChange(change: StateChange): void {
    if (change.origin === this.origin || this.closed) return;
    const now = this.context.scheduler.now();
    const until = now + change.remainingMs;
    if (change.state === 'learned') {
      const scope = this.context.registry.scopeById(change.target);
      if (scope !== undefined) this.learning?.applyShared(change, scope);
      this.afterChange();
      return;
    }
    if (change.scope === 'key') {
      const entry = this.context.registry.key(change.target);
      if (entry === undefined) return;
      if (change.state === 'parked') entry.parkedUntil = Math.max(entry.parkedUntil, until);
      else if (change.state === 'open') entry.breaker.holdOpenUntil(until);
      else if (change.state === 'exhausted') entry.exhaustedUntil = Math.max(entry.exhaustedUntil, until);
      else if (change.state === 'disabled') this.applyDisabling(entry, change, now);
      else {
        // A user's `enable`, or key info that read fine somewhere (which leaves a user's disabling).
        if (change.reason === 'user') entry.disabledByUser = false;
        if (!entry.disabledByUser) entry.disabled = false;
        entry.exhaustedUntil = 0;
      }
      this.context.publisher.markKey(entry);
    } else if (change.scope === 'account') {
      const account = this.context.registry.accounts.get(change.target);
      if (account === undefined) return;
      if (change.state === 'parked') account.parkedUntil = Math.max(account.parkedUntil, until);
      else if (change.state === 'exhausted') account.exhaustedUntil = Math.max(account.exhaustedUntil, until);
      else if (change.state === 'enabled') account.exhaustedUntil = 0;
      this.context.publisher.markAccount(account);
    } else {
      const model = this.context.registry.model(change.target);
      if (change.state === 'parked') model.parkedUntil = Math.max(model.parkedUntil, until);
      else if (change.state === 'open') model.breaker.holdOpenUntil(until);
      this.context.publisher.markModel(model);
    }
    this.context.publisher.flush();
    this.afterChange();
  }

  /**
   * Another pool's disabling of a key: a user's is one here too (key info never undoes it); a
   * 401's that the store replays from before this pool's last good key info read is stale, and is
   * cleared from the store for the pools that start later.
   */
  private applyDisabling(entry: KeyEntry, change: StateChange, now: number): void {
    if (change.reason === 'user') {
      entry.disabled = entry.disabledByUser = true;
      return;
    }
    // A disabling stored by an older version carries no time: any good read is later.
    const readSince = entry.credit !== null && entry.credit.checkedAt >= (change.at ?? -Infinity);
    if (change.replayed === true && readSince) this.share('key', entry.label, 'enabled', 0, now);
    else entry.disabled = true;
  }

  /** Disables a key: after a 401, or by the user (`byUser`, which only `enable` undoes), for every pool on the store. */
  disableKey(entry: KeyEntry, now: number, byUser = false): void {
    // Already out after a 401, the user's disabling is still news: the store must know it is theirs.
    if (entry.disabled && !byUser) return;
    const wasDisabled = entry.disabled;
    entry.disabled = true;
    if (byUser) entry.disabledByUser = true;
    this.context.publisher.markKey(entry);
    this.share('key', entry.label, 'disabled', Infinity, now, byUser ? 'user' : undefined);
    if (wasDisabled) return;
    this.context.emit({
      type: 'cooldown',
      scope: 'key',
      target: entry.label,
      reason: 'disabled',
      until: Infinity,
      ...(byUser ? {} : { errorKind: 'authentication' as const }),
      at: now,
    });
  }
}

function positiveOrUndefined(ms: number | undefined): number | undefined {
  return ms !== undefined && ms > 0 ? ms : undefined;
}
