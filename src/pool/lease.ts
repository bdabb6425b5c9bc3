import type { KeyCredential, Usage } from '../core/types.js';
import type { AdmissionPlan, Reservation } from '../store/state-store.js';
import type { PoolContext } from './context.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import type { QuotaLearning } from './quota-learning.js';
import type { KeyLease } from './types.js';

/** What a lease reports back to the admission that granted it. */
export interface LeaseOwner {
  /** The lease's first response byte came at `at`; `accepted`: the model took the request. */
  responded(model: ModelEntry, entry: KeyEntry, accepted: boolean, at: number): void;
  /** The lease's slot is free: its counts drop and a waiting request may take it. */
  released(entry: KeyEntry, model: ModelEntry): void;
}

/**
 * A granted key slot. A class rather than an object of closures: one is alive per request in
 * flight, so its methods live once on the prototype. The pool's own state sits in `#` fields, so
 * logging a lease shows only its public face. Call its methods on the lease (they use `this`).
 */
export class AdmittedLease implements KeyLease {
  readonly credential: KeyCredential;
  readonly label: string;
  readonly fingerprint: string;
  readonly account: string;
  readonly model: string;
  readonly #context: PoolContext;
  readonly #learning: QuotaLearning | undefined;
  readonly #owner: LeaseOwner;
  readonly #entry: KeyEntry;
  readonly #modelEntry: ModelEntry;
  readonly #plan: AdmissionPlan;
  readonly #reservation: Reservation;
  readonly #keyProbe: boolean;
  readonly #modelProbe: boolean;
  // Until the transport says when it sent the request, the send counts from admission.
  #sentAt: number;
  #responded = false;
  #released = false;

  constructor(
    context: PoolContext,
    learning: QuotaLearning | undefined,
    owner: LeaseOwner,
    entry: KeyEntry,
    model: ModelEntry,
    plan: AdmissionPlan,
    reservation: Reservation,
    readonly acquiredAt: number,
  ) {
    this.credential = entry.credential;
    this.label = entry.label;
    this.fingerprint = entry.credential.fingerprint;
    this.account = entry.account.id;
    this.model = model.model;
    this.#context = context;
    this.#learning = learning;
    this.#owner = owner;
    this.#entry = entry;
    this.#modelEntry = model;
    this.#plan = plan;
    this.#reservation = reservation;
    this.#sentAt = acquiredAt;
    learning?.recordSend(plan, acquiredAt);
    this.#keyProbe = entry.breaker.begin();
    this.#modelProbe = model.breaker.begin();
  }

  get sentAt(): number {
    return this.#sentAt;
  }

  markSent(): void {
    if (this.#responded || this.#released) return;
    const at = this.#context.scheduler.now();
    this.#learning?.moveSend(this.#plan, this.#sentAt, at);
    this.#sentAt = at;
    this.#context.store.markSent(this.#reservation, at, this.#context.sendMargin.currentMs);
  }

  markResponded(accepted = true): void {
    if (this.#responded || this.#released) return;
    this.#responded = true;
    const at = this.#context.scheduler.now();
    this.#learning?.markCounted(this.#plan, this.#sentAt, at);
    this.#context.store.markResponded(this.#reservation, at);
    this.#owner.responded(this.#modelEntry, this.#entry, accepted, at);
  }

  refund(): void {
    this.#learning?.forgetSend(this.#plan, this.#sentAt);
    this.#context.store.refund(this.#reservation);
  }

  reconcile(usage: Usage): void {
    this.#context.store.reconcile(this.#reservation, usage.totalTokens);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#context.store.release(this.#reservation);
    this.#entry.breaker.abandon(this.#keyProbe);
    this.#modelEntry.breaker.abandon(this.#modelProbe);
    this.#owner.released(this.#entry, this.#modelEntry);
  }
}
