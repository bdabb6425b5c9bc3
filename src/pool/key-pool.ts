import {
  BehaviorSubject,
  Observable,
  Subject,
  asyncScheduler,
  defer,
  distinctUntilChanged,
  filter,
  forkJoin,
  from,
  map,
  of,
  catchError,
  startWith,
  type SchedulerLike,
  Subscription,
  type OperatorFunction,
} from 'rxjs';
import {
  AbortedError,
  ModelUnavailableError,
  NoKeyAvailableError,
  QueueFullError,
  QueueTimeoutError,
  toOpenRouterError,
  type ErrorScope,
  type OpenRouterError,
} from '../core/errors.js';
import type { ChatRequest, KeyCredential, Transport, Usage } from '../core/types.js';
import { toStrategy, type KeyCandidate, type PickContext, type Strategy } from './strategies.js';
import { Breaker } from '../health/breaker.js';
import { resolvePoolConfig, type KeyInfoSnapshot, type KeyPoolInput, type ResolvedPoolConfig } from './config.js';
import type { PoolEvent } from './events.js';
import { fingerprintOf } from '../core/fingerprint.js';
import {
  emptyUsage,
  type Credit,
  type KeyHealth,
  type KeyState,
  type LastError,
  type ModelHealth,
  type OpenReason,
  type PoolHealth,
  type UsageTotals,
} from '../health/records.js';
import { createMemoryStore, type AdmissionPlan, type Reservation, type ReserveResult, type ScopeDefinition, type StateChange, type StateStore } from '../store/state-store.js';
import { estimateTokens } from '../core/tokens.js';
import { scheduleAfter } from '../core/timers.js';
import { balance, type BalanceEvent, type BalanceOptions, type ChunkEvent, type CompletionEvent, type RestartEvent } from '../operators/balance.js';

/** A key slot held by one attempt. Unsubscribing from `pool.acquire` (or `release()`) frees it. */
export interface KeyLease {
  /** Hand this to the transport only; its `key` is not enumerable, so logging a lease is safe. */
  readonly credential: KeyCredential;
  readonly label: string;
  readonly fingerprint: string;
  readonly account: string;
  readonly model: string;
  /** Scheduler time of admission. */
  readonly acquiredAt: number;
  /** Call on the first response byte: quota windows count from then, as the server's do. */
  markResponded(): void;
  /** Replaces the token estimate held in `tpm` quotas with the billed count. */
  reconcile(usage: Usage): void;
  /** Frees the slot; idempotent. */
  release(): void;
}

export interface AcquireOptions {
  /** Models to use, in order of preference; the first with an eligible key wins. */
  models: readonly string[];
  /** Keys to pass over while another is eligible (those a retry already tried). */
  avoid?: ReadonlySet<string>;
  strategy?: Strategy;
  /** Higher goes first; equal priorities are served in arrival order. Default 0. */
  priority?: number;
  /** Fail with `QueueTimeoutError` after waiting this long; default from the pool config. */
  queueTimeoutMs?: number;
  /** Correlation id for events. */
  requestId?: string;
}

/** The outcome of one attempt, as `circuitBreaker` records it. */
export type AttemptOutcome =
  | {
      type: 'success';
      keyLabel: string;
      model: string;
      latencyMs: number;
      timeToFirstTokenMs?: number;
      usage?: Usage;
    }
  | { type: 'failure'; keyLabel: string; model: string; error: OpenRouterError; usage?: Usage };

export interface KeyHandle {
  readonly label: string;
  readonly fingerprint: string;
  readonly health$: Observable<KeyHealth>;
}

export interface KeyPool {
  /** Every key and model, on every change (a new snapshot per change, never a duplicate). */
  readonly health$: Observable<PoolHealth>;
  /** Attempts, retries, cooldowns, state changes and fallbacks, for logs and metrics. */
  readonly events$: Observable<PoolEvent>;
  readonly scheduler: SchedulerLike;
  readonly transport: Transport;
  /** The pool's default strategy, one instance shared by every request. */
  readonly strategy: Strategy;
  readonly labels: readonly string[];
  /** Where quotas, slots and shared states live (in memory by default; Redis for a fleet). */
  readonly store: StateStore;
  key(label: string): KeyHandle;
  model(model: string): { readonly health$: Observable<ModelHealth> };
  snapshot(): PoolHealth;
  /** The context window configured for a model (`models` limits), if any. */
  contextLengthOf(model: string): number | undefined;
  /** Waits for an eligible key (FIFO, by priority) and holds its slot while subscribed. */
  acquire(request: ChatRequest, options: AcquireOptions): Observable<KeyLease>;
  /** Records an attempt's outcome into key, account and model health, as its error's scope says. */
  record(outcome: AttemptOutcome): void;
  /** Emits an event on `events$` (used by the operators). */
  emit(event: PoolEvent): void;
  /** Polls `GET /api/v1/key` for every key and folds limit and credit into health. */
  refreshKeyInfo(): Observable<readonly KeyHealth[]>;
  /** Puts a disabled or exhausted key back into service. */
  enable(label: string): void;
  /** Takes a key out of service until `enable`. */
  disable(label: string): void;
  /** One request, not streamed: emits its `completion` event, or errors with its typed error. */
  complete(request: ChatRequest, options?: BalanceOptions): Observable<CompletionEvent>;
  /** One streamed request: emits `chunk` (and `restart`) events, then its `completion`; errors on failure. */
  stream(request: ChatRequest, options?: BalanceOptions): Observable<ChunkEvent | RestartEvent | CompletionEvent>;
  /** Completes every health stream, cancels every timer and fails every waiting request. */
  dispose(): void;
}

/** A `refresh` timer per entity: when its cooldown ends, its health changes without any call. */
interface Timed {
  refreshAt: number;
  refreshTimer: Subscription | undefined;
}

class AccountEntry {
  readonly keys: KeyEntry[] = [];
  parkedUntil = 0;
  exhaustedUntil = 0;
  rateLimitStreak = 0;
  private readonly modelScopes = new Map<string, ScopeDefinition>();

  constructor(
    readonly id: string,
    readonly scope: ScopeDefinition,
    private readonly modelLimits: ResolvedPoolConfig['models'],
  ) {}

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
 * What keys and models share: a health record published through a `BehaviorSubject`, built lazily
 * while nobody watches (see `Pool.publish`), a last published state, and a cooldown timer.
 */
abstract class PublishedEntity<H extends KeyHealth | ModelHealth> implements Timed {
  refreshAt = Infinity;
  refreshTimer: Subscription | undefined;
  /** Changed since its record was last built, while nobody watched it. */
  stale = false;
  lastState!: KeyState;
  subject!: BehaviorSubject<H>;
  lastError: LastError | null = null;
  latencyMs: number | null = null;
  timeToFirstTokenMs: number | null = null;
  usage: UsageTotals = emptyUsage();
  rateLimitStreak = 0;
  inFlight = 0;

