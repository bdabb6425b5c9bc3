import type { Observable } from 'rxjs';
import type { AttemptRecord, OpenRouterError } from '../core/errors.js';
import type { TransportEvent } from '../core/types.js';
import type { AttemptRestart, AttemptRetry, AttemptStart, PoolEvent } from '../pool/events.js';

/**
 * What flows between the routing operators for one request: the transport's events tagged with
 * the key and model of their attempt, plus markers that let downstream operators follow the
 * attempts (`attempt` when a key was leased, `retry` and `restart` from the retry operators).
 */
export interface AttemptTag {
  /** The request's `id` (`''` when it has none). */
  requestId: string;
  /** Label of the key the attempt leased. */
  keyLabel: string;
  /** Model the attempt was sent to. */
  model: string;
}

export type { AttemptStart, AttemptRetry, AttemptRestart } from '../pool/events.js';

/** A transport event tagged with the request, key and model of its attempt. */
export type TaggedTransportEvent = TransportEvent & AttemptTag;

/**
 * What the operators after `withKeyRotation` may reach of one attempt. `withKeyRotation`, which
 * holds the attempt's lease, records every outcome itself; it hangs this (not enumerable) on the
 * attempt's marker so that a `circuitBreaker` downstream can narrow which failures count, the
 * retry operators can count the request's attempts, and an `attemptTimeouts` can fail it.
 */
export const ATTEMPT_RECORDING: unique symbol = Symbol.for('openrouter-rx.attempt-recording');

export interface AttemptRecording {
  /** Whether a failure counts against health; request-scoped errors never do, whatever it says. */
  shouldRecord: (error: OpenRouterError) => boolean;
  /** The request's attempts as each retry operator counted them (see `RequestRetries`). */
  readonly request: RequestRetries;
  /** Whether this attempt was made by a retry of this library (`RequestRetries.resumes`); if not, the counts start afresh with it. */
  readonly resumed: boolean;
  /**
   * Fails the attempt with `error` as if its transport had: the HTTP request is aborted, and the
   * failure is recorded and moves the request on as any would. A timer downstream (a standalone
   * `attemptTimeouts`) ends the attempt this way rather than by unsubscribing, which records nothing.
   * False when the attempt has already ended.
   */
  fail(error: OpenRouterError): boolean;
  /**
   * Emits on the pool's `events$`: the retry operators, which know no pool, announce their
   * `retry` and `restart` there through the attempt they retry.
   */
  readonly emit: (event: PoolEvent) => void;
  /**
   * The pool's disposal (`PoolPort.disposed$`): a retry operator composed by hand, which knows no
   * pool either, ends its backoff on it at once, as `balance`'s do, so the request fails now and
   * no timer outlives the pool.
   */
  readonly disposed$: Observable<void>;
}

/**
 * What each retry operator has counted of one request's attempts, kept with the request (its
 * route in `withKeyRotation`), by operator: an operator resubscribed by a retry outside it counts
 * on from there, so its `maxAttempts` bounds the request's attempts of its kind in all, not per
 * pass of the operators around it.
 */
export interface RequestRetries {
  readonly retryCounts: Map<object, AttemptRecord[]>;
  /** Every failed attempt of the request a retry operator took, in order: what giving up lists. */
  readonly failedAttempts: AttemptRecord[];
  /**
   * Set by a retry operator while it resubscribes (synchronously: cleared when its subscribe call
   * returns): the attempt made meanwhile goes on with these counts.
   */
  resumes: boolean;
  /** The request is over (a retry operator gave up on it): the same object sent again is a request of its own. */
  ended: boolean;
}

/** The request an attempt marker belongs to, if it came from `withKeyRotation`. */
export function requestOf(start: AttemptStart | undefined): RequestRetries | undefined {
  return start === undefined ? undefined : recordingOf(start)?.request;
}

/** Runs `subscribe` as a retry of `request` (see `RequestRetries.resumes`): only what it makes at once goes on with its counts. */
export function whileResuming<T>(request: RequestRetries | undefined, subscribe: () => T): T {
  if (request === undefined) return subscribe();
  request.resumes = true;
  try {
    return subscribe();
  } finally {
    request.resumes = false;
  }
}

/** The recording settings an attempt marker carries, if it came from `withKeyRotation`. */
export function recordingOf(start: AttemptStart): AttemptRecording | undefined {
  return (start as AttemptStart & { [ATTEMPT_RECORDING]?: AttemptRecording })[ATTEMPT_RECORDING];
}

