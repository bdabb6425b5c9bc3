import * as z from 'zod/mini';
import { MAX_TIMER_DELAY_MS } from '../core/timers.js';

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
   * Default 10 minutes; the pool's own attempt timeouts are meant to fire first. The SDK's own
   * timer cannot wait longer than 2^31-1 ms (about 24.8 days): through the SDK, it waits that long.
   */
  timeoutMs?: number;
}

export const DEFAULT_BASE_URL = 'https://openrouter.ai/api/v1';
export const DEFAULT_TIMEOUT_MS = 600_000;

/**
 * What an HTTP header value can carry: `fetch` refuses any character above U+00FF, and a line
 * break would end the header. Control characters are refused too: they are never meant.
 */
const headerValueSchema = z
  .string()
  .check(
    z.regex(/^[\t\x20-\x7E\xA0-\xFF]*$/, 'must be Latin-1 text without line breaks or control characters (it is sent as an HTTP header)'),
  );

/** RFC 9110 `token`. */
const headerNameSchema = z
  .string()
  .check(z.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"));

const isFunction = (value: unknown) => typeof value === 'function';

/**
 * The client options, checked where they are given: each of them is sent with every request, so a
 * bad one would fail every request instead.
 */
/** An absolute http(s) URL, as the SDK needs it. */
export const httpUrlSchema = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

export const clientOptionsSchema = z.strictObject({
  baseURL: z.optional(httpUrlSchema),
  appUrl: z.optional(headerValueSchema.check(z.minLength(1))),
  appTitle: z.optional(headerValueSchema.check(z.minLength(1))),
  defaultHeaders: z.optional(z.record(headerNameSchema, headerValueSchema)),
  fetch: z.optional(z.custom<OpenRouterClientOptions['fetch']>(isFunction, { message: 'expected a fetch function' })),
  timeoutMs: z.optional(z.int().check(z.positive())),
});

/**
 * What every request through the global `fetch` adds to its init: on Node, that redirects are
 * errors. Node's `fetch` (undici) copies every request's body in case a redirect has to resend it
 * (a tee of web streams: about 40 µs of CPU and 2 ms of latency a request, measured with a JSON
 * body on 127.0.0.1) unless redirects are errors. The API never redirects, and following one would
 * send the key on to another address: a redirect fails the request with a `ConfigurationError`
 * instead (`connectionError`). Nowhere else: only undici makes the copy, and some runtimes that
 * call themselves Node refuse `redirect: 'error'` (Cloudflare Workers with `nodejs_compat`), so
 * the test is for the undici Node bundles, not for the name. A caller's own `fetch` is never told.
 */
export function globalFetchInit(runtime: RuntimeProcess | undefined = (globalThis as { process?: RuntimeProcess }).process): {
  readonly redirect?: 'error';
} {
  return runtime?.release?.name === 'node' && typeof runtime.versions?.undici === 'string' ? NODE_FETCH_INIT : {};
}

/** What `globalFetchInit` reads of the runtime's `process`, where it has one. */
export interface RuntimeProcess {
  release?: { name?: unknown };
  versions?: { undici?: unknown };
}

const NODE_FETCH_INIT = { redirect: 'error' } as const;

/** The attribution and extra headers every request carries. */
export function attributionHeaders(options: OpenRouterClientOptions): Record<string, string> {
  return Object.assign(
    {},
    options.appUrl === undefined ? {} : { 'HTTP-Referer': options.appUrl },
    options.appTitle === undefined ? {} : { 'X-OpenRouter-Title': options.appTitle, 'X-Title': options.appTitle },
    options.defaultHeaders,
  );
}

/**
 * The wait for response headers the SDK is given, in ms: `timeoutMs` or the default, and never
 * longer than its timer can wait (Node fires a longer one at once, which would time every request
 * out). The library's own timers wait any length (`scheduleAfter`).
 */
export function headersTimeoutMsOf(options: Pick<OpenRouterClientOptions, 'timeoutMs'>): number {
  return Math.min(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, MAX_TIMER_DELAY_MS);
}
