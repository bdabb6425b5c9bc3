/**
 * Both transports send the same headers for the same `defaultHeaders`: a default header overrides
 * the library's own (whatever its case), except the JSON `Content-Type` of the body. (Edge cases a
 * review found; each failed before its fix.)
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { KeyCredential } from '../../src/core/types.js';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp' };

it('both transports send the same headers for the same defaultHeaders', async () => {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((request, response) => {
    seen.push(request.headers);
    request.resume();
    request.on('end', () => {
      response.writeHead(400, { 'content-type': 'application/json' });
      response.end('{"error":{"message":"no","code":400}}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
  const options = {
    baseURL,
    appTitle: 'App',
    defaultHeaders: { 'content-type': 'text/plain; charset=utf-8', 'x-title': 'Mine', accept: 'application/json' },
  };
  const pick = (h: IncomingHttpHeaders) => ({
    ct: h['content-type'],
    title: h['x-title'],
    otitle: h['x-openrouter-title'],
    accept: h['accept'],
    auth: h['authorization'],
  });
  for (const create of [createOpenRouterTransport, createFetchTransport]) {
    await new Promise<void>((resolve) =>
      create(options)(KEY, { model: 'm/a', messages: [{ role: 'user', content: 'hi' }] }).subscribe({
        error: () => resolve(),
        complete: () => resolve(),
      }),
    );
  }
  server.close();
  expect(pick(seen[1]!)).toEqual(pick(seen[0]!));
});
