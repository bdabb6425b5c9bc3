import type { Observable } from 'rxjs';

/**
 * Shared shapes of the library. This file is part of the core: it imports nothing from `node:`
 * and nothing from the `openai` SDK, so that the pool and the operators run in a browser bundle
 * and under marble tests with a fake transport.
 */

/** A chat message in the OpenAI wire format. Extra fields pass through untouched. */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string | ReadonlyArray<Record<string, unknown>> | null;
  name?: string;
  tool_call_id?: string;
  tool_calls?: ReadonlyArray<Record<string, unknown>>;
  [extra: string]: unknown;
}

/** OpenRouter's `provider` routing preferences (guides/routing/provider-selection). */
export interface ProviderPreferences {
  order?: string[];
  allow_fallbacks?: boolean;
  require_parameters?: boolean;
  data_collection?: 'allow' | 'deny';
  zdr?: boolean;
  enforce_distillable_text?: boolean;
  only?: string[];
  ignore?: string[];
  quantizations?: string[];
  sort?:
    'price' | 'throughput' | 'latency' | 'exacto' | { by: 'price' | 'throughput' | 'latency' | 'exacto'; partition?: 'model' | 'none' };
  preferred_min_throughput?: number | Record<string, number>;
  preferred_max_latency?: number | Record<string, number>;
  max_price?: { prompt?: number; completion?: number; request?: number; image?: number; audio?: number };
}

/**
 * One chat-completion request: the OpenAI body plus OpenRouter's extras. `id` is the caller's
 * correlation id, echoed on every event; it is never sent upstream.
 */
export interface ChatRequest {
  id?: string;
  model?: string;
  /** OpenRouter's server-side fallback list (at most 3 entries, as OpenRouter enforces). */
  models?: string[];
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  top_a?: number;
  repetition_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  seed?: number;
  stop?: string | string[];
  tools?: ReadonlyArray<Record<string, unknown>>;
  tool_choice?: unknown;
  response_format?: Record<string, unknown>;
  provider?: ProviderPreferences;
  user?: string;
  session_id?: string;
  reasoning?: Record<string, unknown>;
  plugins?: ReadonlyArray<Record<string, unknown>>;
  transforms?: string[];
  [extra: string]: unknown;
}

/** Token usage as OpenRouter bills it; `cost` is in credits (1 credit = 1 USD). */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  cost?: number;
  cachedTokens?: number;
  reasoningTokens?: number;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'error' | (string & {});

/** A non-streaming completion, reduced to what callers use; `raw` keeps the full body. */
export interface Completion {
  id: string;
  model: string;
  provider?: string;
  content: string;
  reasoning?: string;
  toolCalls?: ReadonlyArray<Record<string, unknown>>;
  finishReason: FinishReason;
  usage?: Usage;
  raw: unknown;
}

/** What a transport emits for one attempt. */
export type TransportEvent =
  | {
      type: 'chunk';
      /** Text added by this chunk; `''` for role-only, reasoning-only or tool-call chunks. */
      delta: string;
      reasoning?: string;
      toolCalls?: ReadonlyArray<Record<string, unknown>>;
      model: string;
      provider?: string;
    }
  | {
      type: 'end';
      id: string;
      model: string;
      provider?: string;
      finishReason: FinishReason;
      usage?: Usage;
    }
  | { type: 'completion'; completion: Completion };

/** The secret and its public names, handed only to the transport. */
export interface KeyCredential {
  readonly label: string;
  readonly fingerprint: string;
  readonly key: string;
}

export interface TransportOptions {
  /** Aborts the HTTP request; unsubscribing aborts it too. */
  signal?: AbortSignal;
}

/**
 * The boundary between the core and the network. A transport sends one attempt and reports it as
 * events, failing with an `OpenRouterError`. Unsubscribing must abort the request at once.
 */
export type Transport = (key: KeyCredential, request: ChatRequest, options?: TransportOptions) => Observable<TransportEvent>;