  protected constructor(private readonly build: (entity: never) => H) {}

  /** Publishes the first record; subclasses call it last, once every field it reads is set. */
  protected publishFirst(): void {
    this.subject = new BehaviorSubject(this.build(this as never));
    this.lastState = this.subject.value.state;
  }

  /** The current record, built now if it went stale while unwatched. */
  get health(): H {
    if (this.stale) {
      this.stale = false;
      this.subject.next(this.build(this as never));
    }
    return this.subject.value;
  }
}

class KeyEntry extends PublishedEntity<KeyHealth> implements KeyCandidate {
  disabled = false;
  exhaustedUntil = 0;
  parkedUntil = 0;
  /** The shared store said this key's quotas are full until then (another process took them). */
  fullUntil = 0;
  readonly plans = new Map<string, AdmissionPlan>();
  credit: Credit | null = null;
  limitReset: string | null = null;

  constructor(
    readonly credential: KeyCredential,
    readonly weight: number,
    readonly account: AccountEntry,
    readonly scope: ScopeDefinition,
    readonly breaker: Breaker,
    build: (entry: KeyEntry) => KeyHealth,
  ) {
    super(build as (entity: never) => KeyHealth);
    this.publishFirst();
  }

  get label(): string {
    return this.credential.label;
  }
}

class ModelEntry extends PublishedEntity<ModelHealth> {
  parkedUntil = 0;
  /** Scheduler time of the last request that named it: idle records go first when over the cap. */
  lastUsedAt: number;

  constructor(
    readonly model: string,
    readonly breaker: Breaker,
    /** The `models` limit patterns this model matches. */
    readonly limitPatterns: readonly string[],
    build: (entry: ModelEntry) => ModelHealth,
    now: number,
  ) {
    super(build as (entity: never) => ModelHealth);
    this.lastUsedAt = now;
    this.publishFirst();
  }

  /**
   * Nothing would be lost by dropping the record: no request holds or waits on it by its breaker,
   * no cooldown runs, nobody watches it, and its breaker has nothing to remember.
   */
  isIdleAndHealthy(now: number): boolean {
    return (
      this.inFlight === 0 &&
      this.refreshTimer === undefined &&
      this.parkedUntil <= now &&
      this.breaker.state === 'closed' &&
      this.breaker.consecutiveFailures === 0 &&
      !this.subject.observed
    );
  }
}

interface Ticket {
  readonly request: ChatRequest;
  readonly options: AcquireOptions;
  readonly tokens: number;
  readonly priority: number;
  readonly seq: number;
  /** Tickets with equal signatures compete for the same keys: one that fails blocks the rest. */
  readonly signature: string;
  admit(lease: KeyLease): void;
  reject(error: OpenRouterError): void;
  timeout?: Subscription;
  /** Unsubscribed: a reservation that arrives later is given back at once. */
  cancelled: boolean;
}

/** How the pool publishes one kind of health record (keys or models). */
interface RecordKind<E, H> {
  scope: 'key' | 'model';
  target(entry: E): string;
  state(entry: E, now: number): { state: KeyState; until: number | null };
  build(entry: E, now: number): H;
  same(a: H, b: H): boolean;
}

/** How often a blocked queue looks again at a store other pools share (their releases send no event). */
const SHARED_STORE_POLL_MS = 25;

/** Creates a key pool. Validates `config` with zod and throws a `ValidationError` naming the field. */
export function createPool(config: KeyPoolInput): KeyPool {
  return new Pool(resolvePoolConfig(config));
}

function patternMatches(pattern: string, model: string): boolean {
  if (!pattern.includes('*')) return pattern === model;
  const parts = pattern.split('*');
  let position = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i === 0) {
      if (!model.startsWith(part)) return false;
      position = part.length;
    } else if (i === parts.length - 1) {
      return model.length - part.length >= position && model.endsWith(part);
    } else {
      const found = model.indexOf(part, position);
      if (found < 0) return false;
      position = found + part.length;
    }
  }
  return true;
}

function movingAverage(previous: number | null, sample: number, alpha: number): number {
  return previous === null ? sample : previous + alpha * (sample - previous);
}

function addUsage(totals: UsageTotals, usage: Usage | undefined, countRequest: boolean): UsageTotals {
  return {
    requests: totals.requests + (countRequest ? 1 : 0),
    promptTokens: totals.promptTokens + (usage?.promptTokens ?? 0),
    completionTokens: totals.completionTokens + (usage?.completionTokens ?? 0),
    totalTokens: totals.totalTokens + (usage?.totalTokens ?? 0),
    cost: totals.cost + (usage?.cost ?? 0),
  };
}

/** The next boundary of an OpenRouter key limit period, in UTC. */
function nextLimitReset(now: number, period: string | null): number | undefined {
  const date = new Date(now);
  const midnight = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  const day = 86_400_000;
  switch (period) {
    case 'daily':
      return midnight + day;
    case 'weekly':
      return midnight + ((8 - date.getUTCDay()) % 7 || 7) * day;
    case 'monthly':
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    default:
      return undefined;
  }
}

interface StateView {
  state: KeyState;
  reason: OpenReason | null;
  until: number | null;
}

/**
 * A breaker's state with a 429 park on top: open for whichever lasts longer (the park's reason
 * would be stale once it ends first), else the breaker's own state.
 */
function breakerState(breaker: Breaker, parkedUntil: number, now: number): StateView {
  breaker.advance(now);
  if (parkedUntil > now && !(breaker.state === 'open' && breaker.openUntil >= parkedUntil)) {
    return { state: 'open', reason: 'rate-limit', until: parkedUntil };
  }
  if (breaker.state === 'open') return { state: 'open', reason: 'failures', until: breaker.openUntil };
  return { state: breaker.state, reason: null, until: null };
}

/** The fields key and model records share, from an entity and its state. */
function breakerView(entity: KeyEntry | ModelEntry, view: StateView, now: number) {
  const { successes, failures } = entity.breaker.counts(now);
  return {
    state: view.state,
    openReason: view.reason,
    cooldownUntil: view.until,
    inFlight: entity.inFlight,
    successes,
    failures,
    consecutiveFailures: entity.breaker.consecutiveFailures,
    lastError: entity.lastError,
    latencyMs: entity.latencyMs,
    timeToFirstTokenMs: entity.timeToFirstTokenMs,
    usage: entity.usage,
  };
}

function sameLastError(a: LastError | null, b: LastError | null): boolean {
  return a === b || (a !== null && b !== null && a.kind === b.kind && a.status === b.status && a.message === b.message && a.at === b.at);
}

