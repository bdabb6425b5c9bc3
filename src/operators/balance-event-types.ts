import type { AttemptRecord, OpenRouterError } from '../core/errors.js';
import type { Completion, Usage } from '../core/types.js';

/** What `balance` emits for each request. */

/** A piece of a streamed answer; chunks without text, reasoning or tool calls are held back. */
export interface ChunkEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'chunk';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Text added by this chunk; `''` when it carries only reasoning or tool calls. */
  delta: string;
  /** Reasoning text added by this chunk. */
  reasoning?: string;
  /** The chunk's `tool_calls` deltas, as sent. */
  toolCalls?: ReadonlyArray<Record<string, unknown>>;
  /** Label of the key the attempt leased. */
  keyLabel: string;
  /** Model the attempt was sent to. */
  model: string;
}

/** Content already delivered for this request is void: a new attempt starts over. */
export interface RestartEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'restart';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Number of the attempt that failed after delivering content. */
  attempt: number;
  /** Kind of the error that attempt failed with. */
  reason: OpenRouterError['kind'];
}

/** The request's answer: its terminal event on success. */
export interface CompletionEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'completion';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** The answer; for a stream, assembled from its chunks (with `raw: null`). */
  completion: Completion;
  /** Label of the key the successful attempt leased. */
  keyLabel: string;
  /** Model the successful attempt was sent to (`completion.model` is what OpenRouter reports). */
  model: string;
  /** Attempts made, this one included. */
  attempts: number;
  /** From the request's arrival to its completion, in scheduler ms. */
  latencyMs: number;
  /** The successful attempt's usage. */
  usage?: Usage;
  /** Usage summed over every attempt that reported any: what OpenRouter billed. */
  billedUsage?: Usage;
}

/** The request failed: its terminal event on failure (the output stream itself never errors). */
export interface FailedEvent {
  /** Discriminant of `BalanceEvent`. */
  type: 'failed';
  /** The request's `id`, or `req-<n>` when it had none. */
  requestId: string;
  /** Always typed; an invalid request fails with a `BadRequestError` whose cause is the `ValidationError`. */
  error: OpenRouterError;
  /** Every attempt's reason, in order. */
  attempts: readonly AttemptRecord[];
}

/** One input gets `chunk`s (streams only), maybe `restart`s, then exactly one `completion` or `failed`. */
export type BalanceEvent = ChunkEvent | RestartEvent | CompletionEvent | FailedEvent;
