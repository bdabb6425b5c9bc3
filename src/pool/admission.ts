import { Observable, isObservable } from 'rxjs';
import { callbackError, NoKeyAvailableError, OpenRouterError, toOpenRouterError } from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import { estimateTokens } from '../core/tokens.js';
import type { ChatRequest } from '../core/types.js';
import { isMemoryStore, type AdmissionPlan, type MemoryStateStore, type Reservation, type ReserveResult } from '../store/state-store.js';
import type { PoolContext } from './context.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import {
  disposedError,
  noKeyAvailableError,
  queueFullError,
  queueTimeoutError,
  roomLookupOf,
  routeRefusal,
  strategyDeclinedError,
  type RoomLookup,
} from './model-availability.js';
import type { QuotaLearning } from './quota-learning.js';
import { admissionPlanOf, boundedLimitersOf } from './scopes.js';
import type { Strategy } from './strategies.js';
import { AdmittedLease, type Claim, type LeaseOwner } from './lease.js';
import { StrategyIds, Ticket } from './ticket.js';
import { CapacityWaiters, insertInLine } from './capacity-waiters.js';
import { Placement, type Eligibility, type PlacedTicket } from './placement.js';
import { WakeUpTimer, addTokenCount, queueWakeAt } from './wake-up.js';
import type { AcquireOptions, KeyLease } from './types.js';

/**
 * Admission: the queue of requests waiting for a key, the placement of each on a key (models in
 * order, the strategy among eligible keys), the reservation of its room in the store, the lease
 * that holds it, and the wake-ups that admit waiting requests when room frees.
 */
export class Admission implements LeaseOwner, Eligibility {
  private readonly queue: Ticket[] = [];
  /** Out of the queue while a shared store answers their reservations: `close` fails them at once. */
  private readonly reserving = new Set<Ticket>();
  private draining = false;
  private drainAgain = false;
  private readonly wakeUp: WakeUpTimer;
  /** Requests `balance` holds outside its slots while their models are at their concurrency limits. */
  readonly capacity: CapacityWaiters;
  /** The strategies' view of a placement, set anew for each (see `Placement`). */
  private readonly placement: Placement;
  /** Whether a placement is under way: a strategy that asks for a key meanwhile gets its own. */
  private placing = false;
  private readonly rooms: RoomLookup;
  private closed = false;
  /** The options `acquireNow` last placed in vain, and when: their `acquire` then asks no strategy again. */
  private unplaced: { readonly options: AcquireOptions; readonly at: number } | undefined;
  /**
   * Per model, the token counts (ascending, each once) of the tickets the last drain tried and put
   * back: the heads of their signatures, which a later ticket of the same signature never passes. The
   * wake-up is for the earliest any of them fits: not only the queue's head, and not a count that
   * fits already while its ticket waits for something else (which would hide a larger one's).
   */
  private triedTokens = new Map<string, number[]>();
  /** Strategy objects told apart, for the signatures of tickets that bring their own. */
  private readonly strategyIds = new StrategyIds();
  /** The store, if it is the memory store (whose answers `acquireNow` can wait for): looked up once, not per admission. */
  private readonly memoryStore: MemoryStateStore | undefined;

  constructor(
    private readonly context: PoolContext,
    private readonly strategy: Strategy,
    /** Whether this pool alone uses the store: if not, other pools' releases send no event. */
    private readonly ownsStore: boolean,
    /** Logs sends for the quotas learned from 429s; undefined when learning is off. */
    private readonly learning: QuotaLearning | undefined,
  ) {
    this.wakeUp = new WakeUpTimer(context.scheduler, () => this.drain());
    this.capacity = new CapacityWaiters(context.scheduler, this.queue, () => this.drain());
    this.placement = new Placement(this, context.config.random);
    this.rooms = roomLookupOf(context.registry, context.store);
    this.memoryStore = isMemoryStore(context.store) ? context.store : undefined;
  }

  /** Requests waiting for a key. */
  get queued(): number {
    return this.queue.length;
  }

  modelEntry(model: string, now: number): ModelEntry {
    return this.context.registry.model(model, now);
  }

  /** Whether `entry` may take an attempt on `model` now (see `Eligibility`). */
  keyAdmits(entry: KeyEntry, model: ModelEntry, now: number, tokens: number): boolean {
    if (entry.awaitingAccount || entry.restsAt(now) || entry.fullUntil > now) return false;
    const account = entry.account;
    if (account.concurrency !== undefined && !account.concurrency.hasRoom(account.inFlight)) return false;
    if (entry.breaker.state !== 'closed') {
      if (entry.breaker.advance(now)) this.context.publisher.markKey(entry);
      if (!entry.breaker.admits()) return false;
    }
    const memory = this.memoryStore;
    if (memory !== undefined) return memory.fitsIn(boundedLimitersOf(entry, model, memory), tokens, now);
    return this.context.store.fits(admissionPlanOf(entry, model, this.context.store), tokens, now);
  }

