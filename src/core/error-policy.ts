import type { ErrorKind, OpenRouterError } from './errors.js';

/**
 * What each kind of error means, in one table: what it does to health (the pool's outcome policy),
 * which retry operator takes it, and whether it rules the model out for the request (its route).
 * The error's `scope` (wire/classify.ts) says which record a health effect lands on.
 */
export interface ErrorKindPolicy {
  /**
   * - `disable-key`: the key is out until enabled (401).
   * - `exhaust-key`: the key is out until its limit resets (403 key limit).
   * - `credits`: the account is out of credit, or parked for a transient in-flight budget (402).
   * - `park`: the key, account or model waits out the 429 without a health failure.
   * - `failure`: a failure of the breaker of the key (key or transport scope) or of the model.
   * - `none`: not an attempt's outcome (the pool refused, the caller left, retries gave up).
   * Whatever the kind, a request-scoped error is no failure of the key or the model.
   */
  health: 'disable-key' | 'exhaust-key' | 'credits' | 'park' | 'failure' | 'none';
  /** The retry operator that retries it: another key, the next model, or the same route later. */
  retriedBy: 'rate-limit' | 'model-fallback' | 'transient' | undefined;
  /** The same model will fail the same way for this request: its route moves past the model. */
  excludesModel: boolean;
}

const policy = (health: ErrorKindPolicy['health'], retriedBy: ErrorKindPolicy['retriedBy'], excludesModel = false): ErrorKindPolicy => ({
  health,
  retriedBy,
  excludesModel,
});

export const ERROR_POLICY: Readonly<Record<ErrorKind, ErrorKindPolicy>> = Object.freeze({
  // Refusals by a key or its account, which another key may not meet.
  authentication: policy('disable-key', 'rate-limit'),
  key_limit: policy('exhaust-key', 'rate-limit'),
  insufficient_credits: policy('credits', 'rate-limit'),
  rate_limit: policy('park', 'rate-limit'),
  permission_denied: policy('failure', undefined),
  // The payload, as this model sees it: the next model of the chain may take it.
  bad_request: policy('failure', undefined, true),
  context_length: policy('failure', 'model-fallback', true),
  content_policy: policy('failure', 'model-fallback', true),
  not_found: policy('failure', 'model-fallback', true),
  // Failures of the route that may pass.
  upstream: policy('failure', 'transient'),
  network: policy('failure', 'transient'),
  timeout: policy('failure', 'transient'),
  stream: policy('failure', 'transient'),
  malformed_response: policy('failure', 'transient'),
  // Not an attempt's outcome.
  no_key_available: policy('none', undefined),
  queue_timeout: policy('none', undefined),
  queue_full: policy('none', undefined),
  store_unavailable: policy('none', undefined),
  attempts_exhausted: policy('none', undefined),
  aborted: policy('none', undefined),
  model_unavailable: policy('none', undefined),
  configuration: policy('none', undefined),
});

/**
 * The retry operator that takes this error, if any: the table's by kind, except that a
 * request-scoped refusal (a 402 for this request's `max_tokens`) goes to no other key, and a
 * transient kind that the server marked final is not retried.
 */
export function retriedBy(error: OpenRouterError): ErrorKindPolicy['retriedBy'] {
  const by = ERROR_POLICY[error.kind].retriedBy;
  if (by === 'rate-limit' && error.scope === 'request') return undefined;
  if (by === 'transient' && !error.retryable) return undefined;
  return by;
}
