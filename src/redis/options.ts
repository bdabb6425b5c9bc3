import * as z from 'zod';
import { OpenRouterError } from '../core/errors.js';
import { MAX_TIMER_DELAY_MS } from '../core/timers.js';
import type { StateChange } from '../store/state-store.js';
import type { RedisClientLike } from './client.js';

/** Options of `createRedisStore`; checked when the store is created. */
export interface RedisStoreOptions {
  /**
   * An ioredis client (`Redis` or `Cluster`), or any client with the calls of `RedisClientLike`; the
   * store also `duplicate()`s it for pub/sub. Not one with a `keyPrefix` (use `prefix`).
   */
  client: RedisClientLike;
  /** Key prefix; every key is `{<prefix>}:...` (one hash slot, so the scripts also run on a cluster). Default `orx`. */
  prefix?: string;
  /**
   * When Redis fails: `'local'` (default) falls back to in-process limits, each process taking
   * `localShare` of every quota and slot, and resumes shared limits when Redis answers again;
   * `'fail'` fails each admission with a `StoreUnavailableError`.
   */
  onStoreError?: 'local' | 'fail';
  /** The share of each quota a process takes while Redis is down. Default 1 (one process). */
  localShare?: number;
  /** A slot's lease: it expires this long after its last renewal if its process dies. Default 30 s. */
  leaseMs?: number;
  /** A Redis command slower than this counts as a failure. Default 1 s. */
  commandTimeoutMs?: number;
  /** How often a degraded store checks whether Redis is back. Default 1 s. */
  recoveryIntervalMs?: number;
  /** How long a request may take to reach OpenRouter (see `MemoryStoreOptions`). Default 1 s. */
  arrivalMarginMs?: number;
  /** The least margin from the transport's send to the server's count (the pool's `sendMarginMs` may be wider); default 250 ms, for the jitter between processes. */
  sendMarginMs?: number;
}

/** The calls of `RedisClientLike`: a client without one of them would fail later, out of a pool's call. */
const CLIENT_METHODS = ['eval', 'get', 'pttl', 'scan', 'ping', 'pipeline', 'duplicate'] as const;

/**
 * An ioredis client, or one with the same calls. Not one with a `keyPrefix`: ioredis puts it on the
 * keys of commands but not on a `SCAN MATCH` pattern, so the store would find none of the states
 * the fleet stored, at start or on recovery.
 */
const clientSchema = z.custom<RedisClientLike>().superRefine((value, context) => {
  if (typeof value !== 'object' || value === null) {
    context.addIssue({ code: 'custom', message: 'expected an ioredis client' });
    return;
  }
  const missing = CLIENT_METHODS.filter((method) => typeof (value as unknown as Record<string, unknown>)[method] !== 'function');
  if (missing.length > 0) {
    context.addIssue({ code: 'custom', message: `expected an ioredis client, with ${missing.join(', ')}() (see RedisClientLike)` });
    return;
  }
  // A string, or a Buffer (ioredis takes one too).
  const keyPrefix = (value as { options?: { keyPrefix?: unknown } }).options?.keyPrefix;
  if ((typeof keyPrefix === 'string' || keyPrefix instanceof Uint8Array) && keyPrefix.length > 0)
    context.addIssue({
      code: 'custom',
      path: ['options', 'keyPrefix'],
      message: "a client with a keyPrefix is not supported (its SCAN patterns do not get it): use the store's prefix option instead",
    });
});

export const optionsSchema = z.strictObject({
  client: clientSchema,
  prefix: z
    .string()
    .min(1)
    .regex(/^[^{}]*$/, 'must not contain braces')
    .optional(),
  onStoreError: z.enum(['local', 'fail']).optional(),
  localShare: z.number().gt(0).max(1).optional(),
  // Timers past 2^31-1 ms fire at once in Node (every millisecond, for an interval).
  leaseMs: z.number().int().positive().max(MAX_TIMER_DELAY_MS).optional(),
  commandTimeoutMs: z.number().int().positive().max(MAX_TIMER_DELAY_MS).optional(),
  recoveryIntervalMs: z.number().int().positive().max(MAX_TIMER_DELAY_MS).optional(),
  arrivalMarginMs: z.number().int().nonnegative().optional(),
  sendMarginMs: z.number().int().nonnegative().optional(),
});

/** The shared store is unreachable and the pool was told to fail rather than limit alone. */
export class StoreUnavailableError extends OpenRouterError {
  /** The class name, so logs and `toJSON()` tell it apart. */
  override name = 'StoreUnavailableError';
  /** What failed: always `'store_unavailable'`. */
  override readonly kind = 'store_unavailable' as const;
}

/** A state change as it travels on pub/sub and sits in its key: anything else there is ignored. */
export const stateMessageSchema = z.object({
  scope: z.enum(['key', 'account', 'model']),
  target: z.string(),
  state: z.enum(['parked', 'open', 'exhausted', 'disabled', 'enabled', 'learned']),
  remainingMs: z.number().nullable(),
  origin: z.string(),
  at: z.number().optional(),
  reason: z.literal('user').optional(),
  quota: z
    .object({
      requests: z.number().int().positive(),
      windowMs: z.number().int().positive(),
      calendar: z.literal('utc-day').optional(),
      source: z.enum(['learned', 'key-info']),
      bucket: z.string().min(1),
    })
    .optional(),
});

/** A state change from pub/sub or a stored key; undefined for anything not ours, or from a newer version. */
export function stateChangeOf(message: string): StateChange | undefined {
  try {
    const parsed = stateMessageSchema.parse(JSON.parse(message));
    return Object.assign({}, parsed, { remainingMs: parsed.remainingMs ?? Infinity });
  } catch {
    return undefined;
  }
}

/** `text` as a literal in a Redis glob (`SCAN MATCH`): a prefix such as `tenant?` must not match another fleet's keys. */
export function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
