import { Subject, BehaviorSubject, type Observable } from 'rxjs';
import type { LearnedQuota, QuotaSeed } from '../health/learned-quota.js';
import type { LimitsConfig } from '../health/limits.js';
import type { QuotaRemaining } from '../health/records.js';
import { Limiter, type LimiterHold } from '../health/limiter.js';

/**
 * Where a pool keeps the state that several pools (in one process, or in many processes on many
 * machines) must agree on: quotas per scope, in-flight slots, and cooldown, open, exhausted and
 * disabled states. The pool and its operators use only this interface; the in-memory store below is
 * the default, and `openrouter-rx/redis` puts the same state on Redis.
 *
 * Shared: every quota window and concurrency slot, 429 parks, open breakers (as their cooldown),
 * exhaustion and disabling. Local to each pool: failure counting (each pool trips its own breaker,
 * then shares the opening), half-open probes, latency and time-to-first-token averages, usage totals.
 */

/** One scope whose quotas and slots an attempt takes: a key, an account, or a model in an account. */
export interface ScopeDefinition {
  /** Stable across processes: `key:<label>`, `account:<id>`, `model:<account>:<pattern>`. */
  readonly id: string;
  /** Whose limits they are: a key's, an account's or a model's. */
  readonly kind: QuotaRemaining['scope'];
  /** The scope's quotas and `maxConcurrent` slots. */
  readonly limits: LimitsConfig;
  /** For model scopes, the pattern the limits apply to. */
  readonly model?: string;
}

/** The scopes one attempt takes room in, in a fixed order. */
export type AdmissionPlan = readonly ScopeDefinition[];

/** Room taken by one attempt; give it back with `release`. */
export interface Reservation {
  /** Unique to this reservation, so a store can release exactly its room. */
  readonly id: string;
  /** The scopes it took room in. */
  readonly plan: AdmissionPlan;
}

/** The answer of `StateStore.reserve`: the room taken, or how long until there may be some. */
export type ReserveResult =
  | { readonly ok: true; readonly reservation: Reservation }
  /** No room: `retryAfterMs` from now, the earliest a quota window or slot frees. */
  | { readonly ok: false; readonly retryAfterMs: number };

/**
 * A state shared between pools: `parked` (429), `open` (breaker), `exhausted`, `disabled`,
 * `enabled` (back in service: clears `disabled` and `exhausted`), and `learned` (a quota found
 * out from a 429 or key info, in `quota`).
 */
export type SharedStateKind = 'parked' | 'open' | 'exhausted' | 'disabled' | 'enabled' | 'learned';

/** A state change one pool shares with the others; times are relative, since clocks differ. */
export interface StateChange {
  /** What kind of thing `target` is. */
  readonly scope: 'key' | 'account' | 'model';
  /** A key label, an account id or a model id. */
  readonly target: string;
  /** The state it enters. */
  readonly state: SharedStateKind;
  /** How long the state lasts from when it was published; `Infinity` for `disabled`. */
  readonly remainingMs: number;
  /** The publishing pool, so that it can ignore its own changes. */
  readonly origin: string;
  /** With `learned`: the quota, for the scope whose id is `target`. */
  readonly quota?: LearnedQuota;
  /**
   * Set by a store replaying a state it kept (at the pool's start, or when the store answers again
   * after an outage): it may predate what the pool has found out since.
   */
  readonly replayed?: boolean;
  /** The publishing pool's time when it published (its scheduler's; by default the wall clock's, held from going back). */
  readonly at?: number;
  /** `user`: the pool's user disabled or enabled the key (`pool.disable`, `pool.enable`); key info never undoes that. */
  readonly reason?: 'user';
}

/** `shared`: the store answers. `local`: it failed, and each pool limits alone (a share of each quota). */
export interface StoreStatus {
  /** Whether the store's shared state answers. */
  readonly mode: 'shared' | 'local';
  /** Why it went `local`: the failure's message. */
  readonly reason?: string;
}

/**
 * Where a pool keeps quotas, slots and the states pools share: in the process with
 * `createMemoryStore` (the default), on Redis with `openrouter-rx/redis`.
 */
