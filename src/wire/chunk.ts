import { MalformedResponseError, NetworkError, OpenRouterError, StreamError, UpstreamError } from '../core/errors.js';
import type { Completion, FinishReason, Usage } from '../core/types.js';
import { classifyErrorResponse, statusOfErrorPayload } from './classify.js';
import { parseErrorBody } from './error-body.js';
import type { HeaderSource } from './headers.js';
import { countField, isRecord, nonNegativeField, parseJsonBody, recordField, stringField, type JsonRecord } from './values.js';

/**
 * Validation of 200 answers: one parsed SSE chunk, or a whole non-streaming body. A 200 is not a
 * success until its content says so (openrouter-wire.md §6): both can carry an error in-band.
 */

/** What the validators need to know about the attempt, for error fields and wait hints. */
export interface WireContext {
  nowMs: number;
  /** The model requested, used when the body does not name the one that answered. */
  model?: string;
  keyLabel?: string;
  /** Response headers, for wait hints on in-band errors. */
  headers?: HeaderSource;
}

/** A chunk that carries content, a finish, usage, or only metadata. */
export interface StreamChunkContent {
  kind: 'content';
  id?: string;
  model?: string;
  provider?: string;
  /** `false` for a usage-only chunk (`choices: []` or no `choices`). */
  hasChoices: boolean;
  /** Text added by this chunk; `''` for role-only, reasoning-only or tool-call chunks. */
  delta: string;
  reasoning?: string;
  toolCalls?: ReadonlyArray<Record<string, unknown>>;
  finishReason?: FinishReason;
  nativeFinishReason?: string;
  usage?: Usage;
}

export type StreamChunkResult = StreamChunkContent | { kind: 'error'; error: OpenRouterError };

export type CompletionResult = { kind: 'completion'; completion: Completion } | { kind: 'error'; error: OpenRouterError };

/** Reads one parsed SSE `data:` object. Never throws. */
export function parseStreamChunk(chunk: unknown, context: WireContext): StreamChunkResult {
  if (!isRecord(chunk)) return { kind: 'error', error: malformed('stream chunk is not a JSON object', context) };
  // Errors name the model that answered when the chunk says so.
  const answeredBy = stringField(chunk['model']);
  if (answeredBy !== undefined && answeredBy !== context.model) context = Object.assign({}, context, { model: answeredBy });

  // An error event may carry the usage OpenRouter billed for the attempt (§6): keep it.
  const billed = parseUsage(chunk['usage']);
  const withUsage = <E extends OpenRouterError>(error: E): E => {
    if (billed !== undefined) error.usage = billed;
    return error;
  };
  if (chunk['error'] !== undefined && chunk['error'] !== null) {
    return { kind: 'error', error: withUsage(streamErrorFromPayload(chunk['error'], context)) };
  }
  const choices = chunk['choices'];
  if (choices === undefined && isOpenAiStyleError(chunk)) {
    return { kind: 'error', error: withUsage(streamErrorFromPayload(chunk, context)) };
  }
  if (choices !== undefined && !Array.isArray(choices)) {
    return { kind: 'error', error: malformed('stream chunk has a `choices` that is not an array', context) };
  }
  const usage = parseUsage(chunk['usage']);
  if (choices === undefined && usage === undefined) {
    return { kind: 'error', error: malformed('stream chunk has neither `choices` nor `usage`', context) };
  }

  const content: StreamChunkContent = { kind: 'content', hasChoices: false, delta: '' };
  assignDefined(content, {
    id: stringField(chunk['id']),
    model: stringField(chunk['model']),
    provider: stringField(chunk['provider']),
    usage,
  });
  const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
  if (choice === undefined) return content;
  if (!isRecord(choice)) return { kind: 'error', error: malformed('stream chunk choice is not an object', context) };

  const finishReason = stringField(choice['finish_reason']);
  const nativeFinishReason = stringField(choice['native_finish_reason']);
  if (finishReason === 'error') {
    return { kind: 'error', error: withUsage(streamErrorFromPayload(choice['error'] ?? null, context)) };
  }
  if (nativeFinishReason === 'network_error') {
    return {
      kind: 'error',
      error: new StreamError({
        message: 'stream failed between OpenRouter and the provider (native_finish_reason "network_error")',
        scope: 'model',
        retryable: true,
        model: content.model ?? context.model,
        providerName: content.provider,
        keyLabel: context.keyLabel,
      }),
    };
  }

  const rawDelta = choice['delta'];
  // Absent or null is a chunk without content; anything else but an object is not a delta.
  if (rawDelta !== undefined && rawDelta !== null && !isRecord(rawDelta)) {
    return { kind: 'error', error: malformed('stream chunk `choices[0].delta` is not an object', context) };
  }
  const delta = recordField(rawDelta);
  const toolCalls = delta?.['tool_calls'];
  if (toolCalls !== undefined && toolCalls !== null && !Array.isArray(toolCalls)) {
    return { kind: 'error', error: malformed('stream chunk `choices[0].delta.tool_calls` is not an array', context) };
  }
  const reasoning = delta?.['reasoning'];
  if (reasoning !== undefined && reasoning !== null && typeof reasoning !== 'string') {
    return { kind: 'error', error: malformed('stream chunk `choices[0].delta.reasoning` is not text', context) };
  }
  const text = textOf(delta?.['content']);
  if (text === undefined) return { kind: 'error', error: malformed('stream chunk `choices[0].delta.content` is not text', context) };
  content.hasChoices = true;
  content.delta = text;
  assignDefined(content, {
    reasoning: stringField(reasoning),
    toolCalls: recordsOf(toolCalls),
    finishReason,
    nativeFinishReason,
  });
  return content;
}

