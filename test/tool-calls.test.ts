/**
 * A streamed answer's tool calls come in its completion as a whole answer gives them (one per
 * call, its arguments joined), where they were the chunks' deltas one after another: a recorded
 * OpenRouter stream through `balance`, and `assembleToolCalls` on deltas that interleave, repeat
 * their names, come whole, or carry a `__proto__` key.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { assembleToolCalls, balance, createKeyPool, type CompletionEvent } from '../src/index.js';
import { loadFixture } from './helpers/fixtures.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

describe('tool calls of a streamed answer', () => {
  it('a recorded tool-call stream completes with the call as a whole answer gives it', async () => {
    const fixture = loadFixture('chat-stream-tool-call');
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.url?.endsWith('/chat/completions')) {
          response.writeHead(200, { 'content-type': 'text/event-stream' });
          response.end(fixture.response.body);
        } else {
          response.writeHead(404, { 'content-type': 'application/json' });
          response.end('{"error":{"message":"not here","code":404}}');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const pool = createKeyPool({
      baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`,
      keys: [{ key: TEST_KEYS.alpha, label: 'alpha' }],
    });
    cleanups.push(() => pool.dispose());
    const request = {
      model: 'openai/gpt-4.1-mini',
      stream: true,
      messages: [{ role: 'user' as const, content: 'What is the current llm version?' }],
    };
    const events = await lastValueFrom(from([request]).pipe(balance(pool), toArray()));
    const completion = events.find((event): event is CompletionEvent => event.type === 'completion');
    expect(completion?.completion.finishReason).toBe('tool_calls');
    expect(completion?.completion.toolCalls).toEqual([
      { id: 'call_o4OCgtJrNoZTmoCRvmlfoHfj', type: 'function', function: { name: 'llm_version', arguments: '{}' } },
    ]);
    // The chunks still carry the deltas as they came.
    const deltas = events.flatMap((event) => (event.type === 'chunk' ? (event.toolCalls ?? []) : []));
    expect(deltas.map((delta) => delta['index'])).toEqual([0, 0]);
  });
});

describe('assembleToolCalls', () => {
  it("joins each call's arguments by index, keeps the last id, type and name, and changes no delta", () => {
    const deltas = [
      { index: 0, id: 'call_a', type: 'function', function: { name: 'search', arguments: '' } },
      { index: 1, id: 'call_b', type: 'function', function: { name: 'fetch', arguments: '{"u' } },
      { index: 0, function: { arguments: '{"q":' } },
      { index: 1, function: { name: 'fetch', arguments: 'rl":"x"}' } },
      { index: 0, type: 'function', function: { arguments: '"rx"}' } },
    ];
    const before = JSON.stringify(deltas);
    expect(assembleToolCalls(deltas)).toEqual([
      { id: 'call_a', type: 'function', function: { name: 'search', arguments: '{"q":"rx"}' } },
      { id: 'call_b', type: 'function', function: { name: 'fetch', arguments: '{"url":"x"}' } },
    ]);
    expect(JSON.stringify(deltas)).toBe(before);
  });

  it("takes a call without an index (a whole answer's) as a call of its own, and never a __proto__ key", () => {
    const whole = JSON.parse(
      '[{"id":"c1","type":"function","function":{"name":"a","arguments":"{}"}},{"id":"c2","type":"function","__proto__":{"polluted":true},"function":{"name":"b","arguments":"[]","__proto__":{"polluted":true}}}]',
    ) as Record<string, unknown>[];
    const calls = assembleToolCalls(whole);
    expect(calls).toEqual([
      { id: 'c1', type: 'function', function: { name: 'a', arguments: '{}' } },
      { id: 'c2', type: 'function', function: { name: 'b', arguments: '[]' } },
    ]);
    expect(Object.getPrototypeOf(calls[1])).toBe(Object.prototype);
    expect(Object.getPrototypeOf(calls[1]!['function'])).toBe(Object.prototype);
    expect((calls[1] as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('keeps parallel calls that reuse an index under their own ids, and joins index-less pieces and string indexes', () => {
    expect(
      assembleToolCalls([
        { index: 0, id: 'call_a', type: 'function', function: { name: 'read', arguments: '{"path":"a"}' } },
        { index: 0, id: 'call_b', type: 'function', function: { name: 'read', arguments: '{"path":"b"}' } },
      ]),
    ).toEqual([
      { id: 'call_a', type: 'function', function: { name: 'read', arguments: '{"path":"a"}' } },
      { id: 'call_b', type: 'function', function: { name: 'read', arguments: '{"path":"b"}' } },
    ]);
    // Gemini's shape: the call, then pieces of its arguments with no index.
    expect(
      assembleToolCalls([
        { id: 'call_a', type: 'function', function: { name: 'search', arguments: '{"q":' } },
        { function: { arguments: '"rx"}' } },
      ]),
    ).toEqual([{ id: 'call_a', type: 'function', function: { name: 'search', arguments: '{"q":"rx"}' } }]);
    expect(
      assembleToolCalls([
        { index: '0', id: 'call_a', type: 'function', function: { name: 'search', arguments: '{"q":' } },
        { index: '0', function: { arguments: '"rx"}' } },
      ]),
    ).toEqual([{ id: 'call_a', type: 'function', function: { name: 'search', arguments: '{"q":"rx"}' } }]);
  });

  it('keeps index-less deltas that repeat their call id as one call', () => {
    expect(
      assembleToolCalls([
        { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":' } },
        { id: 'call_1', function: { arguments: '"Paris"}' } },
      ]),
    ).toEqual([{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
  });

  it('starts a new call for an index-less delta with an id after one that had none', () => {
    expect(
      assembleToolCalls([
        { function: { name: 'a', arguments: '{"x":1}' } },
        { id: 'call_b', function: { name: 'b', arguments: '{"y":2}' } },
      ]),
    ).toEqual([{ function: { name: 'a', arguments: '{"x":1}' } }, { id: 'call_b', function: { name: 'b', arguments: '{"y":2}' } }]);
  });

  it('keeps arguments that are not text, and shares no object with the deltas', () => {
    const delta = {
      index: 0,
      id: 'c',
      type: 'function',
      extra_content: { google: { thought_signature: 'sig' } },
      function: { name: 'f', arguments: { q: 1 } },
    };
    const [call] = assembleToolCalls([delta]);
    expect(call).toEqual({
      id: 'c',
      type: 'function',
      extra_content: { google: { thought_signature: 'sig' } },
      function: { name: 'f', arguments: { q: 1 } },
    });
    (call!['extra_content'] as { google: { thought_signature: string } }).google.thought_signature = 'changed';
    (call!['function'] as { arguments: { q: number } }).arguments.q = 2;
    expect(delta).toEqual({
      index: 0,
      id: 'c',
      type: 'function',
      extra_content: { google: { thought_signature: 'sig' } },
      function: { name: 'f', arguments: { q: 1 } },
    });
  });
});

describe('assembleToolCalls on what a custom transport may emit', () => {
  it('keeps values that are not JSON (a class instance, a function) as they are, and a cycle, without throwing', () => {
    class Signature {
      constructor(readonly value: string) {}
    }
    const signature = new Signature('sig');
    const callback = (): string => 'x';
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic['self'] = cyclic;
    const [call] = assembleToolCalls([{ index: 0, id: 'c', signature, callback, cyclic, function: { name: 'f', arguments: '{}' } }]);
    expect(call!['signature']).toBe(signature);
    expect(call!['callback']).toBe(callback);
    expect((call!['cyclic'] as Record<string, unknown>)['name']).toBe('loop');
  });
});

describe('key text split across tool-call argument deltas', () => {
  const SECRET = TEST_KEYS.echoedPrefix;
  const chunk = (calls: unknown[]) =>
    `data: ${JSON.stringify({ id: 'g', model: 'm/a', choices: [{ index: 0, delta: { tool_calls: calls } }] })}\n\n`;
  const END = `data: {"id":"g","model":"m/a","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n`;
  for (const cut of [1, 15, 21, 40])
    it(`never reaches the assembled completion (cut at ${cut})`, async () => {
      const sse =
        chunk([
          { index: 0, id: 'c0', type: 'function', function: { name: 'f', arguments: `{"k":"x ${SECRET.slice(0, 25)}` } },
          { index: 1, id: 'c1', type: 'function', function: { name: 'g', arguments: 'a ' + SECRET.slice(0, cut) } },
        ]) +
        chunk([{ index: 1, function: { arguments: SECRET.slice(cut) + ' b' } }]) +
        chunk([{ index: 0, function: { arguments: '"}' } }]) +
        END;
      const server = createServer((request, response) => {
        request.resume();
        request.on('end', () => {
          response.writeHead(200, { 'content-type': 'text/event-stream' });
          response.end(sse);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => server.close());
      const pool = createKeyPool({
        baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`,
        keys: [{ key: SECRET, label: 'alpha' }],
      });
      cleanups.push(() => pool.dispose());
      const events = await lastValueFrom(
        from([{ model: 'm/a', stream: true, messages: [{ role: 'user' as const, content: 'hi' }] }]).pipe(balance(pool), toArray()),
      );
      const toolCalls = events.find((event): event is CompletionEvent => event.type === 'completion')?.completion.toolCalls;
      expect(toolCalls).toHaveLength(2);
      const text = JSON.stringify(toolCalls);
      expect(text).not.toContain(SECRET.slice(0, 20));
      expect(text).not.toContain(SECRET.slice(9, 25));
      expect(text).toContain('[key alpha');
    });
});