/** The fields key and model records share, compared by value: a health stream never repeats itself. */
function sameBreakerView(a: KeyHealth | ModelHealth, b: KeyHealth | ModelHealth): boolean {
  return (
    a.state === b.state &&
    a.openReason === b.openReason &&
    a.cooldownUntil === b.cooldownUntil &&
    a.inFlight === b.inFlight &&
    a.successes === b.successes &&
    a.failures === b.failures &&
    a.consecutiveFailures === b.consecutiveFailures &&
    sameLastError(a.lastError, b.lastError) &&
    a.latencyMs === b.latencyMs &&
    a.timeToFirstTokenMs === b.timeToFirstTokenMs &&
    a.usage === b.usage
  );
}

function keyHealthEqual(a: KeyHealth, b: KeyHealth): boolean {
  return (
    sameBreakerView(a, b) &&
    a.credit === b.credit &&
    a.quota.length === b.quota.length &&
    a.quota.every((quota, index) => quota.remaining === b.quota[index]!.remaining)
  );
}

class Pool implements KeyPool {
  readonly scheduler: SchedulerLike;
  readonly transport: Transport;
  readonly strategy: Strategy;
  readonly labels: readonly string[];
  readonly health$: Observable<PoolHealth>;
  readonly events$: Observable<PoolEvent>;
  readonly store: StateStore;

  /** Tells this pool's state changes apart from other pools' on a shared store. */
  private readonly origin: string;
  private readonly ownsStore: boolean;
  private readonly storeSubscriptions = new Subscription();
  private readonly entries: KeyEntry[] = [];
  private readonly byLabel = new Map<string, KeyEntry>();
  private readonly accounts = new Map<string, AccountEntry>();
  private readonly models = new Map<string, ModelEntry>();
  private readonly events = new Subject<PoolEvent>();
  private readonly changes = new Subject<void>();
  private readonly dirtyKeys = new Set<KeyEntry>();
  private readonly dirtyModels = new Set<ModelEntry>();
  private readonly queue: Ticket[] = [];
  private ticketSeq = 0;
  private draining = false;
  private drainAgain = false;
  private wakeAt = Infinity;
  private announcedQueueLength = 0;
  /** A model record was added or dropped since `health$` was last told. */
  private modelSetChanged = false;
  private defaultBalance: OperatorFunction<ChatRequest, BalanceEvent> | undefined;
  private wakeTimer: Subscription | undefined;
  private disposed = false;

  constructor(private readonly config: ResolvedPoolConfig) {
    this.scheduler = config.scheduler ?? asyncScheduler;
    this.transport = config.transport;
    this.strategy = toStrategy(config.strategy);
    this.ownsStore = config.store === undefined;
    this.store = config.store ?? createMemoryStore();
    // An identity, not a decision: the injected random source stays for routing, untouched.
    this.origin = `pool-${Math.floor(Math.random() * 2 ** 48).toString(36)}`;
    for (const keyConfig of config.keys) {
      const account = this.accountEntry(keyConfig.account);
      const credential = Object.defineProperty(
        { label: keyConfig.label, fingerprint: fingerprintOf(keyConfig.key) },
        'key',
        { value: keyConfig.key, enumerable: false },
      ) as KeyCredential;
      const entry = new KeyEntry(
        credential,
        keyConfig.weight,
        account,
        { id: `key:${keyConfig.label}`, kind: 'key', limits: keyConfig.limits },
        new Breaker(config.breaker),
        (self) => this.buildKeyHealth(self, this.now()),
      );
      account.keys.push(entry);
      this.entries.push(entry);
      this.byLabel.set(entry.label, entry);
    }
    this.labels = this.entries.map((entry) => entry.label);
    for (const entry of this.entries) this.store.define(entry.scope);
    for (const account of this.accounts.values()) this.store.define(account.scope);
    this.storeSubscriptions.add(this.store.changes$.subscribe((change) => this.applyChange(change)));
    this.storeSubscriptions.add(
      this.store.status$.subscribe((status) =>
        this.emit({ type: 'store', mode: status.mode, at: this.now(), ...(status.reason === undefined ? {} : { reason: status.reason }) }),
      ),
    );
    this.events$ = this.events.asObservable();
    this.health$ = defer(() =>
      this.changes.pipe(
        startWith(undefined),
        map(() => this.snapshot()),
      ),
    );
  }

  private now(): number {
    return this.scheduler.now();
  }

  private accountEntry(id: string): AccountEntry {
    let account = this.accounts.get(id);
    if (account === undefined) {
      account = new AccountEntry(id, { id: `account:${id}`, kind: 'account', limits: this.config.accounts[id] ?? {} }, this.config.models);
      this.accounts.set(id, account);
    }
    return account;
  }

  private modelEntry(model: string): ModelEntry {
    let entry = this.models.get(model);
    if (entry !== undefined) {
      entry.lastUsedAt = this.now();
    } else {
      if (this.models.size >= this.config.maxModelRecords) this.evictIdleModels();
      const patterns = Object.keys(this.config.models).filter((pattern) => {
        const limits = this.config.models[pattern]!;
        return patternMatches(pattern, model) && (limits.rpm !== undefined || limits.tpm !== undefined || limits.maxConcurrent !== undefined || (limits.quotas?.length ?? 0) > 0);
      });
      entry = new ModelEntry(model, new Breaker(this.config.modelBreaker), patterns, (self) => this.buildModelHealth(self, this.now()), this.now());
      this.models.set(model, entry);
      this.dirtyModels.add(entry);
      this.modelSetChanged = true;
    }
    return entry;
  }

