import type { SchedulerLike } from 'rxjs';
import type { StateStore } from '../store/state-store.js';
import type { ResolvedPoolConfig } from './config.js';
import type { PoolEvent } from './events.js';
import type { HealthPublisher } from './publisher.js';
import type { Registry } from './registry.js';
import type { SendMargin } from './send-margin.js';
import type { LeasesOut } from './leases-out.js';

/** What the pool's parts share: its config, its entries, its store, its publisher, its clock, its event outlet and its send margin. */
export interface PoolContext {
  readonly config: ResolvedPoolConfig;
  readonly registry: Registry;
  readonly store: StateStore;
  readonly publisher: HealthPublisher;
  readonly scheduler: SchedulerLike;
  readonly emit: (event: PoolEvent) => void;
  /** Whether anyone watches `events$`: per-attempt events are built only then. */
  readonly eventsWatched: () => boolean;
  /** How long after its send a request may be counted by the server. */
  readonly sendMargin: SendMargin;
  /** The leases granted and not yet released (each passes `abandon` on to its holder): `dispose` ends the attempts that hold them. */
  readonly leasesOut: LeasesOut;
}
