import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import type { Browser, Page } from 'playwright-core';
import { BehaviorSubject, filter, firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balance, createKeyPool, type ChatRequest, type KeyPool, type PoolHealth } from '../src/index.js';
import { createDashboardServer, dashboardHandler, dashboardPage, type DashboardServer } from '../src/dashboard/index.js';
import { dashboardCharts } from '../src/dashboard/charts.js';
import type { HealthFrame } from '../src/dashboard/events.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { startDashboardDemo, type DashboardDemo } from '../src/cli/dashboard-demo.js';
import { describeMissingChromium, haveChromium, launchChromium } from './helpers/chromium.js';
import { idleKeyHealth, poolHealthOf } from './helpers/health-records.js';
import { parsePrometheusText } from './helpers/prometheus-text.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Reads SSE `data:` payloads from a fetch body until `count` arrived (or the stream ends). */
async function readEvents(url: string, count: number, signal: AbortSignal): Promise<{ data: unknown[]; raw: string }> {
  const response = await fetch(url, { signal });
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let raw = '';
  const data: unknown[] = [];
  while (data.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    raw += decoder.decode(value, { stream: true });
    const blocks = raw.split('\n\n');
    data.length = 0;
    for (const block of blocks.slice(0, -1)) {
      const line = block.split('\n').find((part) => part.startsWith('data: '));
      if (line !== undefined) data.push(JSON.parse(line.slice(6)));
    }
  }
  await reader.cancel().catch(() => undefined);
  return { data, raw };
}

function health(label: string, at: number): PoolHealth {
  return poolHealthOf([idleKeyHealth(label)], at);
}

/** A snapshot of `count` keys, about 0.5 kB each: a few make a frame larger than a socket's buffer. */
function bigHealth(count: number, at: number): PoolHealth {
  const one = health('template', at);
  return {
    ...one,
    keys: Array.from({ length: count }, (_, index) => ({ ...one.keys[0]!, label: `key-${index}`, account: `key:key-${index}` })),
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((wait) => setTimeout(wait, 5));
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A GET with exactly these headers (fetch would not send a made-up Host). An event stream is cut
 * once its head arrived.
 */
function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolveAnswer, reject) => {
    const sent = httpRequest(url, { headers, agent: false }, (response) => {
      const answer = { status: response.statusCode ?? 0, headers: response.headers };
      if (response.headers['content-type']?.startsWith('text/event-stream')) {
        response.destroy();
        resolveAnswer({ ...answer, body: '' });
        return;
      }
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolveAnswer({ ...answer, body }));
    });
    sent.on('error', reject);
    sent.end();
  });
}

/** A stand-in pool: the dashboard reads only `health$` and `snapshot()`. */
function fakeSource() {
  const subject = new BehaviorSubject<PoolHealth>(health('solo', 0));
  return { subject, source: { health$: subject.asObservable(), snapshot: () => subject.value } };
}