  /**
   * Keeps the model records bounded (a pool sent 20,000 model ids must not carry 20,000 records):
   * drops idle, healthy records, least recently used first, down to 90 % of `maxModelRecords`, so
   * the scan runs once per many new models. Records with something to remember stay, so the
   * count may exceed the cap while that many models are failing, busy or watched.
   */
  private evictIdleModels(): void {
    const now = this.now();
    const target = Math.floor(this.config.maxModelRecords * 0.9);
    const idle = [...this.models.values()].filter((entry) => entry.isIdleAndHealthy(now)).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const entry of idle.slice(0, Math.max(0, this.models.size - target))) {
      this.models.delete(entry.model);
      this.dirtyModels.delete(entry);
      for (const key of this.entries) key.plans.delete(entry.model);
      entry.subject.complete();
    }
    this.modelSetChanged = true;
  }

  // ---------------------------------------------------------------- public reads

  key(label: string): KeyHandle {
    const entry = this.byLabel.get(label);
    if (entry === undefined) throw new RangeError(`no key labelled "${label}" in this pool`);
    // Built fresh on subscription: the record may have gone stale while nobody watched it.
    return { label, fingerprint: entry.credential.fingerprint, health$: defer(() => (entry.health, entry.subject.asObservable())) };
  }

  model(model: string): { readonly health$: Observable<ModelHealth> } {
    const entry = this.modelEntry(model);
    this.flush();
    return { health$: defer(() => (entry.health, entry.subject.asObservable())).pipe(distinctUntilChanged()) };
  }

  snapshot(): PoolHealth {
    const keys = this.entries.map((entry) => entry.health);
    let usage = emptyUsage();
    for (const key of keys) {
      usage = {
        requests: usage.requests + key.usage.requests,
        promptTokens: usage.promptTokens + key.usage.promptTokens,
        completionTokens: usage.completionTokens + key.usage.completionTokens,
        totalTokens: usage.totalTokens + key.usage.totalTokens,
        cost: usage.cost + key.usage.cost,
      };
    }
    return {
      keys,
      models: [...this.models.values()].map((entry) => entry.health),
      usage,
      queued: this.queue.length,
      at: this.now(),
    };
  }

  emit(event: PoolEvent): void {
    this.events.next(event);
  }

  contextLengthOf(model: string): number | undefined {
    let contextLength: number | undefined;
    for (const [pattern, limits] of Object.entries(this.config.models)) {
      if (limits.contextLength !== undefined && patternMatches(pattern, model)) {
        contextLength = Math.min(contextLength ?? Infinity, limits.contextLength);
      }
    }
    return contextLength;
  }

  // ---------------------------------------------------------------- health records

  private keyState(entry: KeyEntry, now: number): StateView {
    if (entry.disabled) return { state: 'disabled', reason: null, until: null };
    const exhaustedUntil = Math.max(entry.exhaustedUntil, entry.account.exhaustedUntil);
    if (exhaustedUntil > now) return { state: 'exhausted', reason: null, until: Number.isFinite(exhaustedUntil) ? exhaustedUntil : null };
    return breakerState(entry.breaker, Math.max(entry.parkedUntil, entry.account.parkedUntil), now);
  }

  private buildKeyHealth(entry: KeyEntry, now: number): KeyHealth {
    return {
      label: entry.label,
      fingerprint: entry.credential.fingerprint,
      account: entry.account.id,
      ...breakerView(entry, this.keyState(entry, now), now),
      maxConcurrent: entry.scope.limits.maxConcurrent ?? null,
      quota: [...this.store.remaining(entry.scope.id, now), ...this.store.remaining(entry.account.scope.id, now)],
      credit: entry.credit,
    };
  }

  private modelState(entry: ModelEntry, now: number): StateView {
    return breakerState(entry.breaker, entry.parkedUntil, now);
  }

  private buildModelHealth(entry: ModelEntry, now: number): ModelHealth {
    return { model: entry.model, ...breakerView(entry, this.modelState(entry, now), now) } as ModelHealth;
  }

  /** Publishes every health record touched since the last flush, and state-change events. */
  private flush(): void {
    if (this.disposed) return;
    const now = this.now();
    const keysChanged = this.publish(this.dirtyKeys, this.keyRecords, now);
    const modelsChanged = this.publish(this.dirtyModels, this.modelRecords, now) || this.modelSetChanged;
    this.modelSetChanged = false;
    this.announce(keysChanged || modelsChanged);
  }

  private readonly keyRecords: RecordKind<KeyEntry, KeyHealth> = {
    scope: 'key',
    target: (entry) => entry.label,
    state: (entry, now) => this.keyState(entry, now),
    build: (entry, now) => this.buildKeyHealth(entry, now),
    same: keyHealthEqual,
  };

  private readonly modelRecords: RecordKind<ModelEntry, ModelHealth> = {
    scope: 'model',
    target: (entry) => entry.model,
    state: (entry, now) => this.modelState(entry, now),
    build: (entry, now) => this.buildModelHealth(entry, now),
    same: sameBreakerView,
  };

  /**
   * Publishes the dirty records of one kind; returns whether any changed. Building records is the
   * costly part: while nobody watches an entity (nor the pool), only its state is followed, for
   * events and timers, and `health` builds the record on demand.
   */
  private publish<E extends KeyEntry | ModelEntry, H extends KeyHealth | ModelHealth>(dirty: Set<E>, kind: RecordKind<E, H>, now: number): boolean {
    const poolWatched = this.changes.observed;
    let changed = false;
    for (const entry of dirty) {
      const subject = entry.subject as unknown as BehaviorSubject<H>;
      if (!poolWatched && !subject.observed) {
        const { state, until } = kind.state(entry, now);
        this.noteState(entry, kind.scope, kind.target(entry), state, until, now);
        entry.stale = true;
        continue;
      }
      const previous = entry.health as H;
      const next = kind.build(entry, now);
      if (kind.same(previous, next)) continue;
      changed = true;
      subject.next(next);
      this.noteState(entry, kind.scope, kind.target(entry), next.state, next.cooldownUntil, now);
    }
    dirty.clear();
    return changed;
  }

  /** Reports a state change of a key or model, and arms the timer that ends its cooldown. */
  private noteState(entity: KeyEntry | ModelEntry, scope: 'key' | 'model', target: string, state: KeyState, until: number | null, now: number): void {
    if (entity.lastState !== state) {
      this.emit({ type: 'state-change', scope, target, from: entity.lastState, to: state, at: now });
      entity.lastState = state;
    }
    this.scheduleRefresh(entity, until);
  }

  /** Tells `health$` subscribers about a change: a health record, or the queue's length. */
  private announce(healthChanged: boolean): void {
    if (!healthChanged && this.queue.length === this.announcedQueueLength) return;
    this.announcedQueueLength = this.queue.length;
    this.changes.next();
  }

  /** Republishes an entity when its cooldown ends, so `health$` turns without any request. */
  private scheduleRefresh(entity: KeyEntry | ModelEntry, until: number | null): void {
    if (until === null || until === entity.refreshAt) return;
    entity.refreshTimer?.unsubscribe();
    entity.refreshAt = until;
    entity.refreshTimer = scheduleAfter(this.scheduler, until - this.now(), () => {
      entity.refreshAt = Infinity;
      entity.refreshTimer = undefined;
      if (entity instanceof KeyEntry) this.dirtyKeys.add(entity);
      else this.dirtyModels.add(entity);
      this.flush();
      this.drain();
    });
  }

  private markAccount(account: AccountEntry): void {
    for (const key of account.keys) this.dirtyKeys.add(key);
  }

  // ---------------------------------------------------------------- admission

  /** The scopes an attempt of `entry` on `model` takes room in: key, account, model limits. */
  private planOf(entry: KeyEntry, model: ModelEntry): AdmissionPlan {
    let plan = entry.plans.get(model.model);
    if (plan === undefined) {
      plan = [entry.scope, entry.account.scope, ...model.limitPatterns.map((pattern) => entry.account.modelScope(pattern))];
      for (const scope of plan) this.store.define(scope);
      entry.plans.set(model.model, plan);
    }
    return plan;
  }

  private keyAdmits(entry: KeyEntry, model: ModelEntry, now: number, tokens: number): boolean {
    if (entry.disabled || entry.exhaustedUntil > now || entry.parkedUntil > now || entry.fullUntil > now) return false;
    const account = entry.account;
    if (account.exhaustedUntil > now || account.parkedUntil > now) return false;
    if (entry.breaker.state !== 'closed') {
      if (entry.breaker.advance(now)) this.dirtyKeys.add(entry);
      if (!entry.breaker.admits()) return false;
    }
    return this.store.fits(this.planOf(entry, model), tokens, now);
  }

  private modelAdmits(model: ModelEntry, now: number): boolean {
    if (model.parkedUntil > now) return false;
    if (model.breaker.state !== 'closed') {
      if (model.breaker.advance(now)) this.dirtyModels.add(model);
      return model.breaker.admits();
    }
    return true;
  }

  /** Out of service by its breaker: open, or half-open with its probes out. A 429 park is a wait, not this. */
  private modelOutOfService(model: ModelEntry, now: number): boolean {
    if (model.breaker.state === 'closed') return false;
    if (model.breaker.advance(now)) this.dirtyModels.add(model);
    return !model.breaker.admits();
  }

  /**
   * The refusal of a ticket that could not be placed because every model of its chain is out of
   * service; undefined when it waits for a key instead. Such a ticket never waits in the queue: it
   * would hold its caller's concurrency slot (a `balance` slot) that requests for healthy models
   * could use, so it fails at once and the caller decides whether to wait (`balance` waits
   * without its slot, up to its `modelWaitMs`).
   */
  private modelsUnavailable(ticket: Ticket, now: number): ModelUnavailableError | undefined {
    const models = ticket.options.models.map((id) => this.modelEntry(id));
    if (models.length === 0 || !models.every((model) => this.modelOutOfService(model, now))) return undefined;
    // Known return times (open breakers); a half-open model's return hangs on its probe.
    const backAt = Math.min(...models.map((model) => (model.breaker.state === 'open' ? model.breaker.openUntil : Infinity)));
    const described = models.map((model) => {
      const state = model.breaker.state === 'open' ? `breaker open for another ${Math.ceil((model.breaker.openUntil - now) / 1000)} s` : 'breaker half-open, its probe still out';
      return `${model.model} (${state}${model.lastError === null ? '' : `; last error: ${model.lastError.message}`})`;
    });
    const last = models.find((model) => model.lastError !== null)?.lastError ?? null;
    return new ModelUnavailableError({
      message: `every model of the request is out of service: ${described.join(', ')}`,
      scope: 'model',
      retryable: true,
      ...(Number.isFinite(backAt) ? { retryAfterMs: Math.max(0, backAt - now) } : {}),
      ...(last?.status === undefined ? {} : { status: last.status }),
      model: models[0]!.model,
    });
  }

  /** Fails a ticket that is out of the queue; it never got a key. */
  private refuse(ticket: Ticket, error: OpenRouterError): void {
    ticket.cancelled = true;
    ticket.timeout?.unsubscribe();
    // No retry operator may take it: the route's every model is out, and time, not another key, mends that.
    error.routeExhausted = true;
    ticket.reject(error);
  }

  /** Finds a key for the ticket now, trying its models in order; undefined when none fits. */
  private place(ticket: Ticket, now: number): { entry: KeyEntry; model: ModelEntry } | undefined {
    const strategy = ticket.options.strategy ?? this.strategy;
    const avoid = ticket.options.avoid;
    for (const modelId of ticket.options.models) {
      const model = this.modelEntry(modelId);
      if (!this.modelAdmits(model, now)) continue;
      let avoiding = avoid !== undefined && avoid.size > 0 && avoid.size < this.entries.length;
      const context: PickContext = {
        candidates: this.entries,
        isEligible: (index) => {
          const entry = this.entries[index]!;
          if (avoiding && avoid!.has(entry.label)) return false;
          return this.keyAdmits(entry, model, now, ticket.tokens);
        },
        request: ticket.request,
        model: modelId,
        random: this.config.random,
      };
      // A user strategy may return anything: admit only what the pool would.
      const admissible = (index: number | undefined) => {
        const entry = index === undefined ? undefined : this.entries[index];
        return entry !== undefined && context.isEligible(index!) ? entry : undefined;
      };
      let entry = admissible(strategy.pick(context));
      if (entry === undefined && avoiding) {
        avoiding = false;
        entry = admissible(strategy.pick(context));
      }
      if (entry === undefined) continue;
      return { entry, model };
    }
    return undefined;
  }

  /**
   * Places the ticket if a key looks free, and reserves its room in the store. With the memory
   * store the answer is synchronous; with a shared store it may come later, or be a refusal
   * (another process took the room first): then the key is skipped until the store's retry time
   * and the ticket goes back to its place in the queue. Returns whether a key was tried.
   */
  private tryAdmit(ticket: Ticket, now: number): boolean {
    const candidate = this.place(ticket, now);
    if (candidate === undefined) return false;
    const { entry, model } = candidate;
    const plan = this.planOf(entry, model);
    entry.inFlight++;
    model.inFlight++;
    this.store.reserve(plan, ticket.tokens, now).subscribe({
      next: (result) => this.onReserved(ticket, entry, model, result),
      error: (error: unknown) => {
        entry.inFlight--;
        model.inFlight--;
        this.dequeue(ticket);
        if (!ticket.cancelled) ticket.reject(toOpenRouterError(error));
        this.flush();
      },
    });
    return true;
  }

  private onReserved(ticket: Ticket, entry: KeyEntry, model: ModelEntry, result: ReserveResult): void {
    const now = this.now();
    if (!result.ok) {
      entry.inFlight--;
      model.inFlight--;
      entry.fullUntil = Math.max(entry.fullUntil, now + result.retryAfterMs);
      if (!ticket.cancelled && !this.queue.includes(ticket)) this.insert(ticket);
      this.drain();
      return;
    }
    if (ticket.cancelled) {
      entry.inFlight--;
      model.inFlight--;
      this.store.release(result.reservation);
      return;
    }
    this.dequeue(ticket);
    const lease = this.lease(entry, model, result.reservation, now);
    this.flush();
    ticket.admit(lease);
  }

  private lease(entry: KeyEntry, model: ModelEntry, reservation: Reservation, now: number): KeyLease {
    const account = entry.account;
    const keyProbe = entry.breaker.begin();
    const modelProbe = model.breaker.begin();
    this.dirtyKeys.add(entry);
    this.dirtyModels.add(model);
    let released = false;
    let responded = false;
    const pool = this;
    return {
      credential: entry.credential,
      label: entry.label,
      fingerprint: entry.credential.fingerprint,
      account: account.id,
      model: model.model,
      acquiredAt: now,
      markResponded() {
        if (responded || released) return;
        responded = true;
        pool.store.markResponded(reservation, pool.now());
        // The quota entry now has an expiry: a waiting request can be woken for it.
        if (pool.queue.length > 0) pool.scheduleWake();
      },
      reconcile(usage) {
        pool.store.reconcile(reservation, usage.totalTokens);
      },
      release() {
        if (released) return;
        released = true;
        pool.store.release(reservation);
        entry.inFlight--;
        entry.breaker.abandon(keyProbe);
        model.breaker.abandon(modelProbe);
        model.inFlight--;
        pool.dirtyKeys.add(entry);
        pool.dirtyModels.add(model);
        pool.flush();
        pool.drain();
      },
    };
  }

  acquire(request: ChatRequest, options: AcquireOptions): Observable<KeyLease> {
    return new Observable<KeyLease>((subscriber) => {
      if (this.disposed) {
        subscriber.error(new AbortedError({ message: 'the key pool was disposed', scope: 'request', retryable: false }));
        return undefined;
      }
      let lease: KeyLease | undefined;
      const priority = options.priority ?? 0;
      const ticket: Ticket = {
        request,
        options,
        tokens: estimateTokens(request, this.config.defaultCompletionTokens),
        priority,
        seq: this.ticketSeq++,
        signature: `${priority}|${options.models.join('\u0000')}`,
        admit: (admitted) => {
          lease = admitted;
          subscriber.next(admitted);
        },
        reject: (error) => subscriber.error(error),
        cancelled: false,
      };
      this.enqueue(ticket);
      return () => {
        ticket.cancelled = true;
        this.dequeue(ticket);
        lease?.release();
      };
    });
  }

  private enqueue(ticket: Ticket): void {
    if (this.entries.every((entry) => entry.disabled)) {
      ticket.reject(this.noKeyError());
      return;
    }
    const timeoutMs = ticket.options.queueTimeoutMs ?? this.config.queue.timeoutMs;
    if (timeoutMs !== undefined) {
      ticket.timeout = scheduleAfter(this.scheduler, timeoutMs, () => {
        ticket.cancelled = true;
        this.dequeue(ticket);
        ticket.reject(new QueueTimeoutError({ message: `no key became available within ${timeoutMs} ms`, scope: 'request', retryable: false }));
      });
    }
    const now = this.now();
    if (this.queue.length === 0 && this.tryAdmit(ticket, now)) return;
    const unavailable = this.modelsUnavailable(ticket, now);
    if (unavailable !== undefined) {
      this.refuse(ticket, unavailable);
      this.flush();
      return;
    }
    if (this.queue.length >= this.config.queue.maxSize) {
      ticket.timeout?.unsubscribe();
      ticket.reject(new QueueFullError({ message: `admission queue full (${this.config.queue.maxSize} waiting)`, scope: 'request', retryable: true }));
      return;
    }
    this.insert(ticket);
    this.emit({ type: 'queued', requestId: ticket.options.requestId ?? '', queued: this.queue.length, at: this.now() });
    this.drain();
    this.flush();
  }

  /** Puts a ticket in its place: by priority (descending), then arrival. */
  private insert(ticket: Ticket): void {
    let index = this.queue.length;
    while (index > 0) {
      const before = this.queue[index - 1]!;
      if (before.priority > ticket.priority || (before.priority === ticket.priority && before.seq < ticket.seq)) break;
      index--;
    }
    this.queue.splice(index, 0, ticket);
  }

  private dequeue(ticket: Ticket): void {
    ticket.timeout?.unsubscribe();
    const index = this.queue.indexOf(ticket);
    if (index >= 0) {
      this.queue.splice(index, 1);
      this.flush();
    }
  }

  private noKeyError(): NoKeyAvailableError {
    return new NoKeyAvailableError({ message: `every key of the pool is disabled (${this.labels.join(', ')})`, scope: 'key', retryable: false });
  }

  /** Admits waiting requests in order while keys have room; then sleeps until the earliest reset. */
  private drain(): void {
    if (this.draining) {
      this.drainAgain = true;
      return;
    }
    if (this.queue.length === 0 || this.disposed) return;
    let drainedAt = this.now();
    this.draining = true;
    try {
      do {
        this.drainAgain = false;
        if (this.entries.every((entry) => entry.disabled)) {
          for (const ticket of this.queue.splice(0)) this.refuse(ticket, this.noKeyError());
          break;
        }
        const now = this.now();
        drainedAt = now;
        const blocked = new Set<string>();
        for (let index = 0; index < this.queue.length; ) {
          const ticket = this.queue[index]!;
          if (blocked.has(ticket.signature)) {
            index++;
            continue;
          }
          // Out of the queue while its reservation is under way; a refusal puts it back.
          this.queue.splice(index, 1);
          if (this.tryAdmit(ticket, now)) continue;
          const unavailable = this.modelsUnavailable(ticket, now);
          if (unavailable !== undefined) {
            this.refuse(ticket, unavailable);
            continue;
          }
          this.queue.splice(index, 0, ticket);
          blocked.add(ticket.signature);
          index++;
        }
      } while (this.drainAgain);
    } finally {
      this.draining = false;
    }
    this.flush();
    if (this.queue.length > 0) this.scheduleWake(drainedAt);
  }

  /** The earliest future time at which a cooldown, exhaustion or quota window ends. */
  private nextChangeAt(now: number): number {
    const tokens = this.queue[0]?.tokens ?? 1;
    let at = Infinity;
    const consider = (time: number) => {
      if (time > now && time < at) at = time;
    };
    for (const entry of this.entries) {
      if (entry.disabled) continue;
      consider(entry.parkedUntil);
      consider(entry.exhaustedUntil);
      consider(entry.fullUntil);
      if (entry.breaker.state === 'open') consider(entry.breaker.openUntil);
      for (const plan of entry.plans.values()) consider(this.store.nextFitAt(plan, tokens, now));
    }
    for (const account of this.accounts.values()) {
      consider(account.parkedUntil);
      consider(account.exhaustedUntil);
    }
    for (const model of this.models.values()) {
      consider(model.parkedUntil);
      if (model.breaker.state === 'open') consider(model.breaker.openUntil);
    }
    return at;
  }

  /**
   * Sleeps until the earliest change after `checkedAt`, the time the queue was last found blocked:
   * a change between then and now wakes at once, never lost. On a store shared with other pools,
   * their releases free room without any event here, so a blocked queue also polls.
   */
  private scheduleWake(checkedAt = this.now()): void {
    let at = this.nextChangeAt(checkedAt);
    if (!Number.isFinite(at) && !this.ownsStore) at = checkedAt + SHARED_STORE_POLL_MS;
    if (!Number.isFinite(at) || (this.wakeTimer !== undefined && this.wakeAt <= at)) return;
    this.wakeTimer?.unsubscribe();
    this.wakeAt = at;
    this.wakeTimer = scheduleAfter(this.scheduler, at - this.now(), () => {
      this.wakeTimer = undefined;
      this.wakeAt = Infinity;
      this.drain();
    });
  }

  // ---------------------------------------------------------------- outcomes

  record(outcome: AttemptOutcome): void {
    if (this.disposed) return;
    const entry = this.byLabel.get(outcome.keyLabel);
    const model = this.modelEntry(outcome.model);
    const now = this.now();
    const alpha = this.config.latencySmoothing;
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
        this.dirtyKeys.add(entry);
      }
      model.breaker.succeed(now);
      model.rateLimitStreak = 0;
      model.latencyMs = movingAverage(model.latencyMs, outcome.latencyMs, alpha);
      if (outcome.timeToFirstTokenMs !== undefined) {
        model.timeToFirstTokenMs = movingAverage(model.timeToFirstTokenMs, outcome.timeToFirstTokenMs, alpha);
      }
      model.usage = addUsage(model.usage, outcome.usage, true);
      this.dirtyModels.add(model);
    } else {
      if (outcome.error.scope === 'request') this.settleProbes(entry, model, now);
      else this.applyFailure(entry, model, outcome.error, now);
      if (outcome.usage !== undefined) {
        // Billed tokens of a failed attempt still count: OpenRouter charged them.
        if (entry !== undefined) entry.usage = addUsage(entry.usage, outcome.usage, false);
        model.usage = addUsage(model.usage, outcome.usage, false);
      }
    }
    this.flush();
    this.drain();
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
      this.dirtyKeys.add(entry);
    }
    if (model.breaker.state === 'half-open') {
      model.breaker.succeed(now);
      this.dirtyModels.add(model);
    }
  }

  private applyFailure(entry: KeyEntry | undefined, model: ModelEntry, error: OpenRouterError, now: number): void {
    const lastError: LastError = { kind: error.kind, message: error.message, at: now, ...(error.status === undefined ? {} : { status: error.status }) };
    // A key shows the errors that touch it; a model's (an upstream 503) show on the model.
    if ((error.scope === 'key' || error.scope === 'account' || error.scope === 'transport') && entry !== undefined) {
      entry.lastError = lastError;
      this.dirtyKeys.add(entry);
    }
    if (error.scope === 'model') {
      model.lastError = lastError;
      this.dirtyModels.add(model);
    }
    switch (error.kind) {
      case 'authentication':
        if (entry !== undefined) this.disableKey(entry, now);
        return;
      case 'key_limit':
        if (entry !== undefined) {
          const until = error.retryAfterMs !== undefined ? now + error.retryAfterMs : nextLimitReset(now, entry.limitReset) ?? now + this.config.exhaustedRetryMs;
          entry.exhaustedUntil = Math.max(entry.exhaustedUntil, until);
          this.share('key', entry.label, 'exhausted', until, now);
          this.emit({ type: 'cooldown', scope: 'key', target: entry.label, reason: 'exhausted', until, errorKind: error.kind, at: now });
        }
        return;
      case 'insufficient_credits':
        if (entry !== undefined && error.scope === 'account') {
          const account = entry.account;
          if (error.retryable && error.retryAfterMs !== undefined) {
            // A transient in-flight budget: wait the hint out, the credit is there.
            account.parkedUntil = Math.max(account.parkedUntil, now + error.retryAfterMs);
            this.share('account', account.id, 'parked', account.parkedUntil, now);
            this.emit({ type: 'cooldown', scope: 'account', target: account.id, reason: 'rate-limit', until: account.parkedUntil, errorKind: error.kind, at: now });
          } else {
            account.exhaustedUntil = Math.max(account.exhaustedUntil, now + (error.retryAfterMs ?? this.config.exhaustedRetryMs));
            this.share('account', account.id, 'exhausted', account.exhaustedUntil, now);
            this.emit({ type: 'cooldown', scope: 'account', target: account.id, reason: 'exhausted', until: account.exhaustedUntil, errorKind: error.kind, at: now });
          }
          this.markAccount(account);
        }
        return;
      case 'rate_limit':
        this.park(entry, model, error, now);
        return;
      default:
        break;
    }
    this.countFailure(entry, model, error.scope, now, error.retryAfterMs);
  }

  /** A 429 parks its scope until the reset without counting as a health failure. */
  private park(entry: KeyEntry | undefined, model: ModelEntry, error: OpenRouterError, now: number): void {
    const { rateLimitCooldownMs, maxRateLimitCooldownMs } = this.config;
    const holder: { rateLimitStreak: number; parkedUntil: number } | undefined =
      error.scope === 'model' ? model : error.scope === 'account' ? entry?.account : entry;
    if (holder === undefined) return;
    // Without a hint, back off: each 429 in a row doubles the wait, up to the cap
    // (equal jitter: half fixed, half random, so what is parked together does not resume together).
    const backoffMs = Math.min(maxRateLimitCooldownMs, rateLimitCooldownMs * 2 ** holder.rateLimitStreak);
    const waitMs = error.retryAfterMs ?? backoffMs / 2 + (this.config.random() * backoffMs) / 2;
    holder.rateLimitStreak++;
    holder.parkedUntil = Math.max(holder.parkedUntil, now + waitMs);
    const scope = error.scope === 'model' ? 'model' : error.scope === 'account' ? 'account' : 'key';
    const target = scope === 'model' ? model.model : scope === 'account' ? entry!.account.id : entry!.label;
    this.share(scope, target, 'parked', holder.parkedUntil, now);
    this.emit({ type: 'cooldown', scope, target, reason: 'rate-limit', until: holder.parkedUntil, errorKind: error.kind, at: now });
    if (scope === 'model') this.dirtyModels.add(model);
    else if (scope === 'account') this.markAccount(entry!.account);
    else this.dirtyKeys.add(entry!);
  }

  private countFailure(entry: KeyEntry | undefined, model: ModelEntry, scope: ErrorScope, now: number, retryAfterMs: number | undefined): void {
    if (scope === 'model') {
      const opened = model.breaker.fail(now);
      if (retryAfterMs !== undefined) model.breaker.holdOpenUntil(now + retryAfterMs);
      this.dirtyModels.add(model);
      if (opened || retryAfterMs !== undefined) {
        this.share('model', model.model, 'open', model.breaker.openUntil, now);
        this.emit({ type: 'cooldown', scope: 'model', target: model.model, reason: 'failures', until: model.breaker.openUntil, at: now });
      }
    } else if ((scope === 'transport' || scope === 'key') && entry !== undefined) {
      const opened = entry.breaker.fail(now);
      this.dirtyKeys.add(entry);
      if (opened) {
        this.share('key', entry.label, 'open', entry.breaker.openUntil, now);
        this.emit({ type: 'cooldown', scope: 'key', target: entry.label, reason: 'failures', until: entry.breaker.openUntil, at: now });
      }
    }
  }

  /** Shares a state change with the other pools on the store. */
  private share(scope: StateChange['scope'], target: string, state: StateChange['state'], until: number, now: number): void {
    this.store.publish({ scope, target, state, remainingMs: until - now, origin: this.origin });
  }

  /** Applies another pool's state change; cooldowns only ever extend, as with local signals. */
  private applyChange(change: StateChange): void {
    if (change.origin === this.origin || this.disposed) return;
    const now = this.now();
    const until = now + change.remainingMs;
    if (change.scope === 'key') {
      const entry = this.byLabel.get(change.target);
      if (entry === undefined) return;
      if (change.state === 'parked') entry.parkedUntil = Math.max(entry.parkedUntil, until);
      else if (change.state === 'open') entry.breaker.holdOpenUntil(until);
      else if (change.state === 'exhausted') entry.exhaustedUntil = Math.max(entry.exhaustedUntil, until);
      else if (change.state === 'disabled') entry.disabled = true;
      else {
        entry.disabled = false;
        entry.exhaustedUntil = 0;
      }
      this.dirtyKeys.add(entry);
    } else if (change.scope === 'account') {
      const account = this.accounts.get(change.target);
      if (account === undefined) return;
      if (change.state === 'parked') account.parkedUntil = Math.max(account.parkedUntil, until);
      else if (change.state === 'exhausted') account.exhaustedUntil = Math.max(account.exhaustedUntil, until);
      else if (change.state === 'enabled') account.exhaustedUntil = 0;
      this.markAccount(account);
    } else {
      const model = this.modelEntry(change.target);
      if (change.state === 'parked') model.parkedUntil = Math.max(model.parkedUntil, until);
      else if (change.state === 'open') model.breaker.holdOpenUntil(until);
      this.dirtyModels.add(model);
    }
    this.flush();
    this.drain();
  }

  private disableKey(entry: KeyEntry, now: number): void {
    if (entry.disabled) return;
    entry.disabled = true;
    this.dirtyKeys.add(entry);
    this.share('key', entry.label, 'disabled', Infinity, now);
    this.emit({ type: 'cooldown', scope: 'key', target: entry.label, reason: 'disabled', until: Infinity, errorKind: 'authentication', at: now });
  }

  enable(label: string): void {
    const entry = this.requireKey(label);
    entry.disabled = false;
    entry.exhaustedUntil = 0;
    entry.account.exhaustedUntil = 0;
    this.markAccount(entry.account);
    this.share('key', entry.label, 'enabled', 0, this.now());
    this.share('account', entry.account.id, 'enabled', 0, this.now());
    this.flush();
    this.drain();
  }

  disable(label: string): void {
    this.disableKey(this.requireKey(label), this.now());
    this.flush();
    this.drain();
  }

  private requireKey(label: string): KeyEntry {
    const entry = this.byLabel.get(label);
    if (entry === undefined) throw new RangeError(`no key labelled "${label}" in this pool`);
    return entry;
  }

  refreshKeyInfo(): Observable<readonly KeyHealth[]> {
    const source = this.config.keyInfo;
    if (source === undefined) return of(this.entries.map((entry) => entry.health));
    return defer(() =>
      forkJoin(
        this.entries.map((entry) =>
          defer(() => from(source(entry.credential))).pipe(
            map((info) => this.foldKeyInfo(entry, info)),
            catchError((thrown: unknown) => {
              const error = toOpenRouterError(thrown);
              const now = this.now();
              entry.lastError = { kind: error.kind, message: error.message, at: now, ...(error.status === undefined ? {} : { status: error.status }) };
              this.dirtyKeys.add(entry);
              if (error.kind === 'authentication') this.disableKey(entry, now);
              return of(undefined);
            }),
          ),
        ),
      ).pipe(
        map(() => {
          this.flush();
          this.drain();
          return this.entries.map((entry) => entry.health);
        }),
      ),
    );
  }

  private foldKeyInfo(entry: KeyEntry, info: KeyInfoSnapshot): void {
    const now = this.now();
    entry.credit = { limit: info.limit, limitRemaining: info.limitRemaining, usage: info.usage, isFreeTier: info.isFreeTier, checkedAt: now };
    entry.limitReset = info.limitReset ?? null;
    // The key answered, so it is valid; credit left (or no limit) lifts an exhaustion.
    entry.disabled = false;
    if (info.limitRemaining === null || info.limitRemaining > 0) entry.exhaustedUntil = 0;
    else entry.exhaustedUntil = Math.max(entry.exhaustedUntil, nextLimitReset(now, entry.limitReset) ?? now + this.config.exhaustedRetryMs);
    this.dirtyKeys.add(entry);
  }

  complete(request: ChatRequest, options?: BalanceOptions): Observable<CompletionEvent> {
    return this.single({ ...request, stream: false }, options).pipe(
      filter((event): event is CompletionEvent => event.type === 'completion'),
    );
  }

  stream(request: ChatRequest, options?: BalanceOptions): Observable<ChunkEvent | RestartEvent | CompletionEvent> {
    return this.single({ ...request, stream: true }, options);
  }

  private single(request: ChatRequest, options: BalanceOptions | undefined): Observable<ChunkEvent | RestartEvent | CompletionEvent> {
    // One shared `balance` for calls without options, so its retry budget spans them all.
    const route = options === undefined ? (this.defaultBalance ??= balance(this)) : balance(this, options);
    return of(request).pipe(
      route,
      map((event: BalanceEvent) => {
        if (event.type === 'failed') throw event.error;
        return event;
      }),
    );
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.wakeTimer?.unsubscribe();
    for (const ticket of this.queue.splice(0)) {
      ticket.timeout?.unsubscribe();
      ticket.reject(new AbortedError({ message: 'the key pool was disposed', scope: 'request', retryable: false }));
    }
    for (const entry of this.entries) {
      entry.refreshTimer?.unsubscribe();
      entry.subject.complete();
    }
    for (const model of this.models.values()) {
      model.refreshTimer?.unsubscribe();
      model.subject.complete();
    }
    this.storeSubscriptions.unsubscribe();
    if (this.ownsStore) this.store.dispose();
    this.changes.complete();
    this.events.complete();
  }
}
