export { createRedisStore, RedisStateStore } from './redis-store.js';
export { StoreUnavailableError } from './options.js';
export type { RedisStoreOptions } from './options.js';
export type { RedisClientLike, RedisPipelineLike, RedisSubscriberLike } from './client.js';
