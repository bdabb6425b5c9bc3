import { z } from 'zod';
import type { SchedulerLike } from 'rxjs';
import type { KeyCredential, Transport } from '../core/types.js';
import type { StrategyLike } from './strategies.js';
import { strategyNames } from './strategies.js';
import { defaultBreakerPolicy, type BreakerPolicy } from '../health/breaker.js';
import { ValidationError, formatZodError } from '../core/validation.js';
import type { Observable } from 'rxjs';
import type { StateStore } from '../store/state-store.js';
import { limitsSchema, modelLimitsSchema, type LimitsConfig, type ModelLimitsConfig } from '../health/limits.js';

export type { LimitsConfig, ModelLimitsConfig };

/** What `GET /api/v1/key` says of a key, as far as the pool uses it. */
export interface KeyInfoSnapshot {
  /** The key's spending cap in USD, or `null` for none. */
  limit: number | null;
  /** What is left of `limit`; `null` when there is no limit. A key with 0 left is exhausted. */
  limitRemaining: number | null;
  /** When usage toward `limit` resets (`'daily'`, `'weekly'`, `'monthly'`); `null` for never. */
  limitReset?: string | null;
  /** Credits (USD) the key has used. */
  usage: number;
  /** True when the account never bought credits. */
  isFreeTier: boolean;
}

/** Reads a key's `KeyInfoSnapshot`, for `refreshKeyInfo`; `createKeyPool` uses `fetchKeyInfo`. */
export type KeyInfoSource = (key: KeyCredential) => Observable<KeyInfoSnapshot> | Promise<KeyInfoSnapshot>;

const positiveInt = z.number().int().positive();

/**
 * An API key as it is sent: `Authorization: Bearer <key>`. Surrounding whitespace (a key file's
 * newline) is trimmed, as `fetch` trims header values, so the trimmed key is what is stored,
 * fingerprinted, sent and redacted. Anything a header cannot carry as a token could only fail.
 * The messages never quote the key.
 */
const apiKeySchema = z
  .string()
  .trim()
  .min(1, 'must not be empty (or only whitespace)')
  .regex(/^[\x21-\x7E]*$/, 'must be printable ASCII without whitespace (it is sent in the Authorization header)');

const keySchema = z.strictObject({
  key: apiKeySchema,
  label: z.string().min(1).optional(),
  account: z.string().min(1).optional(),
  weight: z.number().positive().optional(),
  limits: limitsSchema.optional(),
});

const breakerSchema = z.strictObject({
  consecutiveFailures: positiveInt.optional(),
  failureRateThreshold: z.number().gt(0).max(1).optional(),
  minimumCalls: positiveInt.optional(),
  windowMs: positiveInt.optional(),
  cooldownMs: z.number().int().nonnegative().optional(),
  cooldownMultiplier: z.number().min(1).optional(),
  maxCooldownMs: z.number().int().nonnegative().optional(),
  halfOpenProbes: positiveInt.optional(),
});

const isFunction = (value: unknown) => typeof value === 'function';

export const keyPoolConfigSchema = z
  .strictObject({
    keys: z.array(keySchema).min(1, 'needs at least one key'),
    accounts: z.record(z.string(), limitsSchema).optional(),
    /** Limits per model, by exact id or a `*` pattern such as `*:free`; they apply per account. */
    models: z.record(z.string(), modelLimitsSchema).optional(),
    breaker: breakerSchema.optional(),
    modelBreaker: breakerSchema.optional(),
    rateLimitCooldownMs: z.number().int().nonnegative().optional(),
    maxRateLimitCooldownMs: z.number().int().nonnegative().optional(),
    exhaustedRetryMs: positiveInt.optional(),
    maxModelRecords: positiveInt.optional(),
    queue: z.strictObject({ maxSize: positiveInt.optional(), timeoutMs: positiveInt.optional() }).optional(),
    strategy: z
      .union([
        z.enum(strategyNames as [string, ...string[]]),
        z.custom<StrategyLike>(
          (value) => isFunction(value) || (typeof value === 'object' && value !== null && isFunction((value as { pick?: unknown }).pick)),
          {
            message: 'expected a strategy name, a Strategy or a function',
          },
        ),
      ])
      .optional(),
    defaultCompletionTokens: positiveInt.optional(),
    latencySmoothing: z.number().gt(0).max(1).optional(),
    scheduler: z
      .custom<SchedulerLike>(
        (value) => typeof value === 'object' && value !== null && isFunction((value as Record<string, unknown>)['now']),
        {
          message: 'expected an RxJS scheduler',
        },
      )
      .optional(),
    random: z.custom<() => number>(isFunction, { message: 'expected a function' }).optional(),
    transport: z.custom<Transport>(isFunction, { message: 'expected a transport function' }),
    keyInfo: z.custom<KeyInfoSource>(isFunction, { message: 'expected a function' }).optional(),
    store: z
      .custom<StateStore>(
        (value) => typeof value === 'object' && value !== null && isFunction((value as Record<string, unknown>)['reserve']),
        {
          message: 'expected a StateStore',
        },
      )
      .optional(),
  })
  .superRefine((config, context) => {
    const labels = new Map<string, number>();
    const keys = new Map<string, number>();
    config.keys.forEach((entry, index) => {
      const label = entry.label ?? defaultLabel(index);
      const seen = labels.get(label);
      if (seen !== undefined) {
        context.addIssue({ code: 'custom', path: ['keys', index, 'label'], message: `duplicate label "${label}" (also keys[${seen}])` });
      }
      labels.set(label, index);
      const sameKey = keys.get(entry.key);
      if (sameKey !== undefined) {
        // Never echo the key itself: name where its twin is.
        context.addIssue({ code: 'custom', path: ['keys', index, 'key'], message: `the same key as keys[${sameKey}]` });
      }
      keys.set(entry.key, index);
    });
  });

