import { InjectionToken, makeEnvironmentProviders, type EnvironmentProviders } from '@angular/core';
import { createKeyPool, type KeyPool, type KeyPoolOptions } from '../../src/index.js';

/**
 * The pool as an Angular dependency. Provide it once, at the application root:
 *
 *   bootstrapApplication(AppComponent, { providers: [provideOpenRouterPool({ keys, ... })] });
 *
 * Keys are secrets: never ship them to a browser. Provide the pool where the keys live (Angular
 * SSR, or a Node process), or in the browser give `createKeyPool` a `transport` that calls your
 * own backend, which holds the keys.
 */
export const OPENROUTER_POOL = new InjectionToken<KeyPool>('openrouter-rx key pool');

export function provideOpenRouterPool(options: KeyPoolOptions): EnvironmentProviders {
  return makeEnvironmentProviders([{ provide: OPENROUTER_POOL, useFactory: () => createKeyPool(options) }]);
}
