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
    return this.#eligibility.keyAdmits(entry, this.#modelEntry, this.#now, this.#tokens);
  }

  random(): number {
    return this.#random();
  }

  /** Every key avoided was ineligible or the strategy found none: the tried keys are candidates again. */
  stopAvoiding(): void {
    this.#avoid = undefined;
  }

  /** The key at `index` if the pool would admit the attempt there: a user strategy may return anything. */
  admissible(index: number | undefined): KeyEntry | undefined {
    return index !== undefined && this.isEligible(index) ? this.candidates[index] : undefined;
  }
}
