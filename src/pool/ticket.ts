import type { Subscriber, Subscription } from 'rxjs';
import type { OpenRouterError } from '../core/errors.js';
import type { ChatRequest } from '../core/types.js';
import type { AdmittedLease } from './lease.js';
import type { Strategy } from './strategies.js';
import type { AcquireOptions, KeyLease } from './types.js';

const ROOM_CHECK_INTERVAL_MS = 1_000;

/** What a ticket tells the admission that queued it when its subscriber leaves. */
export interface TicketQueue {
  dequeue(ticket: Ticket): void;
  /** Tells strategy objects apart in ticket signatures (0: the pool's own). */
  strategyIdOf(strategy: Strategy | undefined): number;
}

/** A number per strategy object, for ticket signatures: the order in which each was first seen. */
export class StrategyIds {
  private readonly ids = new WeakMap<Strategy, number>();
  private seq = 0;

  idOf(strategy: Strategy): number {
    let id = this.ids.get(strategy);
    if (id === undefined) {
      id = ++this.seq;
      this.ids.set(strategy, id);
    }
    return id;
  }
}

/** A request waiting for (or being given) a key: one per `acquire` subscription, and its teardown. */
export class Ticket {
  timeout: Subscription | undefined;
  /** Unsubscribed: a reservation that arrives later is given back at once. */
  cancelled = false;
  lease: AdmittedLease | undefined;
  #signature: string | undefined;
  /** Scheduler time the admission last looked for its keys' room (see `roomCheckDue`). */
  #roomCheckedAt = -Infinity;
  /** Dropped at the teardown (see `unsubscribe`). */
  #subscriber: Subscriber<KeyLease> | undefined;

  /** Higher goes first (`AcquireOptions.priority`). */
  readonly priority: number;
  /** Its place in line among equal priorities: `askedAt`, or when its request first waited outside a slot for room. */
  readonly since: number;

  constructor(
    readonly request: ChatRequest,
    readonly options: AcquireOptions,
    readonly tokens: number,
    /** Scheduler time of the `acquire`: its queue timeout counts from then. */
    readonly askedAt: number,
    subscriber: Subscriber<KeyLease>,
    private readonly queue: TicketQueue,
  ) {
    this.priority = options.priority ?? 0;
    // A request that waited for room outside the queue keeps its place in line (never one after now).
    this.since = Number.isFinite(options.since) ? Math.min(options.since!, askedAt) : askedAt;
    this.#subscriber = subscriber;
  }

  /** The teardown: rxjs calls it when the acquisition's subscriber ends. */
  unsubscribe(): void {
    this.cancelled = true;
    this.queue.dequeue(this);
    // A lease its holder did not free (it left): the slot goes to a waiting request after the teardown.
    this.lease?.releaseOnTeardown();
    // The ticket may outlive its subscription: rxjs keeps its teardowns in an array it does not
    // clear, which V8 may have placed in the old generation (it pretenures the array's allocation
    // site once many subscriptions are long-lived, as requests in flight are). Young objects that
    // array reaches survive the next scavenges; what the ticket drops here does not go with it.
    this.lease = undefined;
    this.#subscriber = undefined;
  }

  /**
   * Tickets with equal signatures (priority, strategy, models) compete for the same keys: one that
   * fails blocks the rest. Only a queue that is waiting needs it, so it is built on first use.
   */
  get signature(): string {
    this.#signature ??= `${this.priority}|${this.queue.strategyIdOf(this.options.strategy)}|${this.options.models.join('\u0000')}`;
    return this.#signature;
  }

  /** Whether the admission may look for its keys' room now: a pass over the keys, once a second at most. */
  roomCheckDue(now: number): boolean {
    if (now - this.#roomCheckedAt < ROOM_CHECK_INTERVAL_MS) return false;
    this.#roomCheckedAt = now;
    return true;
  }

  /** When `roomCheckDue` next says yes. */
  get roomCheckDueAt(): number {
    return this.#roomCheckedAt + ROOM_CHECK_INTERVAL_MS;
  }

  admit(lease: AdmittedLease): void {
    this.lease = lease;
    this.#subscriber?.next(lease);
  }

  /** Fails the request: it is done, and its queue timeout with it. */
  fail(error: OpenRouterError): void {
    this.cancelled = true;
    this.timeout?.unsubscribe();
    this.#subscriber?.error(error);
  }
}
