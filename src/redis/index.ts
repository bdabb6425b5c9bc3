export { createRedisStore, RedisStateStore, StoreUnavailableError } from './redis-store.js';
export type { RedisStoreOptions } from './redis-store.js';
