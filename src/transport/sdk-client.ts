import OpenAISdk, { type APIError } from 'openai';
import { abortableFetch, cancelOnAbort } from './abortable-fetch.js';
import { parseJsonBody } from '../wire/values.js';
import {
  attributionHeaders,
  DEFAULT_BASE_URL,
  globalFetchInit,
  headersTimeoutMsOf,
  type OpenRouterClientOptions,
} from './client-options.js';

/**
 * Error bodies as the SDK read them, by the status error it made of each: the parsed JSON, or the
 * text of a body that is not JSON. The SDK's error keeps only a JSON body's `error` member, so an
 * OpenAI-style `{message, code}` or a bare JSON string would reach the classifier as no body at
 * all, and be classified otherwise than the fetch transport classifies it.
 */
export type ErrorBodies = WeakMap<APIError, unknown>;

/**
 * The SDK's client, keeping each error body it reads in `errorBodies` as it makes the status
 * error: the SDK hands that hook the whole body, so no response of ours stands between the SDK and
 * the network (a wrapper around its `fetch` would cost every request a promise and a closure,
 * held for as long as the request is in flight). Named as the SDK's class is: the SDK names its
 * `User-Agent` after `this.constructor` ("OpenAI/JS 6.x").
 */
class OpenAI extends OpenAISdk {
  readonly #errorBodies: ErrorBodies;

  constructor(options: ConstructorParameters<typeof OpenAISdk>[0], errorBodies: ErrorBodies) {
    super(options);
    this.#errorBodies = errorBodies;
  }

  protected override makeStatusError(status: number, error: object | undefined, message: string | undefined, headers: Headers): APIError {
    const statusError = super.makeStatusError(status, error as object, message, headers);
    // `error` is the parsed body, or undefined when it is not JSON: `message` is then its text,
    // read as the fetch transport reads a body (none when blank).
    this.#errorBodies.set(statusError, error ?? parseJsonBody(message));
    return statusError;
  }
}

/** One SDK client for one key; `errorBodies` receives the body of every error response it gets. */
export function createOpenRouterClient(apiKey: string, options: OpenRouterClientOptions, errorBodies: ErrorBodies): OpenAISdk {
  return new OpenAI(
    {
      apiKey,
      baseURL: options.baseURL ?? DEFAULT_BASE_URL,
      // Retries belong to the pool, which moves them to another key or model; the SDK's own would
      // repeat the attempt on the same key and hide the failure from health tracking.
      maxRetries: 0,
      timeout: headersTimeoutMsOf(options),
      defaultHeaders: attributionHeaders(options),
      // The global `fetch` as it is at each request (the SDK would keep the one it found when the
      // key's client was made, past a test's stub or an instrumentation's patch). A caller's
      // `fetch` that ignores the signal would keep the SDK's headers timeout armed after an abort,
      // and an error body the SDK reads open (the global `fetch` ends both itself).
      fetch: options.fetch === undefined ? (input, init) => fetch(input, init) : abortableFetch(options.fetch, withErrorBodyCancelledBy),
      ...(options.fetch === undefined ? { fetchOptions: globalFetchInit() } : {}),
      // Not the OpenAI org/project from the environment: OpenRouter has no use for them.
      organization: null,
      project: null,
      // The SDK logs malformed SSE events to the console before throwing; we report them as typed errors.
      logLevel: 'off',
    },
    errorBodies,
  );
}

/**
 * `response`, or for an error response (4xx, 5xx) a copy whose body `signal`'s abort cancels: the
 * SDK reads such a body itself, which locks it, so a body that never ends (a caller's `fetch` deaf
 * to its signal) could not be cancelled otherwise. Its status text, which the classifier never
 * reads, is left out: text outside Latin-1 (a proxy's reason phrase, decoded) would make the
 * response fail to build.
 */
function withErrorBodyCancelledBy(response: Response, signal: AbortSignal): Response {
  const original = response.body;
  if (response.status < 400 || response.status > 599 || original === null || typeof original.getReader !== 'function') return response;
  // A body already locked or read (a caller's `fetch` may hand out anything) is the SDK's to fail on.
  if (original.locked) return response;
  const reader = original.getReader();
  cancelOnAbort(reader, signal);
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: response.status, headers: response.headers });
}
