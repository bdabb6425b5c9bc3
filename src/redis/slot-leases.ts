import { of, switchMap, type Observable } from 'rxjs';
import { execPipeline, type RedisClientLike } from './client.js';
import { RENEW } from './scripts.js';

/** A reservation's slot leases: the slot sets it holds one in, under its id. */
export interface HeldSlots {
  readonly id: string;
  readonly slots: readonly string[];
}

/** ZREMs sent in one pipeline when releases are made up for: a pipeline runs under the store's command timeout. */
const RELEASE_BATCH = 500;

/** A release Redis did not take, and when it was made. */
interface Unreleased extends HeldSlots {
  readonly at: number;
}

/**
 * This process's slot leases on Redis: renewed while held, freed on release, and put back (or
 * freed) before shared admission resumes after Redis failed. A release Redis did not take (a
 * pipeline whose ZREM failed on a dropped connection) is kept and freed then, or another process
 * would be refused the slot until the lease ran out.
 */
export class SlotLeases {
  /** Listed until a pipeline that frees them succeeds: a round cut short (an error, a newer round) leaves the rest listed. */
  private readonly unreleased = new Set<Unreleased>();

  constructor(
    private readonly client: RedisClientLike,
    private readonly leaseMs: number,
    /** Runs a command with the store's timeout. */
    private readonly command: <T>(run: () => Promise<T>) => Observable<T>,
  ) {}

  /** Frees `held`'s leases at `now` (the pool's time); a failure keeps them for `putBack` and rejects. */
  release(held: HeldSlots, now: number): Promise<void> {
    const pipeline = this.client.pipeline();
    for (const slots of held.slots) pipeline.zrem(slots, held.id);
    return execPipeline(pipeline).catch((error: unknown) => {
      // Its id and slot sets only, not the reservation: an outage may see many.
      this.unreleased.add({ id: held.id, slots: held.slots, at: now });
      throw error;
    });
  }

  /** Extends the leases of `reservations`' slots, or puts back those Redis lost. */
  renew(reservations: readonly HeldSlots[]): Promise<unknown> {
    const keys: string[] = [];
    const ids: string[] = [];
    for (const reservation of reservations) {
      for (const slots of reservation.slots) {
        keys.push(slots);
        ids.push(reservation.id);
      }
    }
    return this.client.eval(RENEW, keys.length, ...keys, this.leaseMs, ...ids);
  }

  /** Frees the leases whose release failed, then leases every slot `held` holds (see `leaseHeld`); `now` is the pool's time. */
  putBack(held: () => readonly HeldSlots[], now: number): Observable<void> {
    // A lease older than a lease's length has lapsed in Redis: there is nothing left to free.
    for (const release of this.unreleased) if (now - release.at >= this.leaseMs) this.unreleased.delete(release);
    return this.releaseInBatches([...this.unreleased], 0).pipe(switchMap(() => this.leaseHeld(held, new Set())));
  }

  /** Frees `releases` from `offset` on, a batch a pipeline; each leaves the list once its pipeline succeeds. */
  private releaseInBatches(releases: readonly Unreleased[], offset: number): Observable<unknown> {
    if (offset >= releases.length) return of(undefined);
    const batch = releases.slice(offset, offset + RELEASE_BATCH);
    const pipeline = this.client.pipeline();
    for (const { slots, id } of batch) for (const key of slots) pipeline.zrem(key, id);
    return this.command(() => execPipeline(pipeline)).pipe(
      switchMap(() => {
        for (const release of batch) this.unreleased.delete(release);
        return this.releaseInBatches(releases, offset + RELEASE_BATCH);
      }),
    );
  }

  /**
   * Leases in Redis every slot this process holds, before shared admission resumes: those taken
   * while Redis was down, and those whose leases lapsed or were lost with a restart, must count
   * against the shared limit first. Local admission goes on meanwhile, so the round repeats for
   * the slots taken during it.
   */
  private leaseHeld(held: () => readonly HeldSlots[], leased: ReadonlySet<HeldSlots>): Observable<void> {
    const pending = held().filter((reservation) => reservation.slots.length > 0 && !leased.has(reservation));
    if (pending.length === 0) return of(undefined);
    return this.command(() => this.renew(pending)).pipe(switchMap(() => this.leaseHeld(held, new Set([...leased, ...pending]))));
  }
}
