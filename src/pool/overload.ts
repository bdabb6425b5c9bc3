import { AttemptTimeoutError, type OpenRouterError } from '../core/errors.js';

/**
 * Whether an answer says "too much at once" rather than "broken" or "over a quota": a provider's
 * 429 (no quota to learn), a 529 or a 503 (capacity), a timeout of the model before its answer
 * began, an in-flight budget 402. The adaptive concurrency limits lower on these; a platform 429
 * teaches a quota instead.
 *
 * The attempt's total timeout is no such answer: it measures how long the whole answer took, and a
 * non-streamed answer longer than `totalMs` (a long generation, or a body that never ends) says
 * nothing of how many the provider serves at once. Taken as overload, every answer that runs long
 * would cut the limit, down to one at a time where some answers always do, and every request for
 * that model, answerable or not, would then drain through one slot at one `totalMs` per attempt
 * that runs out. The model's breaker still counts it. A provider at capacity refuses at once (a
 * 429, 503 or 529), or holds a stream's first token (its first-token timeout lowers the limit).
 */
export function overloadScopeOf(error: OpenRouterError): 'model' | 'account' | undefined {
  switch (error.kind) {
    case 'rate_limit':
      return error.scope === 'model' ? 'model' : undefined;
    case 'upstream':
      return error.scope === 'model' && (error.status === 503 || error.status === 529) ? 'model' : undefined;
    case 'timeout':
      return error.scope === 'model' && !(error instanceof AttemptTimeoutError && error.phase === 'total') ? 'model' : undefined;
    case 'insufficient_credits':
      // The in-flight budget: retryable after its hint, unlike an empty balance.
      return error.scope === 'account' && error.retryable && error.retryAfterMs !== undefined ? 'account' : undefined;
    default:
      return undefined;
  }
}
