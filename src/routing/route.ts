import { ERROR_POLICY } from '../core/error-policy.js';
import type { AttemptRecord, OpenRouterError } from '../core/errors.js';

/**
 * What one request has learnt across its attempts: the keys it tried (a retry prefers the
 * others), the models it may still use and those it moved on from, and how many attempts each
 * retry operator has counted. It lives as long as the request, across the resubscriptions of a
 * retry, and is shared by nobody else.
 */
export class RouteState {
  readonly triedKeys = new Set<string>();
  attempts = 0;
  lastError: OpenRouterError | undefined;
  /** Attempts per model of `chain`, by its index there (a model whose failure is the route's is raised to the cap). */
  private readonly attemptsByModel: number[];
  /** Made on the first exclusion: most requests never have one. */
  private excludedModels: Set<string> | undefined;
  /**
   * The request is over: an attempt answered, or a retry operator gave up on it. The same object
   * sent again is a request of its own.
   */
  ended = false;
  /**
   * Set by a retry operator of this library while it resubscribes: the attempt made meanwhile goes
   * on with the request's retry counts. One nothing announced (the same object sent again, a plain
   * `retry()`) starts them afresh.
   */
  resumes = false;
  /**
   * When the request first asked the pool for a key: its place in the pool's line, which its later
   * acquisitions keep (a retry after a 429 or a backoff, a wait for room at its models' limits
   * outside its caller's slot), however long they come after. A retry that went to the back of the
   * line could wait out its `maxWaitMs` while younger requests took each room that freed.
   */
  inLineSince: number | undefined;
  /** Offered to the pool after the rest of the chain: taken only when the others are out of service. Made on the first move. */
  private movedOnModels: Set<string> | undefined;
  #retryCounts: Map<object, AttemptRecord[]> | undefined;
  #failedAttempts: AttemptRecord[] | undefined;

  constructor(
    /** The models to try, in order of preference. */
    readonly chain: readonly string[],
    /** Failed attempts a model gets for this request before the next model is preferred. */
    readonly maxAttemptsPerModel: number,
    /** Prompt plus `max_tokens`: what a model's context must hold. Estimated once per request. */
    readonly neededTokens: number,
  ) {
    this.attemptsByModel = chain.map(() => 0);
  }

  /**
   * Models still worth an attempt, in order; empty when the route is exhausted. `fits` leaves out
   * the models that cannot take the request (a context too small) before the attempt caps
   * choose: a capped model is still tried when every model below its cap cannot take it.
   */
  candidates(fits: (model: string) => boolean = () => true): readonly string[] {
    const excluded = this.excludedModels;
    const open = this.chain.filter((model) => excluded?.has(model) !== true && fits(model));
    // Models below their per-request attempt cap first; the rest only when nothing else is left.
    const fresh = open.filter((model) => this.attemptsOn(model) < this.maxAttemptsPerModel);
    const chosen = fresh.length > 0 ? fresh : open;
    // The whole chain, the usual case: the attempt holds the route's own array, not a copy.
    return chosen.length === this.chain.length ? this.chain : chosen;
  }

  private attemptsOn(model: string): number {
    return this.attemptsByModel[this.chain.indexOf(model)] ?? 0;
  }

  private setAttemptsOn(model: string, attempts: number): void {
    const index = this.chain.indexOf(model);
    if (index >= 0) this.attemptsByModel[index] = attempts;
  }

  begin(keyLabel: string, model: string): number {
    this.triedKeys.add(keyLabel);
    this.setAttemptsOn(model, this.attemptsOn(model) + 1);
    return ++this.attempts;
  }

  /** Records a failed attempt; an error that no retry of this model can fix excludes the model. */
  fail(model: string, error: OpenRouterError, afterContent = false): void {
    this.lastError = error;
    // An error the same model will repeat for this request (context, policy, 404, 400).
    if (ERROR_POLICY[error.kind].excludesModel) (this.excludedModels ??= new Set()).add(model);
    // A silent, rate-limited or mid-answer failing model is the route's problem, not the
    // attempt's: try the next model first (it stays usable if nothing else is left). A restart
    // on the same model would pay for another partial answer.
    if (afterContent || error.kind === 'timeout' || (error.kind === 'rate_limit' && error.scope === 'model')) {
      this.setAttemptsOn(model, Math.max(this.maxAttemptsPerModel, this.attemptsOn(model)));
    }
  }

  /** The model of the latest attempt, to report a fallback when the next one differs. */
  get lastModel(): string | undefined {
    return this.lastError?.model;
  }

  /** Whether the request moved on from `model` after a failure of the model itself. */
  movedOn(model: string): boolean {
    return this.movedOnModels?.has(model) === true;
  }

  get movedOnAny(): boolean {
    return this.movedOnModels !== undefined;
  }

  moveOn(model: string): void {
    (this.movedOnModels ??= new Set()).add(model);
  }

  /** The request's attempts as each retry operator counted them, by operator; made when one first asks. */
  get retryCounts(): Map<object, AttemptRecord[]> {
    return (this.#retryCounts ??= new Map());
  }

  /** A subscription no retry of this library made starts: its place in line and its failed attempts start afresh, as its retry counts do. */
  startAfresh(): void {
    this.inLineSince = undefined;
    this.#failedAttempts = undefined;
  }

  /** The request's failed attempts that retry operators took, in order; made when one first fails. */
  get failedAttempts(): AttemptRecord[] {
    return (this.#failedAttempts ??= []);
  }
}
