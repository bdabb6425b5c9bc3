import type { Observable, SchedulerLike } from 'rxjs';
import type { OpenRouterError } from '../core/errors.js';
import type { ChatRequest, KeyCredential, Transport, Usage } from '../core/types.js';
import type { KeyHealth, ModelHealth, PoolHealth } from '../health/records.js';
import type { StateStore } from '../store/state-store.js';
import type { AttemptSuccess, PoolEvent } from './events.js';
import type { Strategy } from './strategies.js';

/**
 * A key slot held by one attempt. Unsubscribing from `pool.acquire` (or `release()`) frees it. Its
 * methods need no `this`: pass them on as callbacks (`finalize(lease.release)`).
 */
export interface KeyLease {
  /** Hand this to the transport only; its `key` is not enumerable, so logging a lease is safe. */
  readonly credential: KeyCredential;
  /** The key's label. */
  readonly label: string;
  /** Short non-reversible hash of the key. */
  readonly fingerprint: string;
  /** Id of the key's account. */
  readonly account: string;
  /** The model the slot was admitted for. */
  readonly model: string;
  /** Scheduler time of admission. */
  readonly acquiredAt: number;
  /** Scheduler time the request was sent: `markSent`'s, else admission's. */
  readonly sentAt: number;
  /**
   * Call when the transport hands the request to the network: quota windows count from then
   * (plus a small margin for the trip), not from admission plus a second's margin, so a slow
   * answer does not hold quota the server already freed.
   */
  markSent(this: void): void;
  /**
   * Call on the first response byte: quota windows count from then, as the server's do. With
   * `accepted` (the default) the answer is content, so the model took the request and its
   * adaptive concurrency limit may grow; pass `false` for a refusal or another error.
   */
  markResponded(this: void, accepted?: boolean): void;
  /** The server refused the attempt without counting it (a platform 429): its quota entries leave their windows. */
  refund(this: void): void;
  /** Replaces the token estimate held in `tpm` quotas with the billed count. */
  reconcile(this: void, usage: Usage): void;
  /** Frees the slot; idempotent. */
  release(this: void): void;
  /**
   * Names the attempt this slot serves: if the pool is disposed while the lease is out, it calls
   * `holder.abandon` with an `AbortedError` ("the key pool was disposed"), so that the attempt
   * aborts its request and fails now rather than when the server or a timeout ends it.
   * `withKeyRotation` names each of its attempts; a lease nobody names runs to its end.
   */
  heldBy?(holder: LeaseHolder): void;
}

/** What holds a lease (see `KeyLease.heldBy`). */
export interface LeaseHolder {
  /** Ends the attempt at once with `error`, its HTTP request aborted; nothing if it has ended. */
  abandon(error: OpenRouterError): void;
}

/** A lease `PoolPort.acquireNow` granted: its holder frees it, as ending an acquisition would. */
export interface HeldLease extends KeyLease {
  /**
   * Frees the slot as an acquisition's teardown does: a waiting request takes it once the
   * teardown that called this is over, so that a caller who leaves a whole stream never hands the
   * slots of its first requests to its next ones. Idempotent, and a no-op after `release()`.
   */
  releaseOnTeardown(): void;
}

/** What `PoolPort.acquire` needs besides the request. */
export interface AcquireOptions {
  /** Models to use, in order of preference; the first with an eligible key wins. */
  models: readonly string[];
  /** Keys to pass over while another is eligible (those a retry already tried). */
  avoid?: ReadonlySet<string>;
  /** Picks among the eligible keys instead of the pool's strategy. */
  strategy?: Strategy;
  /** Higher goes first; equal priorities are served in arrival order. Default 0. */
  priority?: number;
  /**
   * For a request that asks again (a retry, or after a wait outside the queue, as `balance`
   * waits): when it first asked, its place in line among equal priorities. It is in line already,
   * so a full queue does not refuse it. Default: none, a new arrival, in line from now. A time
   * after now, or not a finite number, counts as none.
   */
  since?: number;
  /** Fail with `QueueTimeoutError` after waiting this long; default from the pool config. */
  queueTimeoutMs?: number;
  /**
   * The longest park (a provider's 429) of every model of the chain that the request waits out in
   * the queue; a longer one refuses it at once with `ModelUnavailableError`, whose `retryAfterMs`
   * says when the first model is back. Default: the pool's `maxRateLimitCooldownMs`. A caller
   * that holds a concurrency slot of its own sets 0 and waits outside it (as `balance` does); with
   * 0, a request whose models' own quotas are spent for more than 50 ms is refused too, with
   * `quotaSpent` set.
   */
  maxQueuedModelParkMs?: number;
  /**
   * Refuse the request (`ModelUnavailableError` with `modelsAtCapacity`) instead of queueing it when every
   * model of its chain is at its adaptive concurrency limit: for a caller that waits for room
   * outside a concurrency slot of its own (`balance`, through `modelRoom`). Default false.
   */
  refuseAtModelLimit?: boolean;
  /** Correlation id for events. */
  requestId?: string;
}

