import { BehaviorSubject, of, type Observable } from 'rxjs';
import type { KeyCredential } from '../core/types.js';
import { AdaptiveLimit, type AdaptiveLimitPolicy } from '../health/adaptive-limit.js';
import type { Breaker } from '../health/breaker.js';
import type { LimitsConfig } from '../health/limits.js';
import type { Limiter } from '../health/limiter.js';
import {
  emptyUsage,
  type Credit,
  type KeyHealth,
  type KeyState,
  type LastError,
  type ModelHealth,
  type UsageTotals,
} from '../health/records.js';
import type { AdmissionPlan, ScopeDefinition } from '../store/state-store.js';
import { AnswerLag } from './answer-lag.js';
import type { KeyCandidate } from './strategies.js';

/**
 * The mutable state behind the published records: one entry per key, account and model. They hold
 * data only; the pool's parts (publisher, admission, outcome policy) decide what changes them.
 */

export class AccountEntry {
  readonly keys: KeyEntry[] = [];
  /**
   * Requests of the account in flight at once, found by AIMD from in-flight budget 402s: none
   * until the first such 402 (an account has no concurrency limit of its own until it shows one).
   */
  concurrency: AdaptiveLimit | undefined = undefined;
  /** Attempts of the account's keys in flight now. */
  inFlight = 0;
  parkedUntil = 0;
  /** When the current (or last) 429 park began: 429s to requests sent before it are its burst. */
  parkStartedAt = -Infinity;
  exhaustedUntil = 0;
  rateLimitStreak = 0;
  private readonly modelScopes = new Map<string, ScopeDefinition>();

  constructor(
    readonly id: string,
    readonly scope: ScopeDefinition,
    private readonly modelLimits: Readonly<Record<string, LimitsConfig>>,
    /** The policy of the account's adaptive limit, once it needs one; undefined when adaptive concurrency is off. */
    readonly adaptive: AdaptiveLimitPolicy | undefined,
  ) {}

  /** The account's adaptive limit, started at what is in flight now when it first needs one. */
  adaptiveLimit(): AdaptiveLimit | undefined {
    if (this.concurrency === undefined && this.adaptive !== undefined) {
      this.concurrency = new AdaptiveLimit(
        Object.assign({}, this.adaptive, { initial: Math.min(this.adaptive.max, Math.max(this.adaptive.min, this.inFlight)) }),
      );
    }
    return this.concurrency;
  }

  /** The model scopes made so far, by pattern. */
  get modelScopeEntries(): ReadonlyMap<string, ScopeDefinition> {
    return this.modelScopes;
  }

  /** The scope of a `models` limit pattern within this account (OpenRouter limits per account). */
  modelScope(pattern: string): ScopeDefinition {
    let scope = this.modelScopes.get(pattern);
    if (scope === undefined) {
      scope = { id: `model:${this.id}:${pattern}`, kind: 'model', limits: this.modelLimits[pattern] ?? {}, model: pattern };
      this.modelScopes.set(pattern, scope);
    }
    return scope;
  }
}

/**
 * What keys and models share: a health record published through a `BehaviorSubject` that is only
 * built once someone asks (a record nobody watches is not worth building per request), the state
 * last reported, and the timer that ends a cooldown.
 */
export abstract class PublishedEntity<H extends KeyHealth | ModelHealth> {
  /** When the publisher republishes it next by itself (a cooldown's end, room freeing; Infinity: never). */
  refreshAt = Infinity;
  /** Changed since its record was last built, while nobody watched it. */
  stale = false;
  /** Every key and model starts closed: the last state reported in a `state-change` event. */
  lastState: KeyState = 'closed';
  lastError: LastError | null = null;
  latencyMs: number | null = null;
  timeToFirstTokenMs: number | null = null;
  usage: UsageTotals = emptyUsage();
  rateLimitStreak = 0;
  /** When the current (or last) 429 park began: 429s to requests sent before it are its burst. */
  parkStartedAt = -Infinity;
  inFlight = 0;
  private published: BehaviorSubject<H> | undefined;

  abstract readonly breaker: Breaker;
  abstract parkedUntil: number;

  /** Builds the record from the entity as it is now (publishes nothing). */
  abstract build(): H;

  /** Closed with its pool: a stream subscribed from then on gets the last record and the end. */
  private ended = false;

