/**
 * Key text that JSON writes with `\\u` escapes is redacted like plain key text, in a whole answer
 * and in a stream's model, tool-call ids and names. (Edge cases a review found; each failed before
 * its fix.)
 */
import { lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { ChatRequest, KeyCredential } from '../../src/core/types.js';
import { TEST_KEYS } from '../helpers/test-keys.js';

const SECRET = TEST_KEYS.echoedPrefix;
const KEY: KeyCredential = { key: SECRET, label: 'alpha', fingerprint: 'fp-alpha' };
// JSON may write the key with `\u` escapes (its 1st and 11th characters here): the same string once parsed.
const ESCAPED = '\\u0073' + SECRET.slice(1, 10) + '\\u0061' + SECRET.slice(11);

const TRANSPORTS = [
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const;

const chat = (stream: boolean): ChatRequest => ({ model: 'm/a', stream, messages: [{ role: 'user', content: 'hi' }] });

describe.each(TRANSPORTS)('%s: key text written with a JSON \\u escape', (_name, create) => {
  it('non-streamed answer content', async () => {
    const body = `{"id":"gen-1","model":"m/a","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"your key is ${ESCAPED}"}}]}`;
    const fetchImpl = async () => new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    const events = await lastValueFrom(
      create({ baseURL: 'http://127.0.0.1:9/api/v1', fetch: fetchImpl })(KEY, chat(false)).pipe(toArray()),
    );
    expect(JSON.stringify(events)).not.toContain(SECRET.slice(0, 20));
  });

  it('streamed tool call name / id and chunk model', async () => {
    const chunk = (delta: string) => `data: {"id":"gen-1","model":"${ESCAPED}","choices":[{"index":0,"delta":${delta}}]}\n\n`;
    const sse =
      chunk(
        `{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"${ESCAPED}","type":"function","function":{"name":"${ESCAPED}","arguments":""}}]}`,
      ) +
      `data: {"id":"gen-1","model":"m/a","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n`;
    const fetchImpl = async () => new Response(sse, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    const events = await lastValueFrom(create({ baseURL: 'http://127.0.0.1:9/api/v1', fetch: fetchImpl })(KEY, chat(true)).pipe(toArray()));
    expect(JSON.stringify(events)).not.toContain(SECRET.slice(0, 20));
  });
});
