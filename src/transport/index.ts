import { Observable, type Subscription } from 'rxjs';
import { ConfigurationError } from '../core/errors.js';
import type { Transport, TransportEvent } from '../core/types.js';
import { checkOptions } from '../core/validation.js';
import { transportOptionsSchema, type OpenRouterTransportOptions } from './transport-options.js';

export { createFetchTransport } from './fetch-transport.js';
export { fetchKeyInfo, parseKeyInfo, type KeyInfo } from './key-info.js';
export type { OpenRouterClientOptions } from './client-options.js';
export type { OpenRouterTransportOptions } from './transport-options.js';

/**
 * The network edge through the real `openai` SDK (`maxRetries: 0`: the pool owns retries), one
 * client per key; the default transport of `createKeyPool`. The SDK is loaded when this is
 * called, not when the package is: an app that passes its own transport (a browser app with
 * `createFetchTransport()`) never downloads it. Where the SDK cannot run (a browser), attempts
 * fail with a `ConfigurationError` that touches no key's health. Unsubscribing aborts the HTTP
 * request at once. Throws a `ValidationError` naming the field for bad options.
 */
export function createOpenRouterTransport(options: OpenRouterTransportOptions = {}): Transport {
  checkOptions(transportOptionsSchema, options, 'transport options');
  // Loaded now rather than by the first attempt: an attempt already admitted counts in its quota
  // windows from its admission plus a margin, and a send that waited on the load could come later.
  let sdkTransport: Transport | undefined;
  const loaded = import('./openai-transport.js').then((module) => (sdkTransport = module.createSdkTransport(options)));
  // Handled here too: each attempt reports a failed load itself, and there may be none.
  loaded.catch(() => undefined);
  // Once loaded, attempts go straight to the SDK transport: a request in flight holds no
  // subscriber, promise or closure of this wrapper (about 0.7 KiB each).
  const transport: Transport = (key, request, transportOptions) =>
    sdkTransport?.(key, request, transportOptions) ??
    new Observable<TransportEvent>((subscriber) => {
      let inner: Subscription | undefined;
      let closed = false;
      loaded.then(
        (transport) => {
          if (!closed) inner = transport(key, request, transportOptions).subscribe(subscriber);
        },
        (error: unknown) => {
          if (closed) return;
          subscriber.error(
            new ConfigurationError({
              message: `the openai SDK could not be loaded (${error instanceof Error ? error.message : String(error)}); use createFetchTransport()`,
              scope: 'request',
              retryable: false,
              keyLabel: key.label,
              model: request.model,
            }),
          );
        },
      );
      return () => {
        closed = true;
        inner?.unsubscribe();
      };
    });
  // The pool waits for the load before it gives out keys (see `Transport.ready`).
  return Object.assign(transport, { ready: loaded });
}
