import type { Breaker } from '../health/breaker.js';
import type { KeyHealth, KeyState, ModelHealth, OpenReason, QuotaRemaining } from '../health/records.js';
import type { StateStore } from '../store/state-store.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import { FREE_MODELS_PATTERN } from './scopes.js';

/** What a key or model is now, with why and until when. */
export interface StateView {
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

export function keyStateOf(entry: KeyEntry, now: number): StateView {
  if (entry.disabled) return { state: 'disabled', reason: null, until: null };
  const exhaustedUntil = Math.max(entry.exhaustedUntil, entry.account.exhaustedUntil);
  if (exhaustedUntil > now) return { state: 'exhausted', reason: null, until: Number.isFinite(exhaustedUntil) ? exhaustedUntil : null };
  return breakerState(entry.breaker, Math.max(entry.parkedUntil, entry.account.parkedUntil), now);
}

export function modelStateOf(entry: ModelEntry, now: number): StateView {
  return breakerState(entry.breaker, entry.parkedUntil, now);
}

/** The fields key and model records share, from an entity and its state. */
function sharedFields(entity: KeyEntry | ModelEntry, view: StateView, now: number) {
  const { successes, failures } = entity.breaker.counts(now);
  return {
    state: view.state,
    openReason: view.reason,
    cooldownUntil: view.until,
    inFlight: entity.inFlight,
    concurrencyLimit: ('concurrency' in entity ? entity.concurrency : entity.account.concurrency)?.limit ?? null,
    successes,
    failures,
    consecutiveFailures: entity.breaker.consecutiveFailures,
    // The pool's own objects, which it replaces and never changes: frozen, so that a subscriber
    // that edits what it was handed cannot change what every other one sees, or the pool's totals.
    lastError: frozen(entity.lastError),
    latencyMs: entity.latencyMs,
    timeToFirstTokenMs: entity.timeToFirstTokenMs,
    usage: Object.freeze(entity.usage),
  };
}

function frozen<T extends object>(value: T | null): Readonly<T> | null {
  return value === null ? null : Object.freeze(value);
}

/** A store's answers, copied: a store of the user's own made them, and they are not ours to freeze. */
function frozenQuotas(quotas: readonly QuotaRemaining[]): readonly QuotaRemaining[] {
  return Object.freeze(quotas.map((quota) => Object.freeze(Object.assign({}, quota))));
}

/** A key's record, frozen with everything in it: every subscriber of the pool's health gets the same one. */
export function keyHealthOf(entry: KeyEntry, store: StateStore, now: number): KeyHealth {
  return Object.freeze({
    label: entry.label,
    fingerprint: entry.credential.fingerprint,
    account: entry.account.id,
    ...sharedFields(entry, keyStateOf(entry, now), now),
    maxConcurrent: entry.scope.limits.maxConcurrent ?? null,
    quota: frozenQuotas([
      ...store.remaining(entry.scope.id, now),
      ...store.remaining(entry.account.scope.id, now),
      ...modelQuotasOf(entry.account, store, now),
    ]),
    credit: frozen(entry.credit),
  });
}

/**
 * The quotas of the account's model scopes: its free-model bucket once a quota for it is configured
 * or learned, then each `models` limit a request of the account has met (per account, as OpenRouter
 * limits them).
 */
function modelQuotasOf(account: KeyEntry['account'], store: StateStore, now: number): QuotaRemaining[] {
  const quotas = [...store.remaining(account.modelScope(FREE_MODELS_PATTERN).id, now)];
  for (const [pattern, scope] of account.modelScopeEntries)
    if (pattern !== FREE_MODELS_PATTERN) quotas.push(...store.remaining(scope.id, now));
  return quotas;
}

export function modelHealthOf(entry: ModelEntry, now: number): ModelHealth {
  // A model's state is a breaker state: it is never disabled or exhausted.
  return Object.freeze({ model: entry.model, ...sharedFields(entry, modelStateOf(entry, now), now) }) as ModelHealth;
}
