import type { OpenRouterError } from '../core/errors.js';
import type { Limiter } from '../health/limiter.js';
import type { AdmissionPlan, MemoryStateStore, ScopeDefinition, StateStore } from '../store/state-store.js';
import type { KeyEntry, ModelEntry } from './entities.js';

/** Which scope a refusal names, and which scopes have what: small facts the pool's parts share. */

/** A platform 429: the key's or the account's limit (a provider's 429 is model-scoped). */
export function isPlatformRefusal(error: OpenRouterError): boolean {
  return error.kind === 'rate_limit' && (error.scope === 'key' || error.scope === 'account');
}

/** The scope a platform 429 refused: the key, or the account (its free models' bucket for a `:free` model). */
export function refusedScope(entry: KeyEntry, model: ModelEntry, error: OpenRouterError): ScopeDefinition | undefined {
  if (error.scope === 'key') return entry.scope;
  if (error.scope !== 'account') return undefined;
  return isFreeModel(model.model) ? entry.account.modelScope(FREE_MODELS_PATTERN) : entry.account.scope;
}

export function hasRequestQuota(scope: ScopeDefinition): boolean {
  return scope.limits.rpm !== undefined || (scope.limits.quotas ?? []).some((quota) => quota.requests !== undefined);
}

/** The pattern of OpenRouter's free model variants, whose buckets belong to the account. */
export const FREE_MODELS_PATTERN = '*:free';

export function isFreeModel(model: string): boolean {
  return model.endsWith(':free');
}

/**
 * The scopes an attempt of `entry` on `model` takes room in: key, account, model limits. Built
 * once per key and model (defining its scopes in `store`), then kept on the key.
 */
export function admissionPlanOf(entry: KeyEntry, model: ModelEntry, store: Pick<StateStore, 'define'>): AdmissionPlan {
  let plan = entry.plan(model.model);
  if (plan === undefined) {
    const patterns = model.limitPatterns;
    // A free model's requests also count in the account's free-model bucket, whose limit may be learned.
    const free = isFreeModel(model.model) && !patterns.includes(FREE_MODELS_PATTERN) ? [FREE_MODELS_PATTERN] : [];
    plan = [entry.scope, entry.account.scope, ...[...patterns, ...free].map((pattern) => entry.account.modelScope(pattern))];
    for (const scope of plan) store.define(scope);
    entry.keepPlan(model.model, plan);
  }
  return plan;
}

/** The memory store's bounded limiters of `entry`'s plan on `model`, kept on the key while the store's plans stay as they are. */
export function boundedLimitersOf(entry: KeyEntry, model: ModelEntry, store: MemoryStateStore): readonly Limiter[] {
  const generation = store.planGeneration;
  const kept = entry.keptLimiters(model.model, generation);
  if (kept !== undefined) return kept;
  const plan = admissionPlanOf(entry, model, store);
  return entry.keepLimiters(model.model, plan, generation, store.boundedLimiters(plan));
}
