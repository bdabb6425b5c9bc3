import * as z from 'zod/mini';
import { BadRequestError } from '../core/errors.js';
import { chatRequestSchema } from '../core/request.js';
import { MODEL_SLUG, requestFastPath } from '../core/request-fast-path.js';
import type { ChatRequest } from '../core/types.js';
import { formatZodError, safeParseEnglish, ValidationError } from '../core/validation.js';

/**
 * A request as `balance` and `withKeyRotation` take it. It differs from the wire request in one
 * field: `models` is the client-side fallback chain, walked by the library after `model` and never
 * sent as it is, so it may be longer than OpenRouter's 3-entry server-side list, or empty (no chain).
 */
export const balancedRequestSchema = z
  .extend(chatRequestSchema, {
    models: z.optional(z.array(z.string().check(z.regex(MODEL_SLUG, 'must be a model slug without spaces')))),
  })
  .check(
    z.refine((request) => request.model !== undefined || (request.models?.length ?? 0) > 0, {
      message: 'a model is required (`model`, or a chain in `models`)',
      path: ['model'],
    }),
  );

/** The chain in `models` is the library's to walk: no bound on its length. */
const isCertainlyValidBalancedRequest = requestFastPath(Object.keys(balancedRequestSchema.def.shape), Infinity);

/** Validates a request for `balance`; throws a `ValidationError` whose message names the field. */
export function validateBalancedRequest(request: unknown): ChatRequest {
  if (isCertainlyValidBalancedRequest(request)) return request as ChatRequest;
  const result = safeParseEnglish(balancedRequestSchema, request);
  if (!result.success) throw new ValidationError(formatZodError(result.error, 'request'), result.error.issues);
  return request as ChatRequest;
}

/** What a request that is not one fails with, at whichever edge took it (`balance`, `withKeyRotation`). */
export function invalidRequestError(error: unknown): BadRequestError {
  const message = error instanceof ValidationError ? error.message : String(error);
  return new BadRequestError({ message, scope: 'request', retryable: false, cause: error });
}