/** Closes the server now, idle keep-alive sockets included (fetch keeps them for seconds). */
async function close(server: Server): Promise<void> {
  await new Promise((resolveClose) => {
    server.close(resolveClose);
    server.closeAllConnections();
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('dashboardHandler in a user-owned node:http server', () => {
  it('serves the page, a snapshot and the feed under basePath, and leaves other paths to the caller', async () => {
    const { source } = fakeSource();
    const handler = dashboardHandler(source, { basePath: '/ops/keys', title: 'Ops <keys>' });
    const server = createServer((request, response) => {
      if (!handler(request, response)) response.writeHead(418).end('mine');
    });
    const origin = await listen(server);
    try {
      const page = await fetch(`${origin}/ops/keys/`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      const html = await page.text();
      expect(html).toContain('Ops &#60;keys&#62;');
      expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org)/);

      const redirect = await fetch(`${origin}/ops/keys`, { redirect: 'manual' });
      expect(redirect.status).toBe(308);
      expect(redirect.headers.get('location')).toBe('/ops/keys/');

      const snapshot = (await (await fetch(`${origin}/ops/keys/health.json`)).json()) as PoolHealth;
      expect(snapshot.keys.map((key) => key.label)).toEqual(['solo']);

      expect((await fetch(`${origin}/elsewhere`)).status).toBe(418);
      expect((await fetch(`${origin}/ops/keys/events`, { method: 'POST' })).status).toBe(418);
    } finally {
      handler.close();
      await close(server);
    }
  });

  it('calls next() for paths it does not own, as Express middleware expects', () => {
    const { source } = fakeSource();
    const handler = dashboardHandler(source, { basePath: '/dash' });
    let nextCalls = 0;
    const handled = handler({ method: 'GET', url: '/api/users' } as never, {} as never, () => nextCalls++);
    expect(handled).toBe(false);
    expect(nextCalls).toBe(1);
  });

  it('streams the current snapshot at once, throttles bursts without losing the last state, and sends heartbeats', async () => {
    const { subject, source } = fakeSource();
    const handler = dashboardHandler(source, { throttleMs: 200, heartbeatMs: 50 });
    const server = createServer((request, response) => void handler(request, response));
    const origin = await listen(server);
    const controller = new AbortController();
    try {
      const reading = readEvents(`${origin}/events`, 2, controller.signal);
      // Once the feed is open its first frame is written: a burst sent before would replace it.
      await until(() => handler.connections === 1, 'the feed');
      // A burst: only its last state has to reach the page.
      for (let index = 1; index <= 20; index++) subject.next(health(`burst-${index}`, index));
      const { data, raw } = await reading;
      expect((data[0] as PoolHealth).keys[0]!.label).toBe('solo');
      expect((data[1] as PoolHealth).keys[0]!.label).toBe('burst-20');
      // A source without events$ has no failed attempts to count: the frames are its snapshots, as they are.
      expect(data[0]).not.toHaveProperty('failedAttempts');
      expect(raw).toContain('retry: 1000');
      expect(raw).toContain(': heartbeat');
    } finally {
      controller.abort();
      handler.close();
      await close(server);
    }
  });

  it('unsubscribes from health$ when the browser goes away', async () => {
    const { subject, source } = fakeSource();
    const handler = dashboardHandler(source);
    const server = createServer((request, response) => void handler(request, response));
    const origin = await listen(server);
    try {
      const controller = new AbortController();
      await readEvents(`${origin}/events`, 1, controller.signal);
      expect(subject.observed).toBe(true);
      expect(handler.connections).toBe(1);
      controller.abort();
      for (let waited = 0; waited < 2000 && handler.connections > 0; waited += 20) await new Promise((wait) => setTimeout(wait, 20));
      expect(handler.connections).toBe(0);
      expect(subject.observed).toBe(false);
    } finally {
      handler.close();
      await close(server);
    }
  });

  it('holds at most one snapshot for a client that stops reading, and sends it the newest when it reads again', async () => {
    const { subject, source } = fakeSource();
    const handler = dashboardHandler(source, { throttleMs: 1, heartbeatMs: 60_000 });
    const responses: ServerResponse[] = [];
    const server = createServer((request, response) => {
      responses.push(response);
      handler(request, response);
    });
    const origin = await listen(server);
    const clients: Socket[] = [];
    try {
      const count = 16;
      for (let index = 0; index < count; index++) {
        const socket = connect(Number(new URL(origin).port), '127.0.0.1');
        // Never read: what a stalled browser tab, or a client that means harm, does.
        socket.pause();
        socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        clients.push(socket);
      }
      await until(() => handler.connections === count, `${count} feeds`);

      const keys = 200;
      const frameBytes = Buffer.byteLength(`data: ${JSON.stringify(bigHealth(keys, 1_000_000))}\n\n`);
      let at = 0;
      let mostHeld = 0;
      // The kernel takes a few MB per socket before Node holds anything; only after that does a
      // feed that ignores backpressure grow. So: push until every socket has held bytes in Node
      // (its kernel buffers are full) for 30 snapshots, whatever the buffers' sizes on this machine.
      let fullFor = 0;
      while (fullFor < 30) {
        if (at > 2000) throw new Error('the sockets never filled up');
        subject.next(bigHealth(keys, ++at));
        await new Promise((wait) => setTimeout(wait, 3));
        const held = responses.map((response) => response.writableLength);
        mostHeld = Math.max(mostHeld, ...held);
        if (held.every((bytes) => bytes > 0)) fullFor++;
      }
      // What was being written when the socket filled, and one snapshot more at most.
      const highWaterMark = responses[0]!.socket!.writableHighWaterMark;
      expect(mostHeld).toBeLessThanOrEqual(highWaterMark + 2 * frameBytes);

      // A client that reads again catches up with the newest state.
      const reader = clients[0]!;
      let tail = '';
      const newest = `"at":${at}}`;
      const caughtUp = new Promise<void>((resolveCaughtUp) =>
        reader.on('data', (chunk: Buffer) => {
          tail = (tail + chunk.toString('latin1')).slice(-2 * newest.length);
          if (tail.includes(newest)) resolveCaughtUp();
        }),
      );
      reader.resume();
      await caughtUp;
    } finally {
      for (const socket of clients) socket.destroy();
      handler.close();
      await close(server);
    }
  });

  it('tells the page when the pool is disposed, so it stops reconnecting', async () => {
    const { subject, source } = fakeSource();
    const dashboard = await createDashboardServer({ pool: source });
    try {
      const controller = new AbortController();
      const reading = readEvents(`${dashboard.url}events`, 5, controller.signal);
      await new Promise((wait) => setTimeout(wait, 50));
      subject.complete();
      const { raw } = await reading;
      expect(raw).toContain('event: end');
    } finally {
      await dashboard.close();
    }
  });

  it('answers only to its own host names, so a page elsewhere cannot read it through DNS rebinding', async () => {
    const { source } = fakeSource();
    const dashboard = await createDashboardServer({ pool: source, allowedHosts: ['Dash.Example.com'] });
    const port = dashboard.port;
    try {
      for (const path of ['', 'health.json', 'events']) {
        const url = `${dashboard.url}${path}`;
        for (const host of ['evil.example', `evil.example:${port}`, `localhost.evil.example:${port}`, `127.0.0.1.nip.io:${port}`]) {
          const answer = await get(url, { host });
          expect([path, host, answer.status]).toEqual([path, host, 403]);
        }
        for (const host of [
          `127.0.0.1:${port}`,
          `localhost:${port}`,
          `LOCALHOST:${port}`,
          `[::1]:${port}`,
          `10.1.2.3:${port}`,
          'dash.example.com',
          `dash.example.com.:${port}`,
        ]) {
          const answer = await get(url, { host });
          expect([path, host, answer.status]).toEqual([path, host, 200]);
        }
        // A page on another site, even with the dashboard's own Host (a proxy, or a rebinding that kept it).
        for (const origin of ['http://evil.example', `http://evil.example:${port}`, 'null']) {
          const answer = await get(url, { host: `127.0.0.1:${port}`, origin });
          expect([path, origin, answer.status]).toEqual([path, origin, 403]);
        }
        const sameOrigin = await get(url, { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` });
        expect([path, sameOrigin.status]).toEqual([path, 200]);
      }
      // HTTP/1.0 may leave Host out; then nothing says whose page is asking.
      const socket = connect(port, '127.0.0.1');
      socket.end('GET /health.json HTTP/1.0\r\n\r\n');
      let head = '';
      for await (const chunk of socket) head += String(chunk);
      expect(head).toMatch(/^HTTP\/1\.1 403 /);
    } finally {
      await dashboard.close();
    }
  });

  it('checks the host in a user-owned server too, and answers to the name it listens on', async () => {
    const { source } = fakeSource();
    const handler = dashboardHandler(source, { basePath: '/dash' });
    const server = createServer((request, response) => {
      if (!handler(request, response)) response.writeHead(418).end('mine');
    });
    const origin = await listen(server);
    const named = await createDashboardServer({ pool: source, host: 'localhost' });
    try {
      expect((await get(`${origin}/dash/health.json`, { host: 'evil.example' })).status).toBe(403);
      expect((await get(`${origin}/dash/health.json`)).status).toBe(200);
      // The app's own routes are the app's business.
      expect((await get(`${origin}/elsewhere`, { host: 'evil.example' })).status).toBe(418);
      expect((await get(`${named.url}health.json`, { host: `localhost:${named.port}` })).status).toBe(200);
    } finally {
      handler.close();
      await close(server);
      await named.close();
    }
  });

  it('asks for the token on every route when one is set', async () => {
    const { source } = fakeSource();
    const token = 'a-dashboard-token-for-the-tests';
    const handler = dashboardHandler(source, { basePath: '/dash', token });
    const server = createServer((request, response) => {
      if (!handler(request, response)) response.writeHead(418).end('mine');
    });
    const origin = await listen(server);
    try {
      for (const path of ['/dash', '/dash/', '/dash/health.json', '/dash/events']) {
        for (const authorization of [
          undefined,
          'Bearer not-the-dashboard-token',
          `Bearer ${token}x`,
          `Basic ${token}`,
          `Bearer ${token.slice(0, -1)}`,
        ]) {
          const answer = await get(`${origin}${path}`, authorization === undefined ? {} : { authorization });
          expect([path, authorization, answer.status]).toEqual([path, authorization, 401]);
          expect(answer.headers['www-authenticate']).toMatch(/^Bearer/);
          expect(answer.body).not.toContain(token);
        }
        const right = await get(`${origin}${path}`, { authorization: `Bearer ${token}` });
        expect([path, right.status]).toEqual([path, path === '/dash' ? 308 : 200]);
      }
      expect((await get(`${origin}/dash/?token=not-the-dashboard-token`)).status).toBe(401);

      // A browser opens the page once with ?token=, and gets a cookie for the page and its feed instead.
      const exchange = await get(`${origin}/dash/?token=${encodeURIComponent(token)}`);
      expect(exchange.status).toBe(303);
      expect(exchange.headers.location).toBe('/dash/');
      const setCookie = exchange.headers['set-cookie']?.[0] ?? '';
      expect(setCookie).toMatch(/; HttpOnly/);
      expect(setCookie).toMatch(/; SameSite=Lax/);
      expect(setCookie).toMatch(/; Path=\/dash\//);
      expect(setCookie).not.toContain(token);
      const cookie = setCookie.split(';')[0]!;
      for (const path of ['/dash/', '/dash/health.json', '/dash/events']) {
        expect([path, (await get(`${origin}${path}`, { cookie })).status]).toEqual([path, 200]);
      }
      const forged = `${cookie.split('=')[0]}=${token}`;
      expect((await get(`${origin}/dash/health.json`, { cookie: forged })).status).toBe(401);
      expect((await get(`${origin}/elsewhere`)).status).toBe(418);
    } finally {
      handler.close();
      await close(server);
    }
  });

  it.each([
    [{ token: 'too-short' }, /^Invalid dashboard options: token: must be at least 16 characters/],
    [{ token: 'sixteen or more but with spaces' }, /token: .*without spaces/],
    [{ allowedHosts: ['https://dash.example.com/'] }, /allowedHosts\[0\]: must be a host name such as dash\.example\.com/],
    [{ allowedHosts: ['dash.example.com:8080'] }, /allowedHosts\[0\]: must be a host name/],
    [{ throttleMs: -1 }, /throttleMs: /],
    [{ heartbeatMs: 0 }, /heartbeatMs: /],
    [{ basePth: '/x' }, /basePth: unrecognized key/],
  ])('refuses the options %j, naming the field', (options, message) => {
    const { source } = fakeSource();
    expect(() => dashboardHandler(source, options as never)).toThrow(message);
  });

  it('never quotes a refused token', () => {
    const { source } = fakeSource();
    let message = '';
    try {
      dashboardHandler(source, { token: 'short-secret' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^Invalid dashboard options: token: /);
    expect(message).not.toContain('short-secret');
  });

  it('keeps a bounded chart history on the page: a sample a second at most, none older than the window', () => {
    const charts = dashboardCharts();
    const history = charts.createHistory(300_000, 1000);
    const frame = (requests: number, rateLimited: number): HealthFrame => ({
      ...health('solo', 0),
      usage: { requests, promptTokens: 0, completionTokens: 0, totalTokens: 0, cost: requests / 1000 },
      failedAttempts: { pool: { rateLimited, failed: 0 }, keys: {}, models: {} },
    });
    // Snapshots every 100 ms for ten minutes, two completions each: 600 samples offered a second at most.
    let kept = 0;
    for (let at = 0; at <= 600_000; at += 100)
      if (history.offer(charts.sampleOf(frame((at / 100) * 2, Math.floor(at / 60_000)), at))) kept++;
    expect(kept).toBe(601);
    // Five minutes of them, and one older, so that the lines reach the chart's left edge.
    expect(history.samples).toHaveLength(301);
    expect(history.samples[0]!.at).toBe(300_000);
    expect(charts.perSecond(history.samples, (sample) => sample.requests).every(([, rate]) => rate === 20)).toBe(true);
    expect(charts.addedWithin(history.samples, (sample) => sample.rateLimited)).toBe(5);
    expect(charts.sinceOldest(history.samples, (sample) => sample.cost).at(-1)![1]).toBeCloseTo(6);
    // A new pool (the server restarted) starts the history over.
    expect(history.offer(charts.sampleOf(frame(0, 0), 601_000))).toBe(true);
    expect(history.samples).toHaveLength(1);
  });

  it('renders a page whose script is self-contained source text', () => {
    const html = dashboardPage({ title: 't' });
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? '';
    // It must parse as a script on its own: no import, no reference to a bundler's module scope.
    expect(() => new Script(script)).not.toThrow();
    expect(script).not.toMatch(/\bimport\b|\brequire\(/);
  });
});

if (!haveChromium) describeMissingChromium('the dashboard in Chromium', 'dashboard.test.ts');

describe.runIf(haveChromium)('the dashboard in Chromium', () => {
  let fake: FakeOpenRouter;
  let pool: KeyPool;
  let dashboard: DashboardServer;
  let browser: Browser;
  let page: Page;
  const requested: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    fake = await startFakeOpenRouter({
      keys: [
        { key: TEST_KEYS.quota1, label: 'alpha', limit: 25, usage: 6.4 },
        { key: TEST_KEYS.quota2, label: 'beta', limit: 10, usage: 1.9 },
        { key: TEST_KEYS.quota3, label: 'gamma', limit: null, usage: 2.1 },
        { key: TEST_KEYS.revoked, label: 'delta', revoked: true },
      ],
      models: {
        'demo/steady': { latencyMs: 60, chunkCount: 4, chunkGapMs: 12 },
        'demo/fast': { latencyMs: 15, chunkCount: 3, chunkGapMs: 4 },
        'demo/flaky': { latencyMs: 20, faults: [{ type: 'status', status: 503, times: 3 }] },
      },
    });
    pool = createKeyPool({
      baseURL: fake.baseURL,
      keys: [
        { key: TEST_KEYS.quota1, label: 'alpha', limits: { quotas: [{ requests: 500, windowMs: 60_000 }], maxConcurrent: 4 } },
        { key: TEST_KEYS.quota2, label: 'beta' },
        { key: TEST_KEYS.quota3, label: 'gamma', limits: { maxConcurrent: 4 } },
        { key: TEST_KEYS.revoked, label: 'delta' },
      ],
      // The flaky model's breaker opens after its 503s and stays open through the screenshot.
      modelBreaker: { consecutiveFailures: 3, cooldownMs: 30_000 },
      strategy: 'roundRobin',
    });
    await lastValueFrom(pool.refreshKeyInfo());
    dashboard = await createDashboardServer({ pool, title: 'openrouter-rx' });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('request', (request) => requested.push(request.url()));
    page.on('pageerror', (error) => pageErrors.push(error.message));
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    pool?.dispose();
    await fake?.close();
  });

  it('shows every key live, and a key the server turns open within a second', async () => {
    await page.goto(dashboard.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 5000 });
    expect(await page.locator('[data-key]').count()).toBe(4);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 5000 });

    // Traffic, so that latency sparklines, counters, errors and model health have something to show.
    const prompts = Array.from({ length: 48 }, (_, index): ChatRequest => ({
      model: (['demo/steady', 'demo/fast', 'demo/flaky'] as const)[index % 3],
      models: ['demo/steady'],
      stream: index % 2 === 0,
      max_tokens: 32,
      messages: [{ role: 'user', content: `Dashboard prompt ${index + 1}` }],
    }));
    const events = await lastValueFrom(from(prompts).pipe(balance(pool, { concurrency: 4 }), toArray()));
    expect(events.filter((event) => event.type === 'completion')).toHaveLength(prompts.length);
    await page.waitForFunction(() => document.querySelector('[data-key="alpha"] [data-chart="latency"] polyline') !== null, undefined, {
      timeout: 2000,
    });
    // Spend and tokens per key, from its health record.
    await expect.poll(() => page.locator('[data-key="alpha"] [data-field="spend"]').textContent()).toMatch(/^\$0\.\d+$/);
    expect(await page.locator('[data-key="alpha"] [data-field="tokens"]').textContent()).toMatch(/^[1-9]\d* \/ [1-9]\d*$/);
    await expect.poll(() => page.locator('[data-key="delta"]').getAttribute('data-state')).toBe('disabled');
    await expect.poll(() => page.locator('[data-model="demo/flaky"]').getAttribute('data-state')).toBe('open');

    // The server turns beta away from now on (429, reset a minute out): the pool parks it, open.
    fake.setKey(TEST_KEYS.quota2, { quota: { requests: 0, windowMs: 60_000 } });
    const opened = firstValueFrom(pool.key('beta').health$.pipe(filter((key) => key.state === 'open')));
    const answer = lastValueFrom(
      pool.complete(
        { model: 'demo/fast', max_tokens: 16, messages: [{ role: 'user', content: 'to beta first' }] },
        { strategy: (eligible) => eligible.find((key) => key.label === 'beta') ?? eligible[0] },
      ),
    );
    await opened;
    const openedAt = performance.now();
    await page.waitForSelector('[data-key="beta"][data-state="open"]', { timeout: 1000 });
    const shownAfterMs = performance.now() - openedAt;
    expect(shownAfterMs).toBeLessThan(1000);
    // The request itself moved to another key and succeeded.
    expect((await answer).keyLabel).not.toBe('beta');

    const badge = await page.locator('[data-key="beta"] [data-field="state"]').textContent();
    expect(badge).toMatch(/^open: rate-limited/);
    await expect.poll(() => page.locator('[data-key="beta"] .errors .kind').first().textContent()).toBe('rate_limit 429');
    // The 429 is counted as what it is, beside failures that it does not add to.
    await expect
      .poll(async () => Number(await page.locator('[data-key="beta"] [data-field="ratelimited"]').textContent()))
      .toBeGreaterThanOrEqual(1);
    expect(await page.locator('[data-key="beta"] [data-field="failed"]').textContent()).toBe('0');
    expect(await page.locator('.legend').textContent()).toMatch(/429s are attempts the server rate-limited\. They are not failures/);
    await expect.poll(() => page.locator('#states').textContent()).toContain('1 open');

    // What a user sees: take it once the beta card has settled.
    await page.waitForTimeout(300);
    mkdirSync(join(root, 'test-output'), { recursive: true });
    const screenshot = join(root, 'test-output', 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(existsSync(screenshot)).toBe(true);

    // Nothing came from anywhere but the dashboard server, nothing broke, and no key text is shown.
    const origin = new URL(dashboard.url).origin;
    expect(requested.filter((url) => !url.startsWith(origin))).toEqual([]);
    expect(pageErrors).toEqual([]);
    const html = await page.content();
    // Kept beside the screenshot, so that scripts/scan-secrets.mjs checks the rendered page too.
    writeFileSync(join(root, 'test-output', 'dashboard.html'), html);
    expect(leakedKeyLabels(html)).toEqual([]);
  });

  it('opens a dashboard that asks for a token with ?token= once, then runs on a cookie', async () => {
    const token = 'chromium-dashboard-token-0123';
    const guarded = await createDashboardServer({ pool, token });
    const context = await browser.newContext();
    const guardedPage = await context.newPage();
    try {
      const refused = await guardedPage.goto(guarded.url);
      expect(refused?.status()).toBe(401);
      await guardedPage.goto(`${guarded.url}?token=${token}`);
      // The token is gone from the address bar (and from history) once traded for the cookie.
      expect(guardedPage.url()).toBe(guarded.url);
      await guardedPage.waitForSelector('#connection[data-state="live"]', { timeout: 5000 });
      await guardedPage.waitForSelector('body[data-ready="true"]', { timeout: 5000 });
      expect(await guardedPage.locator('[data-key]').count()).toBe(4);
    } finally {
      await context.close();
      await guarded.close();
    }
  });

  it('starts a page opened later from the current state', async () => {
    const later = await browser.newPage();
    try {
      await later.goto(dashboard.url);
      await later.waitForSelector('[data-key="beta"][data-state="open"]', { timeout: 2000 });
      expect(await later.locator('[data-key="delta"]').getAttribute('data-state')).toBe('disabled');
    } finally {
      await later.close();
    }
  });
});

/**
 * The dashboard under the CLI's demo load (`openrouter-rx dashboard --fake`), at a laptop's width
 * and at a phone's. Screenshots go to test-output/; with UPDATE_DASHBOARD_SCREENSHOTS=1 the page
 * collects a minute of history first and they go to docs/ too:
 *
 *   UPDATE_DASHBOARD_SCREENSHOTS=1 npx vitest run test/dashboard.test.ts -t screenshots
 */
describe.runIf(haveChromium)('the dashboard at 1280 and 390 px, with traffic flowing (screenshots)', () => {
  const updateDocs = process.env.UPDATE_DASHBOARD_SCREENSHOTS === '1';
  // Long enough for every chart to have a line; for docs, long enough for the lines to say something.
  const historyMs = updateDocs ? 60_000 : 4_000;
  let demo: DashboardDemo;
  let dashboard: DashboardServer;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    demo = await startDashboardDemo({ ratePerSecond: 12 });
    dashboard = await createDashboardServer({ pool: demo.pool, title: 'openrouter-rx demo' });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(dashboard.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 5000 });
    await page.waitForTimeout(historyMs);
  }, historyMs + 30_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await demo?.stop();
  });

  /** Writes the page as it is to test-output/, and to docs/ when asked. */
  async function screenshot(name: string): Promise<void> {
    mkdirSync(join(root, 'test-output'), { recursive: true });
    const path = join(root, 'test-output', name);
    await page.screenshot({ path, fullPage: true });
    if (updateDocs) copyFileSync(path, join(root, 'docs', name));
  }

  /** What overflows: the page sideways, and any element of the models table out of its cell. */
  const overflows = () =>
    page.evaluate(() => {
      const problems: string[] = [];
      const viewport = document.documentElement.clientWidth;
      if (document.scrollingElement!.scrollWidth > viewport)
        problems.push(`page scrolls sideways: ${document.scrollingElement!.scrollWidth}px`);
      for (const cell of Array.from(document.querySelectorAll<HTMLElement>('#models td, .table-scroll th'))) {
        const box = cell.getBoundingClientRect();
        if (cell.scrollWidth > cell.clientWidth + 1) problems.push(`${cell.className || cell.tagName}: text wider than its cell`);
        for (const child of Array.from(cell.querySelectorAll<HTMLElement>('*'))) {
          const inner = child.getBoundingClientRect();
          // Not rendered (an empty error line): nothing to overlap.
          if (inner.width === 0 && inner.height === 0) continue;
          if (inner.right > box.right + 1 || inner.left < box.left - 1) problems.push(`${child.className} spills out of ${cell.className}`);
        }
      }
      return problems;
    });

  it('at 1280 px: per-key spend and tokens, history charts, the 429 legend, nothing overflowing', async () => {
    expect(await page.locator('#charts figure').count()).toBe(4);
    await expect.poll(() => page.locator('#charts svg polyline').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-key="alpha"] [data-field="spend"]').textContent()).toMatch(/^\$0\.\d+$/);
    expect(await page.locator('[data-key="alpha"] [data-chart="spend"] svg polyline').count()).toBe(1);
    expect(await page.locator('#charts figure[data-chart="completions"] .figure-value').textContent()).toMatch(/^\d+(\.\d)?\/s$/);
    await expect.poll(() => page.locator('#ratelimited').textContent()).toMatch(/^\d+$/);
    expect(await page.locator('.legend').textContent()).toContain('They are not failures');
    expect(await overflows()).toEqual([]);
    // Wide enough that the models table needs no scrolling.
    expect(await page.locator('.table-scroll').evaluate((box) => box.scrollWidth <= box.clientWidth)).toBe(true);
    await screenshot('dashboard-1280.png');
  });

  it('at 390 px: nothing overlaps, the models table scrolls in its own box, spend and charts still shown', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    expect(await overflows()).toEqual([]);
    // The table keeps its least width and scrolls inside its panel, which stays within the page.
    const tableBox = await page.locator('.table-scroll').evaluate((box) => ({
      overflow: getComputedStyle(box).overflowX,
      right: box.getBoundingClientRect().right,
      scrolls: box.scrollWidth > box.clientWidth,
    }));
    expect(tableBox.overflow).toBe('auto');
    expect(tableBox.scrolls).toBe(true);
    expect(tableBox.right).toBeLessThanOrEqual(390);
    for (const selector of [
      '[data-key="alpha"] [data-field="spend"]',
      '#charts figure[data-chart="spend"] svg',
      '[data-key="alpha"] [data-chart="spend"] svg',
    ]) {
      const box = (await page.locator(selector).boundingBox())!;
      expect(box.width, selector).toBeGreaterThan(0);
      expect(box.x + box.width, selector).toBeLessThanOrEqual(390);
    }
    expect(await page.locator('#charts svg polyline').count()).toBeGreaterThanOrEqual(4);
    await screenshot('dashboard-390.png');
    expect(pageErrors).toEqual([]);
    expect(leakedKeyLabels(await page.content())).toEqual([]);
  });
});

describe('failed attempts on the feed', () => {
  it('counts 429s apart from failures, each where health puts it: a key refused on the key, an upstream 503 on the model', async () => {
    const keys = [
      { key: TEST_KEYS.alpha, label: 'feed-a' },
      { key: TEST_KEYS.beta, label: 'feed-b' },
    ];
    const fake = await startFakeOpenRouter({
      keys: [{ ...keys[0]!, quota: { requests: 2, windowMs: 60_000 } }, keys[1]!],
      models: { 'test/flaky': { faults: [{ type: 'status', status: 503, times: 2 }] } },
    });
    const pool = createKeyPool({ baseURL: fake.baseURL, keys, strategy: 'roundRobin', discoverAccounts: false });
    const dashboard = await createDashboardServer({ pool });
    const controller = new AbortController();
    try {
      const requests: ChatRequest[] = Array.from({ length: 8 }, (_, index) => ({
        model: index < 2 ? 'test/flaky' : 'test/steady',
        messages: [{ role: 'user', content: `q${index}` }],
      }));
      const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 1 }), toArray()));
      expect(events.filter((event) => event.type === 'completion')).toHaveLength(8);

      const { data } = await readEvents(`${dashboard.url}events`, 1, controller.signal);
      const frame = data[0] as HealthFrame;
      const attempts = frame.failedAttempts!;
      expect(frame.keys.map((key) => key.label)).toEqual(['feed-a', 'feed-b']);
      expect(attempts.keys['feed-a']?.rateLimited).toBeGreaterThanOrEqual(1);
      // The 503s were the model's: no key failed, and the model counts them.
      expect(Object.values(attempts.keys).map((counts) => counts.failed)).toEqual(Object.keys(attempts.keys).map(() => 0));
      expect(attempts.models['test/flaky']).toEqual({ rateLimited: 0, failed: 2 });
      expect(attempts.pool).toEqual({ rateLimited: attempts.keys['feed-a']!.rateLimited, failed: 2 });
    } finally {
      controller.abort();
      await dashboard.close();
      pool.dispose();
      await fake.close();
    }
  });
});

describe('Prometheus metrics at basePath/metrics', () => {
  it('gives state, in flight, learned quotas, tokens and cost per key, attempts by outcome and a latency histogram, and no key text', async () => {
    const model = 'test/metrics';
    const keys = [
      { key: TEST_KEYS.alpha, label: 'metrics-a' },
      { key: TEST_KEYS.beta, label: 'metrics-b' },
    ];
    const fake = await startFakeOpenRouter({ keys: [{ ...keys[0]!, quota: { requests: 3, windowMs: 60_000 } }, keys[1]!] });
    const pool = createKeyPool({ baseURL: fake.baseURL, keys, strategy: 'roundRobin', discoverAccounts: false });
    const server = createServer();
    const handler = dashboardHandler(pool, { basePath: '/ops' });
    server.on('request', (request, response) => {
      if (!handler(request, response)) response.writeHead(404).end();
    });
    const url = await listen(server);
    try {
      const requests: ChatRequest[] = Array.from({ length: 8 }, (_, index) => ({
        model,
        messages: [{ role: 'user', content: `q${index}` }],
      }));
      const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 1 }), toArray()));
      const completed = events.filter((event) => event.type === 'completion').length;
      expect(completed).toBe(8);

      const answer = await get(`${url}/ops/metrics`, { host: new URL(url).host });
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      // Kept for scripts/scan-secrets.mjs, which reads everything under test-output/.
      writeFileSync(join(root, 'test-output', 'captured-metrics.log'), answer.body);
      // A scraper's parser reads every line, and sees the families with their types.
      const families = new Map(parsePrometheusText(answer.body).map((family) => [family.name, family]));
      expect(families.get('openrouter_rx_attempts_total')?.type).toBe('COUNTER');
      expect(families.get('openrouter_rx_attempt_duration_seconds')?.type).toBe('HISTOGRAM');
      expect(families.get('openrouter_rx_key_quota_limit')?.type).toBe('GAUGE');
      // (This parser keeps a histogram's buckets, not its labels: the run used one model.)
      const histograms = families.get('openrouter_rx_attempt_duration_seconds')!.metrics;
      expect(histograms.map((sample) => Number(sample.buckets?.['+Inf']))).toEqual([8]);
      const lines = answer.body.split('\n');
      const value = (prefix: string) => Number(lines.find((line) => line.startsWith(prefix))?.slice(prefix.length + 1));

      // Attempts by outcome: every success, and the 429 that taught metrics-a its quota.
      const successes = lines.filter((line) => line.startsWith('openrouter_rx_attempts_total{') && line.includes('outcome="success"'));
      expect(successes.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)).toBe(8);
      expect(
        value('openrouter_rx_attempts_total{key="metrics-a",model="test/metrics",outcome="failure",kind="rate_limit"}'),
      ).toBeGreaterThanOrEqual(1);
      // The histogram counts the successes, its buckets never decrease, and +Inf holds them all.
      const buckets = lines
        .filter((line) => line.startsWith('openrouter_rx_attempt_duration_seconds_bucket{model="test/metrics"'))
        .map((line) => Number(line.split(' ').at(-1)));
      expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
      expect(buckets.at(-1)).toBe(8);
      expect(value('openrouter_rx_attempt_duration_seconds_count{model="test/metrics"}')).toBe(8);
      // Exactly one state per key, and the quota metrics-a learned, with its source.
      for (const { label } of keys) {
        const states = lines.filter((line) => line.startsWith(`openrouter_rx_key_state{key="${label}"`));
        expect(states).toHaveLength(5);
        expect(states.filter((line) => line.endsWith(' 1'))).toHaveLength(1);
        expect(lines.some((line) => line.startsWith(`openrouter_rx_key_in_flight{key="${label}"`) && line.endsWith(' 0'))).toBe(true);
      }
      expect(
        lines.some(
          (line) =>
            line.startsWith('openrouter_rx_key_quota_limit{key="metrics-a"') && line.includes('source="learned"') && line.endsWith(' 3'),
        ),
      ).toBe(true);
      const tokens = lines
        .filter((line) => line.startsWith('openrouter_rx_key_tokens_total{'))
        .map((line) => Number(line.split(' ').at(-1)));
      expect(tokens.reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0);
      expect(lines.filter((line) => line.startsWith('# TYPE ')).length).toBeGreaterThanOrEqual(15);
      expect(leakedKeyLabels(answer.body)).toEqual([]);
      expect(answer.body).not.toContain(TEST_KEYS.alpha);
    } finally {
      handler.close();
      await close(server);
      pool.dispose();
      await fake.close();
    }
  });
});
