/**
 * The contract of the fake OpenRouter server shipped as `openrouter-rx/testing`. It speaks
 * OpenRouter's real wire format (error bodies, SSE with keep-alive comments, in-band errors,
 * rate-limit headers) on 127.0.0.1, so the library and its users' apps can be tested with the real
 * `openai` SDK and no network.
 */

/**
 * A sliding-window request quota. Only admitted requests enter the window (a 429 does not), and
 * only while a quota is set: requests admitted before `setKey`/`setAccount` adds one are not counted.
 */
export interface FakeQuota {
  /** Requests admitted per window; the 429 reports it as `X-RateLimit-Limit`. */
  requests: number;
  /** Length of the sliding window. `X-RateLimit-Reset` is when the oldest admission leaves it. */
  windowMs: number;
  /**
   * The bucket named in the 429 message `Rate limit exceeded: <bucket>`; defaults to
   * `requests-per-key` for a key quota and `free-models-per-min` for an account quota.
   */
  bucket?: string;
  /** Count and limit only requests for `:free` models (as OpenRouter's free-model buckets do). Default false: every request. */
  freeModelsOnly?: boolean;
}

/**
 * A request quota per UTC day, like OpenRouter's `free-models-per-day`: the count starts again at
 * 00:00 UTC, which the 429 reports as `X-RateLimit-Reset`. Only admitted requests count, and only
 * while the quota is set.
 */
export interface FakeDailyQuota {
  /** Requests admitted per UTC day; the 429 reports it as `X-RateLimit-Limit`. */
  requests: number;
  /**
   * The bucket named in the 429 message; default `free-models-per-day` (whose message goes on, as
   * OpenRouter's does, with `. Add 10 credits to unlock 1000 free model requests per day`).
   */
  bucket?: string;
  /** Count and limit only requests for `:free` models. Default false: every request. */
  freeModelsOnly?: boolean;
}

/** `free_model_daily_requests` as `GET /api/v1/key` reports it: the account's free-model quota for the UTC day. */
export interface FakeFreeModelDailyRequests {
  used: number;
  limit: number;
  /** Default `max(0, limit - used)`. */
  remaining?: number;
}

/** One API key the fake server accepts. */
export interface FakeKeyConfig {
  /** The key text clients send as `Authorization: Bearer <key>`. */
  key: string;
  /** Shown in `GET /api/v1/key` and in counters; defaults to `key-<n>`. */
  label?: string;
  /** Keys on one account share its credit state (402), its quotas, its in-flight budget and its user id. */
  account?: string;
  /** Requests admitted per sliding window; more are answered 429 with OpenRouter's headers. */
  quota?: FakeQuota;
  /** Answer 401 `User not found.` */
  revoked?: boolean;
  /** Answer 403 `Key limit exceeded (total limit)`. */
  keyLimitExceeded?: boolean;
  /** Credit limit and usage reported by `GET /api/v1/key` (USD). */
  limit?: number | null;
  /** The period after which `usage` toward `limit` resets, as `GET /api/v1/key` reports it. */
  limitReset?: 'daily' | 'weekly' | 'monthly' | null;
  /** Credits used, as `GET /api/v1/key` reports them (USD). Default 0. */
  usage?: number;
  /** `is_free_tier` as `GET /api/v1/key` reports it. Default false. */
  isFreeTier?: boolean;
  /**
   * `creator_user_id` as `GET /api/v1/key` reports it; default the account's user id
   * (`user_fake_<account id>`, the `user_id` of its error bodies), so keys of one account share it.
   */
  creatorUserId?: string | null;
  /**
   * `free_model_daily_requests` as `GET /api/v1/key` reports it; overrides the account's. `null`
   * leaves the field out even when the account has one.
   */
  freeModelDailyRequests?: FakeFreeModelDailyRequests | null;
}