export interface StateStore {
  /** Declares a scope and its limits; idempotent. */
  define(scope: ScopeDefinition): void;
  /** Whether `plan` has room for `tokens` now, as far as this process can tell without a round trip. */
  fits(plan: AdmissionPlan, tokens: number, now: number): boolean;
  /** The earliest time the quotas of `plan` admit `tokens` (slots aside). */
  nextFitAt(plan: AdmissionPlan, tokens: number, now: number): number;
  /**
   * Atomically takes room in every quota and slot of `plan`, or says when to try again. A store
   * that can answer at once (the memory store) returns the result itself, so an admission costs no
   * subscription; one that needs a round trip returns an Observable of it.
   */
  reserve(plan: AdmissionPlan, tokens: number, now: number): ReserveResult | Observable<ReserveResult>;
  /**
   * The request went to the network at `now`: quota entries count from `now + marginMs` at the
   * latest (the pool's margin for the trip; a store may hold a wider floor of its own).
   */
  markSent(reservation: Reservation, now: number, marginMs: number): void;
  /**
   * The first response byte arrived: quota entries count from `countedBy` at the latest (the first
   * byte's time, or sooner when the pool can bound the server's count more tightly, see `AnswerLag`).
   */
  markResponded(reservation: Reservation, countedBy: number): void;
  /** Replaces the token estimate with the billed count. */
  reconcile(reservation: Reservation, tokens: number): void;
  /** Frees the reservation's slots (its quota entries stay until they leave their windows). */
  release(reservation: Reservation): void;
  /** The server refused the attempt without counting it (a platform 429): its quota entries leave their windows. */
  refund(reservation: Reservation): void;
  /**
   * Adds a learned quota to a scope, or replaces the one learned for the same window (see
   * `Limiter.learn`); it is enforced on top of the configured limits. With a `seed`, the window
   * starts as full as the server said, filled with `sendTimes` (this pool's sends to the scope).
   */
  learn(scope: ScopeDefinition, quota: LearnedQuota, now: number, seed?: QuotaSeed, sendTimes?: readonly number[]): void;
  /** Drops a scope's learned quota of `bucket`, if it has one. */
  unlearn(scopeId: string, bucket: string): void;
  /**
   * A key moved from the account scope (or account-model scope) `from` to `to`, when key info
   * named its account: what `from`'s quota windows hold counts in `to`'s windows of the same unit
   * and length too, so a quota of the account is not spent a second time. Once per pair of
   * scopes, however many pools on the store report the move. Optional: a store without it counts
   * the moved key's earlier sends in its old scopes only.
   */
  absorb?(from: ScopeDefinition, to: ScopeDefinition, now: number): void;
  /** The quotas learned for a scope so far. */
  learnedQuotas(scopeId: string): LearnedQuota[];
  /** What is left of a scope's quotas. */
  remaining(scopeId: string, now: number): QuotaRemaining[];
  /** Shares a state change with every pool on this store. */
  publish(change: StateChange): void;
  /** State changes published by any pool on this store, its own included. */
  readonly changes$: Observable<StateChange>;
  /** Whether the store works shared or has fallen back to local limits; starts `shared`. */
  readonly status$: Observable<StoreStatus>;
  /** Completes `changes$` and `status$` and frees what the store holds. */
  dispose(): void;
}

/**
 * It is also its own successful `ReserveResult` (`ok`, `reservation`): every admission reserves,
 * and an answer object per admission is garbage the caller drops at once.
 */
class MemoryReservation implements Reservation {
  readonly ok = true;
  released = false;

  constructor(
    private readonly seq: number,
    readonly plan: AdmissionPlan,
    readonly holds: readonly LimiterHold[],
  ) {}

  /** Built when asked: nothing in this process needs it, and a string per admission is garbage. */
  get id(): string {
    return `r${this.seq}`;
  }

  get reservation(): Reservation {
    return this;
  }
}

/** Options of `createMemoryStore`. */
export interface MemoryStoreOptions {
  /**
   * How long a request may take to reach the server from admission, for transports that do not
   * say when they send: quota entries count from admission plus this (or from the send, or the
   * first response byte, if sooner), so the server's window never runs ahead of ours even when a
   * busy event loop delays the send. Default 1 s.
   */
  arrivalMarginMs?: number;
}

export const DEFAULT_ARRIVAL_MARGIN_MS = 1_000;

/** Whether every limiter has room; an indexed loop, since it runs for every key a strategy samples. */
function allFit(limiters: readonly Limiter[], tokens: number, now: number): boolean {
  for (let index = 0; index < limiters.length; index++) if (!limiters[index]!.fits(now, tokens)) return false;
  return true;
}

/**
 * The default store: exact sliding-window quotas and slot counts in this process. Pools that share
 * one memory store share its quotas and see each other's state changes.
 */
export class MemoryStateStore implements StateStore {
  private readonly arrivalMarginMs: number;
  private readonly limiters = new Map<string, Limiter>();
  /** A plan's limiters, looked up once: `fits` runs for every key a strategy samples. Reset when a quota is learned. */
  private planLimiters = new WeakMap<AdmissionPlan, readonly Limiter[]>();
  #planGeneration = 0;
  private readonly changes = new Subject<StateChange>();
  private readonly status = new BehaviorSubject<StoreStatus>({ mode: 'shared' });
  private reservations = 0;
  /** `<from> <to>` of the scopes `absorb` has merged already: each pool on the store reports the same move. */
  private readonly absorbed = new Set<string>();
  readonly changes$ = this.changes.asObservable();
  readonly status$ = this.status.asObservable();

  constructor(options: MemoryStoreOptions = {}) {
    this.arrivalMarginMs = options.arrivalMarginMs ?? DEFAULT_ARRIVAL_MARGIN_MS;
  }

  define(scope: ScopeDefinition): void {
    if (!this.limiters.has(scope.id)) this.limiters.set(scope.id, new Limiter(scope.limits, scope.kind, scope.model));
  }

  private limiter(scope: ScopeDefinition): Limiter {
    this.define(scope);
    return this.limiters.get(scope.id)!;
  }

