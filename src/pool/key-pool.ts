import {
  Subject,
  Subscription,
  Observable,
  catchError,
  defer,
  distinctUntilChanged,
  finalize,
  from,
  map,
  mergeMap,
  of,
  type SchedulerLike,
  takeUntil,
  toArray,
} from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { PoolKeyTexts } from '../core/redact.js';
import { toOpenRouterError } from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import { isModelSlug } from '../core/request-fast-path.js';
import { limitsAnything } from '../health/limits.js';
import { nextUtcMidnight } from '../health/utc-day-window.js';
import { lastErrorOf, type KeyHealth, type ModelHealth, type PoolHealth } from '../health/records.js';
import { DEFAULT_ARRIVAL_MARGIN_MS, createMemoryStore, type StateStore } from '../store/state-store.js';
import { Admission } from './admission.js';
import { LeasesOut } from './leases-out.js';
import type { PoolContext } from './context.js';
import type { KeyInfoSnapshot, ResolvedPoolConfig } from './config.js';
import type { KeyEntry } from './entities.js';
import type { PoolEvent } from './events.js';
import { OutcomePolicy, nextLimitReset } from './outcomes.js';
import { HealthPublisher } from './publisher.js';
import { FREE_MODELS_DAILY_BUCKET, QuotaLearning } from './quota-learning.js';
import { logPoolEvents } from './event-log.js';
import { FREE_MODELS_PATTERN } from './scopes.js';
import { disposedError } from './model-availability.js';
import { Registry } from './registry.js';
import { SendMargin } from './send-margin.js';
import { toStrategy } from './strategies.js';
import { POOL_PORT, type KeyHandle, type PoolCore, type PoolPort } from './types.js';

/** Key info requests in flight at once. */
const KEY_INFO_CONCURRENCY = 8;
/** The longest a key waits for key info to name its account before it serves as an account of its own. */
const ACCOUNT_WAIT_MS = 5_000;

/** How long keys wait for their accounts: ACCOUNT_WAIT_MS, or half the queue timeout if that is shorter, so waiting requests are served, not timed out. */
function accountWaitMs(queueTimeoutMs: number | undefined): number {
  return queueTimeoutMs === undefined ? ACCOUNT_WAIT_MS : Math.min(ACCOUNT_WAIT_MS, Math.floor(queueTimeoutMs / 2));
}

/** Where the send margin starts, before successes narrow it: wide enough for a busy event loop. */
const SEND_MARGIN_START_MS = 250;

/** Free-model requests a day for an account that never bought credits (openrouter-wire.md §8). */
const FREE_TIER_DAILY_REQUESTS = 50;

/** OpenRouter's documented free-model requests per minute, per account (openrouter-wire.md §8), as its 429s name it. */
const FREE_MODELS_PER_MINUTE = { requests: 20, windowMs: 60_000, bucket: 'free-models-per-min' } as const;

/**
 * The key pool: a small facade over its parts, each with one job. The registry holds the key,
 * account and model entries; the publisher turns their changes into health records; admission
 * queues requests and leases keys; the outcome policy turns attempt outcomes (and other pools'
 * reports) into health. The facade wires them, and answers reads and commands.
 */
export class Pool implements PoolCore {
  readonly scheduler: SchedulerLike;
  readonly labels: readonly string[];
  readonly health$: Observable<PoolHealth>;
  readonly events$: Observable<PoolEvent>;
  readonly [POOL_PORT]: PoolPort;
  private readonly store: StateStore;

  private readonly ownsStore: boolean;
  private readonly storeSubscriptions = new Subscription();
  /** The logger's subscription to `events$`, when there is a logger. */
  private readonly logging: Subscription | undefined;
  private readonly events = new Subject<PoolEvent>();
  private readonly registry: Registry;
  private readonly publisher: HealthPublisher;
  private readonly admission: Admission;
  private readonly outcomes: OutcomePolicy;
  private readonly learning: QuotaLearning | undefined;
  /** The key info read at start (account discovery), cancelled by `dispose`. */
  private readonly discovery = new Subscription();
  /** The bound on keys' wait for their accounts (see `awaitingAccount`). */
  private accountWait: Subscription | undefined;
  private keysAwaitingAccount = 0;
  /** Ends the `refreshKeyInfo()` reads still running at `dispose` (their requests aborted). */
  private readonly disposing = new Subject<void>();
  private disposed = false;
  private readonly leasesOut = new LeasesOut();

