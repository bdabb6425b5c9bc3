import OpenAI from 'openai';
import { abortableFetch, type FetchFunction } from './abortable-fetch.js';
import { attributionHeaders, DEFAULT_BASE_URL, headersTimeoutMsOf, type OpenRouterClientOptions } from './client-options.js';

/**
 * Error bodies as they came, by the headers of the response that carried them (the SDK's
 * `APIError.headers` is that very object): the SDK keeps only a JSON body's `error` member, so an
 * OpenAI-style `{message, code}` or a bare JSON string would reach the classifier as no body at
 * all, and be classified otherwise than the fetch transport classifies it.
 */
export type ErrorBodies = WeakMap<Headers, string>;

/** One SDK client for one key; `errorBodies` receives the body of every error response it gets. */
export function createOpenRouterClient(apiKey: string, options: OpenRouterClientOptions, errorBodies: ErrorBodies): OpenAI {
  // A caller's `fetch` that ignores the signal would keep the SDK's headers timeout armed after an abort.
  const fetchImpl: FetchFunction = options.fetch === undefined ? (input, init) => fetch(input, init) : abortableFetch(options.fetch);
  return new OpenAI({
    apiKey,
    baseURL: options.baseURL ?? DEFAULT_BASE_URL,
    // Retries belong to the pool, which moves them to another key or model; the SDK's own would
    // repeat the attempt on the same key and hide the failure from health tracking.
    maxRetries: 0,
    timeout: headersTimeoutMsOf(options),
    defaultHeaders: attributionHeaders(options),
    fetch: keepingErrorBodies(fetchImpl, errorBodies),
    // Not the OpenAI org/project from the environment: OpenRouter has no use for them.
    organization: null,
    project: null,
    // The SDK logs malformed SSE events to the console before throwing; we report them as typed errors.
    logLevel: 'off',
  });
}

/**
 * `fetchImpl`, reading the body of an error response (4xx, 5xx) itself: the SDK is handed the same
 * status, headers and text in a response of ours, whose headers key the text in `errorBodies`. A
 * body cut off after the status is read as no body, as the fetch transport reads it.
 */
function keepingErrorBodies(fetchImpl: FetchFunction, errorBodies: ErrorBodies): FetchFunction {
  return async (input, init) => {
    const response = await fetchImpl(input, init);
    if (response.status < 400 || response.status > 599) return response;
    const text = await response.text().catch(() => '');
    const copy = new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
    errorBodies.set(copy.headers, text);
    return copy;
  };
}
