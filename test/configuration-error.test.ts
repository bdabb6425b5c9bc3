/**
 * A transport that cannot run here is a configuration error, not a failing key: in a browser-like
 * runtime the openai SDK refuses to start, and every attempt fails with a `ConfigurationError`
 * that touches no key's or model's health and is not retried, while `createFetchTransport()`
 * works in the same runtime.
 */
import { lastValueFrom } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigurationError, createFetchTransport, createKeyPool, createOpenRouterTransport } from '../src/index.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'alpha' },
  { key: TEST_KEYS.beta, label: 'beta' },
];
const MODEL = 'test/model-a';
const cleanups: Array<() => unknown> = [];
let fake: FakeOpenRouter;

/** What the SDK takes for a browser: `window.document` and `navigator`. */
function pretendBrowser(): void {
  const globals = globalThis as Record<string, unknown>;
  const saved = { window: globals['window'], navigator: Object.getOwnPropertyDescriptor(globalThis, 'navigator') };
  globals['window'] = { document: {} };
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: 'test' }, configurable: true, writable: true });
  cleanups.push(() => {
    if (saved.window === undefined) delete globals['window'];
    else globals['window'] = saved.window;
    if (saved.navigator === undefined) delete globals['navigator'];
    else Object.defineProperty(globalThis, 'navigator', saved.navigator);
  });
}

beforeEach(async () => {
  fake = await startFakeOpenRouter({ keys: KEYS });
  cleanups.push(() => fake.close());
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('a transport that cannot run here', () => {
  it('the SDK transport fails each attempt with a ConfigurationError naming createFetchTransport, and sends nothing', async () => {
    pretendBrowser();
    const transport = createOpenRouterTransport({ baseURL: fake.baseURL });
    const attempt = lastValueFrom(
      transport({ key: TEST_KEYS.alpha, label: 'alpha', fingerprint: 'fp' }, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }),
    );
    await expect(attempt).rejects.toBeInstanceOf(ConfigurationError);
    await expect(attempt).rejects.toMatchObject({
      kind: 'configuration',
      scope: 'request',
      retryable: false,
      message: expect.stringContaining('createFetchTransport()'),
    });
    expect(fake.requests).toHaveLength(0);
  });

  it('in a pool: the request fails at once, not retried, and every key stays closed without a failure', async () => {
    pretendBrowser();
    const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, discoverAccounts: false });
    cleanups.push(() => pool.dispose());
    const outcome = lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    await expect(outcome).rejects.toMatchObject({ name: 'ConfigurationError', kind: 'configuration' });
    for (const key of pool.snapshot().keys)
      expect({ label: key.label, state: key.state, failures: key.failures }).toEqual({ label: key.label, state: 'closed', failures: 0 });
    expect(pool.snapshot().models.every((model) => model.state === 'closed' && model.failures === 0)).toBe(true);
    expect(fake.requests).toHaveLength(0);
  });

  it('the fetch transport runs in the same runtime', async () => {
    pretendBrowser();
    const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, transport: createFetchTransport({ baseURL: fake.baseURL }) });
    cleanups.push(() => pool.dispose());
    const completion = await lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    expect(completion.completion.content.length).toBeGreaterThan(0);
    expect(fake.requests.length).toBeGreaterThan(0);
  });

  it("the fetch transport takes a path on the page's origin as its baseURL, as a browser app calling its backend writes it", async () => {
    const origin = new URL(fake.baseURL).origin;
    const path = new URL(fake.baseURL).pathname;
    // What a page's fetch does with a path: resolve it against the page's URL.
    const pageFetch = (input: string | URL | Request, init?: RequestInit) =>
      fetch(new URL(input instanceof Request ? input.url : input, `${origin}/app/`), init);
    const pool = createKeyPool({
      keys: KEYS,
      transport: createFetchTransport({ baseURL: path, fetch: pageFetch }),
      discoverAccounts: false,
    });
    cleanups.push(() => pool.dispose());
    const completion = await lastValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    expect(completion.completion.content.length).toBeGreaterThan(0);
  });

  it('a baseURL that is neither an http(s) URL nor a path is refused, naming the field; the SDK transport still wants an absolute URL', () => {
    expect(() => createFetchTransport({ baseURL: 'ftp://example.test/api' })).toThrow(
      /baseURL: must be an http:\/\/ or https:\/\/ URL, or a path/,
    );
    expect(() => createFetchTransport({ baseURL: '//example.test/api' })).toThrow(/baseURL/);
    expect(() => createOpenRouterTransport({ baseURL: '/api/openrouter' })).toThrow(/baseURL: must be an http:\/\/ or https:\/\/ URL/);
  });
});