  modelAdmits(model: ModelEntry, now: number): boolean {
    if (model.parkedUntil > now) return false;
    // At its adaptive limit the request waits (or takes the next model of its chain) instead of drawing a 429.
    if (model.atConcurrencyLimit) return false;
    if (model.breaker.state !== 'closed') {
      if (model.breaker.advance(now)) this.context.publisher.markModel(model);
      return model.breaker.admits();
    }
    return true;
  }

  /** Fails a ticket out of the queue, for good: its route's every model (or key) is out, and time, not a retry on another key, mends that. */
  private refuse(ticket: Ticket, error: OpenRouterError): void {
    error.routeExhausted = true;
    ticket.fail(error);
  }

  /**
   * Finds a key for the ticket now and takes its slot (see `take`); undefined when none fits. A
   * strategy that takes none of the keys that could serve it would leave it waiting for ever when
   * nothing can change its mind (nothing in flight or being read, every key out for good or on offer).
   */
  private place(ticket: PlacedTicket, now: number): Claim | NoKeyAvailableError | undefined {
    // A strategy is user code: one that asks for a key while it picks gets a placement of its own.
    const placement = this.placing ? new Placement(this, this.context.config.random) : this.placement;
    const outer = !this.placing;
    this.placing = true;
    try {
      const strategy = ticket.options.strategy ?? this.strategy;
      const keys = this.context.registry.keys;
      const entry = placement.place(ticket, strategy, keys, now);
      if (entry !== undefined) return this.take(entry, placement.placedModel);
      if (!placement.declined || keys.some((key) => key.inFlight > 0 || key.infoPending)) return undefined;
      const models = ticket.options.models.map((id) => this.context.registry.model(id, now));
      const keyBack = (model: ModelEntry) => keys.some((key) => !key.disabled && !this.keyAdmits(key, model, now, ticket.tokens));
      return models.some((model) => !this.modelAdmits(model, now) || keyBack(model)) ? undefined : strategyDeclinedError(strategy.name);
    } finally {
      if (outer) this.placing = false;
    }
  }

  /** `place`, with what fails the ticket at once as an error: a strategy that throws, or one that declines every key (see `refuse`). */
  private claimFor(ticket: PlacedTicket, now: number): Claim | OpenRouterError | undefined {
    let claim: Claim | NoKeyAvailableError | undefined;
    try {
      claim = this.place(ticket, now);
    } catch (thrown: unknown) {
      return callbackError(thrown, 'the strategy');
    }
    if (claim instanceof NoKeyAvailableError) claim.routeExhausted = true;
    return claim;
  }

  /**
   * Places the ticket if a key looks free, and reserves its room in the store. With the memory
   * store the answer is synchronous; with a shared store it may come later, or be a refusal
   * (another process took the room first): then the key is skipped until the store's retry time
   * and the ticket goes back to its place in the queue. Returns whether a key was tried.
   */
  private tryAdmit(ticket: Ticket, now: number): boolean {
    const claim = this.claimFor(ticket, now);
    if (claim === undefined) return false;
    if (claim instanceof OpenRouterError) {
      ticket.fail(claim);
      return true;
    }
    const plan = admissionPlanOf(claim.entry, claim.model, this.context.store);
    let reserved: ReserveResult | Observable<ReserveResult>;
    try {
      reserved = this.context.store.reserve(plan, ticket.tokens, now);
    } catch (thrown: unknown) {
      // A store that throws instead of erroring: its counts are given back, this request fails.
      this.giveBack(claim);
      ticket.fail(toOpenRouterError(thrown));
      return true;
    }
    if (!isObservable(reserved)) {
      this.onReserved(ticket, claim, plan, reserved);
      return true;
    }
    this.armQueueTimeout(ticket);
    let answered = false;
    this.reserving.add(ticket);
    const unanswered = (error: OpenRouterError): void => {
      this.reserving.delete(ticket);
      this.giveBack(claim);
      this.dequeue(ticket);
      if (!ticket.cancelled) ticket.fail(this.closed ? disposedError() : error);
      this.context.publisher.flush();
      this.drain();
    };
    reserved.subscribe({
      next: (result) => {
        answered = true;
        this.reserving.delete(ticket);
        this.onReserved(ticket, claim, plan, result);
      },
      error: (error: unknown) => unanswered(toOpenRouterError(error)),
      complete: () => {
        if (!answered) unanswered(toOpenRouterError(new Error('the state store ended a reservation without answering it')));
      },
    });
    return true;
  }

