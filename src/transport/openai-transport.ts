import type OpenAI from 'openai';
import { Observable } from 'rxjs';
import { ConfigurationError } from '../core/errors.js';
import type { KeyCredential, Transport, TransportEvent } from '../core/types.js';
import { Attempt, attemptSettingsOf, type Exchange } from './attempt.js';
import { createOpenRouterClient, type ErrorBodies } from './sdk-client.js';
import { errorFromSdk, errorFromStreamRead } from './sdk-errors.js';
import type { OpenRouterTransportOptions } from './transport-options.js';

/**
 * The network edge through the `openai` SDK: sends one attempt (one client per key) and reports it
 * as `TransportEvent`s or a typed `OpenRouterError`. Each subscription owns an `AbortController`;
 * unsubscribing aborts the HTTP request at once, and that abort is never reported as an error.
 * Its options were checked by `createOpenRouterTransport`, which loads this module.
 */
export function createSdkTransport(options: OpenRouterTransportOptions = {}): Transport {
  const exchanges = new Map<string, Exchange>();
  const errorBodies: ErrorBodies = new WeakMap();
  const exchangeFor = (key: KeyCredential): Exchange => {
    let exchange = exchanges.get(key.key);
    if (exchange === undefined) {
      exchange = sdkExchange(createOpenRouterClient(key.key, options, errorBodies), errorBodies);
      exchanges.set(key.key, exchange);
    }
    return exchange;
  };
  const settings = attemptSettingsOf(options);

  return (key, request, transportOptions) =>
    new Observable<TransportEvent>((subscriber) => {
      let exchange: Exchange;
      try {
        exchange = exchangeFor(key);
      } catch (error: unknown) {
        // The SDK refuses to run here (a browser): no key or model is at fault.
        subscriber.error(
          new ConfigurationError({
            message: `the openai SDK cannot run here (${error instanceof Error ? error.message : String(error)}); use createFetchTransport()`,
            scope: 'request',
            retryable: false,
            keyLabel: key.label,
            model: request.model,
          }),
        );
        return undefined;
      }
      const attempt = new Attempt(subscriber, exchange, { key, model: request.model }, settings);
      return attempt.start(request, transportOptions?.signal, transportOptions?.onSent);
    });
}

/** One key's SDK client as an exchange: the SDK sends the request and maps HTTP errors. */
function sdkExchange(client: OpenAI, errorBodies: ErrorBodies): Exchange {
  return {
    send: (body, signal) =>
      client.chat.completions.create(body as unknown as Parameters<OpenAI['chat']['completions']['create']>[0], { signal }).asResponse(),
    errorOf: (error, identity, request) => errorFromSdk(error, identity, errorBodies, request),
    bodyReadErrorOf: (error, identity, read) => errorFromStreamRead(error, identity, read, errorBodies),
  };
}