/**
 * A `StreamError` for an in-band error payload: the `error` of a chunk, the OpenAI-style error
 * event, `choices[0].error`, or `null` for a bare `finish_reason: "error"`. Scope and retryable come
 * from classifying its code as if it were the HTTP status; that classified error (with the precise
 * kind, e.g. `context_length`) is the `cause`.
 */
export function streamErrorFromPayload(payload: unknown, context: WireContext): StreamError {
  const classified = classifyInBand(payload, context);
  return new StreamError({
    message: `stream error: ${classified.message}`,
    scope: classified.scope,
    retryable: classified.retryable,
    status: classified.status,
    code: classified.code,
    errorType: classified.errorType,
    retryAfterMs: classified.retryAfterMs,
    providerName: classified.providerName,
    metadata: classified.metadata,
    keyLabel: context.keyLabel,
    model: context.model,
    cause: classified,
  });
}

/**
 * What an in-band error event stands for when nothing of the answer came before it: the error its
 * payload classifies as (`cause`, with the billed usage), as a whole answer's body or the same
 * HTTP status would be, so that the pool treats it alike (a `context_length` moves to the next
 * model, a 401 disables the key). A `StreamError` is for an answer cut after some of it was
 * delivered. Other errors are kept as they are.
 */
export function inBandErrorBeforeContent(error: OpenRouterError): OpenRouterError {
  const classified = error.cause;
  if (!(error instanceof StreamError) || !(classified instanceof OpenRouterError) || classified instanceof StreamError) return error;
  if (error.usage !== undefined) classified.usage = error.usage;
  return classified;
}

/** A failed answer's error, with what the answer billed (the attempt's billed usage counts it). */
function billed(error: OpenRouterError, body: JsonRecord): CompletionResult {
  const usage = parseUsage(body['usage']);
  if (usage !== undefined) error.usage = usage;
  return { kind: 'error', error };
}

/** Reads a non-streaming 200 body (a JSON string or an object). Never throws. */
export function parseCompletionBody(body: unknown, context: WireContext): CompletionResult {
  const parsed = parseJsonBody(body);
  if (!isRecord(parsed)) return { kind: 'error', error: malformed('completion body is not a JSON object', context) };
  if (parsed['error'] !== undefined && parsed['error'] !== null) return billed(classifyInBand(parsed['error'], context), parsed);
  const choices = parsed['choices'];
  const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
  if (!isRecord(choice)) return { kind: 'error', error: malformed('completion body has no `choices[0]`', context) };

  const finishReason = stringField(choice['finish_reason']);
  if (finishReason === 'error') return billed(classifyInBand(choice['error'] ?? null, context), parsed);
  const model = stringField(parsed['model']) ?? context.model ?? '';
  const provider = stringField(parsed['provider']);
  if (stringField(choice['native_finish_reason']) === 'network_error') {
    return billed(
      new NetworkError({
        message: 'completion failed between OpenRouter and the provider (native_finish_reason "network_error")',
        scope: 'model',
        retryable: true,
        model,
        providerName: provider,
        keyLabel: context.keyLabel,
      }),
      parsed,
    );
  }
  const message = recordField(choice['message']);
  if (message === undefined) return { kind: 'error', error: malformed('completion body has no `choices[0].message`', context) };

  const text = textOf(message['content']);
  if (text === undefined) return { kind: 'error', error: malformed('completion body `choices[0].message.content` is not text', context) };
  const completion: Completion = {
    id: stringField(parsed['id']) ?? '',
    model,
    content: text,
    // A missing finish_reason is kept visible rather than reported as a clean "stop".
    finishReason: finishReason ?? 'unknown',
    raw: parsed,
  };
  assignDefined(completion, {
    provider,
    reasoning: stringField(message['reasoning']),
    toolCalls: recordsOf(message['tool_calls']),
    usage: parseUsage(parsed['usage']),
  });
  return { kind: 'completion', completion };
}

