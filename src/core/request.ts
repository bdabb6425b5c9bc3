import * as z from 'zod';
import type { ChatRequest } from './types.js';
import { ValidationError, formatZodError } from './validation.js';

/**
 * Validation of a `ChatRequest` at the library's edge, so a bad request fails locally with the
 * field named instead of costing an attempt (or a key's health) on a 400. OpenRouter's extras are
 * checked as its docs state them (openrouter-wire.md §2); unknown top-level fields pass through,
 * since the OpenAI schema keeps growing, but `provider` rejects unknown keys as OpenRouter does.
 */

/** OpenRouter answers 400 `'models' array must have 3 items or fewer.` above this. */
export const MAX_FALLBACK_MODELS = 3;

/**
 * A model slug: `author/model`, with an optional variant such as `:free`, `:nitro`, `:floor`,
 * `:exacto`, `:extended`, `:thinking` or `:online`, an alias (`~author/model-latest`) or a router
 * (`openrouter/auto`). Only emptiness and whitespace are rejected: new slugs appear every week.
 */
const modelSlugSchema = z.string().regex(/^\S+$/, 'must be a model slug without spaces (e.g. "openai/gpt-4o:nitro")');

const providerSortKeySchema = z.enum(['price', 'throughput', 'latency', 'exacto']);

const percentileCutoffsSchema = z.strictObject({
  p50: z.number().nonnegative().optional(),
  p75: z.number().nonnegative().optional(),
  p90: z.number().nonnegative().optional(),
  p99: z.number().nonnegative().optional(),
});

const stringListSchema = z.array(z.string().min(1));

/** Exactly the keys of guides/routing/provider-selection: OpenRouter rejects any other with 400. */
export const providerPreferencesSchema = z.strictObject({
  order: stringListSchema.optional(),
  allow_fallbacks: z.boolean().optional(),
  require_parameters: z.boolean().optional(),
  data_collection: z.enum(['allow', 'deny']).optional(),
  zdr: z.boolean().optional(),
  enforce_distillable_text: z.boolean().optional(),
  only: stringListSchema.optional(),
  ignore: stringListSchema.optional(),
  quantizations: stringListSchema.optional(),
  sort: z
    .union([providerSortKeySchema, z.strictObject({ by: providerSortKeySchema, partition: z.enum(['model', 'none']).optional() })], {
      error: 'must be "price", "throughput", "latency", "exacto", or {by, partition: "model" | "none"}',
    })
    .optional(),
  preferred_min_throughput: z.union([z.number().nonnegative(), percentileCutoffsSchema]).optional(),
  preferred_max_latency: z.union([z.number().nonnegative(), percentileCutoffsSchema]).optional(),
  // USD per million tokens (per request for `request`); a hard filter, so numbers only.
  max_price: z
    .strictObject({
      prompt: z.number().nonnegative().optional(),
      completion: z.number().nonnegative().optional(),
      request: z.number().nonnegative().optional(),
      image: z.number().nonnegative().optional(),
      audio: z.number().nonnegative().optional(),
    })
    .optional(),
});

const chatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(z.record(z.string(), z.unknown())), z.null()], {
    error: 'must be a string, an array of content parts, or null',
  }),
  name: z.string().optional(),
  tool_call_id: z.string().optional(),
  tool_calls: z.array(z.record(z.string(), z.unknown())).optional(),
});

const between = (min: number, max: number) =>
  z.number().min(min, `must be between ${min} and ${max}`).max(max, `must be between ${min} and ${max}`);
const positiveInteger = z.number().int('must be a positive integer').positive('must be a positive integer');

export const chatRequestSchema = z.looseObject({
  id: z.string().optional(),
  model: modelSlugSchema.optional(),
  models: z
    .array(modelSlugSchema)
    .min(1, 'must name at least one model when present')
    .max(MAX_FALLBACK_MODELS, `at most ${MAX_FALLBACK_MODELS} entries (OpenRouter's limit)`)
    .optional(),
  messages: z.array(chatMessageSchema).min(1, 'must hold at least one message'),
  stream: z.boolean().optional(),
  max_tokens: positiveInteger.optional(),
  max_completion_tokens: positiveInteger.optional(),
  temperature: between(0, 2).optional(),
  top_p: between(0, 1).optional(),
  top_k: z.number().int('must be a non-negative integer').nonnegative('must be a non-negative integer').optional(),
  min_p: between(0, 1).optional(),
  top_a: between(0, 1).optional(),
  repetition_penalty: z.number().gt(0, 'must be greater than 0 and at most 2').max(2, 'must be greater than 0 and at most 2').optional(),
  frequency_penalty: between(-2, 2).optional(),
  presence_penalty: between(-2, 2).optional(),
  seed: z.number().int('must be an integer').optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  tools: z.array(z.record(z.string(), z.unknown())).optional(),
  tool_choice: z.unknown().optional(),
  response_format: z.record(z.string(), z.unknown()).optional(),
  provider: providerPreferencesSchema.optional(),
  user: z.string().optional(),
  session_id: z.string().optional(),
  reasoning: z.record(z.string(), z.unknown()).optional(),
  plugins: z.array(z.record(z.string(), z.unknown())).optional(),
  transforms: z.array(z.string()).optional(),
});

/**
 * Checks a request and returns it unchanged (same object), typed. Throws a `ValidationError`
 * whose message names every failing field, e.g. `Invalid request: models: at most 3 entries
 * (OpenRouter's limit)`. Call it once where requests enter; the transport trusts its input.
 */
export function validateChatRequest(request: unknown): ChatRequest {
  const result = chatRequestSchema.safeParse(request);
  if (!result.success) throw new ValidationError(formatZodError(result.error, 'request'), result.error.issues);
  return request as ChatRequest;
}
