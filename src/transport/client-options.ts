import OpenAI from 'openai';

/** How to reach OpenRouter; shared by the chat transport and `fetchKeyInfo`. */
export interface OpenRouterClientOptions {
  /** Default `https://openrouter.ai/api/v1`. */
  baseURL?: string;
  /** Your app's URL, sent as `HTTP-Referer` for OpenRouter's app attribution. */
  appUrl?: string;
  /** Your app's name, sent as `X-OpenRouter-Title` and as the legacy `X-Title`. */
  appTitle?: string;
  /** Extra headers on every request; they override the attribution headers above. */
  defaultHeaders?: Record<string, string>;
  /** A `fetch` implementation (default: the global one). */
  fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  /**
   * The SDK timeout in ms: it covers the wait for the response headers only, not a stream's body.
   * Default 10 minutes; the pool's own attempt timeouts are meant to fire first.
   */
  timeoutMs?: number;
}

export const DEFAULT_BASE_URL = 'https://openrouter.ai/api/v1';
const DEFAULT_TIMEOUT_MS = 600_000;

/** One SDK client for one key. */
export function createOpenRouterClient(apiKey: string, options: OpenRouterClientOptions): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: options.baseURL ?? DEFAULT_BASE_URL,
    // Retries belong to the pool, which moves them to another key or model; the SDK's own would
    // repeat the attempt on the same key and hide the failure from health tracking.
    maxRetries: 0,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    defaultHeaders: attributionHeaders(options),
    fetch: options.fetch,
    // Not the OpenAI org/project from the environment: OpenRouter has no use for them.
    organization: null,
    project: null,
    // The SDK logs malformed SSE events to the console before throwing; we report them as typed errors.
    logLevel: 'off',
  });
}

function attributionHeaders(options: OpenRouterClientOptions): Record<string, string> {
  return {
    ...(options.appUrl === undefined ? {} : { 'HTTP-Referer': options.appUrl }),
    ...(options.appTitle === undefined ? {} : { 'X-OpenRouter-Title': options.appTitle, 'X-Title': options.appTitle }),
    ...options.defaultHeaders,
  };
}