  constructor(private readonly config: ResolvedPoolConfig) {
    this.scheduler = config.scheduler ?? steadyScheduler();
    const strategy = toStrategy(config.strategy);
    this.ownsStore = config.store === undefined;
    this.store = config.store ?? createMemoryStore();
    // An identity, not a decision: the injected random source stays for routing, untouched.
    const origin = `pool-${Math.floor(Math.random() * 2 ** 48).toString(36)}`;
    const emit = (event: PoolEvent) => this.events.next(event);
    this.registry = new Registry(config, this.store, this.scheduler);
    this.publisher = new HealthPublisher(
      this.registry,
      this.scheduler,
      emit,
      () => this.admission.queued,
      () => this.admission.drain(),
    );
    const context: PoolContext = {
      config,
      registry: this.registry,
      store: this.store,
      publisher: this.publisher,
      scheduler: this.scheduler,
      emit,
      eventsWatched: () => this.events.observed,
      sendMargin: new SendMargin(config.sendMarginMs, SEND_MARGIN_START_MS, Math.max(config.sendMarginMs, DEFAULT_ARRIVAL_MARGIN_MS)),
      leasesOut: this.leasesOut,
    };
    this.learning = config.learning.enabled ? new QuotaLearning(context, origin) : undefined;
    this.admission = new Admission(context, strategy, this.ownsStore, this.learning);
    this.outcomes = new OutcomePolicy(context, origin, () => this.admission.drain(), this.learning);
    this.labels = this.registry.keys.map((entry) => entry.label);
    this.storeSubscriptions.add(this.store.changes$.subscribe((change) => this.outcomes.applyChange(change)));
    this.storeSubscriptions.add(
      this.store.status$.subscribe((status) =>
        emit({
          type: 'store',
          mode: status.mode,
          at: this.scheduler.now(),
          ...(status.reason === undefined ? {} : { reason: status.reason }),
        }),
      ),
    );
    this.events$ = this.events.asObservable();
    this.logging = config.logger === undefined ? undefined : logPoolEvents(this.events$, config.logger, config.logLevel);
    this.health$ = this.publisher.health$;
    // A transport still loading (see `Transport.ready`): requests wait for it before they take a key.
    const ready = config.transport.ready;
    let transportReady = ready === undefined;
    if (ready !== undefined) {
      const settled = (): void => void (transportReady = true);
      ready.then(settled, settled);
    }
    const keyTexts = new PoolKeyTexts(this.registry.keys.map((entry) => entry.credential));
    this[POOL_PORT] = {
      scheduler: this.scheduler,
      transport: config.transport,
      strategy,
      store: this.store,
      acquire: (request, options) =>
        transportReady
          ? this.admission.acquire(request, options)
          : afterReady(ready!, this[POOL_PORT].disposed$, () => this.admission.acquire(request, options)),
      acquireNow: (request, options) => (transportReady ? this.admission.acquireNow(request, options) : undefined),
      record: (outcome) => !this.disposed && this.outcomes.record(outcome),
      emit,
      queueTimeoutMs: config.queue.timeoutMs,
      contextLengthOf: (model) => this.registry.contextLengthOf(model),
      redactKeys: (error, sender) => keyTexts.redactError(error, sender),
      disposed$: defer(() => (this.disposed ? of(undefined) : this.disposing.asObservable())),
      modelRoom: (models, since, priority, arrival) => this.admission.capacity.wait(models, since, priority, arrival),
      modelAnsweredSince: (models, since) => models.some((model) => (this.registry.models.get(model)?.answeredAt ?? -Infinity) >= since),
    };
    // Accounts are found, not configured: every key's info once, in the background. Traffic does
    // not wait for it; a key whose info fails serves on as an account of its own. Only where the
    // config limits accounts (`accounts`, or `models`, whose limits are per account) does a key
    // wait for its account, for a while (see `accountWaitMs`): serving as an account of its own,
    // it would take room the account it belongs to does not have.
    if (config.discoverAccounts && config.keyInfo !== undefined) {
      if ([...Object.values(config.accounts), ...Object.values(config.models)].some(limitsAnything)) {
        for (const entry of this.registry.keys) entry.awaitingAccount = !entry.accountConfigured;
        this.keysAwaitingAccount = this.registry.keys.filter((entry) => entry.awaitingAccount).length;
      }
      if (this.keysAwaitingAccount > 0) {
        this.accountWait = scheduleAfter(this.scheduler, accountWaitMs(config.queue.timeoutMs), () => {
          for (const entry of this.registry.keys) entry.awaitingAccount = false;
          this.keysAwaitingAccount = 0;
          this.settle();
        });
        this.discovery.add(this.accountWait);
      }
      for (const entry of this.registry.keys) entry.infoPending = true;
      this.discovery.add(this.readKeyInfo(false).subscribe());
    }
  }

  // ---------------------------------------------------------------- reads