/**
 * The error a retried attempt failed with. A retry operator hangs it (not enumerable: `events$`
 * carries only its kind, status and message) on its `retry` event, so that `balance` can name the
 * last attempt's error as the cause of a request that fails afterwards without an attempt (no key
 * left, the queue timed out).
 */
export const RETRIED_ERROR: unique symbol = Symbol.for('openrouter-rx.retried-error');

/** The retry event with the error it retries hung on it. */
export function withRetriedError(retry: AttemptRetry, error: OpenRouterError): AttemptRetry {
  Object.defineProperty(retry, RETRIED_ERROR, { value: error, enumerable: false });
  return retry;
}

/** The error a `retry` event retries, when a retry operator of this library sent it. */
export function retriedErrorOf(retry: AttemptRetry): OpenRouterError | undefined {
  return (retry as AttemptRetry & { [RETRIED_ERROR]?: OpenRouterError })[RETRIED_ERROR];
}

/**
 * Whether the failure of an attempt moves its request on to the next model of its chain.
 * `withKeyRotation`, which holds the request's route, hangs this (not enumerable) on every error
 * an attempt fails with, so that the retry operator taking the error retries at once instead of
 * backing off on a route that is no longer the failing one.
 */
export const MOVES_ON: unique symbol = Symbol.for('openrouter-rx.moves-on');

/** Marks (or unmarks: one error object may fail several attempts) a failure that moves its request on. */
export function markMovesOn(error: OpenRouterError, movesOn: boolean): void {
  Object.defineProperty(error, MOVES_ON, { value: movesOn, enumerable: false, configurable: true, writable: true });
}

/** Whether `withKeyRotation` moved the request on to another model of its chain after this failure. */
export function movesOn(error: OpenRouterError): boolean {
  return (error as OpenRouterError & { [MOVES_ON]?: boolean })[MOVES_ON] === true;
}

/**
 * Whether a refusal taught the pool a limit it did not know when the request went out (see
 * `PoolPort.record`). `withKeyRotation` hangs this (not enumerable) on such an error, and a retry
 * loop hangs it on the attempt's record, so that the request's retries do not count it: a request
 * sent into quotas nobody told would otherwise spend them on the pool's lessons (8 keys of unknown
 * quotas: a request refused by four of them in turn failed, every key with room again in 2 s).
 */
export const TAUGHT_LIMIT: unique symbol = Symbol.for('openrouter-rx.taught-limit');

/** Marks (or unmarks: one error object may fail several attempts) a refusal that was a lesson. */
export function markTaughtLimit(target: OpenRouterError | AttemptRecord, taught: boolean): void {
  Object.defineProperty(target, TAUGHT_LIMIT, { value: taught, enumerable: false, configurable: true, writable: true });
}

/** Whether an error or an attempt's record is a refusal the pool learned a limit from. */
export function taughtLimit(target: OpenRouterError | AttemptRecord): boolean {
  return (target as { [TAUGHT_LIMIT]?: boolean })[TAUGHT_LIMIT] === true;
}

/** One item of a request's stream between operators: an attempt marker or a tagged transport event. */
export type AttemptEvent = AttemptStart | AttemptRetry | AttemptRestart | TaggedTransportEvent;

/** Whether an event carries something a user sees: text, reasoning or a tool call. */
export function carriesContent(event: AttemptEvent): boolean {
  if (event.type === 'completion') return true;
  if (event.type !== 'chunk') return false;
  return event.delta.length > 0 || (event.reasoning?.length ?? 0) > 0 || (event.toolCalls?.length ?? 0) > 0;
}

/** The record of a failed attempt, for `AttemptsExhaustedError` and `failed` events. */
export function attemptRecordOf(error: OpenRouterError, start: AttemptStart | undefined, at: number): AttemptRecord {
  const record: AttemptRecord = {
    attempt: start?.attempt ?? 0,
    kind: error.kind,
    message: error.message,
    at,
    ...(error.status === undefined ? {} : { status: error.status }),
    ...((error.keyLabel ?? start?.keyLabel) === undefined ? {} : { keyLabel: error.keyLabel ?? start?.keyLabel }),
    ...((error.model ?? start?.model) === undefined ? {} : { model: error.model ?? start?.model }),
  };
  // A lesson stays one in the request's record, which its retries count (see `TAUGHT_LIMIT`).
  if (taughtLimit(error)) markTaughtLimit(record, true);
  return record;
}
