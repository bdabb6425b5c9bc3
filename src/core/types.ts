import type { Observable } from 'rxjs';

/**
 * Shared shapes of the library. This file is part of the core: it imports nothing from `node:`
 * and nothing from the `openai` SDK, so that the pool and the operators run in a browser bundle
 * and under marble tests with a fake transport.
 */

/** A chat message in the OpenAI wire format. Extra fields pass through untouched. */
export interface ChatMessage {
  /** Who speaks: instructions (`system`, `developer`), the user, the model, or a tool's result. */
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  /** Text, an array of content parts (text, images, files...), or `null` (tool calls only). */
  content: string | ReadonlyArray<Record<string, unknown>> | null;
  /** Names the author, to tell participants of the same role apart. */
  name?: string;
  /** On a `tool` message: the id of the tool call it answers. */
  tool_call_id?: string;
  /** On an `assistant` message: the tool calls it made. */
  tool_calls?: ReadonlyArray<Record<string, unknown>>;
  /** Any other field, sent as given. */
  [extra: string]: unknown;
}

/** OpenRouter's `provider` routing preferences (guides/routing/provider-selection). */
export interface ProviderPreferences {
  /** Provider slugs to try first, in this order. */
  order?: string[];
  /** Whether backup providers may serve the request when the preferred ones are unavailable. */
  allow_fallbacks?: boolean;
  /** Only use providers that support every parameter of the request. */
  require_parameters?: boolean;
  /** `'deny'`: only use providers that do not collect user data. Default `'allow'`. */
  data_collection?: 'allow' | 'deny';
  /** Only use zero-data-retention endpoints. */
  zdr?: boolean;
  /** Only use models whose authors allow distilling their text output. */
  enforce_distillable_text?: boolean;
  /** Provider slugs allowed to serve the request; no others. */
  only?: string[];
  /** Provider slugs never to use. */
  ignore?: string[];
  /** Quantization levels to accept (`'fp8'`, `'int4'`, ...). */
  quantizations?: string[];
  /**
   * Ranks providers by this instead of load balancing them. In the object form, `partition:
   * 'none'` ranks the endpoints of all models together instead of per model (the default).
   */
  sort?:
    'price' | 'throughput' | 'latency' | 'exacto' | { by: 'price' | 'throughput' | 'latency' | 'exacto'; partition?: 'model' | 'none' };
  /**
   * Throughput (tokens/s) to prefer providers above: a number (for p50) or per-percentile
   * cutoffs (`p50` ... `p99`). Slower endpoints are deprioritised, not excluded.
   */
  preferred_min_throughput?: number | Record<string, number>;
  /**
   * Latency (seconds) to prefer providers below: a number (for p50) or per-percentile cutoffs
   * (`p50` ... `p99`). Slower endpoints are deprioritised, not excluded.
   */
  preferred_max_latency?: number | Record<string, number>;
  /** Highest price to accept, in USD per million tokens (per request for `request`); a hard filter. */
  max_price?: { prompt?: number; completion?: number; request?: number; image?: number; audio?: number };
}

/**
 * One chat-completion request: the OpenAI body plus OpenRouter's extras. `id` is the caller's
 * correlation id, echoed on every event; it is never sent upstream.
 */
export interface ChatRequest {
  /**
   * Caller's correlation id, echoed on every event; never sent upstream. `balance` gives a request
   * without one an id of its own (`req-<tag>-<n>`, the tag random per `balance` call).
   */
  id?: string;
  /** Model slug (`author/model`, optionally with a variant such as `:nitro`). */
  model?: string;
  /** OpenRouter's server-side fallback list (at most 3 entries, as OpenRouter enforces). */
  models?: string[];
  /** The conversation so far; at least one message. */
  messages: ChatMessage[];
  /** Stream the answer as server-sent events instead of one JSON body. */
  stream?: boolean;
  /** Most tokens to generate (a positive integer). */
  max_tokens?: number;
  /** OpenAI's newer name for `max_tokens`; the library's token estimate reads it first. */
  max_completion_tokens?: number;
  /** Sampling temperature, 0 to 2. */
  temperature?: number;
  /** Nucleus sampling: only the likeliest tokens whose probabilities add up to this, 0 to 1. */
  top_p?: number;
  /** Sample only among the `top_k` likeliest tokens; 0 turns it off. */
  top_k?: number;
  /** Drop tokens less likely than this fraction of the likeliest token's probability, 0 to 1. */
  min_p?: number;
  /** Like `min_p`, but against the square of the likeliest token's probability, 0 to 1. */
  top_a?: number;
  /** Penalises tokens already in the context: above 0, at most 2 (1 is neutral). */
  repetition_penalty?: number;
  /** Penalises tokens by how often they already appeared, -2 to 2. */
  frequency_penalty?: number;
  /** Penalises tokens that already appeared at all, -2 to 2. */
  presence_penalty?: number;
  /** Integer seed for repeatable sampling, where the provider supports it. */
  seed?: number;
  /** Sequences at which generation stops. */
  stop?: string | string[];
  /** Tool (function) definitions the model may call, in the OpenAI format. */
  tools?: ReadonlyArray<Record<string, unknown>>;
  /** Whether and which tool the model must call (`'none'`, `'auto'`, `'required'` or a named tool). */
  tool_choice?: unknown;
  /** Output format, e.g. `{ type: 'json_object' }` or a JSON schema. */
  response_format?: Record<string, unknown>;
  /** OpenRouter's provider routing preferences. */
  provider?: ProviderPreferences;
  /** Stable id of the end user, passed to OpenRouter (it helps detect abuse). */
  user?: string;
  /** Id that groups related requests (one conversation, one agent run); a natural `sticky` key. */
  session_id?: string;
  /** OpenRouter's reasoning settings (`effort`, `max_tokens`, `exclude`, ...). */
  reasoning?: Record<string, unknown>;
  /** OpenRouter plugins to run on the request, e.g. `{ id: 'web' }`. */
  plugins?: ReadonlyArray<Record<string, unknown>>;
  /** OpenRouter prompt transforms, e.g. `['middle-out']`. */
  transforms?: string[];
  /** Any other field, sent as given. */
  [extra: string]: unknown;
}

