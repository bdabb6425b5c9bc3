/**
 * An abort while an error body is read (a caller's signal, an unsubscribe) wins at once on both
 * transports: the socket closes, and no rejection goes unhandled. (Checks a review ran: they
 * held.)
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AbortedError } from '../../src/core/errors.js';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { KeyCredential } from '../../src/core/types.js';

const KEY: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp' };
const rejections: unknown[] = [];
process.on('unhandledRejection', (reason) => rejections.push(reason));

describe.each([
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const)('%s', (_name, create) => {
  for (const how of ['signal', 'unsubscribe'] as const)
    it(`an abort (${how}) while a never-ending error body is read wins at once and closes the connection`, async () => {
      let closed = false;
      let open: ServerResponse | undefined;
      const server = createServer((request, response) => {
        request.resume();
        request.on('end', () => {
          response.writeHead(503, { 'content-type': 'application/json' });
          response.write('{"error":');
          open = response;
          response.on('close', () => (closed = true));
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
      const controller = new AbortController();
      const heard: unknown[] = [];
      const subscription = create({ baseURL })(
        KEY,
        { model: 'm/a', messages: [{ role: 'user', content: 'hi' }] },
        { signal: controller.signal },
      ).subscribe({
        next: (event) => heard.push(event),
        error: (error: unknown) => heard.push(error),
        complete: () => heard.push('complete'),
      });
      while (open === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 30));
      if (how === 'signal') controller.abort();
      else subscription.unsubscribe();
      await new Promise((resolve) => setTimeout(resolve, 200));
      server.closeAllConnections();
      server.close();
      expect(rejections).toEqual([]);
      expect(closed).toBe(true);
      if (how === 'signal') {
        expect(heard).toHaveLength(1);
        expect(heard[0]).toBeInstanceOf(AbortedError);
      } else expect(heard).toEqual([]);
    });
});
