import type { ErrorKind, ErrorScope } from '../core/errors.js';
import type { Usage } from '../core/types.js';
import type { LearnedQuota } from '../health/learned-quota.js';
import type { KeyState, OpenReason } from '../health/records.js';

/**
 * The attempt markers the routing operators pass along with a request's events, and report on
 * `pool.events$`: `attempt` when a key was leased, `retry` and `restart` from the retry operators.
 */
export type AttemptStart = {
  type: 'attempt';
  requestId: string;
  attempt: number;
  keyLabel: string;
  model: string;
  /** Whether the attempt streams (timeouts on the first token and idle gaps apply to streams). */
  stream: boolean;
  /** Scheduler time when the key was leased. */
  at: number;
};

/** Sent by a retry operator before it retries: why the last attempt failed, and the wait. */
export type AttemptRetry = {
  type: 'retry';
  requestId: string;
  attempt: number;
  reason: ErrorKind;
  /** The failed attempt's error message and HTTP status. */
  message: string;
  status?: number;
  /** Tokens OpenRouter billed for the failed attempt, if it reported any. */
  usage?: Usage;
  keyLabel?: string;
  model?: string;
  delayMs: number;
  at: number;
};

/** Sent before a retry that follows delivered content (`onMidStreamError: 'restart'`): clear it. */
export type AttemptRestart = {
  type: 'restart';
  requestId: string;
  attempt: number;
  reason: ErrorKind;
  at: number;
};

/** A successful attempt: what `circuitBreaker` records, and `events$` reports with its time. */
export interface AttemptSuccess {
  type: 'success';
  /** The request's `id` and the attempt's number within it, when the attempt came from `withKeyRotation`. */
  requestId?: string;
  attempt?: number;
  keyLabel: string;
  model: string;
  /** From the lease to the end of the answer. */
  latencyMs: number;
  /** For a stream, from the lease to its first token. */
  timeToFirstTokenMs?: number;
  usage?: Usage;
}

/**
 * What the pool and its operators report on `pool.events$`, for logs and metrics. A union on
 * `type`; every event carries the scheduler time `at`. Labels only, never key text.
 */
export type PoolEvent =
  | AttemptStart
  | AttemptRetry
  | {
      type: 'cooldown';
      scope: Exclude<ErrorScope, 'request' | 'transport'>;
      /** A key label, an account id or a model id. */
      target: string;
      reason: OpenReason | 'exhausted' | 'disabled';
      until: number;
      errorKind?: ErrorKind;
      at: number;
    }
  | {
      type: 'state-change';
      scope: 'key' | 'model';
      target: string;
      from: KeyState;
      to: KeyState;
      at: number;
    }
  | {
      type: 'fallback';
      requestId: string;
      from: string;
      to: string;
      reason: ErrorKind;
      at: number;
    }
  | AttemptRestart
  | {
      /** The state store changed mode: `local` when it failed and each pool limits alone. */
      type: 'store';
      mode: 'shared' | 'local';
      reason?: string;
      at: number;
    }
  | {
      /** A quota found out (a 429's `X-RateLimit-*`, key info) or re-probed upward; enforced from now on. */
      type: 'limit-learned';
      scope: 'key' | 'account' | 'model';
      /** The scope's id: `key:<label>`, `account:<id>` or `model:<account>:<pattern>`. */
      target: string;
      quota: LearnedQuota;
      /**
       * `learned` from a 429, `reprobe` raising it after a quiet spell at the limit, `shared` by
       * another pool, `key-info`, `assumed` from another key's (account's) learned quota, or
       * `disproved`: the scope passed its assumed quota without a 429, and the quota is dropped.
       */
      cause: 'learned' | 'reprobe' | 'shared' | 'key-info' | 'assumed' | 'disproved';
      at: number;
    }
  | {
      /** An adaptive concurrency limit changed: a model's (provider capacity) or an account's (in-flight budget). */
      type: 'concurrency';
      scope: 'model' | 'account';
      /** The model id or the account id. */
      target: string;
      limit: number;
      at: number;
    }
  | {
      type: 'queued';
      requestId: string;
      /** Requests waiting, this one included. */
      queued: number;
      at: number;
    }
  /** An attempt's answer came in full, as recorded (sent only while someone watches `events$`). */
  | (AttemptSuccess & { at: number })
  | {
      /** An attempt failed; a `retry` follows if the request is tried again (sent only while someone watches `events$`). */
      type: 'failure';
      /** The request's `id` and the attempt's number within it, when the attempt came from `withKeyRotation`. */
      requestId?: string;
      attempt?: number;
      keyLabel: string;
      model: string;
      kind: ErrorKind;
      /** Which health record the failure touches. */
      scope: ErrorScope;
      status?: number;
      /** The error's message (never key text). */
      message: string;
      at: number;
    };

export type PoolEventType = PoolEvent['type'];
