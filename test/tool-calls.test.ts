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
});
