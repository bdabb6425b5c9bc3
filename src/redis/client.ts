/**
 * What `createRedisStore` needs of its `client`: the commands the store sends and no more. An ioredis
 * `Redis` or `Cluster` fits, and so may another client with the same calls. Structural on purpose:
 * the types of `openrouter-rx/redis` name nothing from `ioredis` (an optional peer dependency), so a
 * project type-checks them, `skipLibCheck: false` too, with or without ioredis installed.
 */
// Method syntax throughout: ioredis's overloads (callbacks, Buffers, more tokens) then still fit.
export interface RedisClientLike {
  /** Runs a Lua script (admission, lease renewal, re-timing): `numKeys` keys, then its arguments. */
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  /** Reads a state another process stored. */
  get(key: string): Promise<string | null>;
  /** What is left of a stored state, in milliseconds. */
  pttl(key: string): Promise<number>;
  /** Lists the stored states at start and on recovery. */
  scan(
    cursor: string,
    patternToken: 'MATCH',
    pattern: string,
    countToken: 'COUNT',
    count: number,
  ): Promise<[cursor: string, elements: string[]]>;
  /** Checks whether Redis answers again, while the store runs locally. */
  ping(): Promise<unknown>;
  /** Batches the writes of a release or a state change. */
  pipeline(): RedisPipelineLike;
  /** A second connection for pub/sub; the store disconnects it on `dispose()`. */
  duplicate(): RedisSubscriberLike;
  /**
   * A Cluster's nodes (ioredis's `Cluster` has it): the stored states are listed on each master,
   * since a SCAN sent to the Cluster goes to one node picked at random.
   */
  nodes?(role: 'master'): Pick<RedisClientLike, 'scan'>[];
}

/** The commands the store queues on a `RedisClientLike`'s `pipeline()` (each returns the pipeline in ioredis). */
export interface RedisPipelineLike {
  /** Frees a slot lease. */
  zrem(key: string, ...members: string[]): unknown;
  /** Drops a state (on `enabled`). */
  del(key: string): unknown;
  /** Stores a state with no end. */
  set(key: string, value: string): unknown;
  /** Stores a state for `milliseconds`. */
  set(key: string, value: string, millisecondsToken: 'PX', milliseconds: number): unknown;
  /** Tells the fleet of a state change. */
  publish(channel: string, message: string): unknown;
  /** Sends the queued commands. */
  exec(): Promise<unknown>;
}

/** The connection a `RedisClientLike`'s `duplicate()` returns: the store subscribes it to its channel of state changes. */
export interface RedisSubscriberLike {
  /** Errors of the pub/sub connection (ignored: the main client's commands say when Redis fails). */
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** State changes from the fleet. */
  on(event: 'message', listener: (channel: string, message: string) => void): unknown;
  /** The connection is up (the first time, and again after each reconnect, ioredis having subscribed it anew). */
  on(event: 'ready', listener: () => void): unknown;
  /** Subscribes to the channel of state changes. */
  subscribe(channel: string): Promise<unknown>;
  /** Closes the connection (on `dispose()`). */
  disconnect(): void;
}

/**
 * Sends a pipeline's commands, and fails with the first command's error: ioredis's `exec()`
 * rejects only when it cannot send them, and answers a command Redis (or a dropped connection)
 * failed as an `[error, result]` pair, which a caller that awaits it alone would take for success.
 */
export async function execPipeline(pipeline: RedisPipelineLike): Promise<void> {
  const results = await pipeline.exec();
  if (!Array.isArray(results)) return;
  for (const result of results) if (Array.isArray(result) && result[0] instanceof Error) throw result[0];
}
