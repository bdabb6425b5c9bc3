import * as z from 'zod/mini';
import type { ChatRequest } from './types.js';
import { MODEL_SLUG, requestFastPath } from './request-fast-path.js';
import { formatZodError, safeParseEnglish, ValidationError } from './validation.js';

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
const modelSlugSchema = z.string().check(z.regex(MODEL_SLUG, 'must be a model slug without spaces (e.g. "openai/gpt-4o:nitro")'));

const providerSortKeySchema = z.enum(['price', 'throughput', 'latency', 'exacto']);

const percentileCutoffsSchema = z.strictObject({
  p50: z.optional(z.number().check(z.nonnegative())),
  p75: z.optional(z.number().check(z.nonnegative())),
  p90: z.optional(z.number().check(z.nonnegative())),
  p99: z.optional(z.number().check(z.nonnegative())),
});

const stringListSchema = z.array(z.string().check(z.minLength(1)));

/** Exactly the keys of guides/routing/provider-selection: OpenRouter rejects any other with 400. */
export const providerPreferencesSchema = z.strictObject({
  order: z.optional(stringListSchema),
  allow_fallbacks: z.optional(z.boolean()),
  require_parameters: z.optional(z.boolean()),
  data_collection: z.optional(z.enum(['allow', 'deny'])),
  zdr: z.optional(z.boolean()),
  enforce_distillable_text: z.optional(z.boolean()),
  only: z.optional(stringListSchema),
  ignore: z.optional(stringListSchema),
  quantizations: z.optional(stringListSchema),
  sort: z.optional(
    z.union([providerSortKeySchema, z.strictObject({ by: providerSortKeySchema, partition: z.optional(z.enum(['model', 'none'])) })], {
      error: 'must be "price", "throughput", "latency", "exacto", or {by, partition: "model" | "none"}',
    }),
  ),
  preferred_min_throughput: z.optional(z.union([z.number().check(z.nonnegative()), percentileCutoffsSchema])),
  preferred_max_latency: z.optional(z.union([z.number().check(z.nonnegative()), percentileCutoffsSchema])),
  // USD per million tokens (per request for `request`); a hard filter, so numbers only.
  max_price: z.optional(
    z.strictObject({
      prompt: z.optional(z.number().check(z.nonnegative())),
      completion: z.optional(z.number().check(z.nonnegative())),
      request: z.optional(z.number().check(z.nonnegative())),
      image: z.optional(z.number().check(z.nonnegative())),
      audio: z.optional(z.number().check(z.nonnegative())),
    }),
  ),
});

const chatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(z.record(z.string(), z.unknown())), z.null()], {
    error: 'must be a string, an array of content parts, or null',
  }),
  name: z.optional(z.string()),
  tool_call_id: z.optional(z.string()),
  tool_calls: z.optional(z.array(z.record(z.string(), z.unknown()))),
});

const between = (min: number, max: number) =>
  z.number().check(z.gte(min, `must be between ${min} and ${max}`), z.lte(max, `must be between ${min} and ${max}`));
const positiveInteger = z.int('must be a positive integer').check(z.positive('must be a positive integer'));

export const chatRequestSchema = z.looseObject({
  id: z.optional(z.string()),
  model: z.optional(modelSlugSchema),
  models: z.optional(
    z
      .array(modelSlugSchema)
      .check(
        z.minLength(1, 'must name at least one model when present'),
        z.maxLength(MAX_FALLBACK_MODELS, `at most ${MAX_FALLBACK_MODELS} entries (OpenRouter's limit)`),
      ),
  ),
  messages: z.array(chatMessageSchema).check(z.minLength(1, 'must hold at least one message')),
  stream: z.optional(z.boolean()),
  max_tokens: z.optional(positiveInteger),
  max_completion_tokens: z.optional(positiveInteger),
  temperature: z.optional(between(0, 2)),
  top_p: z.optional(between(0, 1)),
  top_k: z.optional(z.int('must be a non-negative integer').check(z.nonnegative('must be a non-negative integer'))),
  min_p: z.optional(between(0, 1)),
  top_a: z.optional(between(0, 1)),
  repetition_penalty: z.optional(
    z.number().check(z.gt(0, 'must be greater than 0 and at most 2'), z.lte(2, 'must be greater than 0 and at most 2')),
  ),
  frequency_penalty: z.optional(between(-2, 2)),
  presence_penalty: z.optional(between(-2, 2)),
  seed: z.optional(z.int('must be an integer')),
  stop: z.optional(z.union([z.string(), z.array(z.string())])),
  tools: z.optional(z.array(z.record(z.string(), z.unknown()))),
  tool_choice: z.optional(z.unknown()),
  response_format: z.optional(z.record(z.string(), z.unknown())),
  provider: z.optional(providerPreferencesSchema),
  user: z.optional(z.string()),
  session_id: z.optional(z.string()),
  reasoning: z.optional(z.record(z.string(), z.unknown())),
  plugins: z.optional(z.array(z.record(z.string(), z.unknown()))),
  transforms: z.optional(z.array(z.string())),
});

const isCertainlyValidChatRequest = requestFastPath(Object.keys(chatRequestSchema.def.shape), MAX_FALLBACK_MODELS);

/**
 * Checks a request and returns it unchanged (same object), typed. Throws a `ValidationError`
 * whose message names every failing field, e.g. `Invalid request: models: at most 3 entries
 * (OpenRouter's limit)`. Call it once where requests enter; the transport trusts its input.
 */
export function validateChatRequest(request: unknown): ChatRequest {
  if (isCertainlyValidChatRequest(request)) return request as ChatRequest;
  const result = safeParseEnglish(chatRequestSchema, request);
  if (!result.success) throw new ValidationError(formatZodError(result.error, 'request'), result.error.issues);
  return request as ChatRequest;
}
