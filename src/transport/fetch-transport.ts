import { Observable } from 'rxjs';
import type { Transport, TransportEvent } from '../core/types.js';
import { Attempt, attemptSettingsOf, type Exchange } from './attempt.js';
import { errorFromBodyRead } from './attempt-errors.js';
import { checkOptions } from '../core/validation.js';
import { errorFromFetch, openRouterFetch } from './http.js';
import { fetchTransportOptionsSchema, type OpenRouterTransportOptions } from './transport-options.js';

/**
 * The network edge over plain `fetch`, for browsers, Deno, Bun and edge runtimes: no SDK, the
 * same wire handling as `createOpenRouterTransport` (error classification, SSE with keep-alive
 * comments, in-band errors, usage, key redaction), and the same contract: unsubscribing aborts the
 * request at once, and that abort is never reported as an error. Keys must not ship to a browser:
 * point `baseURL` at your own backend that adds them (a path such as `/api/openrouter` is resolved
 * against the page; see the README's browser pattern), or use it
 * where the keys already are. Throws a `ValidationError` naming the field for bad options.
 */
export function createFetchTransport(options: OpenRouterTransportOptions = {}): Transport {
  checkOptions(fetchTransportOptionsSchema, options, 'transport options');
  const settings = attemptSettingsOf(options);
  // One for every attempt: the key and model come with each send.
  const exchange: Exchange = {
    send: (body, signal, { key, model }) =>
      openRouterFetch(options, settings.scheduler, {
        key,
        ...(model === undefined ? {} : { model }),
        method: 'POST',
        path: '/chat/completions',
        body,
        signal,
      }),
    errorOf: errorFromFetch,
    bodyReadErrorOf: errorFromBodyRead,
  };
  return (key, request, transportOptions) =>
    new Observable<TransportEvent>((subscriber) => {
      const attempt = new Attempt(subscriber, exchange, { key, model: request.model }, settings);
      return attempt.start(request, transportOptions?.signal, transportOptions?.onSent);
    });
}