/** The outcome of one attempt, as `circuitBreaker` records it. */
export type AttemptOutcome =
  | AttemptSuccess
  | {
      type: 'failure';
      /** The request's `id` and the attempt's number within it (for `events$`). */
      requestId?: string;
      attempt?: number;
      keyLabel: string;
      model: string;
      error: OpenRouterError;
      usage?: Usage;
      /**
       * Scheduler time the attempt was sent (its lease); default: now. It tells a 429 answered to
       * a request sent before its scope was parked (the same burst) from a new one.
       */
      sentAt?: number;
      /**
       * False when a `circuitBreaker`'s `shouldRecord` leaves the failure out of health: no breaker
       * counts it and no `lastError` shows it. What the server stated still applies (a 429's park,
       * a 401's disabling, a 402's exhaustion), as do learned quotas and adaptive limits. Default true.
       */
      countsAgainstHealth?: boolean;
      /**
       * True when the attempt had streamed answer content before it failed: the model was serving
       * it, so its timeout or a cut stream is no sign that the model is over its capacity (its
       * adaptive concurrency limit is left as it is). Default false.
       */
      afterContent?: boolean;
    };

/** One key of a pool, as `pool.key(label)` returns it. */
export interface KeyHandle {
  /** The key's label. */
  readonly label: string;
  /** Short non-reversible hash of the key. */
  readonly fingerprint: string;
  /** The key's record now, then on every change. */
  readonly health$: Observable<KeyHealth>;
}

/**
 * What the routing operators use of a pool, and nobody else: admission, outcome recording, the
 * transport and the event stream. It hangs on the pool under `POOL_PORT`, off the pool's own
 * surface, for operators (the library's, or a user's own) to reach.
 */
