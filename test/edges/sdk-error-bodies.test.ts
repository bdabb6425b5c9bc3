/**
 * The SDK transport reads an error body as the fetch transport does: a reason phrase outside
 * ASCII, a body slower than the headers timeout, and a caller's `fetch` whose error body never
 * ends (cancelled on unsubscribe). (Edge cases a review found; each failed before its fix.)
 */
import net from 'node:net';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KeyLimitError, UpstreamError } from '../../src/core/errors.js';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { ChatRequest, KeyCredential, TransportEvent } from '../../src/core/types.js';
import type { Observable } from 'rxjs';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp-alpha' };
const TRANSPORTS = [
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const;
const chat = (stream = false): ChatRequest => ({ model: 'm/a', stream, messages: [{ role: 'user', content: 'hi' }] });
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function collect(events$: Observable<TransportEvent>): Promise<{ error?: unknown }> {
  return new Promise((resolve) => events$.subscribe({ error: (error: unknown) => resolve({ error }), complete: () => resolve({}) }));
}

describe.each(TRANSPORTS)('%s', (_name, create) => {
  it("a 503 whose reason phrase is not ASCII (a localized proxy) is the model failing, not the key's connection", async () => {
    const body = '{"error":{"message":"Service unavailable","code":503}}';
    const server = net.createServer((socket) =>
      socket.once('data', () =>
        socket.end(
          Buffer.concat([
            Buffer.from('HTTP/1.1 503 Dienst nicht verf\u00fcgbar\r\n', 'latin1'),
            Buffer.from(`content-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`),
          ]),
        ),
      ),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    for (const stream of [false, true]) {
      const { error } = await collect(create({ baseURL })(KEY, chat(stream)));
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ scope: 'model', status: 503 });
    }
  });

  it('an error body cut off after its status is classified alike on both transports', async () => {
    const server = net.createServer((socket) =>
      socket.once('data', () => {
        socket.write('HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"error":{"mess');
        setTimeout(() => socket.destroy(), 20);
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    const { error } = await collect(create({ baseURL })(KEY, chat()));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ scope: 'model', status: 503 });
    // The SDK reads an error body itself, so its transport's message carries the read's failure
    // ("503 terminated"), where the fetch transport reads no body: the classification is the same.
  });

  it('an error body that takes longer than timeoutMs to arrive is classified from its text', async () => {
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(403, { 'content-type': 'application/json' });
        response.write('{"error":');
        setTimeout(() => response.end('{"message":"Key limit exceeded","code":403}}'), 400);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    const { error } = await collect(create({ baseURL, timeoutMs: 200 })(KEY, chat()));
    expect(error).toBeInstanceOf(KeyLimitError);
  });

  it("unsubscribing while an error body of a caller's fetch (deaf to its signal) is read cancels that body", async () => {
    const state = { cancelled: false, pulls: 0 };
    const fetchImpl = async () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start: (controller) => controller.enqueue(new TextEncoder().encode('{"error":')),
          cancel: () => {
            state.cancelled = true;
          },
        }),
        { status: 500, headers: { 'content-type': 'application/json' } },
      );
    const subscription = create({ baseURL: 'http://127.0.0.1:9/api/v1', fetch: fetchImpl })(KEY, chat()).subscribe({ error: () => {} });
    await new Promise((resolve) => setTimeout(resolve, 50));
    subscription.unsubscribe();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(state.cancelled).toBe(true);
  });
});

describe('the SDK transport', () => {
  it("sends the SDK's own User-Agent, whatever the client class that keeps error bodies is named", async () => {
    const agents: Array<string | undefined> = [];
    const server = createServer((request, response) => {
      agents.push(request.headers['user-agent']);
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(
          '{"id":"gen-1","model":"m/a","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"hi"}}]}',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    const { error } = await collect(createOpenRouterTransport({ baseURL })(KEY, chat()));
    expect(error).toBeUndefined();
    expect(agents).toEqual([expect.stringMatching(/^OpenAI\/JS \d/)]);
  });

  it("uses the global fetch as it is at each request, as the fetch transport does (a review's finding)", async () => {
    const calls: string[] = [];
    const stub = (name: string) => async () => {
      calls.push(name);
      const body =
        '{"id":"gen-1","model":"m/a","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}]}';
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    };
    cleanups.push(() => vi.unstubAllGlobals());
    const transport = createOpenRouterTransport({ baseURL: 'http://127.0.0.1:9/api/v1' });
    vi.stubGlobal('fetch', stub('first'));
    expect((await collect(transport(KEY, chat()))).error).toBeUndefined();
    // Stubbed again after the key's client was made (a test's stub, an instrumentation's patch).
    vi.stubGlobal('fetch', stub('second'));
    expect((await collect(transport(KEY, chat()))).error).toBeUndefined();
    expect(calls).toEqual(['first', 'second']);
  });
});