/** A pool's config as `createPool` takes it, before defaults are filled in; validated there. */
export type KeyPoolInput = z.input<typeof keyPoolConfigSchema>;

export interface ResolvedKeyConfig {
  key: string;
  label: string;
  account: string;
  weight: number;
  limits: LimitsConfig;
}

export interface ResolvedPoolConfig {
  keys: ResolvedKeyConfig[];
  accounts: Record<string, LimitsConfig>;
  models: Record<string, ModelLimitsConfig>;
  breaker: BreakerPolicy;
  modelBreaker: BreakerPolicy;
  rateLimitCooldownMs: number;
  maxRateLimitCooldownMs: number;
  exhaustedRetryMs: number;
  /** Model health records kept before idle, healthy ones are dropped (least recently used first). */
  maxModelRecords: number;
  queue: { maxSize: number; timeoutMs: number | undefined };
  strategy: StrategyLike;
  defaultCompletionTokens: number;
  latencySmoothing: number;
  scheduler: SchedulerLike | undefined;
  random: () => number;
  transport: Transport;
  keyInfo: KeyInfoSource | undefined;
  store: StateStore | undefined;
}

/** The largest double below 1: `Math.floor(value * n)` stays below `n`. */
const BELOW_ONE = 1 - Number.EPSILON / 2;

/**
 * A user's random source, held to [0, 1): strategies index keys with `Math.floor(random() * n)`,
 * so a 1 (or NaN, or a negative) would pick a key that does not exist.
 */
function clampedRandom(random: () => number): () => number {
  return () => {
    const value = random();
    if (value >= 0 && value < 1) return value;
    return value >= 1 ? BELOW_ONE : 0;
  };
}

export function defaultLabel(index: number): string {
  return `key-${index + 1}`;
}

/** Validates a pool config and fills in every default; throws a `ValidationError` naming the field. */
export function resolvePoolConfig(input: unknown): ResolvedPoolConfig {
  const parsed = keyPoolConfigSchema.safeParse(input);
  if (!parsed.success) throw new ValidationError(formatZodError(parsed.error, 'key pool config'), parsed.error.issues);
  const config = parsed.data;
  return {
    keys: config.keys.map((entry, index) => {
      const label = entry.label ?? defaultLabel(index);
      return {
        key: entry.key,
        label,
        // A key without an account is an account of its own.
        account: entry.account ?? `key:${label}`,
        weight: entry.weight ?? 1,
        limits: entry.limits ?? {},
      };
    }),
    accounts: config.accounts ?? {},
    models: config.models ?? {},
    breaker: { ...defaultBreakerPolicy, ...config.breaker },
    modelBreaker: { ...defaultBreakerPolicy, ...config.modelBreaker },
    rateLimitCooldownMs: config.rateLimitCooldownMs ?? 1_000,
    maxRateLimitCooldownMs: config.maxRateLimitCooldownMs ?? 60_000,
    exhaustedRetryMs: config.exhaustedRetryMs ?? 15 * 60_000,
    maxModelRecords: config.maxModelRecords ?? 1_000,
    queue: { maxSize: config.queue?.maxSize ?? Infinity, timeoutMs: config.queue?.timeoutMs },
    strategy: (config.strategy ?? 'powerOfTwo') as StrategyLike,
    defaultCompletionTokens: config.defaultCompletionTokens ?? 512,
    latencySmoothing: config.latencySmoothing ?? 0.2,
    scheduler: config.scheduler,
    random: config.random === undefined ? Math.random : clampedRandom(config.random),
    transport: config.transport,
    keyInfo: config.keyInfo,
    store: config.store,
  };
}