/** Token usage as OpenRouter bills it; `cost` is in credits (1 credit = 1 USD). */
export interface Usage {
  /** Tokens of the prompt (`prompt_tokens`). */
  promptTokens: number;
  /** Tokens generated (`completion_tokens`). */
  completionTokens: number;
  /** `total_tokens`, or prompt plus completion tokens when the body omits it. */
  totalTokens: number;
  /** What the call cost, in credits. */
  cost?: number;
  /** Prompt tokens read from the provider's cache (`prompt_tokens_details.cached_tokens`). */
  cachedTokens?: number;
  /** Tokens spent on reasoning (`completion_tokens_details.reasoning_tokens`). */
  reasoningTokens?: number;
}

/** Why generation stopped; other strings pass through as sent (`'unknown'` when none was sent). */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'error' | (string & {});

/** A non-streaming completion, reduced to what callers use; `raw` keeps the full body. */
export interface Completion {
  /** OpenRouter's generation id. */
  id: string;
  /** Model that answered, as the body names it (else the model requested). */
  model: string;
  /** Upstream provider that answered, when OpenRouter names it. */
  provider?: string;
  /** The answer text (`''` when there is none, e.g. tool calls only). */
  content: string;
  /** Reasoning text, when the model returned any. */
  reasoning?: string;
  /**
   * The tool calls the model made, as a whole answer's `message.tool_calls` gives them; for a
   * stream, assembled from its chunks' deltas (one per call, its arguments joined; see `assembleToolCalls`).
   */
  toolCalls?: ReadonlyArray<Record<string, unknown>>;
  /** Why generation stopped. */
  finishReason: FinishReason;
  /** Tokens and cost, when OpenRouter reported them. */
  usage?: Usage;
  /** The response body as received; `null` when assembled from a stream. */
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
      /**
       * On the chunk that carried the answer's `finish_reason`: its content has ended, and only its
       * usage or the stream's end may follow (an idle timeout no longer applies to the attempt).
       */
      finishReason?: FinishReason;
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
  /** Name the key goes by in health, events and errors. */
  readonly label: string;
  /** Short non-reversible hash of the key, to tell keys with the same label apart. */
  readonly fingerprint: string;
  /** The API key itself. */
  readonly key: string;
}

/** Per-attempt options a transport receives. */
export interface TransportOptions {
  /** Aborts the HTTP request; unsubscribing aborts it too. */
  signal?: AbortSignal;
  /**
   * Call once, as the request is handed to the network: the pool's quota windows count the
   * attempt from then rather than from its admission plus a margin for a delayed send.
   */
  onSent?: () => void;
}

/**
 * The boundary between the core and the network. A transport sends one attempt and reports it as
 * events, failing with an `OpenRouterError`. Unsubscribing must abort the request at once. What it
 * fails with is scrubbed of key text before the pool reports it; what it streams is passed on as
 * it is, so a transport that could echo the key in an answer scrubs it itself (the built-in ones do).
 */
export interface Transport {
  /** Sends one attempt of `request` with `key`; nothing goes out until it is subscribed. */
  (key: KeyCredential, request: ChatRequest, options?: TransportOptions): Observable<TransportEvent>;
  /**
   * Settles once the transport can send at once (the SDK transport loads the `openai` SDK first).
   * Until then the pool gives no request a key: an attempt that waited on the load would run its
   * timeouts and quota entries meanwhile, and a first-token timeout would blame the model for a
   * request never sent. A rejection ends the wait too; the attempts then fail as the transport says.
   */
  readonly ready?: PromiseLike<unknown>;
}