  /** The record's subject, created (and the record built) on first use. */
  get subject(): BehaviorSubject<H> {
    if (this.published === undefined) {
      this.stale = false;
      this.published = new BehaviorSubject(this.build());
    }
    return this.published;
  }

  /** Whether anybody watches this record now. */
  get watched(): boolean {
    return this.published?.observed ?? false;
  }

  /** The current record, built now if it went stale while unwatched. */
  get health(): H {
    if (this.published === undefined) return this.subject.value;
    if (this.stale) {
      this.stale = false;
      this.published.next(this.build());
    }
    return this.published.value;
  }

  /** Publishes a record built by the caller (who compared it with the last one). */
  publish(record: H): void {
    this.stale = false;
    if (this.published === undefined) this.published = new BehaviorSubject(record);
    else this.published.next(record);
  }

  /** A subscriber's view of the record: the current one, then each change; once closed, the last one and the end. */
  stream(): Observable<H> {
    return this.ended ? of(this.build()) : this.subject.asObservable();
  }

  /** Ends the record's stream, for those watching it and those who subscribe later. */
  close(): void {
    this.ended = true;
    this.published?.complete();
  }
}

/** How many keys of a registry are disabled, counted as each changes, so no request scans every key to know whether all are. */
export class DisabledKeyCount {
  value = 0;
}

export class KeyEntry extends PublishedEntity<KeyHealth> implements KeyCandidate {
  #disabled = false;
  /**
   * Waits for key info to name its account before it serves, so that limits configured per
   * account hold from the first request (see `Pool`); false once the info is in or given up on.
   */
  awaitingAccount = false;
  /** Taken out of service by `pool.disable()`: only `enable` puts it back, not key info that says it is valid. */
  disabledByUser = false;
  /** Its info is being read at start: a strategy that waits for `credit` may take it once it is in. */
  infoPending = false;
  /** Found from key info (`creator_user_id`) unless the config named it. */
  account: AccountEntry;
  exhaustedUntil = 0;
  parkedUntil = 0;
  /** The shared store said this key's quotas are full until then (another process took them). */
  fullUntil = 0;
  /** Its admission plans by model (see `admissionPlanOf`), built on first use; built again when its account changes. */
  readonly #plans = new Map<string, AdmissionPlan>();
  /**
   * The plan last looked up, its model, and the memory store's bounded limiters of it as of the
   * store's plan generation (see `keptLimiters`). A strategy samples keys at random among up to
   * thousands, and for each one the plan's `Map` and the store's `WeakMap` are two lookups in
   * memory gone cold: a pool serving one model finds both in the key itself.
   */
  #lastModel: string | undefined = undefined;
  #lastPlan: AdmissionPlan | undefined = undefined;
  #lastLimiters: readonly Limiter[] | undefined = undefined;
  #lastGeneration = -1;
  credit: Credit | null = null;
  limitReset: string | null = null;

  constructor(
    readonly credential: KeyCredential,
    readonly weight: number,
    account: AccountEntry,
    readonly scope: ScopeDefinition,
    readonly breaker: Breaker,
    private readonly toRecord: (entry: KeyEntry) => KeyHealth,
    /** The config named its account: key info does not move it. */
    readonly accountConfigured: boolean,
    private readonly disabledKeys: DisabledKeyCount,
  ) {
    super();
    this.account = account;
  }

  get disabled(): boolean {
    return this.#disabled;
  }

