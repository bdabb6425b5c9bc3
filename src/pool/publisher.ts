import { Subject, defer, map, startWith, type Observable, type SchedulerLike, type Subscription } from 'rxjs';
import { scheduleAfter } from '../core/timers.js';
import {
  addUsage,
  emptyUsage,
  sameKeyHealth,
  sameEntityHealth,
  type KeyHealth,
  type KeyState,
  type ModelHealth,
  type PoolHealth,
} from '../health/records.js';
import type { AccountEntry, KeyEntry, ModelEntry, PublishedEntity } from './entities.js';
import type { PoolEvent } from './events.js';
import { keyStateOf, modelStateOf, type StateView } from './record-builders.js';
import type { Registry } from './registry.js';

/** How the publisher handles one kind of record (keys or models). */
interface RecordKind<E extends PublishedEntity<H>, H extends KeyHealth | ModelHealth> {
  scope: 'key' | 'model';
  target(entry: E): string;
  state(entry: E, now: number): StateView;
  same(a: H, b: H): boolean;
  /** When the record, built at `now`, turns by itself (a cooldown ends, a quota window frees); null: never. */
  turnsAt(record: H, now: number): number | null;
}

/**
 * A watched key's record is rebuilt when a quota window frees room, at most this often: each one
 * tells every `health$` subscriber, and a busy key frees room at the rate it serves.
 */
const QUOTA_REFRESH_MS = 1_000;

/** Room freeing is published on this grid, so that keys whose windows free together turn in one flush. */
const QUOTA_REFRESH_GRID_MS = 250;

/** The earlier of a key's cooldown end and, no sooner than `QUOTA_REFRESH_MS` from `now`, the first room its quotas free. */
function keyTurnsAt(record: KeyHealth, now: number): number | null {
  let freesAt = Infinity;
  for (const quota of record.quota) {
    if (quota.freesAt !== null && quota.remaining < quota.limit) freesAt = Math.min(freesAt, quota.freesAt);
  }
  const quotaAt =
    freesAt === Infinity ? null : Math.ceil(Math.max(freesAt, now + QUOTA_REFRESH_MS) / QUOTA_REFRESH_GRID_MS) * QUOTA_REFRESH_GRID_MS;
  if (record.cooldownUntil === null) return quotaAt;
  return quotaAt === null ? record.cooldownUntil : Math.min(record.cooldownUntil, quotaAt);
}

/** What the publisher follows of an entity between records: its last state and when it turns by itself. */
type Tracked = Pick<PublishedEntity<KeyHealth | ModelHealth>, 'lastState' | 'refreshAt'>;

const keyRecords: RecordKind<KeyEntry, KeyHealth> = {
  scope: 'key',
  target: (entry) => entry.label,
  state: keyStateOf,
  same: sameKeyHealth,
  turnsAt: keyTurnsAt,
};

const modelRecords: RecordKind<ModelEntry, ModelHealth> = {
  scope: 'model',
  target: (entry) => entry.model,
  state: modelStateOf,
  same: sameEntityHealth,
  turnsAt: (record) => record.cooldownUntil,
};

/**
 * Publishes health: the parts that change an entity mark it dirty, and `flush` rebuilds the dirty
 * records, publishes those that changed by value, reports state changes, arms the timers that end
 * cooldowns, and tells `health$` once per flush. While nobody watches an entity (nor the pool),
 * only its state is followed and its record is built on demand.
 */
export class HealthPublisher {
  readonly health$: Observable<PoolHealth>;
  private readonly changes = new Subject<void>();
  private readonly dirtyKeys = new Set<KeyEntry>();
  private readonly dirtyModels = new Set<ModelEntry>();
  private announcedQueueLength = 0;
  private closed = false;
  /** Entities to republish at their `refreshAt`, with the dirty set that takes them: one timer for them all. */
  private readonly turning = new Map<Tracked, Set<Tracked>>();
  private turnTimer: Subscription | undefined;
  private turnTimerAt = Infinity;

  constructor(
    private readonly registry: Registry,
    private readonly scheduler: SchedulerLike,
    private readonly emit: (event: PoolEvent) => void,
    private readonly queueLength: () => number,
    /** Called when a cooldown ends: a waiting request may fit now. */
    private readonly onCooldownEnd: () => void,
  ) {
    this.health$ = defer(() => {
      // Records built while nobody watched armed no turn: a watcher must see them turn too.
      for (const entry of this.registry.keys) this.watch(entry);
      return this.changes.pipe(
        startWith(undefined),
        map(() => this.snapshot()),
      );
    });
  }

  /** A watcher starts on `entry` (its `health$`, or the pool's): its record turns by itself from now on. */
  watch(entry: KeyEntry): void {
    this.scheduleRefresh(entry, this.dirtyKeys, keyTurnsAt(entry.health, this.scheduler.now()));
  }

  markKey(entry: KeyEntry): void {
    this.dirtyKeys.add(entry);
  }

  markModel(entry: ModelEntry): void {
    this.dirtyModels.add(entry);
  }

  /**
   * A key's or model's load (in flight) changed, not its state: an admission and a release change
   * nothing a state-change event reports, so while nobody watches the record it is only marked
   * stale, to be built when read, and the hot path does no publishing work.
   */
  markKeyLoad(entry: KeyEntry): void {
    if (this.changes.observed || entry.watched) this.dirtyKeys.add(entry);
    else entry.stale = true;
  }

