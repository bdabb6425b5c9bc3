import type { SchedulerLike } from 'rxjs';
import type { StateStore } from '../store/state-store.js';
import type { ResolvedPoolConfig } from './config.js';
import type { PoolEvent } from './events.js';
import type { HealthPublisher } from './publisher.js';
import type { Registry } from './registry.js';

/** What the pool's parts share: its config, its entries, its store, its publisher, its clock and its event outlet. */
export interface PoolContext {
  readonly config: ResolvedPoolConfig;
  readonly registry: Registry;
  readonly store: StateStore;
  readonly publisher: HealthPublisher;
  readonly scheduler: SchedulerLike;
  readonly emit: (event: PoolEvent) => void;
}