  set disabled(disabled: boolean) {
    if (disabled === this.#disabled) return;
    this.#disabled = disabled;
    this.disabledKeys.value += disabled ? 1 : -1;
  }

  /** Its admission plans by model. */
  get plans(): ReadonlyMap<string, AdmissionPlan> {
    return this.#plans;
  }

  /** The admission plan for `model`, if built (see `admissionPlanOf`). */
  plan(model: string): AdmissionPlan | undefined {
    if (model === this.#lastModel) return this.#lastPlan;
    const plan = this.#plans.get(model);
    if (plan !== undefined) this.#remember(model, plan, undefined, -1);
    return plan;
  }

  keepPlan(model: string, plan: AdmissionPlan): void {
    this.#plans.set(model, plan);
    this.#remember(model, plan, undefined, -1);
  }

  /** The memory store's bounded limiters of the plan for `model`, kept by `keepLimiters` while the store's plan generation is `generation`. */
  keptLimiters(model: string, generation: number): readonly Limiter[] | undefined {
    return model === this.#lastModel && generation === this.#lastGeneration ? this.#lastLimiters : undefined;
  }

  keepLimiters(model: string, plan: AdmissionPlan, generation: number, limiters: readonly Limiter[]): readonly Limiter[] {
    this.#remember(model, plan, limiters, generation);
    return limiters;
  }

  /** Its plans go (its account changed, or the model's record did): built again on next use. */
  dropPlans(model?: string): void {
    if (model === undefined) this.#plans.clear();
    else this.#plans.delete(model);
    if (model === undefined || model === this.#lastModel) this.#remember(undefined, undefined, undefined, -1);
  }

  #remember(
    model: string | undefined,
    plan: AdmissionPlan | undefined,
    limiters: readonly Limiter[] | undefined,
    generation: number,
  ): void {
    this.#lastModel = model;
    this.#lastPlan = plan;
    this.#lastLimiters = limiters;
    this.#lastGeneration = generation;
  }

  get label(): string {
    return this.credential.label;
  }

  /** Held back by its own or its account's state: disabled, out of credit or limit, or parked by a 429. */
  restsAt(now: number): boolean {
    // Compared one by one rather than through `restsUntil`: every key a strategy samples comes
    // here, and a maximum of times is a number V8 may box on the way.
    if (this.disabled || this.exhaustedUntil > now || this.parkedUntil > now) return true;
    const account = this.account;
    return account.exhaustedUntil > now || account.parkedUntil > now;
  }

  /** Until when its own or its account's state holds it back (Infinity while disabled). */
  restsUntil(): number {
    if (this.disabled) return Infinity;
    const account = this.account;
    return Math.max(this.exhaustedUntil, this.parkedUntil, account.exhaustedUntil, account.parkedUntil);
  }

  build(): KeyHealth {
    return this.toRecord(this);
  }
}

export class ModelEntry extends PublishedEntity<ModelHealth> {
  parkedUntil = 0;
  /** Requests of the model in flight at once, found by AIMD from overload answers; undefined when off. */
  readonly concurrency: AdaptiveLimit | undefined;
  /** How long its answers take to start coming: bounds when the server counted an answered request. */
  readonly answerLag = new AnswerLag();
  /** Scheduler time of the first byte of the last answer it accepted: it was in service then. */
  answeredAt = -Infinity;
  /** Scheduler time its in-flight count last went from one to two or back (see `ranAloneSince`). */
  private crowdedAt = -Infinity;

  constructor(
    readonly model: string,
    readonly breaker: Breaker,
    /** The `models` limit patterns this model matches. */
    readonly limitPatterns: readonly string[],
    private readonly toRecord: (entry: ModelEntry) => ModelHealth,
    /** Scheduler time of the last request that named it: idle records go first when over the cap. */
    public lastUsedAt: number,
    adaptive: AdaptiveLimitPolicy | undefined,
  ) {
    super();
    this.concurrency = adaptive === undefined ? undefined : new AdaptiveLimit(adaptive);
  }

  build(): ModelHealth {
    return this.toRecord(this);
  }

  /** Whether an attempt sent at `sentAt`, still counted in flight, has had no other of the model beside it since. */
  ranAloneSince(sentAt: number): boolean {
    return this.inFlight <= 1 && this.crowdedAt <= sentAt;
  }

  /** Counts an attempt in or out of flight. */
  addInFlight(change: 1 | -1, clock: { now(): number }): void {
    this.inFlight += change;
    // Only a crossing between one and two in flight (rare under load) reads the clock.
    if (this.inFlight === (change === 1 ? 2 : 1)) this.crowdedAt = clock.now();
  }

  /** Whether its adaptive limit has no room for one more request now. */
  get atConcurrencyLimit(): boolean {
    return this.concurrency !== undefined && !this.concurrency.hasRoom(this.inFlight);
  }

  /**
   * Nothing would be lost by dropping the record: no request holds or waits on it by its breaker,
   * no cooldown runs, nobody watches it, and its breaker has nothing to remember.
   */
  isIdleAndHealthy(now: number): boolean {
    return (
      this.inFlight === 0 &&
      this.refreshAt === Infinity &&
      this.parkedUntil <= now &&
      this.breaker.state === 'closed' &&
      this.breaker.consecutiveFailures === 0 &&
      // A limit it learned would be learned again at the cost of refused requests.
      (this.concurrency === undefined || this.concurrency.limit >= this.concurrency.initial) &&
      !this.watched
    );
  }
}