  key(label: string): KeyHandle {
    const entry = this.registry.requireKey(label);
    // Built fresh on subscription: the record may have gone stale while nobody watched it.
    return {
      label,
      fingerprint: entry.credential.fingerprint,
      health$: defer(() => (this.publisher.watch(entry), entry.stream())),
    };
  }

  model(model: string): { readonly health$: Observable<ModelHealth> } {
    // Not echoed: a key pasted here by mistake must not reach an error message.
    if (!isModelSlug(model)) throw new RangeError('pool.model: expected a model slug without spaces (e.g. "openai/gpt-4o")');
    const entry = this.registry.model(model);
    // A model first named after the pool was disposed has its stream ended like every other.
    if (this.disposed) entry.close();
    this.publisher.flush();
    return { health$: defer(() => (entry.health, entry.stream())).pipe(distinctUntilChanged()) };
  }

  snapshot(): PoolHealth {
    return this.publisher.snapshot();
  }

  // ---------------------------------------------------------------- commands

  enable(label: string): void {
    const entry = this.registry.requireKey(label);
    const now = this.scheduler.now();
    entry.disabled = false;
    entry.disabledByUser = false;
    entry.exhaustedUntil = 0;
    entry.account.exhaustedUntil = 0;
    this.publisher.markAccount(entry.account);
    this.outcomes.share('key', entry.label, 'enabled', 0, now, 'user');
    this.outcomes.share('account', entry.account.id, 'enabled', 0, now, 'user');
    this.settle();
  }

  disable(label: string): void {
    this.outcomes.disableKey(this.registry.requireKey(label), this.scheduler.now(), true);
    this.settle();
  }

  refreshKeyInfo(): Observable<readonly KeyHealth[]> {
    return defer(() => (this.disposed ? of(this.registry.keys.map((entry) => entry.health)) : this.readKeyInfo(true))).pipe(
      takeUntil(this.disposing),
    );
  }

  /**
   * Reads every key's info and folds it into health. A key whose read fails keeps serving; it
   * shows the failure as its last error only when asked for (`refreshKeyInfo`), not on the read
   * at start, and a 401 disables it either way (its last error then saying so).
   */
  private readKeyInfo(showFailures: boolean): Observable<readonly KeyHealth[]> {
    const source = this.config.keyInfo;
    const keys = this.registry.keys;
    if (source === undefined) return of(keys.map((entry) => entry.health));
    // A few at a time: a pool of a thousand keys must not open a thousand connections at once.
    return from(keys).pipe(
      mergeMap(
        (entry) =>
          defer(() => from(source(entry.credential))).pipe(
            map((info) => {
              if (!this.disposed) this.foldKeyInfo(entry, info);
            }),
            // The read at start (a refresh unsubscribed early must not end a key's wait).
            finalize(() => {
              if (showFailures) return;
              entry.infoPending = false;
              this.accountKnown(entry);
            }),
            catchError((thrown: unknown) => {
              // A read that fails after dispose (a `refreshKeyInfo()` still subscribed) touches nothing.
              if (this.disposed) return of(undefined);
              const error = toOpenRouterError(thrown);
              const now = this.scheduler.now();
              // A 401 disables the key: health says why, so a UI tells a revoked key from one an operator took out.
              if (showFailures || error.kind === 'authentication') {
                entry.lastError = lastErrorOf(error, now);
                this.publisher.markKey(entry);
              }
              if (error.kind === 'authentication') this.outcomes.disableKey(entry, now);
              return of(undefined);
            }),
          ),
        KEY_INFO_CONCURRENCY,
      ),
      toArray(),
      map(() => {
        this.settle();
        return keys.map((entry) => entry.health);
      }),
    );
  }

  /** A key that waited for its account (`awaitingAccount`) serves from now: its info is in, failed, or took too long. */
  private accountKnown(entry: KeyEntry): void {
    if (!entry.awaitingAccount || this.disposed) return;
    entry.awaitingAccount = false;
    if (--this.keysAwaitingAccount === 0) this.accountWait?.unsubscribe();
    this.settle();
  }

  /**
   * Completes every health stream, cancels every timer, fails every waiting request, and aborts
   * the attempts in flight (those of `balance` and `withKeyRotation`, which fail with the same
   * `AbortedError`): nothing the pool started keeps the process alive after it, whatever the
   * server does.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.discovery.unsubscribe();
    this.admission.close();
    // After the admission closed: what waits on a timer goes on now, and its acquisition fails.
    this.disposing.next();
    this.disposing.complete();
    this.outcomes.close();
    // After the outcomes closed: an attempt the disposal ends is not the key's or model's failure.
    this.leasesOut.abandonAll(disposedError());
    this.publisher.close();
    this.storeSubscriptions.unsubscribe();
    this.logging?.unsubscribe();
    if (this.ownsStore) this.store.dispose();
    this.events.complete();
  }

  /** Publishes what changed, then admits what now fits. */
  private settle(): void {
    this.publisher.flush();
    this.admission.drain();
  }