  /**
   * Counts an attempt in the in-flight counts its key, model and adaptive limits hold, and in its
   * breakers' probes. At placement, not when the store answers: a shared store's answer comes
   * later, and the next placement must already count them.
   */
  private take(entry: KeyEntry, model: ModelEntry): Claim {
    this.count(entry, model, 1);
    return { entry, model, keyProbe: entry.breaker.begin(), modelProbe: model.breaker.begin() };
  }

  /** Gives back what `take` counted, for an attempt that never got its lease. */
  private giveBack(claim: Claim): void {
    this.count(claim.entry, claim.model, -1);
    claim.entry.breaker.abandon(claim.keyProbe);
    claim.model.breaker.abandon(claim.modelProbe);
  }

  private count(entry: KeyEntry, model: ModelEntry, change: 1 | -1): void {
    entry.inFlight += change;
    model.addInFlight(change, this.context.scheduler);
    entry.account.inFlight += change;
  }

  private onReserved(ticket: Ticket, claim: Claim, plan: AdmissionPlan, result: ReserveResult): void {
    // Read now, not taken from the drain: each admission before this one in a drain did its
    // caller's synchronous work (the attempt's send), and the lease's times must not lag it.
    const now = this.context.scheduler.now();
    if (this.closed) {
      // The pool was disposed while a shared store answered: the room goes back, the request fails.
      this.giveBack(claim);
      if (result.ok) this.context.store.release(result.reservation);
      if (!ticket.cancelled) ticket.fail(disposedError());
      return;
    }
    if (!result.ok) {
      this.giveBack(claim);
      claim.entry.fullUntil = Math.max(claim.entry.fullUntil, now + result.retryAfterMs);
      if (!ticket.cancelled && !this.queue.includes(ticket)) this.insert(ticket);
      this.drain();
      return;
    }
    if (ticket.cancelled) {
      this.giveBack(claim);
      this.context.store.release(result.reservation);
      this.drain();
      return;
    }
    this.dequeue(ticket);
    const lease = this.lease(claim, plan, result.reservation, now);
    this.context.publisher.flush();
    ticket.admit(lease);
  }

  private lease(claim: Claim, plan: AdmissionPlan, reservation: Reservation, now: number): AdmittedLease {
    const lease = new AdmittedLease(this.context, this.learning, this, claim, plan, reservation, now);
    this.context.publisher.markKeyLoad(claim.entry);
    this.context.publisher.markModelLoad(claim.model);
    return lease;
  }

  /** A lease's first response byte (see `LeaseOwner`). */
  responded(model: ModelEntry, entry: KeyEntry, accepted: boolean, at: number, sentAt: number): void {
    const accountGrew = accepted && this.accepted(model, entry.account, at, sentAt);
    if (this.queue.length === 0) return;
    // Room now (the account's limit grew, or the quota entry dated out of its window): a waiting
    // request takes it at the next turn, outside the answer being handled. Else the entry's new
    // expiry may be the earliest change.
    const tokens = this.triedTokens.get(model.model)?.[0];
    const roomNow = accountGrew || (tokens !== undefined && this.modelAdmits(model, at) && this.keyAdmits(entry, model, at, tokens));
    // Inside a drain (a transport that answers at once), that drain goes round again or re-arms the wake itself.
    if (this.draining) {
      if (roomNow) this.drainAgain = true;
    } else if (roomNow) this.drainSoon();
    else this.scheduleWake();
  }

  /** A lease's request went out (see `LeaseOwner`): its quota entries may count from earlier than admission assumed. */
  sent(): void {
    // A send inside a drain (most are: the admission subscribes the attempt) is covered by the drain's own wake-up.
    if (this.queue.length > 0 && !this.draining) this.scheduleWake();
  }

  /** A lease's slot is free (see `LeaseOwner`). */
  released(entry: KeyEntry, model: ModelEntry, afterTeardown: boolean): void {
    this.count(entry, model, -1);
    this.context.publisher.markKeyLoad(entry);
    this.context.publisher.markModelLoad(model);
    this.context.publisher.flush();
    // The room goes to the requests in line for it, in the queue or outside a slot (`balance`'s):
    // inside a teardown (which may be tearing down requests in line too), at the next turn.
    if (afterTeardown) this.capacity.serveSoon(model);
    else this.capacity.serve(model);
  }

