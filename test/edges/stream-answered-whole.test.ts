/**
 * A stream request answered with one JSON body instead of events: OpenRouter sends an error that
 * comes before the stream as a JSON body, with status 200 too (openrouter-wire.md §6), and a proxy
 * may answer a whole completion. The attempt reads it as a non-streamed answer: the error is the
 * one the body names (before, "stream ended before any finish_reason"), the answer comes as one
 * chunk and the end. Which it is, the body's first byte tells where the label is not an event
 * stream: servers label events JSON, or not at all, and an error JSON text/plain.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { lastValueFrom, toArray, type Observable } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { type OpenRouterError, UpstreamError } from '../../src/core/errors.js';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { ChatRequest, KeyCredential, TransportEvent } from '../../src/core/types.js';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp-alpha' };
const TRANSPORTS = [
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const;
const chat = (stream: boolean): ChatRequest => ({ model: 'm/a', stream, messages: [{ role: 'user', content: 'hi' }] });

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A server that answers every chat request with status 200 and `body` (a string as it is) as `contentType` (none: no header). */
async function answering(body: unknown, contentType: string | undefined = 'application/json; charset=utf-8'): Promise<string> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, contentType === undefined ? {} : { 'content-type': contentType });
      response.end(typeof body === 'string' ? body : JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
}

function outcome(events$: Observable<TransportEvent>): Promise<{ events: TransportEvent[] } | { error: unknown }> {
  return lastValueFrom(events$.pipe(toArray())).then(
    (events) => ({ events }),
    (error: unknown) => ({ error }),
  );
}

const PROVIDER_ERROR = { error: { code: 502, message: 'Provider returned error', metadata: { provider_name: 'Acme' } } };
const WHOLE_ANSWER = {
  id: 'gen-1',
  model: 'm/a',
  provider: 'Acme',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there.' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
};