  private foldKeyInfo(entry: KeyEntry, info: KeyInfoSnapshot): void {
    const now = this.scheduler.now();
    entry.credit = {
      limit: info.limit,
      limitRemaining: info.limitRemaining,
      usage: info.usage,
      isFreeTier: info.isFreeTier,
      checkedAt: now,
    };
    entry.limitReset = info.limitReset ?? null;
    // The key answered, so it is valid (a 401's disabling ends; the user's own stays); credit left
    // (or no limit) lifts an exhaustion. Lifted for the pools that share the store too: one that
    // took the 401 stored the disabling for every pool, with no end.
    const lifted = (entry.disabled && !entry.disabledByUser) || entry.exhaustedUntil > now;
    if (!entry.disabledByUser) entry.disabled = false;
    if (info.limitRemaining === null || info.limitRemaining > 0) {
      entry.exhaustedUntil = 0;
      if (lifted && !entry.disabledByUser) this.outcomes.share('key', entry.label, 'enabled', 0, now);
    } else
      entry.exhaustedUntil = Math.max(entry.exhaustedUntil, nextLimitReset(now, entry.limitReset) ?? now + this.config.exhaustedRetryMs);
    this.publisher.markKey(entry);
    let joined = false;
    if (this.config.discoverAccounts && !entry.accountConfigured && info.creatorUserId !== undefined) {
      const previous = entry.account;
      joined = this.registry.moveToAccount(entry, info.creatorUserId);
      if (joined) {
        this.learning?.onKeyJoined(previous, entry.account);
        this.publisher.markAccount(previous);
        this.publisher.markAccount(entry.account);
      }
    }
    this.learnFreeModelQuota(entry, info, joined, now);
  }

  /**
   * The account's free-model quotas, once key info has named the account. For the UTC day:
   * `free_model_daily_requests` (its limit, and what is used today), else 50 a day for an account
   * that never bought credits (openrouter-wire.md §8); a 429 that names the limit later overrides
   * it. Per minute, which key info does not report: the documented 20, assumed and tested (see
   * `QuotaLearning.assume`), so that a burst of free-model requests draws one 429 per account, not
   * one per request in flight when the account's minute runs out.
   */
  private learnFreeModelQuota(entry: KeyEntry, info: KeyInfoSnapshot, joined: boolean, now: number): void {
    if (this.learning === undefined) return;
    const scope = entry.account.modelScope(FREE_MODELS_PATTERN);
    // Only for an account known from key info or the config (keys not yet grouped would each take
    // the minute's quota), and again when a key joins it, so that its sends count. Not on a store
    // other pools share: their sends fill the same window, but this pool would test the assumption
    // (and remake the window) with its own sends alone.
    const accountKnown = entry.accountConfigured || (this.config.discoverAccounts && info.creatorUserId !== undefined);
    if (this.ownsStore && accountKnown && (joined || !this.learning.knowsQuota(scope, FREE_MODELS_PER_MINUTE.bucket)))
      this.learning.assume(scope, Object.assign({}, FREE_MODELS_PER_MINUTE, { source: 'assumed' as const }), now);
    const day = { windowMs: 86_400_000, calendar: 'utc-day', source: 'key-info', bucket: FREE_MODELS_DAILY_BUCKET } as const;
    const daily = info.freeModelDailyRequests;
    if (daily !== undefined) {
      const seed = { remaining: daily.remaining, resetAfterMs: nextUtcMidnight(now) - now };
      this.learning.fromKeyInfo(scope, { requests: daily.limit, ...day }, seed, now);
    } else if (info.isFreeTier) {
      this.learning.fromKeyInfo(scope, { requests: FREE_TIER_DAILY_REQUESTS, ...day }, undefined, now);
    }
  }
}

/**
 * An acquisition that starts once the transport is ready, loaded or not (see `Transport.ready`),
 * or once the pool is disposed (it then fails as the admission fails every request after).
 */
function afterReady<Value>(ready: PromiseLike<unknown>, disposed$: Observable<void>, start: () => Observable<Value>): Observable<Value> {
  return new Observable<Value>((subscriber) => {
    let inner: Subscription | undefined;
    let closed = false;
    // A container first: a pool already disposed emits at once, inside the subscribe call.
    const disposal = new Subscription();
    const begin = (): void => {
      if (closed || inner !== undefined) return;
      disposal.unsubscribe();
      inner = start().subscribe(subscriber);
    };
    disposal.add(disposed$.subscribe(begin));
    ready.then(begin, begin);
    return () => {
      closed = true;
      disposal.unsubscribe();
      inner?.unsubscribe();
    };
  });
}
