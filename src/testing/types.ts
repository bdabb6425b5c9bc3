/**
 * The contract of the fake OpenRouter server shipped as `openrouter-rx/testing`. It speaks
 * OpenRouter's real wire format (error bodies, SSE with keep-alive comments, in-band errors,
 * rate-limit headers) on 127.0.0.1, so the library and its users' apps can be tested with the real
 * `openai` SDK and no network.
 */

/** One API key the fake server accepts. */
export interface FakeKeyConfig {
  key: string;
  /** Shown in `GET /api/v1/key` and in counters; defaults to `key-<n>`. */
  label?: string;
  /** Keys on one account share its credit state (402) and its account quota. */
  account?: string;
  /** Requests admitted per sliding window; more are answered 429 with OpenRouter's headers. */
  quota?: { requests: number; windowMs: number };
  /** Answer 401 `User not found.` */
  revoked?: boolean;
  /** Answer 403 `Key limit exceeded (total limit)`. */
  keyLimitExceeded?: boolean;
  /** Credit limit and usage reported by `GET /api/v1/key` (USD). */
  limit?: number | null;
  usage?: number;
  isFreeTier?: boolean;
}

export interface FakeAccountConfig {
  id: string;
  /** Answer 402 for every key of this account. */
  outOfCredits?: boolean;
  /** Requests admitted per sliding window across every key of the account. */
  quota?: { requests: number; windowMs: number };
}

/**
 * A fault injected into a model's responses. `times` limits how many requests it hits (default:
 * every request); a fault with `times` left to spend takes precedence over later ones.
 */
export type FakeFault = { times?: number } & (
  | { type: 'status'; status: number; retryAfterSeconds?: number; message?: string }
  | { type: 'rate-limit'; retryAfterSeconds?: number; providerName?: string }
  | { type: 'reset' }
  | { type: 'silent' }
  | { type: 'slow-first-token'; delayMs: number }
  | { type: 'cut'; afterChunks: number }
  | { type: 'stall'; afterChunks: number; stallMs: number }
  | { type: 'malformed'; afterChunks: number }
  | { type: 'missing-done' }
  | { type: 'in-band-error'; afterChunks: number; code?: number | string; message?: string }
  | { type: 'context-length'; maxPromptTokens: number }
  | { type: 'content-policy'; reasons?: string[] }
  | { type: 'reject-prefill' }
  | { type: 'replay'; fixture: string }
);

/** How a model answers when no fault hits. */
export interface FakeModelConfig {
  /** Delay before the response headers (ms). */
  latencyMs?: number;
  /** Delay from the headers to the first content chunk of a stream (ms), filled with keep-alives. */
  firstTokenMs?: number;
  /** Content chunks per streamed answer. */
  chunkCount?: number;
  /** Delay between chunks (ms). */
  chunkGapMs?: number;
  /** Context window, reported in errors. */
  contextLength?: number;
  /** Provider named in responses. */
  provider?: string;
  faults?: FakeFault[];
}

export interface FakeServerOptions {
  keys: FakeKeyConfig[];
  accounts?: FakeAccountConfig[];
  /** Per-model behaviour; a model not listed answers with `defaultModel`. */
  models?: Record<string, FakeModelConfig>;
  defaultModel?: FakeModelConfig;
  /** The answer text for a request; default: deterministic text derived from the last user message. */
  respond?: (request: { model: string; messages: ReadonlyArray<{ role: string; content: unknown }> }) => string;
  /** Port to listen on; default 0 (a free port). Host is always 127.0.0.1. */
  port?: number;
}

export interface FakeRequestRecord {
  keyLabel: string | undefined;
  model: string;
  stream: boolean;
  status: number;
  /** `Date.now()` when the request arrived. */
  at: number;
}
