export {
  OpenRouterError,
  AuthenticationError,
  KeyLimitError,
  InsufficientCreditsError,
  PermissionDeniedError,
  RateLimitError,
  BadRequestError,
  ContextLengthError,
  ContentPolicyError,
  NotFoundError,
  UpstreamError,
  NetworkError,
  AttemptTimeoutError,
  FirstTokenTimeoutError,
  IdleTimeoutError,
  TotalTimeoutError,
  StreamError,
  MalformedResponseError,
  NoKeyAvailableError,
  QueueTimeoutError,
  ModelUnavailableError,
  AbortedError,
  ConfigurationError,
  AttemptsExhaustedError,
  isOpenRouterError,
  toOpenRouterError,
} from './core/errors.js';
export type { ErrorScope, ErrorKind, OpenRouterErrorOptions, TimeoutPhase, AttemptRecord, RateLimitInfo } from './core/errors.js';
export type {
  ChatMessage,
  ChatRequest,
  ProviderPreferences,
  Usage,
  FinishReason,
  Completion,
  TransportEvent,
  KeyCredential,
  TransportOptions,
  Transport,
} from './core/types.js';
export { QueueFullError } from './core/errors.js';
export { ValidationError } from './core/validation.js';
export { validateChatRequest, MAX_FALLBACK_MODELS } from './core/request.js';
export { validateBalancedRequest } from './routing/balanced-request.js';
export { providerRouting, withVariant, withoutVariant, splitVariant, MODEL_VARIANTS } from './routing/provider.js';
export type { ModelVariant } from './routing/provider.js';
export { classifyHttpError, retryAfterMsFrom, MAX_RETRY_AFTER_MS, DEFAULT_MAX_EVENT_BYTES } from './wire/index.js';

// The pool
export { createKeyPool } from './create-key-pool.js';
export type { KeyPoolOptions } from './create-key-pool.js';
export { createPool } from './create-pool.js';
export type { KeyPool } from './create-pool.js';
export { POOL_PORT } from './pool/types.js';
export type { PoolCore, PoolPort, KeyLease, HeldLease, LeaseHolder, KeyHandle, AcquireOptions, AttemptOutcome } from './pool/types.js';
export type { KeyPoolInput, KeyInfoSnapshot, KeyInfoSource, LimitsConfig, ModelLimitsConfig } from './pool/config.js';
export { defaultBreakerPolicy } from './health/breaker.js';
export type { BreakerPolicy, BreakerState } from './health/breaker.js';
export type { LearnedQuota, QuotaSeed, QuotaSource } from './health/learned-quota.js';
export type {
  EntityHealth,
  KeyHealth,
  KeyState,
  ModelHealth,
  PoolHealth,
  OpenReason,
  LastError,
  QuotaRemaining,
  UsageTotals,
  Credit,
} from './health/records.js';
export type { PoolEvent } from './pool/events.js';
export type { PoolLogger, LogLevel } from './pool/event-log.js';
export { estimatePromptTokens } from './core/tokens.js';
export { assembleToolCalls } from './core/tool-calls.js';

// Strategies
export { roundRobin, weighted, leastInFlight, powerOfTwo, latency, sticky } from './pool/strategies.js';
export type {
  Strategy,
  StrategyFunction,
  StrategyLike,
  StrategyName,
  KeyCandidate,
  PickContext,
  StickyOptions,
} from './pool/strategies.js';

// Operators
export { withKeyRotation } from './operators/with-key-rotation.js';
export type { WithKeyRotationConfig } from './operators/with-key-rotation.js';
export { circuitBreaker } from './operators/circuit-breaker.js';
export type { CircuitBreakerConfig } from './operators/circuit-breaker.js';
export { retryOnRateLimit } from './operators/retry-on-rate-limit.js';
export type { RetryOnRateLimitConfig } from './operators/retry-on-rate-limit.js';
export { retryTransient } from './operators/retry-transient.js';
export type { RetryTransientConfig, RetryBudgetConfig } from './operators/retry-transient.js';
export type { MidStreamErrorMode } from './operators/retry-loop.js';
export { attemptTimeouts } from './operators/attempt-timeouts.js';
export type { AttemptTimeoutsConfig } from './operators/attempt-timeouts.js';
export { fallbackOnModelError } from './operators/fallback-on-model-error.js';
export type { FallbackOnModelErrorConfig } from './operators/fallback-on-model-error.js';
export { balance } from './operators/balance.js';
export type { BalanceOptions, BalanceEvent, ChunkEvent, CompletionEvent, FailedEvent, RestartEvent } from './operators/balance.js';
export type {
  AttemptEvent,
  AttemptStart,
  AttemptRetry,
  AttemptRestart,
  AttemptTag,
  TaggedTransportEvent,
} from './operators/attempt-event.js';

// The transport (the network edge)
export { createOpenRouterTransport, createFetchTransport, fetchKeyInfo } from './transport/index.js';
export type { OpenRouterTransportOptions, OpenRouterClientOptions, KeyInfo } from './transport/index.js';

// State stores (Redis is in `openrouter-rx/redis`)
export { createMemoryStore } from './store/state-store.js';
export type {
  StateStore,
  MemoryStoreOptions,
  StateChange,
  SharedStateKind,
  StoreStatus,
  ScopeDefinition,
  AdmissionPlan,
  Reservation,
  ReserveResult,
} from './store/state-store.js';
