import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { OpenRouterError, copyError, toOpenRouterError } from '../core/errors.js';
import { classifyHttpError } from '../wire/classify.js';
import { streamErrorFromPayload } from '../wire/chunk.js';
import {
  connectionError,
  errorFromBodyRead,
  headersTimeoutError,
  jsonFailureOf,
  type AttemptIdentity,
  type BodyRead,
} from './attempt-errors.js';
import type { ChatRequest } from '../core/types.js';
import { redactError, redactValue } from '../core/redact.js';
import type { ErrorBodies } from './sdk-client.js';

/**
 * Maps anything the `openai` SDK throws before a response body is read (status errors,
 * connection failures, timeouts) to a typed, key-free `OpenRouterError`.
 */
export function errorFromSdk(error: unknown, attempt: AttemptIdentity, errorBodies: ErrorBodies, request?: ChatRequest): OpenRouterError {
  // The caller's own error (its `fetch` threw it) is left as it is: the copy is redacted.
  if (error instanceof OpenRouterError) return redactError(copyError(error, {}), attempt.key);
  const { key, model } = attempt;
  if (error instanceof APIConnectionTimeoutError) return headersTimeoutError(attempt);
  // The SDK wraps what `fetch` threw in its own `Connection error.`: the error is `fetch`'s, as the
  // fetch transport reports it, so that one failure reads the same whichever transport met it.
  if (error instanceof APIConnectionError)
    return redactError(connectionError(error.cause instanceof Error ? error.cause : error, attempt), key);
  if (isApiError(error) && error.status !== undefined) {
    return redactError(
      classifyHttpError({
        status: error.status,
        headers: error.headers,
        // Every status error our client makes passes its `makeStatusError`, which kept the body.
        body: redactValue(errorBodies.get(error), key),
        // Wait hints are wall-clock dates and epoch times, so they are read against the real clock.
        nowMs: Date.now(),
        model,
        keyLabel: key.label,
      }),
      key,
    );
  }
  if (isApiError(error) && error.error !== undefined) {
    // The SDK throws a status-less APIError for an SSE event with a top-level `error`.
    return redactError(
      streamErrorFromPayload(redactValue(error.error, key), { nowMs: Date.now(), model, keyLabel: key.label, headers: error.headers }),
      key,
    );
  }
  // What the SDK throws unwrapped came before any fetch (a connection's failure is an `APIError`):
  // serializing the body, say, checked only now, so that no request pays for it.
  const unsendable = request === undefined ? undefined : jsonFailureOf(request, attempt);
  if (unsendable !== undefined) return unsendable;
  // A body read that broke (`TypeError: terminated`) or another failure below the SDK.
  if (error instanceof Error) return redactError(connectionError(error, attempt), key);
  return redactError(toOpenRouterError(error), key);
}

/** Maps a failure while reading a body (a stream's: the SDK throws an `APIError` for an event with a top-level `error`). */
export function errorFromStreamRead(error: unknown, attempt: AttemptIdentity, read: BodyRead, errorBodies: ErrorBodies): OpenRouterError {
  if (error instanceof APIError) return errorFromSdk(error, attempt, errorBodies);
  return errorFromBodyRead(error, attempt, read);
}

/**
 * `instanceof APIError` narrows to `APIError<any, any, any>`; this narrows to the class's declared
 * defaults (`number | undefined` status, `Headers | undefined` headers, `Object | undefined` body).
 */
function isApiError(error: unknown): error is APIError {
  return error instanceof APIError;
}
