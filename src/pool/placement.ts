import type { ChatRequest } from '../core/types.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import type { PickContext } from './strategies.js';

/** What a placement asks the admission about one key. */
export interface Eligibility {
  keyAdmits(entry: KeyEntry, model: ModelEntry, now: number, tokens: number): boolean;
}

/** The part of a waiting request a placement reads. */
interface PlacedTicket {
  readonly request: ChatRequest;
  readonly tokens: number;
}

/**
 * A strategy's view of one placement: a request on one model, now. The pool's own state sits in
 * `#` fields, so a strategy that logs or spreads its context sees only the `PickContext` face.
 */
export class Placement implements PickContext {
  readonly request: ChatRequest;
  readonly model: string;
  readonly #eligibility: Eligibility;
  readonly #modelEntry: ModelEntry;
  readonly #tokens: number;
  readonly #now: number;
  /** Keys to pass over (those a retry already tried) while another is eligible. */
  #avoid: ReadonlySet<string> | undefined;
  /** The last two indexes found eligible (-1: none). */
  #lastEligible = -1;
  #previousEligible = -1;

  constructor(
    eligibility: Eligibility,
    readonly candidates: readonly KeyEntry[],
    ticket: PlacedTicket,
    model: ModelEntry,
    avoid: ReadonlySet<string> | undefined,
    now: number,
    /** The pool's random source, handed on as it is: it needs no `this`. */
    readonly random: () => number,
  ) {
    this.request = ticket.request;
    this.model = model.model;
    this.#eligibility = eligibility;
    this.#modelEntry = model;
    this.#tokens = ticket.tokens;
    this.#now = now;
    this.#avoid = avoid;
  }

  /**
   * An own property, not a prototype method: a strategy may destructure its context or spread it
   * into a narrower one (`inner.pick({ ...context, candidates })`) and still call it.
   */
  readonly isEligible = (index: number): boolean => this.testEligible(index);

  private testEligible(index: number): boolean {
    const entry = this.candidates[index];
    if (entry === undefined || this.#avoid?.has(entry.label) === true) return false;
    if (!this.#eligibility.keyAdmits(entry, this.#modelEntry, this.#now, this.#tokens)) return false;
    this.#previousEligible = this.#lastEligible;
    this.#lastEligible = index;
    return true;
  }

  /** Every key avoided was ineligible or the strategy found none: the tried keys are candidates again. */
  stopAvoiding(): void {
    // The indexes found eligible while avoiding stay eligible without it.
    this.#avoid = undefined;
  }

  /**
   * The key at `index` if the pool would admit the attempt there: a user strategy may return
   * anything. An index the strategy has just seen eligible needs no second look (nothing changes
   * while it picks, at one `now`); the built-in strategies mostly return one of the last two they
   * saw, and any other index is tested again.
   */
  admissible(index: number | undefined): KeyEntry | undefined {
    if (index === undefined) return undefined;
    if (index === this.#lastEligible || index === this.#previousEligible) return this.candidates[index];
    return this.testEligible(index) ? this.candidates[index] : undefined;
  }
}
