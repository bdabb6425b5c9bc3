import * as z from 'zod';

/**
 * The limits a key, an account or a model (per account) can be given: what admission and the
 * limiters enforce. Validated with zod where a pool config is read.
 */

const positiveInt = z.number().int().positive();

const windowQuotaSchema = z
  .strictObject({
    requests: positiveInt.optional(),
    tokens: positiveInt.optional(),
    windowMs: positiveInt,
  })
  .refine((quota) => quota.requests !== undefined || quota.tokens !== undefined, {
    message: 'a quota needs `requests` or `tokens`',
  });

export const limitsSchema = z.strictObject({
  /** Requests per minute. */
  rpm: positiveInt.optional(),
  /** Tokens (prompt + completion) per minute. */
  tpm: positiveInt.optional(),
  /** Attempts in flight at once. */
  maxConcurrent: positiveInt.optional(),
  /** Quotas over other windows, e.g. `{ requests: 50, windowMs: 86_400_000 }` for 50 a day. */
  quotas: z.array(windowQuotaSchema).optional(),
});

export const modelLimitsSchema = limitsSchema.extend({
  /** The model's context window in tokens, used to skip it for prompts that cannot fit. */
  contextLength: positiveInt.optional(),
});

/** Limits of a key, an account or a model: `rpm`, `tpm`, `maxConcurrent` and other `quotas`. */
export type LimitsConfig = z.infer<typeof limitsSchema>;
/** A model's limits (per account), plus its `contextLength` in tokens. */
export type ModelLimitsConfig = z.infer<typeof modelLimitsSchema>;
