import type { SchedulerLike } from 'rxjs';
import { ConfigurationError, OpenRouterError, copyError } from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import type { KeyCredential } from '../core/types.js';
import { classifyHttpError } from '../wire/classify.js';
import { parseJsonBody } from '../wire/values.js';
import { abortableFetch, bodyText } from './abortable-fetch.js';
import { connectionError, headersTimeoutError, serializedBody, type AttemptIdentity } from './attempt-errors.js';
import {
  DEFAULT_BASE_URL,
  DEFAULT_TIMEOUT_MS,
  attributionHeaders,
  globalFetchInit,
  type OpenRouterClientOptions,
} from './client-options.js';
import { redactError, redactValue } from '../core/redact.js';

/** What a call through the global `fetch` adds to its init: the runtime does not change while it runs. */
const GLOBAL_FETCH_INIT = globalFetchInit();

/** One call to OpenRouter over plain `fetch`. */
export interface HttpCall {
  key: KeyCredential;
  model?: string;
  method: 'GET' | 'POST';
  /** Below the base URL: `/chat/completions`, `/key`. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Aborts the request and the read of its body. */
  signal: AbortSignal;
}

/**
 * Sends one call with `fetch` (the given one, else the global one: browsers, Deno, Bun, edge
 * runtimes and Node 18+ have it) and resolves with the response once its headers arrived and
 * its status is 2xx. Rejects with a typed, key-free error: the classified error body for any
 * other status (exactly as the SDK transport reports it), a `NetworkError` for a connection that
 * failed or for headers that took longer than `timeoutMs`, a `ConfigurationError` where there is
 * no `fetch`. An abort by `signal` rejects with whatever `fetch` rejects with (the caller has left).
 */
export async function openRouterFetch(options: OpenRouterClientOptions, scheduler: SchedulerLike, call: HttpCall): Promise<Response> {
  const identity: AttemptIdentity = { key: call.key, ...(call.model === undefined ? {} : { model: call.model }) };
  const fetchImpl = options.fetch === undefined ? (typeof fetch === 'function' ? fetch : undefined) : abortableFetch(options.fetch);
  if (fetchImpl === undefined) {
    throw new ConfigurationError({
      message: 'no fetch in this runtime: pass `fetch` to the transport',
      scope: 'request',
      retryable: false,
    });
  }
  const controller = new AbortController();
  if (call.signal.aborted) controller.abort();
  else call.signal.addEventListener('abort', () => controller.abort(), { once: true });
  let timedOut = false;
  const timeout = scheduleAfter(scheduler, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, () => {
    timedOut = true;
    controller.abort();
  });
  const base = (options.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
  // Before the try: a body JSON cannot carry is the request's own failure, not the connection's.
  const body = call.body === undefined ? undefined : serializedBody(call.body, identity);
  let response: Response;
  try {
    response = await fetchImpl(`${base}${call.path}`, {
      method: call.method,
      headers: requestHeaders(call, options),
      ...(body === undefined ? {} : { body }),
      signal: controller.signal,
      ...(options.fetch === undefined ? GLOBAL_FETCH_INIT : {}),
    });
  } catch (error: unknown) {
    if (call.signal.aborted) throw error;
    // The caller's `fetch` threw it: an error of its own is left as it is, and a copy redacted.
    throw timedOut
      ? headersTimeoutError(identity)
      : errorFromFetch(error instanceof OpenRouterError ? copyError(error, {}) : error, identity);
  } finally {
    timeout.unsubscribe();
  }
  if (response.ok) return response;
  // The status came: an error body cut off after it is read as no body, and the status classifies
  // it (as the SDK does), rather than the read's failure blaming the key's connection.
  const text = await bodyText(response, call.signal).catch(() => '');
  throw redactError(
    classifyHttpError({
      status: response.status,
      headers: response.headers,
      body: redactValue(parseJsonBody(text), call.key),
      // Wait hints are wall-clock dates and epoch times, so they are read against the real clock.
      nowMs: Date.now(),
      ...(call.model === undefined ? {} : { model: call.model }),
      keyLabel: call.key.label,
    }),
    call.key,
  );
}

/**
 * A call's headers, each set in turn: header names are case-insensitive, so a default header
 * overrides an attribution header (or the SDK's own) whatever the case of its name, as the SDK
 * transport has it, instead of both going out joined (`x-title: App, Mine`).
 */
function requestHeaders(call: HttpCall, options: OpenRouterClientOptions): Headers {
  const headers = new Headers();
  headers.set('Authorization', `Bearer ${call.key.key}`);
  headers.set('Accept', 'application/json, text/event-stream');
  for (const [name, value] of Object.entries(attributionHeaders(options))) headers.set(name, value);
  // After them, as the SDK sets it: the body is JSON whatever a default header says.
  if (call.body !== undefined) headers.set('Content-Type', 'application/json');
  return headers;
}

/** What `openRouterFetch` rejected with, typed (it already is, unless `fetch` itself threw something odd). */
export function errorFromFetch(error: unknown, identity: AttemptIdentity): OpenRouterError {
  if (error instanceof OpenRouterError) return redactError(error, identity.key);
  return redactError(connectionError(error instanceof Error ? error : new Error(String(error)), identity), identity.key);
}