  /**
   * Counts the times the plans' bounded limiters were found again (a quota learned may bound a
   * limiter that bounded nothing): a caller that keeps `boundedLimiters` keeps them while it holds.
   */
  get planGeneration(): number {
    return this.#planGeneration;
  }

  /**
   * The plan's bounded limiters (unbounded ones never refuse anything); `fitsIn` tells whether they
   * have room. The same array while `planGeneration` holds, so that a caller may keep it.
   */
  boundedLimiters(plan: AdmissionPlan): readonly Limiter[] {
    let limiters = this.planLimiters.get(plan);
    if (limiters === undefined) {
      limiters = plan.map((scope) => this.limiter(scope)).filter((limiter) => limiter.isBounded);
      this.planLimiters.set(plan, limiters);
    }
    return limiters;
  }

  fits(plan: AdmissionPlan, tokens: number, now: number): boolean {
    return allFit(this.boundedLimiters(plan), tokens, now);
  }

  /** `fits`, for a caller that kept the plan's `boundedLimiters`. */
  fitsIn(limiters: readonly Limiter[], tokens: number, now: number): boolean {
    return allFit(limiters, tokens, now);
  }

  nextFitAt(plan: AdmissionPlan, tokens: number, now: number): number {
    let at = now;
    for (const limiter of this.boundedLimiters(plan)) at = Math.max(at, limiter.nextFitAt(now, tokens));
    return at;
  }

  reserve(plan: AdmissionPlan, tokens: number, now: number): ReserveResult {
    // One lookup of the plan's limiters for the check and the take: every admission comes here.
    return this.reserveIn(plan, this.boundedLimiters(plan), tokens, now);
  }

  /** `reserve`, for a caller that kept the plan's `boundedLimiters`. */
  reserveIn(plan: AdmissionPlan, limiters: readonly Limiter[], tokens: number, now: number): ReserveResult {
    if (!allFit(limiters, tokens, now)) {
      return { ok: false, retryAfterMs: Math.max(0, this.nextFitAt(plan, tokens, now) - now) };
    }
    const countFrom = now + this.arrivalMarginMs;
    // Filled by a loop, not `map` with a closure over the times: every admission comes here.
    const holds = new Array<LimiterHold>(limiters.length);
    for (let index = 0; index < limiters.length; index++) holds[index] = limiters[index]!.take(countFrom, tokens);
    return new MemoryReservation(++this.reservations, plan, holds);
  }

  markSent(reservation: Reservation, now: number, marginMs: number): void {
    for (const hold of (reservation as MemoryReservation).holds) hold.limiter.retime(hold, now + marginMs);
  }

  markResponded(reservation: Reservation, countedBy: number): void {
    for (const hold of (reservation as MemoryReservation).holds) hold.limiter.touch(hold, countedBy);
  }

  reconcile(reservation: Reservation, tokens: number): void {
    for (const hold of (reservation as MemoryReservation).holds) hold.limiter.reconcileTokens(hold, tokens);
  }

  release(reservation: Reservation): void {
    const memory = reservation as MemoryReservation;
    if (memory.released) return;
    memory.released = true;
    for (const hold of memory.holds) hold.limiter.release();
  }

  refund(reservation: Reservation): void {
    for (const hold of (reservation as MemoryReservation).holds) hold.limiter.refund(hold);
  }

  learn(scope: ScopeDefinition, quota: LearnedQuota, now: number, seed?: QuotaSeed, sendTimes?: readonly number[]): void {
    this.limiter(scope).learn(quota, now, seed, sendTimes);
    // A limiter that bounded nothing was left out of its plans.
    this.planLimiters = new WeakMap();
    this.#planGeneration++;
  }

  unlearn(scopeId: string, bucket: string): void {
    this.limiters.get(scopeId)?.unlearn(bucket);
  }

  absorb(from: ScopeDefinition, to: ScopeDefinition, now: number): void {
    const source = this.limiters.get(from.id);
    const pair = `${from.id} ${to.id}`;
    if (source === undefined || this.absorbed.has(pair)) return;
    this.absorbed.add(pair);
    this.limiter(to).absorb(source, now);
  }

  learnedQuotas(scopeId: string): LearnedQuota[] {
    return this.limiters.get(scopeId)?.learnedQuotas() ?? [];
  }

  remaining(scopeId: string, now: number): QuotaRemaining[] {
    return this.limiters.get(scopeId)?.remaining(now) ?? [];
  }

  publish(change: StateChange): void {
    this.changes.next(change);
  }

  dispose(): void {
    this.changes.complete();
    this.status.complete();
  }
}

/** The memory store itself, not a subclass of it: its `reserve` answers at once and never throws. */
export function isMemoryStore(store: StateStore): store is MemoryStateStore {
  return Object.getPrototypeOf(store) === MemoryStateStore.prototype;
}

/** Creates an in-process store; pools given the same one share its quotas and states. */
export function createMemoryStore(options: MemoryStoreOptions = {}): StateStore {
  return new MemoryStateStore(options);
}
