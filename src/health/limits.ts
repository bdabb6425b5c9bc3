import * as z from 'zod/mini';
import { positiveInt } from '../core/validation.js';

/**
 * The limits a key, an account or a model (per account) can be given: what admission and the
 * limiters enforce. Validated with zod where a pool config is read.
 */

const windowQuotaSchema = z
  .strictObject({
    requests: z.optional(positiveInt),
    tokens: z.optional(positiveInt),
    windowMs: positiveInt,
  })
  .check(
    z.refine((quota) => quota.requests !== undefined || quota.tokens !== undefined, {
      message: 'a quota needs `requests` or `tokens`',
    }),
  );

export const limitsSchema = z.strictObject({
  /** Requests per minute. */
  rpm: z.optional(positiveInt),
  /** Tokens (prompt + completion) per minute. */
  tpm: z.optional(positiveInt),
  /** Attempts in flight at once. */
  maxConcurrent: z.optional(positiveInt),
  /** Quotas over other windows, e.g. `{ requests: 50, windowMs: 86_400_000 }` for 50 a day. */
  quotas: z.optional(z.array(windowQuotaSchema)),
});

export const modelLimitsSchema = z.extend(limitsSchema, {
  /** The model's context window in tokens, used to skip it for prompts that cannot fit. */
  contextLength: z.optional(positiveInt),
});

/** Limits of a key, an account or a model: `rpm`, `tpm`, `maxConcurrent` and other `quotas`. */
export type LimitsConfig = z.infer<typeof limitsSchema>;
/** A model's limits (per account), plus its `contextLength` in tokens. */
export type ModelLimitsConfig = z.infer<typeof modelLimitsSchema>;

/** Whether `limits` bound anything (a `contextLength` alone does not). */
export function limitsAnything(limits: LimitsConfig): boolean {
  return limits.rpm !== undefined || limits.tpm !== undefined || limits.maxConcurrent !== undefined || (limits.quotas?.length ?? 0) > 0;
}
