import type { OpenRouterError } from '../core/errors.js';

/**
 * Whether an answer says "too much at once" rather than "broken" or "over a quota": a provider's
 * 429 (no quota to learn), a 529 or a 503 (capacity), a timeout of the model, an in-flight budget
 * 402. The adaptive concurrency limits lower on these; a platform 429 teaches a quota instead.
 */
export function overloadScopeOf(error: OpenRouterError): 'model' | 'account' | undefined {
  switch (error.kind) {
    case 'rate_limit':
      return error.scope === 'model' ? 'model' : undefined;
    case 'upstream':
      return error.scope === 'model' && (error.status === 503 || error.status === 529) ? 'model' : undefined;
    case 'timeout':
      return error.scope === 'model' ? 'model' : undefined;
    case 'insufficient_credits':
      // The in-flight budget: retryable after its hint, unlike an empty balance.
      return error.scope === 'account' && error.retryable && error.retryAfterMs !== undefined ? 'account' : undefined;
    default:
      return undefined;
  }
}
