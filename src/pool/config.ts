import { DEFAULT_ADAPTIVE_LIMIT, type AdaptiveLimitPolicy } from '../health/adaptive-limit.js';
import * as z from 'zod/mini';
import type { SchedulerLike } from 'rxjs';
import type { KeyCredential, Transport } from '../core/types.js';
import { fingerprintOf } from '../core/fingerprint.js';
import { isKeyShaped, redactKeyShaped, redactText } from '../core/redact.js';
import type { StrategyLike } from './strategies.js';
import { strategyNames } from './strategies.js';
import type { LogLevel, PoolLogger } from './event-log.js';
import { defaultBreakerPolicy, type BreakerPolicy } from '../health/breaker.js';
import { formatZodError, functionOption, positiveInt, safeParseEnglish, schedulerOption, ValidationError } from '../core/validation.js';
import type { Observable } from 'rxjs';
import { DEFAULT_ARRIVAL_MARGIN_MS, type StateStore } from '../store/state-store.js';
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
  /** The user whose account made the key: the pool groups keys into accounts by it (`discoverAccounts`). */
  creatorUserId?: string;
  /** The account's free-model quota for the current UTC day (`free_model_daily_requests`). */
  freeModelDailyRequests?: { used: number; limit: number; remaining: number };
}

/** Reads a key's `KeyInfoSnapshot`, for `refreshKeyInfo`; `createKeyPool` uses `fetchKeyInfo`. */
export type KeyInfoSource = (key: KeyCredential) => Observable<KeyInfoSnapshot> | Promise<KeyInfoSnapshot>;

/**
 * An API key as it is sent: `Authorization: Bearer <key>`. Surrounding whitespace (a key file's
 * newline) is trimmed, as `fetch` trims header values, so the trimmed key is what is stored,
 * fingerprinted, sent and redacted. Anything a header cannot carry as a token could only fail.
 * The messages never quote the key.
 */
const apiKeySchema = z
  .string()
  .check(
    z.trim(),
    z.minLength(1, 'must not be empty (or only whitespace)'),
    z.regex(/^[\x21-\x7E]*$/, 'must be printable ASCII without whitespace (it is sent in the Authorization header)'),
  );

const keySchema = z.strictObject({
  key: apiKeySchema,
  label: z.optional(z.string().check(z.minLength(1))),
  account: z.optional(z.string().check(z.minLength(1))),
  weight: z.optional(z.number().check(z.positive())),
  limits: z.optional(limitsSchema),
});

const DEFAULT_RATE_LIMIT_COOLDOWN_MS = 1_000;
const DEFAULT_MAX_RATE_LIMIT_COOLDOWN_MS = 60_000;

const breakerSchema = z.strictObject({
  consecutiveFailures: z.optional(positiveInt),
  failureRateThreshold: z.optional(z.number().check(z.gt(0), z.lte(1))),
  minimumCalls: z.optional(positiveInt),
  windowMs: z.optional(positiveInt),
  cooldownMs: z.optional(z.int().check(z.nonnegative())),
  cooldownMultiplier: z.optional(z.number().check(z.gte(1))),
  maxCooldownMs: z.optional(z.int().check(z.nonnegative())),
  halfOpenProbes: z.optional(positiveInt),
});

const isFunction = (value: unknown) => typeof value === 'function';

/** How a config error names a bound: as set, or as its default when it was not set. */
function boundText(set: number | undefined, value: number): string {
  return set === undefined ? `its default (${value})` : String(value);
}

/** A `strategy` option, the pool's or a request stream's: a name, a `Strategy`, or a function. */
export const strategyOption = z.union([
  z.enum(strategyNames as [string, ...string[]]),
  z.custom<StrategyLike>(
    (value) => isFunction(value) || (typeof value === 'object' && value !== null && isFunction((value as { pick?: unknown }).pick)),
    { message: 'expected a strategy name, a Strategy or a function' },
  ),
]);