  /** Drains at the next turn of the scheduler (in no time on its clock), by the wake timer. */
  private drainSoon(): void {
    if (this.queue.length === 0 || this.closed) return;
    this.wakeUp.arm(this.context.scheduler.now());
  }

  /**
   * A request's first answer byte: its model (and account) took it, so their adaptive limits may
   * grow. The room a model's growth makes goes to those in line for it at the next turn; returns
   * whether the account's grew.
   */
  private accepted(model: ModelEntry, account: KeyEntry['account'], now: number, sentAt: number): boolean {
    model.answeredAt = now;
    if (model.concurrency?.accept(model.inFlight, now, sentAt) === true) {
      this.context.emit({ type: 'concurrency', scope: 'model', target: model.model, limit: model.concurrency.limit, at: now });
      this.context.publisher.markModel(model);
      this.capacity.serveSoon(model);
    }
    if (account.concurrency?.accept(account.inFlight, now, sentAt) !== true) return false;
    this.context.emit({ type: 'concurrency', scope: 'account', target: account.id, limit: account.concurrency.limit, at: now });
    this.context.publisher.markAccount(account);
    return true;
  }

  strategyIdOf(strategy: Strategy | undefined): number {
    return strategy === undefined || strategy === this.strategy ? 0 : this.strategyIds.idOf(strategy);
  }

  acquire(request: ChatRequest, options: AcquireOptions): Observable<KeyLease> {
    return new Observable<KeyLease>((subscriber) => {
      if (this.closed) {
        subscriber.error(disposedError());
        return undefined;
      }
      const tokens = estimateTokens(request, this.context.config.defaultCompletionTokens);
      const ticket = new Ticket(request, options, tokens, this.context.scheduler.now(), subscriber, this);
      this.enqueue(ticket);
      return ticket;
    });
  }

  /** See `PoolPort.acquireNow`: `enqueue`'s grant at once, for a ticket nobody subscribed (the memory store answers at once). */
  acquireNow(request: ChatRequest, options: AcquireOptions): AdmittedLease | OpenRouterError | undefined {
    const store = this.memoryStore;
    if (this.closed || this.queue.length > 0 || this.context.registry.everyKeyDisabled || store === undefined) return undefined;
    const now = this.context.scheduler.now();
    // What a placement reads of a ticket, not a ticket: this one is never queued, and a `Ticket` per admission is garbage.
    const ticket: PlacedTicket = { request, options, tokens: estimateTokens(request, this.context.config.defaultCompletionTokens) };
    const claim = this.claimFor(ticket, now);
    if (claim === undefined) this.unplaced = { options, at: now };
    if (claim === undefined || claim instanceof OpenRouterError) return claim;
    const limiters = boundedLimitersOf(claim.entry, claim.model, store);
    const plan = admissionPlanOf(claim.entry, claim.model, store);
    const reserved = store.reserveIn(plan, limiters, ticket.tokens, now);
    if (!reserved.ok) {
      // As `onReserved` skips the key; the ticket's acquisition then waits in line.
      this.giveBack(claim);
      claim.entry.fullUntil = Math.max(claim.entry.fullUntil, now + reserved.retryAfterMs);
      return undefined;
    }
    const lease = this.lease(claim, plan, reserved.reservation, now);
    this.context.publisher.flush();
    return lease;
  }

  private enqueue(ticket: Ticket): void {
    if (this.context.registry.everyKeyDisabled) {
      ticket.fail(noKeyAvailableError(this.context.registry.keys));
      return;
    }
    const now = ticket.askedAt;
    // Placed in vain by `acquireNow` at this very instant: not placed again (the drain below still places it).
    const placedInVain = this.unplaced?.options === ticket.options && this.unplaced.at === now;
    this.unplaced = undefined;
    if (this.queue.length === 0 && !placedInVain && this.tryAdmit(ticket, now)) return;
    const unavailable = routeRefusal(this.rooms, this.context, ticket, now);
    if (unavailable !== undefined) {
      this.refuse(ticket, unavailable);
      this.context.publisher.flush();
      return;
    }
    // A request that asks again (a retry, or woken from a wait for room, with its place from before)
    // is in line already, even in the same millisecond: the bound is for arrivals.
    const since = ticket.options.since;
    const inLine = since !== undefined && Number.isFinite(since) && since <= now;
    if (this.queue.length >= this.context.config.queue.maxSize && !inLine) {
      ticket.fail(queueFullError(this.context.config.queue.maxSize));
      return;
    }
    this.insert(ticket);
    this.context.emit({
      type: 'queued',
      requestId: ticket.options.requestId ?? '',
      queued: this.queue.length,
      at: this.context.scheduler.now(),
    });
    this.drain();
    this.context.publisher.flush();
  }

