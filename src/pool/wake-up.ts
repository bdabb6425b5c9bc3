import type { SchedulerLike, Subscription } from 'rxjs';
import { scheduleAfter } from '../core/timers.js';
import type { PoolContext } from './context.js';
import { longestQueuedRoomWaitMs } from './model-availability.js';

/** How often a blocked queue looks again at a store other pools share (their releases send no event). */
const SHARED_STORE_POLL_MS = 25;

/** The admission's one timer: it drains the queue at the earliest moment a waiting request may fit. */
export class WakeUpTimer {
  private at = Infinity;
  private timer: Subscription | undefined;

  constructor(
    private readonly scheduler: SchedulerLike,
    private readonly wake: () => void,
  ) {}

  /** Arms it for `at`, unless it is armed for then or sooner. */
  arm(at: number): void {
    if (this.timer !== undefined && this.at <= at) return;
    this.timer?.unsubscribe();
    this.at = at;
    this.timer = scheduleAfter(this.scheduler, at - this.scheduler.now(), () => {
      this.timer = undefined;
      this.at = Infinity;
      this.wake();
    });
  }

  cancel(): void {
    this.timer?.unsubscribe();
    this.timer = undefined;
    this.at = Infinity;
  }
}

/** Adds a tried request's token count to its model's (ascending, each count once). */
export function addTokenCount(triedTokens: Map<string, number[]>, model: string, tokens: number): void {
  const counts = triedTokens.get(model);
  if (counts === undefined) {
    triedTokens.set(model, [tokens]);
    return;
  }
  let index = 0;
  while (index < counts.length && counts[index]! < tokens) index++;
  if (counts[index] !== tokens) counts.splice(index, 0, tokens);
}

/**
 * The earliest time after `now` at which a cooldown, exhaustion or quota window ends. Quota
 * windows are asked about each token count of the requests the queue tried, per model
 * (`triedTokens`): a model nobody waits for is not asked about.
 */
function nextChangeAt(context: PoolContext, triedTokens: ReadonlyMap<string, readonly number[]>, now: number): number {
  let at = Infinity;
  const consider = (time: number) => {
    if (time > now && time < at) at = time;
  };
  for (const entry of context.registry.keys) {
    if (entry.disabled) continue;
    consider(entry.parkedUntil);
    consider(entry.exhaustedUntil);
    consider(entry.fullUntil);
    if (entry.breaker.state === 'open') consider(entry.breaker.openUntil);
    for (const [model, plan] of entry.plans) {
      const counts = triedTokens.get(model);
      if (counts !== undefined) for (const tokens of counts) consider(context.store.nextFitAt(plan, tokens, now));
    }
  }
  for (const account of context.registry.accounts.values()) {
    consider(account.parkedUntil);
    consider(account.exhaustedUntil);
  }
  for (const model of context.registry.models.values()) {
    consider(model.parkedUntil);
    if (model.breaker.state === 'open') consider(model.breaker.openUntil);
  }
  return at;
}

/**
 * Whether some key is held back by nothing of this pool's own (a park, an exhaustion, an open
 * breaker, a disabled key): only such a key can take room that other pools on a shared store free.
 */
function keyOpenToStore(context: PoolContext, now: number): boolean {
  return context.registry.keys.some((entry) => !entry.restsAt(now) && entry.breaker.state !== 'open');
}

/** What a blocked queue's wake-up depends on. */
export interface BlockedQueue {
  /** Per model, the token counts the last drain tried (see `Admission`). */
  readonly triedTokens: ReadonlyMap<string, readonly number[]>;
  /** In queue order. */
  readonly tickets: readonly { readonly signature: string; readonly roomCheckDueAt: number }[];
  /** Whether this pool alone uses the store. */
  readonly ownsStore: boolean;
}

/**
 * When a queue found blocked at `checkedAt` should look again: at the earliest change after then
 * (a change between then and now wakes it at once, never lost). On a store shared with other
 * pools, their releases free room without any event here, however far off the next known change
 * is: it also polls, if some key that nothing of this pool's own holds back could take that room.
 * A sleep longer than a request may wait for room may hold requests to refuse (a park that came
 * after their last room check): it ends when the check of the first of them is due.
 */
export function queueWakeAt(context: PoolContext, queue: BlockedQueue, checkedAt: number): number {
  let at = nextChangeAt(context, queue.triedTokens, checkedAt);
  if (!queue.ownsStore && keyOpenToStore(context, checkedAt)) at = Math.min(at, context.scheduler.now() + SHARED_STORE_POLL_MS);
  // (Nothing known to come, no park among it: a release, not time, wakes the queue.)
  if (Number.isFinite(at) && at - checkedAt > longestQueuedRoomWaitMs(context.config.maxRateLimitCooldownMs)) {
    // A drain looks for room only for the first ticket of each signature; the rest go with it.
    const heads = new Set<string>();
    for (const ticket of queue.tickets) {
      if (heads.has(ticket.signature)) continue;
      heads.add(ticket.signature);
      at = Math.min(at, Math.max(checkedAt, ticket.roomCheckDueAt));
    }
  }
  return at;
}