export const keyPoolConfigSchema = z
  .strictObject({
    keys: z.array(keySchema).check(z.minLength(1, 'needs at least one key')),
    accounts: z.optional(z.record(z.string(), limitsSchema)),
    /** Limits per model, by exact id or a `*` pattern such as `*:free`; they apply per account. */
    models: z.optional(z.record(z.string(), modelLimitsSchema)),
    breaker: z.optional(breakerSchema),
    modelBreaker: z.optional(breakerSchema),
    rateLimitCooldownMs: z.optional(z.int().check(z.nonnegative())),
    maxRateLimitCooldownMs: z.optional(z.int().check(z.nonnegative())),
    exhaustedRetryMs: z.optional(positiveInt),
    maxModelRecords: z.optional(positiveInt),
    queue: z.optional(z.strictObject({ maxSize: z.optional(positiveInt), timeoutMs: z.optional(positiveInt) })),
    /**
     * Quotas learned from 429s' `X-RateLimit-*`, and OpenRouter's documented free-model minute
     * assumed for an account key info names; `false` turns learning off. `assumeForSiblings:
     * false` keeps a key's (account's) learned quota from being assumed for the others.
     */
    learning: z.optional(
      z.union([z.literal(false), z.strictObject({ reprobeAfterMs: z.optional(positiveInt), assumeForSiblings: z.optional(z.boolean()) })]),
    ),
    /** Concurrency per account and model, found by AIMD from overload answers; `false` turns it off. */
    adaptiveConcurrency: z.optional(
      z.union([
        z.literal(false),
        z
          .strictObject({ initial: z.optional(positiveInt), min: z.optional(positiveInt), max: z.optional(positiveInt) })
          .check(z.refine((limits) => (limits.min ?? 1) <= (limits.max ?? Infinity), { message: '`min` must not exceed `max`' })),
      ]),
    ),
    /**
     * The least time from a request's send to the server's count of it: quota entries count from
     * the send plus this, or from the first response byte if sooner (and once the answer is in,
     * from the send plus how much slower than the model's fastest answer it was, see `AnswerLag`).
     * Default 1 s, which leaves the first byte in charge: a busy event loop can delay a request's
     * arrival by more than any smaller margin. Refusals that prove it short widen it again (see
     * `SendMargin`).
     */
    sendMarginMs: z.optional(z.int().check(z.nonnegative())),
    /** Group keys into accounts by `GET /api/v1/key`'s `creator_user_id` (keys without `account`); default true when `keyInfo` is set. */
    discoverAccounts: z.optional(z.boolean()),
    /** Where the pool logs its events (console, pino, winston...); key text never reaches it. */
    logger: z.optional(
      z.custom<PoolLogger>((value) => typeof value === 'object' && value !== null, {
        message: 'expected a logger (an object with debug/info/warn/error)',
      }),
    ),
    /** The least level logged; default `info`. */
    logLevel: z.optional(z.enum(['debug', 'info', 'warn', 'error'])),
    strategy: z.optional(strategyOption),
    defaultCompletionTokens: z.optional(positiveInt),
    latencySmoothing: z.optional(z.number().check(z.gt(0), z.lte(1))),
    scheduler: z.optional(schedulerOption),
    random: z.optional(functionOption<() => number>()),
    transport: functionOption<Transport>('expected a transport function'),
    keyInfo: z.optional(functionOption<KeyInfoSource>()),
    store: z.optional(
      z.custom<StateStore>(
        (value) => typeof value === 'object' && value !== null && isFunction((value as unknown as Record<string, unknown>)['reserve']),
        {
          message: 'expected a StateStore',
        },
      ),
    ),
  })
  .check(
    z.superRefine((config, context) => {
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
      config.keys.forEach((entry, index) => {
        // A whole key, or another entry's (key and label swapped). Never echoed: a label goes out in
        // every health snapshot, event and log line.
        if (entry.label !== undefined && (isKeyShaped(entry.label) || (keys.get(entry.label.trim()) ?? index) !== index))
          context.addIssue({ code: 'custom', path: ['keys', index, 'label'], message: LABEL_IS_A_KEY });
      });
      // A bound the user may not have set: the message says what it is (its default) and which setting it is below.
      const cooldownMs = config.rateLimitCooldownMs ?? DEFAULT_RATE_LIMIT_COOLDOWN_MS;
      const maxRateLimitCooldownMs = config.maxRateLimitCooldownMs ?? DEFAULT_MAX_RATE_LIMIT_COOLDOWN_MS;
      if (maxRateLimitCooldownMs < cooldownMs) {
        context.addIssue({
          code: 'custom',
          path: ['maxRateLimitCooldownMs'],
          message: `${boundText(config.maxRateLimitCooldownMs, maxRateLimitCooldownMs)} must not be below rateLimitCooldownMs (${cooldownMs})`,
        });
      }
      for (const field of ['breaker', 'modelBreaker'] as const) {
        const breaker = config[field];
        const breakerCooldownMs = breaker?.cooldownMs ?? defaultBreakerPolicy.cooldownMs;
        const maxCooldownMs = breaker?.maxCooldownMs ?? defaultBreakerPolicy.maxCooldownMs;
        if (maxCooldownMs < breakerCooldownMs) {
          context.addIssue({
            code: 'custom',
            path: [field, 'maxCooldownMs'],
            message: `${boundText(breaker?.maxCooldownMs, maxCooldownMs)} must not be below cooldownMs (${breakerCooldownMs})`,
          });
        }
      }
      // Without key info, only the keys' own `account` names accounts: a limit for any other is a typo that would never apply.
      if (config.discoverAccounts === false || config.keyInfo === undefined) {
        const named = new Set(config.keys.map((entry) => entry.account));
        for (const id of Object.keys(config.accounts ?? {})) {
          if (!named.has(id))
            context.addIssue({
              code: 'custom',
              path: ['accounts', id],
              message: `no key is in account "${id}" (keys[].account), and no key info names accounts`,
            });
        }
      }
    }),
  );

/** A pool's config as `createPool` takes it, before defaults are filled in; validated there. */
export type KeyPoolInput = z.input<typeof keyPoolConfigSchema>;