describe.each(TRANSPORTS)('%s', (_name, create) => {
  it('a JSON error body with status 200 fails a stream as it fails a whole answer: with the error it names', async () => {
    const baseURL = await answering(PROVIDER_ERROR);
    const streamed = await outcome(create({ baseURL })(KEY, chat(true)));
    const whole = await outcome(create({ baseURL })(KEY, chat(false)));
    expect('error' in streamed && streamed.error).toBeInstanceOf(UpstreamError);
    const [streamError, wholeError] = [streamed, whole].map((result) =>
      'error' in result ? (result.error as OpenRouterError) : undefined,
    );
    expect(streamError?.message).toContain('Provider returned error');
    expect({ kind: streamError?.kind, scope: streamError?.scope, status: streamError?.status }).toEqual({
      kind: wholeError?.kind,
      scope: wholeError?.scope,
      status: wholeError?.status,
    });
  });

  it('a whole JSON answer to a stream request comes as one chunk and the end', async () => {
    const baseURL = await answering(WHOLE_ANSWER);
    const streamed = await outcome(create({ baseURL })(KEY, chat(true)));
    expect(streamed).toEqual({
      events: [
        { type: 'chunk', delta: 'Hello there.', model: 'm/a', provider: 'Acme', finishReason: 'stop' },
        expect.objectContaining({ type: 'end', id: 'gen-1', model: 'm/a', provider: 'Acme', finishReason: 'stop' }),
      ],
    });
    const end = 'events' in streamed ? streamed.events[1] : undefined;
    expect(end).toMatchObject({ usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 } });
  });

  it('an event stream that a server labels otherwise is still read as events', async () => {
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = { id: 'gen-2', model: 'm/a', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }] };
        response.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    const streamed = await outcome(create({ baseURL })(KEY, chat(true)));
    expect('events' in streamed && streamed.events.map((event) => event.type)).toEqual(['chunk', 'end']);
  });

  it('events labelled JSON, or not labelled, are read as events; a JSON error labelled text/plain as the error it names', async () => {
    const event = { id: 'gen-3', model: 'm/a', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }] };
    const sse = `: OPENROUTER PROCESSING\n\ndata: ${JSON.stringify(event)}\n\ndata: [DONE]\n\n`;
    for (const contentType of ['application/json', undefined]) {
      const streamed = await outcome(create({ baseURL: await answering(sse, contentType) })(KEY, chat(true)));
      expect('events' in streamed && streamed.events.map((item) => item.type), String(contentType)).toEqual(['chunk', 'end']);
    }
    const failed = await outcome(
      create({ baseURL: await answering(`  ${JSON.stringify(PROVIDER_ERROR)}`, 'text/plain') })(KEY, chat(true)),
    );
    expect('error' in failed && (failed.error as OpenRouterError).message).toContain('Provider returned error');
  });

  it('a JSON answer whose choice failed keeps the usage it billed, streamed or not', async () => {
    const body = {
      id: 'gen-4',
      model: 'm/a',
      choices: [
        { index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'error', error: { code: 502, message: 'upstream died' } },
      ],
      usage: { prompt_tokens: 100, completion_tokens: 0, total_tokens: 100 },
    };
    for (const stream of [true, false]) {
      const failed = await outcome(create({ baseURL: await answering(body) })(KEY, chat(stream)));
      expect('error' in failed && (failed.error as OpenRouterError).usage, `stream: ${stream}`).toMatchObject({ promptTokens: 100 });
    }
  });

  it("a whole answer's tool calls come numbered, as a stream's deltas are, their arguments as they were", async () => {
    const calls = [{ id: 'c1', type: 'function', function: { name: 'f', arguments: { q: 1 } } }];
    const body = {
      ...WHOLE_ANSWER,
      choices: [{ index: 0, message: { role: 'assistant', content: '', tool_calls: calls }, finish_reason: 'tool_calls' }],
    };
    const streamed = await outcome(create({ baseURL: await answering(body) })(KEY, chat(true)));
    const chunk = 'events' in streamed ? streamed.events[0] : undefined;
    expect(chunk).toMatchObject({
      type: 'chunk',
      toolCalls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'f', arguments: { q: 1 } } }],
    });
  });

  it('a JSON error after a byte order mark is read as the error it names, streamed or not', async () => {
    const baseURL = await answering('\uFEFF' + JSON.stringify(PROVIDER_ERROR));
    for (const stream of [true, false]) {
      const failed = await outcome(create({ baseURL })(KEY, chat(stream)));
      expect('error' in failed && (failed.error as OpenRouterError).message, `stream: ${stream}`).toContain('Provider returned error');
    }
  });

  for (const contentType of ['text/event-stream', 'application/json', undefined])
    it(`a body cut before its first byte (${String(contentType)}) fails as a cut stream: the model's, not the key's`, async () => {
      const server = createServer((request, response) => {
        request.resume();
        request.on('end', () => {
          response.writeHead(200, contentType === undefined ? {} : { 'content-type': contentType });
          response.flushHeaders();
          setTimeout(() => response.socket?.destroy(), 50);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => server.close());
      const failed = await outcome(
        create({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1` })(KEY, chat(true)),
      );
      const error = 'error' in failed ? (failed.error as OpenRouterError) : undefined;
      expect({ name: error?.name, scope: error?.scope }).toEqual({ name: 'StreamError', scope: 'model' });
    });

  it('a stream that sends nothing after its headers (unlabelled) closes its socket on unsubscribe', async () => {
    let closed!: () => void;
    const socketClosed = new Promise<void>((resolve) => (closed = resolve));
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.on('close', closed);
        response.writeHead(200, {});
        response.flushHeaders();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const subscription = create({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1` })(
      KEY,
      chat(true),
    ).subscribe({
      error: () => undefined,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    subscription.unsubscribe();
    await expect(
      Promise.race([socketClosed.then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('open'), 1_000))]),
    ).resolves.toBe('closed');
  });
});
