import OpenAI, { type APIError } from 'openai';
import { abortableFetch } from './abortable-fetch.js';
import { parseJsonBody } from '../wire/values.js';
import { attributionHeaders, DEFAULT_BASE_URL, headersTimeoutMsOf, type OpenRouterClientOptions } from './client-options.js';

/**
 * Error bodies as the SDK read them, by the headers of the response that carried them (the SDK's
 * `APIError.headers` is that very object): the parsed JSON, or the text of a body that is not
 * JSON. The SDK's error keeps only a JSON body's `error` member, so an OpenAI-style
 * `{message, code}` or a bare JSON string would reach the classifier as no body at all, and be
 * classified otherwise than the fetch transport classifies it.
 */
export type ErrorBodies = WeakMap<Headers, unknown>;

/**
 * The SDK's client, keeping each error body it reads in `errorBodies` as it makes the status
 * error: the SDK hands that hook the whole body, so no response of ours stands between the SDK and
 * the network (a wrapper around its `fetch` would cost every request a promise and a closure,
 * held for as long as the request is in flight).
 */
class ErrorBodyKeepingClient extends OpenAI {
  readonly #errorBodies: ErrorBodies;

  constructor(options: ConstructorParameters<typeof OpenAI>[0], errorBodies: ErrorBodies) {
    super(options);
    this.#errorBodies = errorBodies;
  }

  protected override makeStatusError(status: number, error: object | undefined, message: string | undefined, headers: Headers): APIError {
    // `error` is the parsed body, or undefined when it is not JSON: `message` is then its text,
    // read as the fetch transport reads a body (none when blank).
    this.#errorBodies.set(headers, error ?? parseJsonBody(message));
    return super.makeStatusError(status, error as object, message, headers);
  }
}

/** One SDK client for one key; `errorBodies` receives the body of every error response it gets. */
export function createOpenRouterClient(apiKey: string, options: OpenRouterClientOptions, errorBodies: ErrorBodies): OpenAI {
  return new ErrorBodyKeepingClient(
    {
      apiKey,
      baseURL: options.baseURL ?? DEFAULT_BASE_URL,
      // Retries belong to the pool, which moves them to another key or model; the SDK's own would
      // repeat the attempt on the same key and hide the failure from health tracking.
      maxRetries: 0,
      timeout: headersTimeoutMsOf(options),
      defaultHeaders: attributionHeaders(options),
      // A caller's `fetch` that ignores the signal would keep the SDK's headers timeout armed after
      // an abort, and an error body the SDK reads open (the global `fetch` ends both itself).
      fetch: options.fetch === undefined ? undefined : abortableFetch(options.fetch, { cancelsErrorBodies: true }),
      // Not the OpenAI org/project from the environment: OpenRouter has no use for them.
      organization: null,
      project: null,
      // The SDK logs malformed SSE events to the console before throwing; we report them as typed errors.
      logLevel: 'off',
    },
    errorBodies,
  );
}
