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
 * A strategy's view of one placement: a request on one model, now. A class rather than an object
 * of closures because every attempt builds one; the pool's own state sits in `#` fields, so a
 * strategy that logs its context sees only the `PickContext` face. Strategies call its methods on
 * it (`context.isEligible(i)`), as the built-in ones do.
 */
export class Placement implements PickContext {
  readonly request: ChatRequest;
  readonly model: string;
  readonly #eligibility: Eligibility;
  readonly #modelEntry: ModelEntry;
  readonly #tokens: number;
  readonly #now: number;
  readonly #random: () => number;
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
    random: () => number,
  ) {
    this.request = ticket.request;
    this.model = model.model;
    this.#eligibility = eligibility;
    this.#modelEntry = model;
    this.#tokens = ticket.tokens;
    this.#now = now;
    this.#random = random;
    this.#avoid = avoid;
  }

  isEligible(index: number): boolean {
    const entry = this.candidates[index];
    if (entry === undefined || this.#avoid?.has(entry.label) === true) return false;
    if (!this.#eligibility.keyAdmits(entry, this.#modelEntry, this.#now, this.#tokens)) return false;
    this.#previousEligible = this.#lastEligible;
    this.#lastEligible = index;
    return true;
  }

  random(): number {
    return this.#random();
  }

  /** Every key avoided was ineligible or the strategy found none: the tried keys are candidates again. */
  stopAvoiding(): void {
    this.#avoid = undefined;
    this.#lastEligible = this.#previousEligible = -1;
  }

  /**
   * The key at `index` if the pool would admit the attempt there: a user strategy may return
   * anything. An index the strategy has just seen eligible needs no second look (nothing changes
   * while it picks, at one `now`); the built-in strategies return one of the last two they saw.
   */
  admissible(index: number | undefined): KeyEntry | undefined {
    if (index === undefined) return undefined;
    if (index === this.#lastEligible || index === this.#previousEligible) return this.candidates[index];
    return this.isEligible(index) ? this.candidates[index] : undefined;
  }
}
