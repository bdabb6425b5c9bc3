/**
 * A request JSON cannot carry (a getter that throws included) fails as a request error, and a real
 * network failure of a request that serialized stays a network error. (Edge cases a review found;
 * each failed before its fix.)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkError } from '../../src/core/errors.js';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { ChatRequest, KeyCredential, TransportEvent } from '../../src/core/types.js';
import type { Observable } from 'rxjs';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp-alpha' };
const TRANSPORTS = [
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const;
const rejections: unknown[] = [];
const onRejection = (reason: unknown) => rejections.push(reason);
process.on('unhandledRejection', onRejection);
afterEach(() => {
  rejections.length = 0;
});

function collect(events$: Observable<TransportEvent>, ms = 2000): Promise<{ error?: unknown; outcome: string }> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ outcome: 'never heard' }), ms);
    events$.subscribe({
      error: (error: unknown) => (clearTimeout(timer), resolve({ error, outcome: 'error' })),
      complete: () => (clearTimeout(timer), resolve({ outcome: 'complete' })),
    });
  });
}

describe.each(TRANSPORTS)('%s', (_name, create) => {
  it('a request field whose getter throws: the subscriber hears a typed error, no unhandled rejection', async () => {
    const message: Record<string, unknown> = { role: 'user' };
    Object.defineProperty(message, 'content', {
      enumerable: true,
      get: () => {
        throw new Error('no content');
      },
    });
    const request = { model: 'm/a', messages: [message] } as unknown as ChatRequest;
    const result = await collect(create({ baseURL: 'http://127.0.0.1:9/api/v1' })(KEY, request));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(rejections).toEqual([]);
    expect(result.outcome).toBe('error');
  });

  it('a network failure stays a NetworkError when the request serialized fine for the send (toJSON that fails on a later call)', async () => {
    // A server that closes the connection without answering.
    const server = createServer((request) => request.socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    let calls = 0;
    const metadata = {
      toJSON: () => {
        calls += 1;
        if (calls > 1) throw new Error('closed resource');
        return { trace: 'x' };
      },
    };
    const request = { model: 'm/a', messages: [{ role: 'user', content: 'hi' }], metadata } as unknown as ChatRequest;
    const result = await collect(create({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1` })(KEY, request));
    server.close();
    expect(calls, 'the send serialized it once').toBeGreaterThanOrEqual(1);
    expect(result.error).toBeInstanceOf(NetworkError);
  });
});
