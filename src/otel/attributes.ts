import type { Attributes } from '@opentelemetry/api';
import type { KeyHealth } from '../health/records.js';

/**
 * The attribute names this entry writes: the GenAI semantic conventions where one fits, and
 * `openrouter_rx.*` for what only this library knows (keys, attempts, outcomes). Written out here
 * rather than imported from `@opentelemetry/semantic-conventions`: its GenAI names are experimental
 * (and moving to a repository of their own), and a dependency is not worth a dozen strings.
 */
export const ATTR = {
  operationName: 'gen_ai.operation.name',
  providerName: 'gen_ai.provider.name',
  /** The older name of `gen_ai.provider.name`, which many GenAI backends still group by. */
  system: 'gen_ai.system',
  requestModel: 'gen_ai.request.model',
  requestStream: 'gen_ai.request.stream',
  inputTokens: 'gen_ai.usage.input_tokens',
  outputTokens: 'gen_ai.usage.output_tokens',
  cacheReadInputTokens: 'gen_ai.usage.cache_read.input_tokens',
  reasoningOutputTokens: 'gen_ai.usage.reasoning.output_tokens',
  /** Seconds from the lease to a stream's first content. */
  timeToFirstChunk: 'gen_ai.response.time_to_first_chunk',
  tokenType: 'gen_ai.token.type',
  errorType: 'error.type',
  httpStatus: 'http.response.status_code',

  keyLabel: 'openrouter_rx.key.label',
  /** A short non-reversible hash of the key, which tells keys with one label apart. */
  keyFingerprint: 'openrouter_rx.key.fingerprint',
  keyAccount: 'openrouter_rx.key.account',
  keyState: 'openrouter_rx.key.state',
  modelState: 'openrouter_rx.model.state',
  requestId: 'openrouter_rx.request.id',
  attempt: 'openrouter_rx.attempt',
  /** `success`, the error kind of a failure, or `abandoned` (the attempt ended without an outcome). */
  outcome: 'openrouter_rx.outcome',
  /** Credits (USD) OpenRouter billed for the attempt. */
  cost: 'openrouter_rx.cost',
  /** Which health record a failure touched: key, account, model, request or transport. */
  errorScope: 'openrouter_rx.error.scope',
  /** On a retry's attempt: the error kind the attempt before it failed with, and the wait. */
  retryReason: 'openrouter_rx.retry.reason',
  retryDelayMs: 'openrouter_rx.retry.delay_ms',
  /** On the first attempt after a fallback: the model the request moved on from. */
  fallbackFrom: 'openrouter_rx.fallback.from',
  concurrencyScope: 'openrouter_rx.concurrency.scope',
  rateLimitScope: 'openrouter_rx.rate_limit.scope',
} as const;

/** `gen_ai.operation.name`: every request the pool sends is a chat completion. */
export const OPERATION_CHAT = 'chat';
/** `gen_ai.provider.name`: not one of the convention's listed values, so the name it goes by. */
export const PROVIDER_OPENROUTER = 'openrouter';

/** What every GenAI metric and span of a chat call on `model` carries. */
export function operationAttributes(model: string): Attributes {
  return { [ATTR.operationName]: OPERATION_CHAT, [ATTR.providerName]: PROVIDER_OPENROUTER, [ATTR.requestModel]: model };
}

/**
 * A key as attributes: its label, and its fingerprint and account when health knows the key.
 * Never its text: health records hold none.
 */
export function keyAttributes(label: string, key: KeyHealth | undefined): Attributes {
  return key === undefined
    ? { [ATTR.keyLabel]: label }
    : { [ATTR.keyLabel]: label, [ATTR.keyFingerprint]: key.fingerprint, [ATTR.keyAccount]: key.account };
}
