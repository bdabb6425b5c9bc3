import * as z from 'zod';
import { chatRequestSchema } from '../core/request.js';
import type { ChatRequest } from '../core/types.js';
import { ValidationError, formatZodError } from '../core/validation.js';

/**
 * A request as `balance` takes it. It differs from the wire request in one field: `models` is the
 * client-side fallback chain, walked by the library after `model`, so it may be longer than
 * OpenRouter's 3-entry server-side list.
 */
const balancedRequestSchema = chatRequestSchema
  .extend({
    models: z
      .array(z.string().regex(/^\S+$/, 'must be a model slug without spaces'))
      .min(1, 'must name at least one model when present')
      .optional(),
  })
  .refine((request) => request.model !== undefined || (request.models?.length ?? 0) > 0, {
    message: 'a model is required (`model`, or a chain in `models`)',
    path: ['model'],
  });

/** Validates a request for `balance`; throws a `ValidationError` whose message names the field. */
export function validateBalancedRequest(request: unknown): ChatRequest {
  const result = balancedRequestSchema.safeParse(request);
  if (!result.success) throw new ValidationError(formatZodError(result.error, 'request'), result.error.issues);
  return request as ChatRequest;
}
