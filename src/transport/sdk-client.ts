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
 * `fetchImpl`, keeping the body of an error response (4xx, 5xx) as the SDK reads it: the SDK gets
 * a response of ours with the same status and headers, whose body passes the original's through
 * and, once read to its end, keys its text in `errorBodies` by those headers. The SDK reads it
 * after its headers timeout, as it read the original; an abort of `init.signal` cancels the
 * original body (a caller's `fetch` that ignores its signal would keep sending it). Its status
 * text, which the classifier never reads, is left out: text outside Latin-1 (a proxy's reason
 * phrase, decoded) would make the response fail to build.
 */
function keepingErrorBodies(fetchImpl: FetchFunction, errorBodies: ErrorBodies): FetchFunction {
  return async (input, init) => {
    const response = await fetchImpl(input, init);
    if (response.status < 400 || response.status > 599) return response;
    const original = response.body;
    if (original === null || typeof original.getReader !== 'function') return response;
    const reader = original.getReader();
    const signal = init?.signal;
    signal?.addEventListener(
      'abort',
      () => {
        reader.cancel().catch(ignore);
      },
      { once: true },
    );
    const decoder = new TextDecoder();
    let text = '';
    const copy: Response = new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          let read: ReadableStreamReadResult<Uint8Array>;
          try {
            read = await reader.read();
          } catch (error: unknown) {
            // Cut off after its status: no body, as the fetch transport reads it (the SDK would
            // take the read's failure, "terminated", for the body).
            errorBodies.set(copy.headers, '');
            throw error;
          }
          const { done, value } = read;
          if (done) {
            errorBodies.set(copy.headers, text + decoder.decode());
            controller.close();
            return;
          }
          text += decoder.decode(value, { stream: true });
          controller.enqueue(value);
        },
        cancel: (reason) => reader.cancel(reason),
      }),
      { status: response.status, headers: response.headers },
    );
    return copy;
  };
}

function ignore(): void {}