  /** Puts a ticket in its place in line: by priority (descending), then arrival (`since`), then acquisition. */
  private insert(ticket: Ticket): void {
    this.armQueueTimeout(ticket);
    insertInLine(this.queue, ticket);
  }

  /**
   * Arms the queue timeout of a ticket that waits (in the queue, or on a shared store's answer),
   * counted from its `acquire`: one admitted at once never arms a timer.
   */
  private armQueueTimeout(ticket: Ticket): void {
    if (ticket.timeout !== undefined && !ticket.timeout.closed) return;
    const timeoutMs = ticket.options.queueTimeoutMs ?? this.context.config.queue.timeoutMs;
    if (timeoutMs === undefined) return;
    const leftMs = timeoutMs - (this.context.scheduler.now() - ticket.askedAt);
    ticket.timeout = scheduleAfter(this.context.scheduler, leftMs, () => {
      this.dequeue(ticket);
      ticket.fail(queueTimeoutError(timeoutMs));
    });
  }

  /** Takes a ticket out of the queue, if it is there, and cancels its queue timeout. */
  dequeue(ticket: Ticket): void {
    ticket.timeout?.unsubscribe();
    const index = this.queue.indexOf(ticket);
    if (index >= 0) {
      this.queue.splice(index, 1);
      // A drain walking the queue (whose admission's caller cancelled this one) would skip the
      // ticket that moved into this one's place: it goes round again.
      if (this.draining) this.drainAgain = true;
      // Nobody left to wake for: the timer would only hold the process open.
      else if (this.queue.length === 0) this.wakeUp.cancel();
      // The ticket behind a head that left was never tried, and the wake-up was for the head's tokens.
      else this.drainSoon();
      this.context.publisher.flush();
    }
  }

  /** Admits waiting requests in order while keys have room; then sleeps until the earliest reset. */
  drain(): void {
    if (this.draining) {
      this.drainAgain = true;
      return;
    }
    if (this.queue.length === 0 || this.closed) return;
    let drainedAt = this.context.scheduler.now();
    this.draining = true;
    try {
      do {
        this.drainAgain = false;
        if (this.context.registry.everyKeyDisabled) {
          for (const ticket of this.queue.splice(0)) this.refuse(ticket, noKeyAvailableError(this.context.registry.keys));
          break;
        }
        const now = this.context.scheduler.now();
        drainedAt = now;
        const blocked = new Set<string>();
        const tried = new Map<string, number[]>();
        this.triedTokens = tried;
        for (let index = 0; index < this.queue.length;) {
          const ticket = this.queue[index]!;
          if (blocked.has(ticket.signature)) {
            index++;
            continue;
          }
          // Out of the queue while its reservation is under way; a refusal puts it back.
          this.queue.splice(index, 1);
          if (this.tryAdmit(ticket, now)) continue;
          const unavailable = routeRefusal(this.rooms, this.context, ticket, now);
          if (unavailable !== undefined) {
            this.refuse(ticket, unavailable);
            continue;
          }
          this.queue.splice(index, 0, ticket);
          blocked.add(ticket.signature);
          for (const model of ticket.options.models) addTokenCount(tried, model, ticket.tokens);
          index++;
        }
      } while (this.drainAgain);
    } finally {
      this.draining = false;
    }
    this.context.publisher.flush();
    if (this.queue.length > 0) this.scheduleWake(drainedAt);
    else this.wakeUp.cancel();
  }

  /** Sleeps until the queue, found blocked at `checkedAt`, should look again (see `queueWakeAt`). */
  private scheduleWake(checkedAt = this.context.scheduler.now()): void {
    const at = queueWakeAt(this.context, { triedTokens: this.triedTokens, tickets: this.queue, ownsStore: this.ownsStore }, checkedAt);
    if (Number.isFinite(at)) this.wakeUp.arm(at);
  }

  /** Fails every waiting request (one whose reservation is out gives its room back when the store answers) and cancels the wake-up. */
  close(): void {
    this.closed = true;
    this.wakeUp.cancel();
    this.capacity.close();
    for (const ticket of [...this.queue.splice(0), ...this.reserving]) ticket.fail(disposedError());
  }
}