export interface ResolvedKeyConfig {
  key: string;
  label: string;
  account: string;
  /** The config named the account (else it is the key's own until key info names one). */
  accountConfigured: boolean;
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
  learning: { enabled: boolean; reprobeAfterMs: number; assumeForSiblings: boolean };
  adaptiveConcurrency: AdaptiveLimitPolicy | undefined;
  discoverAccounts: boolean;
  logger: PoolLogger | undefined;
  logLevel: LogLevel;
  sendMarginMs: number;
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

function adaptivePolicyOf(input: { initial?: number; min?: number; max?: number }): AdaptiveLimitPolicy {
  const min = input.min ?? DEFAULT_ADAPTIVE_LIMIT.min;
  const max = Math.max(min, input.max ?? DEFAULT_ADAPTIVE_LIMIT.max);
  return { min, max, initial: Math.min(max, Math.max(min, input.initial ?? DEFAULT_ADAPTIVE_LIMIT.initial)) };
}

const LABEL_IS_A_KEY = 'is an API key (labels are shown in health, events and logs): the key goes in `key`, a name of your own in `label`';

/**
 * The `ValidationError` of a config that failed, with no key text in its message or issues: a
 * key where a field name goes (`accounts: { [key]: ... }`, `keys: [{ [key]: label }]`) would be
 * quoted back as the field's name.
 */
function keyFreeError(error: z.core.$ZodError, input: unknown): ValidationError {
  const entries = (input as { keys?: unknown } | null)?.keys;
  const keys = Array.isArray(entries)
    ? entries.flatMap((entry: unknown, index) => {
        const key = (entry as { key?: unknown } | null)?.key;
        return typeof key === 'string' && key.trim() !== '' ? [{ key, label: `keys[${index}]`, fingerprint: fingerprintOf(key) }] : [];
      })
    : [];
  const scrub = (text: string): string => redactKeyShaped(keys.reduce((out, key) => redactText(out, key), text));
  const issues = error.issues.map((issue) => scrubStrings(issue, scrub) as z.core.$ZodIssue);
  return new ValidationError(scrub(formatZodError(error, 'key pool config')), issues);
}

/** A copy of a plain value (a zod issue) with `scrub` applied to every string in it. */
function scrubStrings(value: unknown, scrub: (text: string) => string): unknown {
  if (typeof value === 'string') return scrub(value);
  if (Array.isArray(value)) return value.map((item) => scrubStrings(item, scrub));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([name, item]) => [scrub(name), scrubStrings(item, scrub)]));
}

export function defaultLabel(index: number): string {
  return `key-${index + 1}`;
}

/** Validates a pool config and fills in every default; throws a `ValidationError` naming the field. */
export function resolvePoolConfig(input: unknown): ResolvedPoolConfig {
  const parsed = safeParseEnglish(keyPoolConfigSchema, input);
  if (!parsed.success) throw keyFreeError(parsed.error, input);
  const config = parsed.data;
  return {
    keys: config.keys.map((entry, index) => {
      const label = entry.label ?? defaultLabel(index);
      const resolved = {
        label,
        // A key without an account is an account of its own.
        account: entry.account ?? `key:${label}`,
        accountConfigured: entry.account !== undefined,
        weight: entry.weight ?? 1,
        limits: entry.limits ?? {},
      };
      // Not enumerable, as on the credential: the pool holds its config, and a pool printed
      // (`console.dir(pool, { depth: null })`, a logger that walks objects) shows no key text.
      return Object.defineProperty(resolved, 'key', { value: entry.key, enumerable: false }) as ResolvedKeyConfig;
    }),
    accounts: config.accounts ?? {},
    models: config.models ?? {},
    breaker: Object.assign({}, defaultBreakerPolicy, config.breaker),
    modelBreaker: Object.assign({}, defaultBreakerPolicy, config.modelBreaker),
    rateLimitCooldownMs: config.rateLimitCooldownMs ?? DEFAULT_RATE_LIMIT_COOLDOWN_MS,
    maxRateLimitCooldownMs: config.maxRateLimitCooldownMs ?? DEFAULT_MAX_RATE_LIMIT_COOLDOWN_MS,
    exhaustedRetryMs: config.exhaustedRetryMs ?? 15 * 60_000,
    maxModelRecords: config.maxModelRecords ?? 1_000,
    queue: { maxSize: config.queue?.maxSize ?? Infinity, timeoutMs: config.queue?.timeoutMs },
    learning: {
      enabled: config.learning !== false,
      reprobeAfterMs: (config.learning === false ? undefined : config.learning?.reprobeAfterMs) ?? 5 * 60_000,
      assumeForSiblings: (config.learning === false ? undefined : config.learning?.assumeForSiblings) ?? true,
    },
    adaptiveConcurrency: config.adaptiveConcurrency === false ? undefined : adaptivePolicyOf(config.adaptiveConcurrency ?? {}),
    discoverAccounts: config.discoverAccounts ?? config.keyInfo !== undefined,
    logger: config.logger,
    logLevel: config.logLevel ?? 'info',
    sendMarginMs: config.sendMarginMs ?? DEFAULT_ARRIVAL_MARGIN_MS,
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
