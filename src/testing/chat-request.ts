/**
 * Reads a chat-completions request body the way OpenRouter validates it: JSON object, messages
 * present, at most 3 `models`, and a `provider` object without unknown keys (the schema has
 * `additionalProperties: false`).
 */
import type { ChatMessageView } from './wire.js';

/** What the fake server needs from a request body. */
export interface ChatRequestView {
  model: string;
  stream: boolean;
  messages: ChatMessageView[];
  maxTokens: number | undefined;
}

export interface ParsedChatRequest {
  /** Best effort even when the body is invalid, so the request can still be recorded. */
  request: ChatRequestView;
  /** Why OpenRouter would answer 400, if it would. */
  problem: string | undefined;
}

/** The router OpenRouter falls back to when a request names no model. */
const ACCOUNT_DEFAULT_MODEL = 'openrouter/auto';
const MAX_FALLBACK_MODELS = 3;
const PROVIDER_FIELDS: readonly string[] = [
  'order',
  'allow_fallbacks',
  'require_parameters',
  'data_collection',
  'zdr',
  'enforce_distillable_text',
  'only',
  'ignore',
  'quantizations',
  'sort',
  'preferred_min_throughput',
  'preferred_max_latency',
  'max_price',
];

const EMPTY_REQUEST: ChatRequestView = { model: '', stream: false, messages: [], maxTokens: undefined };

export function parseChatRequest(rawBody: string): ParsedChatRequest {
  let body: unknown;
  try {
    body = JSON.parse(rawBody);
  } catch {
    return { request: EMPTY_REQUEST, problem: 'Invalid JSON in request body' };
  }
  if (!isRecord(body)) return { request: EMPTY_REQUEST, problem: 'Request body must be a JSON object' };
  return { request: readRequest(body), problem: findProblem(body) };
}

function readRequest(body: Record<string, unknown>): ChatRequestView {
  const models = Array.isArray(body.models) ? body.models : [];
  const firstFallback: unknown = models[0];
  const model = typeof body.model === 'string' ? body.model : typeof firstFallback === 'string' ? firstFallback : ACCOUNT_DEFAULT_MODEL;
  const maxTokens = body.max_tokens ?? body.max_completion_tokens;
  return {
    model,
    stream: body.stream === true,
    messages: Array.isArray(body.messages) ? body.messages.filter(isRecord).map(toMessageView) : [],
    maxTokens: typeof maxTokens === 'number' ? maxTokens : undefined,
  };
}

function toMessageView(message: Record<string, unknown>): ChatMessageView {
  return { role: typeof message.role === 'string' ? message.role : '', content: message.content };
}

function findProblem(body: Record<string, unknown>): string | undefined {
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    return 'Input required: specify "prompt" or "messages"';
  }
  if (Array.isArray(body.models) && body.models.length > MAX_FALLBACK_MODELS) {
    return "'models' array must have 3 items or fewer.";
  }
  return body.provider === undefined ? undefined : findProviderProblem(body.provider);
}

function findProviderProblem(provider: unknown): string | undefined {
  if (!isRecord(provider)) return 'provider: Expected object';
  const unknownKeys = Object.keys(provider).filter((key) => !PROVIDER_FIELDS.includes(key));
  if (unknownKeys.length === 0) return undefined;
  return `provider: Unrecognized key(s) in object: ${unknownKeys.map((key) => `'${key}'`).join(', ')}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
