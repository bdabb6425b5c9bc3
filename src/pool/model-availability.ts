import { ModelUnavailableError, NoKeyAvailableError } from '../core/errors.js';
import type { KeyEntry, ModelEntry } from './entities.js';

/** Out of service by its breaker: open, or half-open with its probes out. A 429 park is a wait, not this. */
function outOfService(model: ModelEntry, now: number, changed: (model: ModelEntry) => void): boolean {
  if (model.breaker.state === 'closed') return false;
  if (model.breaker.advance(now)) changed(model);
  return !model.breaker.admits();
}

/**
 * The refusal of a request whose every model is out of service, naming each with how long until
 * it is probed again and its last error; undefined when any model can still take it.
 * `changed` hears of a breaker that moved on (open to half-open) while being looked at.
 */
export function unavailableModelsError(
  models: readonly ModelEntry[],
  now: number,
  changed: (model: ModelEntry) => void,
): ModelUnavailableError | undefined {
  if (models.length === 0 || !models.every((model) => outOfService(model, now, changed))) return undefined;
  // Known return times (open breakers); a half-open model's return hangs on its probe.
  const backAt = Math.min(...models.map((model) => (model.breaker.state === 'open' ? model.breaker.openUntil : Infinity)));
  const described = models.map((model) => {
    const state =
      model.breaker.state === 'open'
        ? `breaker open for another ${Math.ceil((model.breaker.openUntil - now) / 1000)} s`
        : 'breaker half-open, its probe still out';
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

/** Every key is disabled: says why each is out (its last error: a lone revoked key says 401), and the status when they all share one. */
export function noKeyAvailableError(keys: readonly KeyEntry[]): NoKeyAvailableError {
  const reasons = keys.map(({ label, lastError }) =>
    lastError === null
      ? label
      : `${label}: ${lastError.status === undefined ? lastError.kind : String(lastError.status)} ${lastError.message}`,
  );
  const statuses = new Set(keys.map((entry) => entry.lastError?.status));
  const [status] = statuses;
  return new NoKeyAvailableError({
    message: `every key of the pool is disabled (${reasons.join('; ')})`,
    scope: 'key',
    retryable: false,
    ...(statuses.size === 1 && status !== undefined ? { status } : {}),
  });
}
