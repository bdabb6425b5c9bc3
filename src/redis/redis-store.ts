import { randomUUID } from 'node:crypto';
import { BehaviorSubject, type Observable, Subject, from, of, timeout, map, catchError, switchMap, type Subscription } from 'rxjs';
import type { QuotaRemaining } from '../health/records.js';
import type { LearnedQuota, QuotaSeed } from '../health/learned-quota.js';
import { Limiter, type LimiterHold } from '../health/limiter.js';
import type {
  AdmissionPlan,
  Reservation,
  ReserveResult,
  ScopeDefinition,
  StateChange,
  StateStore,
  StoreStatus,
} from '../store/state-store.js';
import { DEFAULT_ARRIVAL_MARGIN_MS } from '../store/state-store.js';
import { ValidationError, formatZodError } from '../core/validation.js';
import { ADJUST, BACKFILL, RESERVE, SEED } from './scripts.js';
import { SlotLeases } from './slot-leases.js';
import { execPipeline, type RedisClientLike, type RedisSubscriberLike } from './client.js';
import { replayStoredStates, subscribeToChanges } from './changes-channel.js';
import { optionsSchema, StoreUnavailableError, type RedisStoreOptions } from './options.js';
import { IdleClock } from './idle-clock.js';
import { UnsharedStates } from './unshared-states.js';
import { adjustCallOf, planLayout, scaled, seedCallOf, shareOf, type PlanLayout, type WindowChange, type WindowPart } from './windows.js';
import { LocalSends, backfillOf, type LocalSend } from './local-sends.js';

interface RedisReservation extends LocalSend {
  readonly plan: AdmissionPlan;
  readonly holds: readonly LimiterHold[];
  /** The slot sets it holds a lease in, or will once Redis answers (a local one). */
  readonly slots: readonly string[];
  released: boolean;
}

/**
 * A fleet's sends race each other from many processes (and machines) for one server window: the
 * jitter between one process's trip and another's is larger than within one event loop.
 */
const DEFAULT_FLEET_SEND_MARGIN_MS = 250;

/**
 * A `StateStore` on Redis, so that every process of a fleet shares one set of quotas, slots and
 * states: quota acquisition is one Lua script (exact sliding windows on Redis's clock), in-flight
 * slots are leases renewed while held and expiring if their process dies, states are keys with a
 * TTL, and every state change is published on pub/sub. Latency and TTFT averages, usage totals,
 * failure counting and half-open probes stay local to each pool.
 */
export class RedisStateStore implements StateStore {
  private readonly client: RedisClientLike;
  private readonly subscriber: RedisSubscriberLike;
  private readonly prefix: string;
  private readonly onStoreError: 'local' | 'fail';
  private readonly localShare: number;
  private readonly leaseMs: number;
  private readonly commandTimeoutMs: number;
  private readonly arrivalMarginMs: number;
  private readonly sendMarginMs: number;
  private readonly scopes = new Map<string, ScopeDefinition>();
  /** This process's own use of each scope's quotas: the optimistic local view in shared mode. */
  private readonly local = new Map<string, Limiter>();
  /** This process's share of each scope's quotas: the limits while Redis is down. */
  private readonly degraded = new Map<string, Limiter>();
  /**
   * The slots this process holds per scope, whichever mode admitted them. The local limit counts
   * those taken in shared mode, and every one is leased in Redis before shared admission resumes,
   * so `maxConcurrent` holds while requests are in flight across a change of mode.
   */
  private readonly slotsHeld = new Map<string, number>();
  /** Every reservation not yet released, local ones included. */
  private readonly held = new Set<RedisReservation>();
  private readonly changes = new Subject<StateChange>();
  /** Changes made while Redis did not answer, shared once it does. */
  private readonly unshared = new UnsharedStates();
  private readonly leases: SlotLeases;
  private readonly status = new BehaviorSubject<StoreStatus>({ mode: 'shared' });
  private readonly timers: NodeJS.Timeout[] = [];
  private recovering: Subscription | undefined;
  /** Putting this process's slots and sends back into Redis after its connection came back (see `onSubscriberReady`). */
  private resyncing: Subscription | undefined;
  /** Whether the pub/sub connection was ever up: when it is again, it dropped meanwhile. */
  private subscriberWasReady = false;
  private reservations = 0;
  /** This process's sends still in a window, for Redis's windows when it answers again (see `LocalSends`). */
  private readonly recentSends = new LocalSends();
  /** The pool's time: sends' ages when Redis answers again, states' time left. */
  private readonly clock = new IdleClock();
  private readonly instance = randomUUID();
  private disposed = false;
  /** State changes of every pool on this Redis, this one's included (and those still live at start). */
  readonly changes$: Observable<StateChange> = this.changes.asObservable();
  /** `shared` while Redis answers; `local` (with the failure's message) while this process limits alone. */
  readonly status$: Observable<StoreStatus> = this.status.asObservable();

