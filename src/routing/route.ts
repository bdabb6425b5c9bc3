import { ERROR_POLICY } from '../core/error-policy.js';
import type { OpenRouterError } from '../core/errors.js';

/**
 * What one request has learnt across its attempts: the keys it tried (a retry prefers the
 * others) and the models it may still use. It lives as long as the request, across the
 * resubscriptions of a retry, and is shared by nobody else.
 */
export class RouteState {
  readonly triedKeys = new Set<string>();
  attempts = 0;
  lastError: OpenRouterError | undefined;
  private readonly attemptsByModel = new Map<string, number>();
  private readonly excludedModels = new Set<string>();

  constructor(
    /** The models to try, in order of preference. */
    readonly chain: readonly string[],
    /** Failed attempts a model gets for this request before the next model is preferred. */
    readonly maxAttemptsPerModel: number,
    /** Prompt plus `max_tokens`: what a model's context must hold. Estimated once per request. */
    readonly neededTokens: number,
  ) {}

  /**
   * Models still worth an attempt, in order; empty when the route is exhausted. `fits` leaves out
   * the models that cannot take the request (a context too small) before the attempt caps
   * choose: a capped model is still tried when every model below its cap cannot take it.
   */
  candidates(fits: (model: string) => boolean = () => true): string[] {
    const open = this.chain.filter((model) => !this.excludedModels.has(model) && fits(model));
    // Models below their per-request attempt cap first; the rest only when nothing else is left.
    const fresh = open.filter((model) => (this.attemptsByModel.get(model) ?? 0) < this.maxAttemptsPerModel);
    return fresh.length > 0 ? fresh : open;
  }

  begin(keyLabel: string, model: string): number {
    this.triedKeys.add(keyLabel);
    this.attemptsByModel.set(model, (this.attemptsByModel.get(model) ?? 0) + 1);
    return ++this.attempts;
  }

  /** Records a failed attempt; an error that no retry of this model can fix excludes the model. */
  fail(model: string, error: OpenRouterError, afterContent = false): void {
    this.lastError = error;
    // An error the same model will repeat for this request (context, policy, 404, 400).
    if (ERROR_POLICY[error.kind].excludesModel) this.excludedModels.add(model);
    // A silent, rate-limited or mid-answer failing model is the route's problem, not the
    // attempt's: try the next model first (it stays usable if nothing else is left). A restart
    // on the same model would pay for another partial answer.
    if (afterContent || error.kind === 'timeout' || (error.kind === 'rate_limit' && error.scope === 'model')) {
      this.attemptsByModel.set(model, Math.max(this.maxAttemptsPerModel, this.attemptsByModel.get(model) ?? 0));
    }
  }

  /** The model of the latest attempt, to report a fallback when the next one differs. */
  get lastModel(): string | undefined {
    return this.lastError?.model;
  }
}