/** An account the fake server knows; a key without an `account` gets one of its own. */
export interface FakeAccountConfig {
  /** What keys name in their `account`. */
  id: string;
  /** Answer 402 for every key of this account. */
  outOfCredits?: boolean;
  /** Requests admitted per sliding window across every key of the account. */
  quota?: FakeQuota;
  /** Requests admitted per UTC day across every key of the account (`free-models-per-day`). */
  dailyQuota?: FakeDailyQuota;
  /**
   * `free_model_daily_requests` that `GET /api/v1/key` reports for the account's keys. Without it,
   * a `dailyQuota` is reported (its count today and its limit); without either, the field is absent.
   */
  freeModelDailyRequests?: FakeFreeModelDailyRequests;
  /**
   * OpenRouter's in-flight spending budget, as a number of requests: while `concurrent` requests of
   * the account are in flight (admitted, response not yet ended or aborted), another is answered
   * 402 `in_flight_budget_exhausted` with a `Retry-After` header.
   */
  inFlightBudget?: { concurrent: number; /** Default 2. */ retryAfterSeconds?: number };
  /**
   * The most `max_tokens` one request may ask for: a request asking for more is answered 402
   * `weight_exceeds_budget` (it can never fit; lowering `max_tokens` is the fix). Requests without
   * `max_tokens` pass.
   */
  maxTokensBudget?: number;
}

/** A recorded HTTP response, replayed byte for byte (the `response` of a fixture file). */
export interface FakeRecordedResponse {
  /** HTTP status. */
  status: number;
  /** Response headers, by name. */
  headers: Record<string, string>;
  /** The raw body; for SSE the exact stream, keep-alive comments and blank lines included. */
  body: string;
}

/**
 * A fault injected into a model's responses. `times` limits how many requests it hits (default:
 * every request); a fault with `times` left to spend takes precedence over later ones.
 * `context-length` and `reject-prefill` only hit requests that meet their condition; a request that
 * does not is answered by the next fault in line (or normally) and spends none of their `times`.
 * The streaming faults also act on non-streaming requests: `slow-first-token` and `stall` delay the
 * answer, `cut` sends half the body then drops the socket, `malformed` answers 200 with a body that
 * is not JSON, `missing-done` never ends the body, `in-band-error` answers 200 with an `{error}` body.
 * `afterChunks` counts content chunks after the opening role chunk; past `chunkCount` it acts just
 * before the `stop` chunk.
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
  | {
      type: 'missing-done';
      /** After the usage chunk: `hang` keeps the connection open and silent (default), `close` ends it cleanly. */
      ending?: 'hang' | 'close';
    }
  | {
      type: 'in-band-error';
      afterChunks: number;
      code?: number | string;
      message?: string;
      /**
       * Also put a `usage` block in the error event (the prompt plus the completion tokens sent so
       * far), as providers that bill a failed generation do; the non-streaming `{error}` body gets
       * it too. Default false: no usage, as in the documented error event.
       */
      usage?: boolean;
    }
  | { type: 'context-length'; maxPromptTokens: number }
  | { type: 'content-policy'; reasons?: string[] }
  | { type: 'reject-prefill' }
  /** A fixture name resolved against `FakeServerOptions.fixturesDir`, or the recording itself. */
  | { type: 'replay'; fixture: string | FakeRecordedResponse }
);

/**
 * How a model answers when no fault hits. A non-streaming answer is sent whole once the stream would
 * have ended: after `latencyMs + firstTokenMs + chunkCount * chunkGapMs`.
 */
export interface FakeModelConfig {
  /** Delay before the response headers (ms); fault answers wait it too, platform errors do not. */
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
  /** Faults to inject, tried in order. */
  faults?: FakeFault[];
  /**
   * What the model's providers can serve at once, across every key and account. While `concurrent`
   * requests for the model are in flight (admitted, response not yet ended or aborted), another is
   * answered with OpenRouter's upstream 429 (`Provider returned error`, `metadata.provider_name`
   * `providerName` or else `provider`, no `X-RateLimit-*`, no `Retry-After`) after `latencyMs`; it
   * takes no slot and spends no fault. A model not in `models` gets `defaultModel`'s capacity, for
   * its own requests.
   */
  capacity?: { concurrent: number; providerName?: string };
}