  constructor(options: RedisStoreOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) throw new ValidationError(formatZodError(parsed.error, 'Redis store options'), parsed.error.issues);
    this.client = options.client;
    this.prefix = `{${options.prefix ?? 'orx'}}`;
    this.onStoreError = options.onStoreError ?? 'local';
    this.localShare = options.localShare ?? 1;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 1_000;
    this.arrivalMarginMs = options.arrivalMarginMs ?? DEFAULT_ARRIVAL_MARGIN_MS;
    this.sendMarginMs = options.sendMarginMs ?? DEFAULT_FLEET_SEND_MARGIN_MS;
    const recoveryIntervalMs = options.recoveryIntervalMs ?? 1_000;
    this.leases = new SlotLeases(this.client, this.leaseMs, (run) => this.command(run));
    this.subscriber = subscribeToChanges(this.client, this.channel, this.changes, () => this.onSubscriberReady());
    // Leases are renewed while held, so a live process never loses a slot it uses.
    this.timers.push(setInterval(() => this.renewLeases(), Math.max(100, Math.floor(this.leaseMs / 3))));
    this.timers.push(setInterval(() => this.checkRecovery(), recoveryIntervalMs));
    for (const timer of this.timers) timer.unref();
    void this.loadStates();
  }

  private get channel(): string {
    return `${this.prefix}:changes`;
  }

  private get shared(): boolean {
    return this.status.value.mode === 'shared';
  }

  /** Declares a scope and its limits; idempotent. */
  define(scope: ScopeDefinition): void {
    if (this.scopes.has(scope.id)) return;
    this.scopes.set(scope.id, scope);
    // The limiters keep quotas only: slots are counted in `slotsHeld`, whatever the mode.
    const { maxConcurrent: _slots, ...quotas } = scope.limits;
    this.local.set(scope.id, new Limiter(quotas, scope.kind, scope.model));
    this.degraded.set(scope.id, new Limiter(shareOf(scope.limits, this.localShare), scope.kind, scope.model));
  }

  private limiters(plan: AdmissionPlan): Limiter[] {
    for (const scope of plan) this.define(scope);
    const source = this.shared ? this.local : this.degraded;
    return plan.map((scope) => source.get(scope.id)!);
  }

  /** Whether this process holds fewer slots than the mode allows in every scope of `plan`. */
  private hasSlotRoom(plan: AdmissionPlan): boolean {
    return plan.every((scope) => {
      const max = scope.limits.maxConcurrent;
      if (max === undefined) return true;
      return (this.slotsHeld.get(scope.id) ?? 0) < (this.shared ? max : scaled(max, this.localShare));
    });
  }

  /** Whether `plan` has room for `tokens` now, by this process's own count (no round trip). */
  fits(plan: AdmissionPlan, tokens: number, now: number): boolean {
    return this.hasSlotRoom(plan) && this.limiters(plan).every((limiter) => !limiter.isBounded || limiter.fits(now, tokens));
  }

  /** The earliest time `plan`'s quotas admit `tokens` by this process's own count (slots aside). */
  nextFitAt(plan: AdmissionPlan, tokens: number, now: number): number {
    return this.limiters(plan).reduce((at, limiter) => (limiter.isBounded ? Math.max(at, limiter.nextFitAt(now, tokens)) : at), now);
  }

  /**
   * Takes room in every quota and slot of `plan` in one Lua script, or says when to try again.
   * When Redis fails, admits by this process's share or fails, as `onStoreError` says.
   */
  reserve(plan: AdmissionPlan, tokens: number, now: number): Observable<ReserveResult> {
    // Unique across stores, processes and machines: a slot released by id must be this one.
    const id = `${this.instance}.${++this.reservations}`;
    this.clock.note(now);
    if (!this.shared) return of(this.reserveLocally(id, plan, tokens, now));
    for (const scope of plan) this.define(scope);
    const { keys, layout, windows, slots } = this.layoutOf(plan, tokens);
    if (keys.length === 0) return of(this.reserveLocally(id, plan, tokens, now));
    const sent = this.client.eval(RESERVE, keys.length, ...keys, id, tokens, this.leaseMs, JSON.stringify(layout), this.arrivalMarginMs);
    /** Whether the fallback admitted the request under `id` (its window entries are then its own). */
    let admittedLocally = false;
    return this.command(() => sent).pipe(
      catchError((error: unknown) => {
        // Timed out, but Redis may still run it (ioredis queues and resends): give back what a
        // late success takes, or it holds a slot for a whole lease, and quota for a whole window
        // that no request uses (one failed, or refused by the fallback, retries under a new id).
        sent.then(
          (reply) => {
            if ((reply as [number])[0] !== 1) return;
            if (slots.length > 0) this.fireAndForget(() => this.leases.release({ id, slots }, this.clock.now));
            if (!admittedLocally && windows.length > 0) {
              const refund = adjustCallOf(id, windows, { refund: true });
              this.fireAndForget(() => this.client.eval(ADJUST, refund.keys.length, ...refund.keys, ...refund.args));
            }
          },
          () => undefined,
        );
        throw error;
      }),
      map((reply): ReserveResult => {
        const [ok, value] = reply as [number, number];
        if (ok !== 1) return { ok: false, retryAfterMs: value };
        return { ok: true, reservation: this.admit(id, plan, tokens, now, windows, slots) };
      }),
      catchError((error: unknown) =>
        this.onFailure(error, () => {
          const result = this.reserveLocally(id, plan, tokens, now);
          admittedLocally = result.ok;
          return result;
        }),
      ),
    );
  }

  private layoutOf(plan: AdmissionPlan, tokens: number): PlanLayout {
    return planLayout(this.prefix, plan, tokens, (scopeId) => this.local.get(scopeId)!.learnedQuotas());
  }

  /** Admission by this process's own limits: always in degraded mode, and for unlimited plans. */
  private reserveLocally(id: string, plan: AdmissionPlan, tokens: number, now: number): ReserveResult {
    const limiters = this.limiters(plan);
    if (!this.fits(plan, tokens, now)) {
      const at = limiters.reduce((latest, limiter) => Math.max(latest, limiter.nextFitAt(now, tokens)), now);
      return { ok: false, retryAfterMs: Math.max(1, at - now) };
    }
    const { windows, slots } = this.layoutOf(plan, tokens);
    return { ok: true, reservation: this.admit(id, plan, tokens, now, windows, slots) };
  }

  private admit(
    id: string,
    plan: AdmissionPlan,
    tokens: number,
    now: number,
    windows: readonly WindowPart[],
    slots: readonly string[],
  ): RedisReservation {
    // Counted in both views, the shared mode's and the outage's share: the one a change of mode
    // brings in already holds this process's recent sends. The view not in use is read by
    // nothing meanwhile, so it drops what has left its windows here.
    const countsFrom = now + this.arrivalMarginMs;
    const idle = this.shared ? this.degraded : this.local;
    const holds: LimiterHold[] = [];
    for (const scope of plan) {
      idle.get(scope.id)!.prune(now);
      holds.push(this.local.get(scope.id)!.take(countsFrom, tokens), this.degraded.get(scope.id)!.take(countsFrom, tokens));
    }
    const reservation: RedisReservation = { id, plan, holds, windows, slots, released: false, countsFrom };
    if (windows.length > 0) this.recentSends.add(reservation, now);
    this.held.add(reservation);
    this.countSlots(plan, 1);
    return reservation;
  }

  private countSlots(plan: AdmissionPlan, change: 1 | -1): void {
    for (const scope of plan) {
      if (scope.limits.maxConcurrent !== undefined) this.slotsHeld.set(scope.id, (this.slotsHeld.get(scope.id) ?? 0) + change);
    }
  }

  /** The request went out: quota entries count from now plus the margin (at least the fleet's) at the latest, in Redis too. */
  markSent(reservation: Reservation, now: number, marginMs: number): void {
    const held = reservation as RedisReservation;
    const margin = Math.max(marginMs, this.sendMarginMs);
    held.countsFrom = now + margin;
    for (const hold of held.holds) hold.limiter.retime(hold, now + margin);
    this.adjust(held, { move: { mode: 'retime', marginMs: margin } });
  }

  /** The first response byte arrived: the local entries count from `countedBy` at the latest; Redis's from its own clock's now (the first byte), the fleet's margin left to the send. */
  markResponded(reservation: Reservation, countedBy: number): void {
    const held = reservation as RedisReservation;
    held.countsFrom = Math.min(held.countsFrom, countedBy);
    for (const hold of held.holds) hold.limiter.touch(hold, countedBy);
    this.adjust(held, { move: { mode: 'touch', marginMs: 0 } });
  }

  /** Replaces the token estimate with the billed count, in Redis too. */
  reconcile(reservation: Reservation, tokens: number): void {
    const held = reservation as RedisReservation;
    held.billedTokens = tokens;
    for (const hold of held.holds) hold.limiter.reconcileTokens(hold, tokens);
    this.adjust(held, { tokens });
  }

  /** Changes a reservation's entries on Redis (see `WindowChange`). */
  private adjust(reservation: RedisReservation, change: WindowChange): void {
    if (reservation.windows.length === 0 || !this.shared) return;
    const { keys, args } = adjustCallOf(reservation.id, reservation.windows, change);
    this.fireAndForget(() => this.client.eval(ADJUST, keys.length, ...keys, ...args));
  }

  /** Frees the reservation's slots, in Redis too (quota entries stay in their windows); idempotent. */
  release(reservation: Reservation): void {
    const held = reservation as RedisReservation;
    if (held.released) return;
    held.released = true;
    this.held.delete(held);
    this.countSlots(held.plan, -1);
    for (const hold of held.holds) hold.limiter.release();
    // Sent in local mode too: a lease taken before Redis failed must go once it answers again.
    if (held.slots.length > 0) this.fireAndForget(() => this.leases.release(held, this.clock.now));
  }

  /** The server did not count the attempt: its entries leave this process's windows and Redis's. */
  refund(reservation: Reservation): void {
    const held = reservation as RedisReservation;
    held.refunded = true;
    for (const hold of held.holds) hold.limiter.refund(hold);
    this.adjust(held, { refund: true });
  }

  /**
   * Learns a quota here (shared-mode and degraded limiters; the pool shares it); from a 429 (`seed`) Redis's window starts as the local one (`SEED`).
   */
  learn(scope: ScopeDefinition, quota: LearnedQuota, now: number, seed?: QuotaSeed, sendTimes?: readonly number[]): void {
    this.define(scope);
    const local = this.local.get(scope.id)!;
    local.learn(quota, now, seed, sendTimes);
    const share = Object.assign({}, quota, { requests: scaled(quota.requests, this.localShare) });
    this.degraded.get(scope.id)!.learn(share, now, seed, sendTimes);
    if (seed === undefined || quota.source !== 'learned' || quota.calendar === 'utc-day' || !this.shared) return;
    const entries = local.learnedEntries(quota.bucket, now);
    const call = seedCallOf(this.prefix, scope.id, quota.windowMs, entries, now, `${this.instance}.s${++this.reservations}`);
    this.fireAndForget(() => this.client.eval(SEED, 2, ...call));
  }

  /** Drops a learned quota in this process (an assumed one its scope passed: each process assumes its own). */
  unlearn(scopeId: string, bucket: string): void {
    this.local.get(scopeId)?.unlearn(bucket);
    this.degraded.get(scopeId)?.unlearn(bucket);
  }

  learnedQuotas(scopeId: string): LearnedQuota[] {
    return this.local.get(scopeId)?.learnedQuotas() ?? [];
  }

  /** What is left of a scope's quotas by this process's own count (of its share while Redis is down). */
  remaining(scopeId: string, now: number): QuotaRemaining[] {
    this.clock.note(now);
    return (this.shared ? this.local : this.degraded).get(scopeId)?.remaining(now) ?? [];
  }

  /** Emits a state change on `changes$`; while Redis answers, stores it with its TTL and publishes it too. */
  publish(change: StateChange): void {
    this.changes.next(change);
    // Learned quotas of a scope, one per window, live beside its other state.
    const key = `${this.prefix}:state:${change.scope}:${change.target}${change.quota === undefined ? '' : `:learned:${change.quota.bucket}`}`;
    if (this.shared) this.share(key, change);
    else this.unshared.remember(key, change, change.at ?? this.clock.now);
  }

  /** Stores `change` under `key` with its TTL and publishes it to the fleet. */
  private share(key: string, change: StateChange): void {
    const message = JSON.stringify(
      Object.assign({}, change, { remainingMs: Number.isFinite(change.remainingMs) ? change.remainingMs : null }),
    );
    const pipeline = this.client.pipeline();
    if (change.state === 'enabled') pipeline.del(key);
    else if (Number.isFinite(change.remainingMs)) pipeline.set(key, message, 'PX', Math.max(1, Math.ceil(change.remainingMs)));
    else pipeline.set(key, message);
    pipeline.publish(this.channel, message);
    // Not taken (Redis failed before a command noticed): shared again once it answers.
    this.fireAndForget(
      () => execPipeline(pipeline),
      () => this.unshared.remember(key, change, change.at ?? this.clock.now),
    );
  }

  /** Replays the states other processes stored (what is left of them). */
  private loadStates(): Promise<void> {
    return replayStoredStates(this.client, this.prefix, this.changes, () => this.disposed);
  }

  /**
   * The pub/sub connection is up: the stored states tell what was published while it was not. Up
   * again after a drop, Redis may have restarted with no command of ours failing (ioredis holds
   * them while it reconnects), the store still shared, and lost the slot leases and window entries
   * of this process's requests: they are put back first, as a recovery does (Redis skips its own).
   */
  private onSubscriberReady(): void {
    const reconnected = this.subscriberWasReady;
    this.subscriberWasReady = true;
    // Not shared: the recovery puts them back before shared admission resumes.
    if (!reconnected || !this.shared || this.recovering !== undefined || this.disposed) {
      void this.loadStates();
      return;
    }
    this.resyncing?.unsubscribe();
    this.resyncing = this.putBack().subscribe({
      next: () => {
        this.resyncing = undefined;
        void this.loadStates();
      },
      error: (error: unknown) => {
        this.resyncing = undefined;
        this.goLocal(error);
        // Still shared (`onStoreError: 'fail'`): no recovery will replay what the drop missed.
        if (this.shared) void this.loadStates();
      },
    });
  }

  private renewLeases(): void {
    if (!this.shared || this.held.size === 0) return;
    const reservations = [...this.held];
    if (reservations.some((reservation) => reservation.slots.length > 0)) this.fireAndForget(() => this.leases.renew(reservations));
  }

  private checkRecovery(): void {
    if (this.shared || this.recovering !== undefined || this.disposed) return;
    this.recovering = this.command(() => this.client.ping())
      .pipe(switchMap(() => this.putBack()))
      .subscribe({
        next: () => {
          this.recovering = undefined;
          this.status.next({ mode: 'shared' });
          for (const [key, change] of this.unshared.take(this.clock.now)) this.share(key, change);
          void this.loadStates();
        },
        error: () => {
          this.recovering = undefined;
        },
      });
  }

  /** Puts this process's slots and sends still in a window back into Redis (a recovery, a reconnection). */
  private putBack(): Observable<void> {
    return this.leases.putBack(() => [...this.held], this.clock.now).pipe(switchMap(() => this.backfillWindows()));
  }

  /**
   * Counts in Redis's windows this process's sends still in them, before shared admission resumes
   * (as `SlotLeases.putBack` does for slots): those admitted while it was down, and those a restart
   * lost; the script skips what Redis has already. Rounds repeat for the sends admitted meanwhile,
   * three at most: those of the last round trip are left to their sends (which re-count an entry).
   */
  private backfillWindows(after = 0, round = 1): Observable<void> {
    const upTo = this.recentSends.added;
    return this.backfillBatches(this.recentSends.since(after, this.clock.now), 0).pipe(
      switchMap((sent) => (sent && round < 3 ? this.backfillWindows(upTo, round + 1) : of(undefined))),
    );
  }

  /** Puts `sends` from `offset` on into Redis, 500 a script; emits whether there were any. */
  private backfillBatches(sends: readonly LocalSend[], offset: number): Observable<boolean> {
    if (offset >= sends.length) return of(offset > 0);
    const { keys, parts } = backfillOf(sends.slice(offset, offset + 500), this.clock.now);
    return this.command(() => this.client.eval(BACKFILL, keys.length, ...keys, parts)).pipe(
      switchMap(() => this.backfillBatches(sends, offset + 500)),
    );
  }

  /** Runs a Redis command with the store's timeout. */
  private command<T>(run: () => Promise<T>): Observable<T> {
    return from(Promise.resolve().then(run)).pipe(timeout({ first: this.commandTimeoutMs }));
  }

  private onFailure(error: unknown, fallback: () => ReserveResult): Observable<ReserveResult> {
    const reason = error instanceof Error ? error.message : String(error);
    if (this.onStoreError === 'fail') {
      throw new StoreUnavailableError({
        message: `the Redis state store failed: ${reason}`,
        scope: 'transport',
        retryable: true,
        cause: error,
      });
    }
    if (this.shared) this.status.next({ mode: 'local', reason });
    return of(fallback());
  }

  /** Runs a command nobody waits for; when it fails, `onFailure` keeps what it was for, and the store goes local. */
  private fireAndForget(run: () => Promise<unknown>, onFailure?: () => void): void {
    this.command(run).subscribe({
      error: (error: unknown) => {
        onFailure?.();
        this.goLocal(error);
      },
    });
  }

  /** A command failed outside an admission: with `onStoreError: 'local'` the store limits alone until Redis answers. */
  private goLocal(error: unknown): void {
    if (this.shared && this.onStoreError === 'local')
      this.status.next({ mode: 'local', reason: error instanceof Error ? error.message : String(error) });
  }

  /**
   * Stops the timers, releases every reservation held and disconnects the pub/sub connection
   * (`client` itself stays open).
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.recovering?.unsubscribe();
    this.resyncing?.unsubscribe();
    for (const reservation of [...this.held]) this.release(reservation);
    this.subscriber.disconnect();
    this.changes.complete();
    this.status.complete();
  }
}

/** Creates a Redis state store; pass it as the pool's `store`. */
export function createRedisStore(options: RedisStoreOptions): StateStore {
  return new RedisStateStore(options);
}
