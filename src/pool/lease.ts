import type { OpenRouterError } from '../core/errors.js';
import type { KeyCredential, Usage } from '../core/types.js';
import type { AdmissionPlan, Reservation } from '../store/state-store.js';
import type { PoolContext } from './context.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import type { QuotaLearning } from './quota-learning.js';
import type { LeaseLink } from './leases-out.js';
import type { KeyLease, LeaseHolder } from './types.js';

/** What a lease reports back to the admission that granted it. */
export interface LeaseOwner {
  /** The lease's first response byte came at `at` for its request sent at `sentAt`; `accepted`: the model took the request. */
  responded(model: ModelEntry, entry: KeyEntry, accepted: boolean, at: number, sentAt: number): void;
  /**
   * The lease's slot is free: its counts drop and a waiting request may take it, now, or once the
   * teardown that freed it is over (`afterTeardown`).
   */
  released(entry: KeyEntry, model: ModelEntry, afterTeardown: boolean): void;
  /** The lease's request went out: its quota entries now count from the send plus the send margin, maybe earlier than admission assumed. */
  sent(): void;
}

/** What an attempt holds from its placement on: its key and model, and whether it is a half-open probe of each one's breaker. */
export interface Claim {
  readonly entry: KeyEntry;
  readonly model: ModelEntry;
  readonly keyProbe: boolean;
  readonly modelProbe: boolean;
}

/**
 * A granted key slot. The pool's own state sits in `#` fields, so logging a lease shows only its
 * public face: the credential (its label and fingerprint; its key is not enumerable), the account
 * and the model.
 */
export class AdmittedLease implements KeyLease, LeaseHolder {
  readonly credential: KeyCredential;
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
  #holder: LeaseHolder | undefined;
  /** Its place among the leases out, until it is released. */
  readonly #link: LeaseLink;

  constructor(
    context: PoolContext,
    learning: QuotaLearning | undefined,
    owner: LeaseOwner,
    { entry, model, keyProbe, modelProbe }: Claim,
    plan: AdmissionPlan,
    reservation: Reservation,
    readonly acquiredAt: number,
  ) {
    this.credential = entry.credential;
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
    this.#keyProbe = keyProbe;
    this.#modelProbe = modelProbe;
    this.#link = context.leasesOut.add(this);
  }

  // Read from the credential when asked, not copied at admission: at 1,000 keys the credential is
  // one more line of memory to bring in per admission, for a label most leases never show.
  get label(): string {
    return this.credential.label;
  }

  get fingerprint(): string {
    return this.credential.fingerprint;
  }

  heldBy(holder: LeaseHolder): void {
    this.#holder = holder;
  }

  /** The pool is being disposed: the attempt holding this lease ends now (see `KeyLease.heldBy`). */
  abandon(error: OpenRouterError): void {
    this.#holder?.abandon(error);
  }

  get sentAt(): number {
    return this.#sentAt;
  }

  // A lease's methods are handed around as callbacks (`finalize(lease.release)`) and must work
  // unbound. Each is bound on first use and kept, not made with every lease: most callers use a few
  // of them, and an acquisition that is cancelled at once none.
  #boundMarkSent: (() => void) | undefined;
  #boundMarkResponded: ((accepted?: boolean) => void) | undefined;
  #boundRefund: (() => void) | undefined;
  #boundReconcile: ((usage: Usage) => void) | undefined;
  #boundRelease: (() => void) | undefined;

  get markSent(): () => void {
    return (this.#boundMarkSent ??= () => this.#markSent());
  }

  get markResponded(): (accepted?: boolean) => void {
    return (this.#boundMarkResponded ??= (accepted = true) => this.#markResponded(accepted));
  }

  get refund(): () => void {
    return (this.#boundRefund ??= () => this.#refund());
  }

  get reconcile(): (usage: Usage) => void {
    return (this.#boundReconcile ??= (usage) => {
      // A count a transport made up (negative, infinite, not a number) would open the token
      // windows or close them for good: the estimate stands instead.
      const tokens = usage?.totalTokens;
      if (typeof tokens === 'number' && Number.isFinite(tokens) && tokens >= 0) this.#context.store.reconcile(this.#reservation, tokens);
    });
  }

  get release(): () => void {
    return (this.#boundRelease ??= () => this.#release(false));
  }

  #markSent(): void {
    if (this.#responded || this.#released) return;
    const at = this.#context.scheduler.now();
    this.#learning?.moveSend(this.#plan, this.#sentAt, at);
    this.#sentAt = at;
    this.#context.store.markSent(this.#reservation, at, this.#context.sendMargin.currentMs);
    this.#owner.sent();
  }

  #markResponded(accepted: boolean): void {
    if (this.#responded || this.#released) return;
    this.#responded = true;
    const at = this.#context.scheduler.now();
    this.#learning?.markCounted(this.#plan, this.#sentAt, at);
    // An accepted answer may bound the server's count more tightly than its first byte (see `AnswerLag`).
    const countedBy = accepted
      ? this.#modelEntry.answerLag.countedBy(
          this.#sentAt,
          at,
          this.#context.sendMargin.answeredSlackMs,
          this.#context.store,
          this.#reservation,
        )
      : at;
    this.#context.store.markResponded(this.#reservation, countedBy);
    this.#owner.responded(this.#modelEntry, this.#entry, accepted, at, this.#sentAt);
  }

  #refund(): void {
    this.#learning?.forgetSend(this.#plan, this.#sentAt);
    this.#context.store.refund(this.#reservation);
  }

  /**
   * Frees the slot from its acquisition's teardown: a waiting request takes it once the teardown
   * is over, so that a caller who leaves a whole stream never hands the slots of its first
   * requests to its next ones, which it is tearing down too.
   */
  releaseOnTeardown(): void {
    this.#release(true);
  }

  #release(afterTeardown: boolean): void {
    if (this.#released) return;
    this.#released = true;
    this.#holder = undefined;
    this.#context.leasesOut.remove(this.#link);
    this.#context.store.release(this.#reservation);
    this.#entry.breaker.abandon(this.#keyProbe);
    this.#modelEntry.breaker.abandon(this.#modelProbe);
    this.#owner.released(this.#entry, this.#modelEntry, afterTeardown);
  }
}