/** Options of `startFakeOpenRouter`. */
export interface FakeServerOptions {
  /** The keys the server accepts; any other is answered 401. */
  keys: FakeKeyConfig[];
  /** Accounts with credit state or a quota; keys name them in `account`. */
  accounts?: FakeAccountConfig[];
  /** Per-model behaviour; a model not listed answers with `defaultModel`. */
  models?: Record<string, FakeModelConfig>;
  /** How models not in `models` answer. */
  defaultModel?: FakeModelConfig;
  /** The answer text for a request; default: deterministic text derived from the last user message. */
  respond?: (request: { model: string; messages: ReadonlyArray<{ role: string; content: unknown }> }) => string;
  /** Port to listen on; default 0 (a free port). Host is always 127.0.0.1. */
  port?: number;
  /** Directory of `<name>.http.json` fixtures that `replay` faults name. */
  fixturesDir?: string;
  /** Answer 404 on `GET /api/v1/key`, like older deployments, so a client falls back to `/auth/key`. */
  legacyKeyEndpointOnly?: boolean;
  /** Gap between `: OPENROUTER PROCESSING` comments while a stream waits for its first token; default 100. */
  keepAliveIntervalMs?: number;
}

/** One chat request the fake server received. */
export interface FakeRequestRecord {
  /** Label of the key it carried; `undefined` for a missing, unknown or revoked key. */
  keyLabel: string | undefined;
  /** The `model` it asked for. */
  model: string;
  /** Whether it asked for a stream. */
  stream: boolean;
  /** The status sent; 0 while no status line has gone out (and for good after `reset` or `silent`). */
  status: number;
  /** `Date.now()` when the request arrived. */
  at: number;
  /** The fault that hit this request. */
  fault?: FakeFault['type'];
  /** True when the client closed the connection before the response was complete. */
  clientAborted?: boolean;
}

/** Which requests `countRequests` counts: those matching every field given. */
export interface FakeRequestFilter {
  /** Sent with the key of this label. */
  keyLabel?: string;
  /** For this model. */
  model?: string;
  /** Answered with this status. */
  status?: number;
}

/** A connection the client closed before the server finished its response. */
export interface FakeAbortEvent {
  /** `Date.now()` when the server saw the connection close. */
  at: number;
  /** Request path, e.g. `/api/v1/chat/completions`. */
  path: string;
  /** The chat request it belonged to, if it was one. */
  record: FakeRequestRecord | undefined;
}

/** Changes to a key for `setKey`: any field but `key`. */
export type FakeKeyPatch = Partial<Omit<FakeKeyConfig, 'key'>>;
/** Changes to an account for `setAccount`: any field but `id`. */
export type FakeAccountPatch = Partial<Omit<FakeAccountConfig, 'id'>>;

/** A running fake OpenRouter server. */
export interface FakeOpenRouter {
  /** `http://127.0.0.1:PORT/api/v1`, the `baseURL` for the openai SDK. */
  readonly baseURL: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Every chat request since start (or the last `reset()`), in arrival order. */
  readonly requests: readonly FakeRequestRecord[];
  /** Connections the client closed before the server finished the response. */
  readonly abortedConnections: number;
  /** Client connections open right now. */
  readonly openConnections: number;
  /** Counts the chat requests in `requests` that match `filter` (all of them without one). */
  countRequests(filter?: FakeRequestFilter): number;
  /** Replaces the faults of a model (with fresh `times`). */
  setFaults(model: string, faults: readonly FakeFault[]): void;
  /** Appends a fault to a model's faults. */
  addFault(model: string, fault: FakeFault): void;
  /** Removes the faults of one model, or of every model (and of `defaultModel`) when none is named. */
  clearFaults(model?: string): void;
  /** Changes a key mid-test (revoke it, exhaust its limit, move it); an unknown key is added. */
  setKey(key: string, patch: FakeKeyPatch): void;
  /** Changes an account mid-test (e.g. restore credits); an unknown account is added. */
  setAccount(id: string, patch: FakeAccountPatch): void;
  /** Clears `requests` and `abortedConnections`; keys, accounts, quotas and faults stay. */
  reset(): void;
  /** Calls `listener` on every client abort; returns the unsubscribe function. */
  onAbort(listener: (event: FakeAbortEvent) => void): () => void;
  /** Resolves on the next client abort; rejects after `timeoutMs` (default 1000) or on `close()`. */
  waitForAbort(timeoutMs?: number): Promise<FakeAbortEvent>;
  /** Destroys every open connection (silent and stalled ones too), clears every timer, stops listening. */
  close(): Promise<void>;
}
