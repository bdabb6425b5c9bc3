import { InjectionToken, makeEnvironmentProviders, type EnvironmentProviders } from '@angular/core';
import { createKeyPool, type KeyPool, type KeyPoolOptions } from 'openrouter-rx';

/**
 * The pool as an Angular dependency. Provide it once, at the application root:
 *
 *   bootstrapApplication(AppComponent, { providers: [provideOpenRouterPool({ keys, transport, ... })] });
 *
 * Keys are secrets: never ship them to a browser. In the browser, give the pool placeholder keys
 * (one per real key, so its health still tells them apart) and `createFetchTransport()` pointed
 * at your own backend, which swaps each placeholder for its real key (see ../../server.mjs).
 * Where the keys live (Angular SSR, a Node process), provide the pool with the real keys.
 */
export const OPENROUTER_POOL = new InjectionToken<KeyPool>('openrouter-rx key pool');

export function provideOpenRouterPool(options: KeyPoolOptions): EnvironmentProviders {
  return makeEnvironmentProviders([{ provide: OPENROUTER_POOL, useFactory: () => createKeyPool(options) }]);
}