  markModelLoad(entry: ModelEntry): void {
    if (this.changes.observed || entry.watched) this.dirtyModels.add(entry);
    else entry.stale = true;
  }

  markAccount(account: AccountEntry): void {
    for (const key of account.keys) this.dirtyKeys.add(key);
  }

  /** The pool's health now, frozen as its records are (see `keyHealthOf`). */
  snapshot(): PoolHealth {
    const keys = Object.freeze(this.registry.keys.map((entry) => entry.health));
    return Object.freeze({
      keys,
      models: Object.freeze([...this.registry.models.values()].map((entry) => entry.health)),
      usage: Object.freeze(keys.reduce((sum, key) => addUsage(sum, key.usage, false), emptyUsage())),
      queued: this.queueLength(),
      at: this.scheduler.now(),
    });
  }

  /** Publishes every health record touched since the last flush, and state-change events. */
  flush(): void {
    if (this.closed) return;
    // The common case on the hot path (an admission or release nobody watches): nothing to do.
    if (this.dirtyKeys.size === 0 && this.dirtyModels.size === 0 && !this.registry.modelSetChanged) {
      this.announce(false);
      return;
    }
    const now = this.scheduler.now();
    const keysChanged = this.publish(this.dirtyKeys, keyRecords, now);
    const modelSetChanged = this.registry.takeModelSetChange();
    const modelsChanged = this.publish(this.dirtyModels, modelRecords, now) || modelSetChanged;
    this.announce(keysChanged || modelsChanged);
  }

  /** Completes `health$` and every record stream, and cancels every cooldown timer. */
  close(): void {
    this.closed = true;
    this.turnTimer?.unsubscribe();
    this.turning.clear();
    for (const entry of this.registry.keys) entry.close();
    for (const model of this.registry.models.values()) model.close();
    this.changes.complete();
  }

  /** Publishes the dirty records of one kind; returns whether any changed. */
  private publish<H extends KeyHealth | ModelHealth, E extends PublishedEntity<H>>(
    dirty: Set<E>,
    kind: RecordKind<E, H>,
    now: number,
  ): boolean {
    const poolWatched = this.changes.observed;
    let changed = false;
    for (const entry of dirty) {
      if (!poolWatched && !entry.watched) {
        const { state, until } = kind.state(entry, now);
        this.noteState(entry, dirty, kind.scope, kind.target(entry), state, until, now);
        entry.stale = true;
        continue;
      }
      const previous = entry.health;
      const next = entry.build();
      if (kind.same(previous, next)) {
        // Nothing to tell, but when it next turns may have moved (a quota's oldest entry left).
        this.scheduleRefresh(entry, dirty, kind.turnsAt(next, now));
        continue;
      }
      changed = true;
      entry.publish(next);
      this.noteState(entry, dirty, kind.scope, kind.target(entry), next.state, kind.turnsAt(next, now), now);
    }
    dirty.clear();
    return changed;
  }

  /** Reports a state change of a key or model, and arms the timer that ends its cooldown. */
  private noteState<E extends Tracked>(
    entity: E,
    dirty: Set<E>,
    scope: 'key' | 'model',
    target: string,
    state: KeyState,
    until: number | null,
    now: number,
  ): void {
    if (entity.lastState !== state) {
      this.emit({ type: 'state-change', scope, target, from: entity.lastState, to: state, at: now });
      entity.lastState = state;
    }
    this.scheduleRefresh(entity, dirty, until);
  }

  /** Tells `health$` subscribers about a change: a health record, or the queue's length. */
  private announce(healthChanged: boolean): void {
    const queued = this.queueLength();
    if (!healthChanged && queued === this.announcedQueueLength) return;
    this.announcedQueueLength = queued;
    this.changes.next();
  }

  /**
   * Republishes an entity when it turns by itself (its cooldown ends, a quota window frees room),
   * so `health$` turns without any request. A turn due sooner stays: it republishes, and the
   * record then built says when next. One timer serves every entity, at the earliest turn.
   */
  private scheduleRefresh<E extends Tracked>(entity: E, dirty: Set<E>, until: number | null): void {
    // A cooldown without an end (or not a number) has no moment to republish at.
    if (this.closed || until === null || until >= entity.refreshAt || !Number.isFinite(until)) return;
    entity.refreshAt = until;
    this.turning.set(entity, dirty);
    if (until < this.turnTimerAt) this.armTurns(until);
  }

  private armTurns(at: number): void {
    this.turnTimer?.unsubscribe();
    this.turnTimerAt = at;
    this.turnTimer = scheduleAfter(this.scheduler, Math.max(0, at - this.scheduler.now()), () => this.turn());
  }

  /** Marks every entity whose turn has come dirty, re-arms for the next, then flushes once. */
  private turn(): void {
    this.turnTimer = undefined;
    this.turnTimerAt = Infinity;
    const now = this.scheduler.now();
    let next = Infinity;
    for (const [entity, dirty] of this.turning) {
      if (entity.refreshAt > now) {
        next = Math.min(next, entity.refreshAt);
        continue;
      }
      entity.refreshAt = Infinity;
      this.turning.delete(entity);
      dirty.add(entity);
    }
    if (next !== Infinity) this.armTurns(next);
    this.flush();
    this.onCooldownEnd();
  }
}
