/**
 * Both transports classify the same error answers alike (class, scope, status, retryable, wait,
 * message, metadata), streamed or not, without key text. (Checks a review ran: they held.)
 */
import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { OpenRouterError } from '../../src/core/errors.js';
import type { ChatRequest, KeyCredential, TransportEvent } from '../../src/core/types.js';
import type { Observable } from 'rxjs';
import { TEST_KEYS } from '../helpers/test-keys.js';

const KEY: KeyCredential = {
  key: TEST_KEYS.echoedPrefix,
  label: 'alpha',
  fingerprint: 'fp',
};
type Reply = { status: number; headers?: Record<string, string>; body: string | Buffer };
const J = (value: unknown) => JSON.stringify(value);
const REPLIES: Reply[] = [
  { status: 429, body: '' },
  { status: 429, headers: { 'retry-after': '7' }, body: '' },
  { status: 500, headers: { 'content-type': 'text/html' }, body: '<html>oops</html>' },
  { status: 502, body: '' },
  { status: 400, body: J({ error: { message: 'bad', code: 400, metadata: { raw: 'x' } } }) },
  { status: 401, body: J({ error: 'Unauthorized' }) },
  { status: 404, body: '[]' },
  { status: 413, body: '"too large"' },
  { status: 422, body: 'null' },
  { status: 529, body: '42' },
  { status: 403, body: J({ error: { code: 403, message: 'Key limit exceeded' } }) },
  { status: 402, body: J({ error: { code: 402, message: 'Insufficient credits' } }) },
  { status: 408, body: '<html>timeout</html>' },
  {
    status: 503,
    headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
    body: gzipSync(J({ error: { code: 503, message: 'No instances available' } })),
  },
  { status: 400, body: J({ error: { message: `echo of Bearer ${KEY.key}`, code: 400 } }) },
  { status: 400, body: J({ error: { message: "This endpoint's maximum context length is 8192 tokens", code: 400 } }) },
  {
    status: 429,
    body: J({
      error: { message: 'Provider returned error', code: 429, metadata: { provider_name: 'Acme', raw: 'rate limited upstream' } },
    }),
  },
  { status: 499, body: 'client closed' },
  { status: 400, body: '\ufeff' + J({ error: { message: 'bom', code: 400 } }) },
  { status: 400, body: J({ message: 'x', error: null }) },
  { status: 400, body: J({ error: { message: 'x', code: 'context_length_exceeded' } }) },
  { status: 400, body: J({ error: { message: { nested: true }, code: 400 } }) },
];
let baseURL = '';
let current = 0;
const server = createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    const reply = REPLIES[current]!;
    response.writeHead(reply.status, reply.headers ?? {});
    response.end(reply.body);
  });
});
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
});
afterAll(() => void server.close());

function outcome(events$: Observable<TransportEvent>): Promise<unknown> {
  return new Promise((resolve) =>
    events$.subscribe({
      error: (error: unknown) => {
        const e = error as OpenRouterError;
        resolve({
          type: e.constructor.name,
          kind: e.kind,
          scope: e.scope,
          status: e.status,
          retryable: e.retryable,
          retryAfterMs: e.retryAfterMs,
          message: e.message,
          metadata: e.metadata,
          leaked: JSON.stringify(e.toJSON?.() ?? {}).includes(KEY.key.slice(0, 20)) || e.message.includes(KEY.key.slice(0, 20)),
        });
      },
      complete: () => resolve('completed'),
    }),
  );
}

it('both transports classify every error shape alike', async () => {
  const differences: unknown[] = [];
  for (let index = 0; index < REPLIES.length; index++) {
    current = index;
    for (const stream of [false, true]) {
      const request: ChatRequest = { model: 'm/a', stream, messages: [{ role: 'user', content: 'hi' }] };
      const sdk = await outcome(createOpenRouterTransport({ baseURL })(KEY, request));
      const fetched = await outcome(createFetchTransport({ baseURL })(KEY, request));
      if (JSON.stringify(sdk) !== JSON.stringify(fetched)) differences.push({ index, stream, sdk, fetched });
      if (JSON.stringify(sdk).includes('"leaked":true') || JSON.stringify(fetched).includes('"leaked":true'))
        differences.push({ index, leak: true });
    }
  }
  expect(differences).toEqual([]);
});
