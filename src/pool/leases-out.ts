import type { OpenRouterError } from '../core/errors.js';
import type { LeaseHolder } from './types.js';

/** One lease in `LeasesOut`, handed to it when it was added: what removes it. */
export class LeaseLink {
  constructor(
    readonly holder: LeaseHolder,
    public older: LeaseLink | undefined,
    public newer: LeaseLink | undefined,
  ) {}
}

/**
 * The leases granted and not yet released, so that `dispose` can end the attempts that hold them.
 * A doubly linked list, not a `Set`: every admission adds one and every release removes it, and
 * at 10,000 in flight a set's hashing of a new object each time was 8 % of an admission's time.
 */
export class LeasesOut {
  #newest: LeaseLink | undefined;

  add(holder: LeaseHolder): LeaseLink {
    const link = new LeaseLink(holder, this.#newest, undefined);
    if (this.#newest !== undefined) this.#newest.newer = link;
    this.#newest = link;
    return link;
  }

  /** Removes a link `add` returned; once only. */
  remove(link: LeaseLink): void {
    if (link.newer === undefined) this.#newest = link.older;
    else link.newer.older = link.older;
    if (link.older !== undefined) link.older.newer = link.newer;
    link.older = link.newer = undefined;
  }

  /**
   * Passes `error` to every holder (see `LeaseHolder.abandon`), oldest lease first; a holder may
   * release its lease meanwhile.
   */
  abandonAll(error: OpenRouterError): void {
    const holders: LeaseHolder[] = [];
    for (let link = this.#newest; link !== undefined; link = link.older) holders.push(link.holder);
    for (let index = holders.length - 1; index >= 0; index--) holders[index]!.abandon(error);
  }
}
