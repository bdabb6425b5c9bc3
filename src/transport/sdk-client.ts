import OpenAI from 'openai';
import { abortableFetch } from './abortable-fetch.js';
import { attributionHeaders, DEFAULT_BASE_URL, headersTimeoutMsOf, type OpenRouterClientOptions } from './client-options.js';

/** One SDK client for one key. */
export function createOpenRouterClient(apiKey: string, options: OpenRouterClientOptions): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: options.baseURL ?? DEFAULT_BASE_URL,
    // Retries belong to the pool, which moves them to another key or model; the SDK's own would
    // repeat the attempt on the same key and hide the failure from health tracking.
    maxRetries: 0,
    timeout: headersTimeoutMsOf(options),
    defaultHeaders: attributionHeaders(options),
    // A caller's `fetch` that ignores the signal would keep the SDK's headers timeout armed after an abort.
    fetch: options.fetch === undefined ? undefined : abortableFetch(options.fetch),
    // Not the OpenAI org/project from the environment: OpenRouter has no use for them.
    organization: null,
    project: null,
    // The SDK logs malformed SSE events to the console before throwing; we report them as typed errors.
    logLevel: 'off',
  });
}
