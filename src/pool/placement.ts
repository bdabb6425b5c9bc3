import type { ChatRequest } from '../core/types.js';
import type { AcquireOptions } from './types.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import type { PickContext, Strategy } from './strategies.js';

/** What a placement asks of the admission: the models and keys that may take an attempt now. */
export interface Eligibility {
  /** The model entry of `model`, as the registry keeps it. */
  modelEntry(model: string, now: number): ModelEntry;
  modelAdmits(model: ModelEntry, now: number): boolean;
  keyAdmits(entry: KeyEntry, model: ModelEntry, now: number, tokens: number): boolean;
}

/** The part of a waiting request a placement reads. */
export interface PlacedTicket {
  readonly request: ChatRequest;
  readonly tokens: number;
  readonly options: Pick<AcquireOptions, 'models' | 'avoid' | 'strategy'>;
}

/**
 * A strategy's view of one placement: a request on one model, now. The pool's own state sits in
 * `#` fields, so a strategy that logs or spreads its context sees only the `PickContext` face.
 *
 * One per admission, set anew for each placement rather than made per placement: a placement is
 * synchronous, and an object per attempt (with its `isEligible` closure) is garbage at the rate
 * keys are picked. A strategy reads its context during `pick` only.
 */
export class Placement implements PickContext {
  request!: ChatRequest;
  model = '';
  candidates: readonly KeyEntry[] = [];
  readonly #eligibility: Eligibility;
  #modelEntry: ModelEntry | undefined;
  #tokens = 0;
  #now = 0;
  /** Keys to pass over (those a retry already tried) while another is eligible. */
  #avoid: ReadonlySet<string> | undefined;
  /** The last two indexes found eligible (-1: none). */
  #lastEligible = -1;
  #previousEligible = -1;
  /** Whether the last `place` found a key eligible that the strategy did not take. */
  #declined = false;

  constructor(
    eligibility: Eligibility,
    /** The pool's random source, handed on as it is: it needs no `this`. */
    readonly random: () => number,
  ) {
    this.#eligibility = eligibility;
  }

  /**
   * An own property, not a prototype method: a strategy may destructure its context or spread it
   * into a narrower one (`inner.pick({ ...context, candidates })`) and still call it.
   */
  readonly isEligible = (index: number): boolean => this.testEligible(index);

  /** The model of the key `place` found last. */
  get placedModel(): ModelEntry {
    return this.#modelEntry!;
  }

  /**
   * Whether the last `place` found no key because the strategy took none of those the pool would
   * admit (a user strategy may return nothing, or a label that is not eligible), not because none was.
   */
  get declined(): boolean {
    return this.#declined;
  }

  /**
   * A key for `ticket` now among `candidates`, trying its models in order (the model is then
   * `placedModel`); undefined when none fits. Keys the ticket avoids (those a retry already tried)
   * are passed over while the strategy finds another.
   */
  place(ticket: PlacedTicket, strategy: Strategy, candidates: readonly KeyEntry[], now: number): KeyEntry | undefined {
    const avoid = ticket.options.avoid;
    const avoiding = avoid !== undefined && avoid.size > 0 && avoid.size < candidates.length ? avoid : undefined;
    this.#declined = false;
    for (const modelId of ticket.options.models) {
      const model = this.#eligibility.modelEntry(modelId, now);
      if (!this.#eligibility.modelAdmits(model, now)) continue;
      this.start(candidates, ticket, model, avoiding, now);
      let entry = this.admissible(strategy.pick(this));
      if (entry === undefined && avoiding !== undefined) {
        // The indexes found eligible while avoiding stay eligible without it.
        this.#avoid = undefined;
        entry = this.admissible(strategy.pick(this));
      }
      if (entry !== undefined) {
        this.#declined = false;
        return entry;
      }
      if (this.#lastEligible >= 0) this.#declined = true;
    }
    return undefined;
  }

  private start(
    candidates: readonly KeyEntry[],
    ticket: PlacedTicket,
    model: ModelEntry,
    avoid: ReadonlySet<string> | undefined,
    now: number,
  ): void {
    this.candidates = candidates;
    this.request = ticket.request;
    this.model = model.model;
    this.#modelEntry = model;
    this.#tokens = ticket.tokens;
    this.#now = now;
    this.#avoid = avoid;
    this.#lastEligible = -1;
    this.#previousEligible = -1;
  }

  private testEligible(index: number): boolean {
    const entry = this.candidates[index];
    if (entry === undefined || this.#avoid?.has(entry.label) === true) return false;
    if (!this.#eligibility.keyAdmits(entry, this.#modelEntry!, this.#now, this.#tokens)) return false;
    this.#previousEligible = this.#lastEligible;
    this.#lastEligible = index;
    return true;
  }

  /**
   * The key at `index` if the pool would admit the attempt there: a user strategy may return
   * anything. An index the strategy has just seen eligible needs no second look (nothing changes
   * while it picks, at one `now`); the built-in strategies mostly return one of the last two they
   * saw, and any other index is tested again.
   */
  private admissible(index: number | undefined): KeyEntry | undefined {
    if (index === undefined) return undefined;
    if (index === this.#lastEligible || index === this.#previousEligible) return this.candidates[index];
    return this.testEligible(index) ? this.candidates[index] : undefined;
  }
}