export interface PoolPort {
  /** The pool's clock. */
  readonly scheduler: SchedulerLike;
  /** Sends attempts; from the pool config. */
  readonly transport: Transport;
  /** The pool's default strategy, one instance shared by every request. */
  readonly strategy: Strategy;
  /** Where quotas, slots and shared states live (in memory by default; Redis for a fleet). */
  readonly store: StateStore;
  /** Waits for an eligible key (FIFO, by priority) and holds its slot while subscribed. */
  acquire(request: ChatRequest, options: AcquireOptions): Observable<KeyLease>;
  /**
   * The lease `acquire` would grant at once, without its Observable, subscription and ticket (an
   * attempt in flight holds them all): only where no request waits ahead of this one and the
   * store answers in memory. `undefined` when the request would wait, or the pool cannot tell at
   * once: then `acquire` it, with nothing taken or counted. An `OpenRouterError` where `acquire`
   * would fail at once (the strategy threw, or declined every key). The holder frees the lease
   * with `release()` or `releaseOnTeardown()`. Optional: a caller falls back on `acquire`.
   */
  acquireNow?(request: ChatRequest, options: AcquireOptions): HeldLease | OpenRouterError | undefined;
  /**
   * Records an attempt's outcome into key, account and model health, as its error's scope says.
   * Returns true for a lesson: a platform 429 on a scope whose quota the pool did not know when the
   * request went out, and knows now (from this refusal, or another of the same burst). The pool
   * caused it by not knowing, so a retry need not count it (`withKeyRotation` marks the error,
   * see `taughtLimit`).
   */
  record(outcome: AttemptOutcome): boolean | void;
  /** Emits an operator's event (attempt, retry, restart, fallback) on the pool's `events$`; needs no `this`. */
  emit(this: void, event: PoolEvent): void;
  /**
   * How long a request may wait for a key (the config's `queue.timeoutMs`), if the pool sets it: an
   * operator that makes a request wait outside the queue (`balance`, for room at a model's limit)
   * counts that wait against it too.
   */
  readonly queueTimeoutMs: number | undefined;
  /** The context window configured for a model (`models` limits), if any. */
  contextLengthOf(model: string): number | undefined;
  /**
   * Scrubs an attempt's error of the key that sent it and of every other key of the pool that it
   * quotes, and returns it: a server or a proxy may echo a key other than the one the request
   * carried, which is all a transport knows.
   */
  redactKeys?<E extends OpenRouterError>(error: E, sender: KeyCredential): E;
  /**
   * Emits once when the pool is disposed (at once if it already is), then completes: a request
   * waiting on a timer (a backoff, a model's return) goes on at once, and its acquisition fails.
   */
  readonly disposed$: Observable<void>;
  /**
   * Emits once, then completes, when one of `models` has room again for a request refused at their
   * concurrency limits (`ModelUnavailableError.modelsAtCapacity`): waiters are woken in line, by
   * `priority` (higher first, default 0), then by `since` (the scheduler time the request arrived, or
   * first found them full; default now), then by `arrival` (its number among requests of the same
   * instant, where the caller numbers them), while a slot an answer frees, or a limit that grows,
   * leaves room; one woken that cannot take it passes it on. The acquisition a woken request makes
   * at once keeps that place in the queue, among requests that wait there.
   */
  modelRoom(models: readonly string[], since?: number, priority?: number, arrival?: number): Observable<void>;
  /** Whether one of `models` accepted a request (its answer's first byte came) at or after `since`: it was in service then. */
  modelAnsweredSince(models: readonly string[], since: number): boolean;
}

/**
 * The key under which a pool carries its `PoolPort`. A registered symbol, so that a pool made by
 * one copy of the library (its ESM build) works with the operators of another (its CJS build).
 */
export const POOL_PORT: unique symbol = Symbol.for('openrouter-rx.pool-port');

/**
 * The pool as its own layer knows it: reads and commands, and the port its operators use. The
 * request shortcuts `complete` and `stream` are added above it, where `balance` lives (`KeyPool`).
 */
export interface PoolCore {
  /** Every key and model, on every change (a new snapshot per change, never a duplicate). */
  readonly health$: Observable<PoolHealth>;
  /** Attempts, retries, cooldowns, state changes and fallbacks, for logs and metrics. */
  readonly events$: Observable<PoolEvent>;
  /** The pool's clock: hand it to operators composed around the pool. */
  readonly scheduler: SchedulerLike;
  /** Every key's label, in config order. */
  readonly labels: readonly string[];
  /** One key's handle; throws a `RangeError` for a label the pool does not have. */
  key(label: string): KeyHandle;
  /**
   * One model's record now, then on every change; the record is created if the pool had none.
   * Throws a `RangeError` for a string that is not a model slug (empty, or with spaces).
   */
  model(model: string): { readonly health$: Observable<ModelHealth> };
  /** The pool's health now. */
  snapshot(): PoolHealth;
  /** For operators only; see `PoolPort`. */
  readonly [POOL_PORT]: PoolPort;
  /**
   * Reads `GET /api/v1/key` for every key and folds limit and credit into health; emits the keys'
   * health once every read is done, and completes. Cold: each subscription reads, and nothing is
   * read until one does (`await lastValueFrom(pool.refreshKeyInfo())`).
   */
  refreshKeyInfo(): Observable<readonly KeyHealth[]>;
  /** Puts a disabled or exhausted key back into service. */
  enable(label: string): void;
  /** Takes a key out of service until `enable`. */
  disable(label: string): void;
  /**
   * Completes every health stream, cancels every timer and fails every waiting request. Attempts
   * already sent run to their end, as a server's close lets its open requests finish: unsubscribe
   * from `balance` (or the operators) to abort them as well.
   */
  dispose(): void;
}
