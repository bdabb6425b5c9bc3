import { provideZonelessChangeDetection } from '@angular/core';
import { bootstrapApplication } from '@angular/platform-browser';
import { createFetchTransport } from 'openrouter-rx';
import { AppComponent } from './app/app.component';
import { provideOpenRouterPool } from './app/openrouter.providers';

/** What the backend tells the page about its keys: their labels, never their text. */
interface BackendKeys {
  keys: Array<{ label: string }>;
}

async function start(): Promise<void> {
  const { keys } = (await (await fetch('api/keys')).json()) as BackendKeys;
  await bootstrapApplication(AppComponent, {
    providers: [
      provideZonelessChangeDetection(),
      provideOpenRouterPool({
        // Placeholders, one per real key: the backend swaps `backend:<label>` for the key itself.
        keys: keys.map(({ label }) => ({ key: `backend:${label}`, label })),
        // fetch, not the openai SDK (which never loads); the base URL must be absolute.
        transport: createFetchTransport({ baseURL: new URL('api/openrouter', document.baseURI).href }),
        // Accounts come from `GET /key` on OpenRouter itself: not from a browser.
        discoverAccounts: false,
        // Keys in turn, so the first prompt meets the revoked key of the example's fake server.
        strategy: 'roundRobin',
      }),
    ],
  });
}

start().catch((error: unknown) => console.error(error));
