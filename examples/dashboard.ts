/**
 * The live health dashboard inside your own `node:http` server: one `dashboardHandler(pool)`
 * call, mounted at /dashboard/ next to your app's routes. (For a server of its own, use
 * `createDashboardServer({ pool, port })`, or run `npx openrouter-rx dashboard --fake`.)
 *
 *   npx tsx examples/dashboard.ts            # then open http://127.0.0.1:3000/dashboard/
 *   PORT=8080 npx tsx examples/dashboard.ts
 *   npx tsx examples/dashboard.ts --once     # send one batch, print the key states, exit
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EMPTY, Subscription, catchError, from, interval, lastValueFrom, map, mergeMap, toArray } from 'rxjs';
import { balance, createKeyPool, type ChatRequest, type PoolHealth } from 'openrouter-rx';
import { dashboardHandler } from 'openrouter-rx/dashboard';
import { exampleEndpoint } from './support/endpoint.js';

const once = process.argv.includes('--once');
const endpoint = await exampleEndpoint({
  defaultModel: { latencyMs: 80, chunkCount: 5, chunkGapMs: 20 },
});
const pool = createKeyPool({ keys: endpoint.keys, ...(endpoint.baseURL === undefined ? {} : { baseURL: endpoint.baseURL }) });

const dashboard = dashboardHandler(pool, { basePath: '/dashboard', title: 'My app' });
const server = createServer((request, response) => {
  if (dashboard(request, response)) return;
  // Your own routes go here.
  response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('My app. Key health: /dashboard/\n');
});
await new Promise<void>((resolve) => server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard/`;
console.log(`dashboard: ${url}`);

const prompt = (index: number): ChatRequest => ({
  model: endpoint.model,
  stream: true,
  max_tokens: 32,
  messages: [{ role: 'user', content: `In one line, fact number ${index} about queues.` }],
});

if (once) {
  // One batch, then what the page's feed would show: the same snapshot, over HTTP.
  await lastValueFrom(from(Array.from({ length: 8 }, (_, index) => prompt(index + 1))).pipe(balance(pool, { concurrency: 4 }), toArray()));
  const health = (await (await fetch(`${url}health.json`)).json()) as PoolHealth;
  for (const key of health.keys) console.log(`key ${key.label} ${key.fingerprint}: ${key.state}, ${key.usage.requests} requests`);
  await shutDown();
} else {
  // A trickle of traffic, so the page has something to show, until Ctrl-C.
  const load = new Subscription();
  load.add(
    interval(endpoint.fake === undefined ? 5_000 : 300)
      .pipe(
        map((index) => prompt(index)),
        // A failure shows on the page; the trickle goes on.
        mergeMap((request) => pool.complete(request).pipe(catchError(() => EMPTY)), 4),
      )
      .subscribe({ error: (error: unknown) => console.error(error) }),
  );
  console.log('sending a prompt every few hundred ms; Ctrl-C to stop');
  process.once('SIGINT', () => {
    load.unsubscribe();
    void shutDown();
  });
}

async function shutDown(): Promise<void> {
  dashboard.close();
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeAllConnections();
  await closed;
  pool.dispose();
  await endpoint.close();
}
