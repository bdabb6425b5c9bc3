import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { MalformedResponseError, NetworkError, OpenRouterError, StreamError, toOpenRouterError } from '../core/errors.js';
import type { KeyCredential } from '../core/types.js';
import { classifyHttpError } from '../wire/classify.js';
import { streamErrorFromPayload } from '../wire/chunk.js';
import { redactError, redactText, redactValue } from './redact.js';

/** Who the failed attempt was, for the error's fields. */
export interface AttemptIdentity {
  key: KeyCredential;
  model?: string;
}

/**
 * Maps anything the `openai` SDK throws before a response body is read (status errors,
 * connection failures, timeouts) to a typed, key-free `OpenRouterError`.
 */
export function errorFromSdk(error: unknown, attempt: AttemptIdentity): OpenRouterError {
  if (error instanceof OpenRouterError) return redactError(error, attempt.key);
  const { key, model } = attempt;
  if (error instanceof APIConnectionTimeoutError) {
    return new NetworkError({
      message: 'request timed out before the response headers arrived',
      scope: 'transport',
      retryable: true,
      keyLabel: key.label,
      model,
    });
  }
  if (error instanceof APIConnectionError) {
    return redactError(
      new NetworkError({
        message: redactText(describeCause(error), key),
        scope: 'transport',
        retryable: true,
        keyLabel: key.label,
        model,
        cause: error,
      }),
      key,
    );
  }
  if (isApiError(error) && error.status !== undefined) {
    return redactError(
      classifyHttpError({
        status: error.status,
        headers: error.headers,
        body: redactValue(bodyOf(error), key),
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
  if (error instanceof Error) {
    // A body read that broke (`TypeError: terminated`) or another failure below the SDK.
    return redactError(
      new NetworkError({ message: describeCause(error), scope: 'transport', retryable: true, keyLabel: key.label, model, cause: error }),
      key,
    );
  }
  return redactError(toOpenRouterError(error), key);
}

/**
 * Maps a failure while reading a stream's body. `SyntaxError` is the SDK's `JSON.parse` of an SSE
 * event; any other non-API failure means the connection broke (`TypeError: terminated` from undici)
 * and the answer is truncated.
 */
export function errorFromStreamRead(error: unknown, attempt: AttemptIdentity): OpenRouterError {
  const { key, model } = attempt;
  if (error instanceof SyntaxError) {
    return redactError(
      new MalformedResponseError({
        message: `stream event is not valid JSON: ${error.message}`,
        scope: 'model',
        retryable: true,
        keyLabel: key.label,
        model,
        cause: error,
      }),
      key,
    );
  }
  if (error instanceof OpenRouterError || error instanceof APIError) return errorFromSdk(error, attempt);
  return redactError(truncatedStreamError(attempt, error), key);
}

export function truncatedStreamError(attempt: AttemptIdentity, cause?: unknown): StreamError {
  const reason = cause instanceof Error ? `: ${describeCause(cause)}` : '';
  return new StreamError({
    message: `stream ended before any finish_reason (truncated answer)${reason}`,
    // The response had begun, so the key and the connection to OpenRouter worked: the provider
    // behind the model cut the answer (openrouter-wire.md §6), and the model's health pays.
    scope: 'model',
    retryable: true,
    truncated: true,
    keyLabel: attempt.key.label,
    model: attempt.model,
    cause,
  });
}

/**
 * The messages along the cause chain (`Connection error: fetch failed: other side closed
 * [UND_ERR_SOCKET]`): the SDK's own message is generic, the useful part is in the causes.
 */
function describeCause(error: Error): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth += 1) {
    const code = (current as { code?: unknown }).code;
    parts.push(`${current.message.replace(/\.$/, '')}${typeof code === 'string' ? ` [${code}]` : ''}`);
    current = current.cause;
  }
  return parts.join(': ');
}

/**
 * `instanceof APIError` narrows to `APIError<any, any, any>`; this narrows to the class's declared
 * defaults (`number | undefined` status, `Headers | undefined` headers, `Object | undefined` body).
 */
function isApiError(error: unknown): error is APIError {
  return error instanceof APIError;
}

/**
 * The SDK keeps only the `error` member of a JSON error body, or the raw text of a non-JSON body
 * inside its message (`"502 <html>…"`). Rebuild what the classifier reads from either.
 */
function bodyOf(error: APIError): unknown {
  if (error.error !== undefined) return { error: error.error };
  const prefix = `${error.status} `;
  const text = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  return text === 'status code (no body)' ? undefined : text;
}
