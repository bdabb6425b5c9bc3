import { MalformedResponseError, NetworkError, OpenRouterError, StreamError, copyError } from '../core/errors.js';
import type { KeyCredential } from '../core/types.js';
import { redactError } from '../core/redact.js';

/** Who the failed attempt was, for the error's fields. */
export interface AttemptIdentity {
  key: KeyCredential;
  model?: string;
}

/** What was being read when a body failed: a stream's events, or a non-streamed answer's whole body. */
export type BodyRead = 'stream' | 'body';

/**
 * Maps a failure while reading a response body, whatever sent the request: `SyntaxError` is an
 * SSE event that is not JSON; a typed error passes (key text redacted); anything else means the
 * connection broke (`TypeError: terminated` from undici) and the answer is truncated.
 */
export function errorFromBodyRead(error: unknown, attempt: AttemptIdentity, read: BodyRead): OpenRouterError {
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
  // The caller's own error (its body stream failed with it) is left as it is: the copy is redacted.
  if (error instanceof OpenRouterError) return redactError(copyError(error, {}), key);
  return redactError(truncatedStreamError(attempt, error, read), key);
}

export function truncatedStreamError(attempt: AttemptIdentity, cause?: unknown, read: BodyRead = 'stream'): StreamError {
  const reason = cause instanceof Error ? `: ${describeCause(cause)}` : '';
  return new StreamError({
    message: `${read === 'stream' ? 'stream ended before any finish_reason' : 'answer body cut off before its end'} (truncated answer)${reason}`,
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

/** A connection that failed before any response: the route's transport pays, and another try may pass. */
export function connectionError(error: Error, attempt: AttemptIdentity): NetworkError {
  return new NetworkError({
    message: describeCause(error),
    scope: 'transport',
    retryable: true,
    keyLabel: attempt.key.label,
    model: attempt.model,
    cause: error,
  });
}

/** The wait for the response headers outlasted the transport's `timeoutMs`. */
export function headersTimeoutError(attempt: AttemptIdentity): NetworkError {
  return new NetworkError({
    message: 'request timed out before the response headers arrived',
    scope: 'transport',
    retryable: true,
    keyLabel: attempt.key.label,
    model: attempt.model,
  });
}

/**
 * The messages along the cause chain (`Connection error: fetch failed: other side closed
 * [UND_ERR_SOCKET]`): the outer message is generic, the useful part is in the causes.
 */
export function describeCause(error: Error): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth += 1) {
    const code = (current as { code?: unknown }).code;
    parts.push(`${current.message.replace(/\.$/, '')}${typeof code === 'string' ? ` [${code}]` : ''}`);
    current = current.cause;
  }
  return parts.join(': ');
}
