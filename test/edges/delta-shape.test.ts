/**
 * A stream chunk whose `delta.tool_calls` is not an array is malformed, not an empty success.
 * (Edge cases a review found; each failed before its fix.)
 */
import { lastValueFrom, toArray } from 'rxjs';
import { expect, it } from 'vitest';
import { MalformedResponseError } from '../../src/core/errors.js';
import { createFetchTransport } from '../../src/transport/index.js';
import type { KeyCredential } from '../../src/core/types.js';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp' };

it('a stream whose delta.tool_calls is not an array is malformed, not an empty success', async () => {
  const sse =
    `data: {"id":"gen-1","model":"m/a","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}}}]}\n\n` +
    `data: {"id":"gen-1","model":"m/a","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n`;
  const fetchImpl = async () => new Response(sse, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  const outcome = await lastValueFrom(
    createFetchTransport({ baseURL: 'http://127.0.0.1:9/api/v1', fetch: fetchImpl })(KEY, {
      model: 'm/a',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    }).pipe(toArray()),
  ).then(
    (events) => events,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(MalformedResponseError);
});
