import {
  BadRequestError,
  ConfigurationError,
  MalformedResponseError,
  NetworkError,
  OpenRouterError,
  StreamError,
  copyError,
} from '../core/errors.js';
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

/**
 * A connection that failed before any response: the route's transport pays, and another try may
 * pass. A redirect that `fetch` was told to refuse (Node's, see `globalFetchInit`) is no connection
 * failure: the base URL points where the API is not, so the request fails alone, saying so,
 * instead of being retried on every key.
 */
export function connectionError(error: Error, attempt: AttemptIdentity): OpenRouterError {
  if (causedByRedirect(error)) {
    return new ConfigurationError({
      message:
        'the server answered with a redirect, which is not followed (it would send the key on to another address): set `baseURL` to the address the API is at',
      scope: 'request',
      retryable: false,
      keyLabel: attempt.key.label,
      model: attempt.model,
      cause: error,
    });
  }
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
 * Whether `fetch` refused a redirect somewhere along the cause chain: undici's `fetch failed:
 * unexpected redirect`, or Deno's "Encountered redirect while redirect mode is set to 'error'".
 */
function causedByRedirect(error: Error): boolean {
  return causeChain(error).some((cause) => REFUSED_REDIRECT.test(cause.message));
}

const REFUSED_REDIRECT = /^unexpected redirect$|redirect mode is set to 'error'/;

/**
 * The messages along the cause chain (`fetch failed: other side closed [UND_ERR_SOCKET]`): the
 * outer message is generic, the useful part is in the causes.
 */
export function describeCause(error: Error): string {
  return causeChain(error)
    .map((cause) => {
      const code = (cause as { code?: unknown }).code;
      return `${cause.message.replace(/\.$/, '')}${typeof code === 'string' ? ` [${code}]` : ''}`;
    })
    .join(': ');
}

/** `error` and its causes, four at most (a cycle of causes ends there). */
function causeChain(error: Error): Error[] {
  const chain: Error[] = [];
  for (let current: unknown = error; current instanceof Error && chain.length < 4; current = current.cause) chain.push(current);
  return chain;
}

/**
 * The request's own failure when JSON could not carry its body (a BigInt, a cycle, a `toJSON` or
 * a getter that throws, in a field the edge passes through), `cause` being what serializing threw.
 * No key or connection is at fault: the request fails alone, naming where it broke, instead of
 * being retried on every key as a network error.
 */
function unsendableError(body: unknown, attempt: AttemptIdentity, cause: unknown): OpenRouterError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  let where: string | undefined;
  try {
    where = unsendablePath(body, 'request', new Set());
  } catch {
    // A getter that throws on every read: the field it is on cannot be named either.
  }
  return redactError(
    new BadRequestError({
      message: `${where ?? 'request'}: cannot be sent as JSON (${reason})`,
      scope: 'request',
      retryable: false,
      keyLabel: attempt.key.label,
      model: attempt.model,
    }),
    attempt.key,
  );
}

/** The JSON text of a request's body, or (thrown) the request's own failure where JSON cannot carry it. */
export function serializedBody(body: unknown, attempt: AttemptIdentity): string {
  try {
    return JSON.stringify(body);
  } catch (error: unknown) {
    throw unsendableError(body, attempt, error);
  }
}

/** The request's own failure where JSON cannot carry its body, else undefined: for a send that failed before any fetch. */
export function jsonFailureOf(body: unknown, attempt: AttemptIdentity): OpenRouterError | undefined {
  try {
    JSON.stringify(body);
    return undefined;
  } catch (error: unknown) {
    return unsendableError(body, attempt, error);
  }
}

/** The path of the first value JSON cannot carry: a BigInt, a value inside its own cycle, a `toJSON` that throws. */
function unsendablePath(value: unknown, path: string, ancestors: Set<object>): string | undefined {
  if (typeof value === 'bigint') return path;
  if (typeof value !== 'object' || value === null) return undefined;
  if (ancestors.has(value)) return path;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    let plain: unknown;
    try {
      plain = (value as { toJSON: () => unknown }).toJSON();
    } catch {
      return path;
    }
    if (plain !== value) return unsendablePath(plain, path, ancestors);
  }
  ancestors.add(value);
  const entries: Array<[string, unknown]> = Array.isArray(value)
    ? value.map((item, index) => [`[${index}]`, item])
    : Object.entries(value).map(([name, item]) => [`.${name}`, item]);
  for (const [step, item] of entries) {
    const found = unsendablePath(item, path + step, ancestors);
    if (found !== undefined) return found;
  }
  ancestors.delete(value);
  return undefined;
}
