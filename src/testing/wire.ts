/**
 * OpenRouter's wire shapes as the fake server writes them: SSE framing, completion bodies, stream
 * chunks, usage and the deterministic text and token estimates behind them. Pure functions, so an
 * answer depends only on the request (plus the generation id and timestamp).
 */

export const KEEP_ALIVE_EVENT = ': OPENROUTER PROCESSING\n\n';
export const DONE_EVENT = 'data: [DONE]\n\n';
/** A data line that is not JSON, as a broken proxy or provider may send one. */
export const MALFORMED_EVENT = 'data: {not json\n\n';
/** The non-streaming counterpart: a 200 body that does not parse. */
export const MALFORMED_BODY = '{not json';

/** Prices that make `usage.cost` non-zero and deterministic (USD per token). */
const PROMPT_USD_PER_TOKEN = 0.000001;
const COMPLETION_USD_PER_TOKEN = 0.000002;

export interface ChatMessageView {
  role: string;
  content: unknown;
}

export interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost: number;
  is_byok: boolean;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** What one answer is made of; shared by the non-streaming body and every chunk of a stream. */
export interface Generation {
  id: string;
  /** Epoch seconds. */
  created: number;
  model: string;
  provider: string;
  text: string;
  usage: FakeUsage;
}

export function sseEvent(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

/** The text of a message: a string, or the text parts of a multi-part content array. */
function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part: unknown) => (isTextPart(part) ? part.text : '')).join('');
}

function isTextPart(part: unknown): part is { text: string } {
  return typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string';
}

function lastUserText(messages: readonly ChatMessageView[]): string {
  const lastUser = messages.filter((message) => message.role === 'user').at(-1);
  return lastUser === undefined ? '' : messageText(lastUser.content);
}

export function defaultAnswer(model: string, messages: readonly ChatMessageView[]): string {
  return `Echo (${model}): ${lastUserText(messages)}`;
}

/** A rough, deterministic token count: one token per four characters. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export function estimatePromptTokens(messages: readonly ChatMessageView[]): number {
  return messages.reduce((total, message) => total + estimateTokens(messageText(message.content)), 0);
}

export function usageFor(promptTokens: number, completionTokens: number): FakeUsage {
  const cost = promptTokens * PROMPT_USD_PER_TOKEN + completionTokens * COMPLETION_USD_PER_TOKEN;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    // Rounded so float noise never shows up in assertions.
    cost: Math.round(cost * 1e10) / 1e10,
    is_byok: false,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
}

/**
 * Splits `text` into exactly `count` consecutive pieces of near-equal length (by code point), so a
 * fault placed `afterChunks` lands at the same spot whatever the text; short texts give empty pieces.
 */
export function splitIntoChunks(text: string, count: number): string[] {
  const characters = Array.from(text);
  const pieces = Math.max(1, Math.floor(count));
  return Array.from({ length: pieces }, (_, index) =>
    characters.slice(Math.floor((index * characters.length) / pieces), Math.floor(((index + 1) * characters.length) / pieces)).join(''),
  );
}

export function completionBody(generation: Generation): Record<string, unknown> {
  return {
    id: generation.id,
    provider: generation.provider,
    model: generation.model,
    object: 'chat.completion',
    created: generation.created,
    choices: [
      {
        logprobs: null,
        finish_reason: 'stop',
        native_finish_reason: 'stop',
        index: 0,
        message: { role: 'assistant', content: generation.text, refusal: null, reasoning: null },
      },
    ],
    usage: generation.usage,
  };
}

function streamChunk(generation: Generation, content: string, finishReason: string | null): Record<string, unknown> {
  return {
    id: generation.id,
    provider: generation.provider,
    model: generation.model,
    object: 'chat.completion.chunk',
    created: generation.created,
    choices: [
      {
        index: 0,
        delta: { role: 'assistant', content },
        finish_reason: finishReason,
        native_finish_reason: finishReason,
        logprobs: null,
      },
    ],
  };
}

export function contentChunk(generation: Generation, content: string): Record<string, unknown> {
  return streamChunk(generation, content, null);
}

export function finishChunk(generation: Generation): Record<string, unknown> {
  return streamChunk(generation, '', 'stop');
}

/** The usage event as observed after the `stop` event: non-empty `choices` with an empty delta. */
export function usageChunk(generation: Generation): Record<string, unknown> {
  return Object.assign({}, streamChunk(generation, '', null), { usage: generation.usage });
}

export interface InBandError {
  code: number | string;
  message: string;
  errorType: string;
  providerCode: string;
  /** Billed usage the error event carries, if any. */
  usage?: FakeUsage;
}

/** The documented mid-stream error event: HTTP status stays 200, `finish_reason` is `error`. */
export function inBandErrorChunk(generation: Generation, error: InBandError): Record<string, unknown> {
  return {
    id: generation.id,
    object: 'chat.completion.chunk',
    created: generation.created,
    model: generation.model,
    provider: generation.provider,
    error: {
      code: error.code,
      message: error.message,
      metadata: { error_type: error.errorType, provider_code: error.providerCode },
    },
    choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error', native_finish_reason: 'error' }],
    ...(error.usage === undefined ? {} : { usage: error.usage }),
  };
}