/**
 * OpenRouter's `usage` block in camelCase; `undefined` for `null`, anything without token counts,
 * and a block whose token counts are not all non-negative safe integers: billed tokens correct the
 * token quota windows, which a made-up count would open (a negative one) or close for good (an
 * overflowing sum), so the estimate stands instead. A bad detail or cost is left out on its own.
 */
export function parseUsage(raw: unknown): Usage | undefined {
  if (!isRecord(raw)) return undefined;
  const promptTokens = countField(raw['prompt_tokens']);
  const completionTokens = countField(raw['completion_tokens']);
  const totalTokens = countField(raw['total_tokens']);
  if (promptTokens === undefined && completionTokens === undefined) return undefined;
  // A count given (not null) that is no count makes the whole block unknown.
  if (
    (promptTokens === undefined && raw['prompt_tokens'] != null) ||
    (completionTokens === undefined && raw['completion_tokens'] != null) ||
    (totalTokens === undefined && raw['total_tokens'] != null)
  )
    return undefined;
  const usage: Usage = {
    promptTokens: promptTokens ?? 0,
    completionTokens: completionTokens ?? 0,
    totalTokens: totalTokens ?? (promptTokens ?? 0) + (completionTokens ?? 0),
  };
  assignDefined(usage, {
    cost: nonNegativeField(raw['cost']),
    cachedTokens: countField(recordField(raw['prompt_tokens_details'])?.['cached_tokens']),
    reasoningTokens: countField(recordField(raw['completion_tokens_details'])?.['reasoning_tokens']),
  });
  return usage;
}

/** What a stream has established so far; fold every content chunk in with `advanceStream`. */
export interface StreamProgress {
  id?: string;
  model?: string;
  provider?: string;
  /** The first `finish_reason` seen; a later `null` never clears it. */
  finishReason?: FinishReason;
  /** The last non-null usage: it may come after the finish, on a chunk with non-empty choices. */
  usage?: Usage;
}

export function advanceStream(progress: StreamProgress, content: StreamChunkContent): StreamProgress {
  return {
    id: progress.id ?? content.id,
    model: content.model ?? progress.model,
    provider: content.provider ?? progress.provider,
    finishReason: progress.finishReason ?? content.finishReason,
    usage: content.usage ?? progress.usage,
  };
}

function classifyInBand(payload: unknown, context: WireContext): OpenRouterError {
  const body = { error: payload };
  const parsed = parseErrorBody(body);
  const status = parsed === undefined ? undefined : statusOfErrorPayload(parsed);
  if (status !== undefined) {
    return classifyErrorResponse({
      status,
      headers: context.headers,
      body,
      nowMs: context.nowMs,
      model: context.model,
      keyLabel: context.keyLabel,
      origin: 'in-band',
    });
  }
  // No usable code: a failure of the model's provider as far as anyone can tell.
  return new UpstreamError({
    message: parsed?.message ?? 'finish_reason "error" without an error object',
    scope: 'model',
    retryable: true,
    code: parsed?.code,
    errorType: parsed?.errorType,
    providerName: parsed?.providerName,
    metadata: parsed?.metadata,
    keyLabel: context.keyLabel,
    model: context.model,
  });
}

/** OpenAI-style error event without wrapper or choices: `{message, type, param, code}`. */
function isOpenAiStyleError(chunk: JsonRecord): boolean {
  return typeof chunk['message'] === 'string' && ('type' in chunk || 'code' in chunk) && !('object' in chunk);
}

/**
 * The text of a message's or delta's `content` as the wire may carry it: a string; none (`null`
 * or absent, as beside tool calls); or OpenAI-style content parts, whose `text` parts are joined.
 * Undefined for anything else: a malformed answer, never an empty success.
 */
function textOf(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (content === undefined || content === null) return '';
  if (!Array.isArray(content) || !content.every(isRecord)) return undefined;
  let text = '';
  for (const part of content) if (part['type'] === 'text' && typeof part['text'] === 'string') text += part['text'];
  return text;
}

function malformed(message: string, context: WireContext): MalformedResponseError {
  return new MalformedResponseError({ message, scope: 'model', retryable: true, model: context.model, keyLabel: context.keyLabel });
}

function recordsOf(value: unknown): ReadonlyArray<Record<string, unknown>> | undefined {
  if (!Array.isArray(value)) return undefined;
  const records = value.filter(isRecord);
  return records.length === 0 ? undefined : records;
}

/** Copies only the fields that have a value, so results compare cleanly and omit absent fields. */
function assignDefined<T extends object>(target: T, fields: Partial<T>): void {
  // for-in, not Object.entries: this runs for every streamed chunk, and allocates nothing.
  for (const key in fields) {
    const value = fields[key];
    if (value !== undefined) (target as Record<string, unknown>)[key] = value;
  }
}
