import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BehaviorSubject, filter, firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balance, createKeyPool, type ChatRequest, type KeyPool, type PoolHealth } from '../src/index.js';
import { createDashboardServer, dashboardHandler, dashboardPage, type DashboardServer } from '../src/dashboard/index.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const haveChromium = existsSync(CHROMIUM);

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
  return {
    keys: [
      {
        label,
        fingerprint: '#abcdef',
        account: `key:${label}`,
        state: 'closed',
        openReason: null,
        cooldownUntil: null,
        inFlight: 0,
        maxConcurrent: null,
        successes: 0,
        failures: 0,
        consecutiveFailures: 0,
        lastError: null,
        latencyMs: null,
        timeToFirstTokenMs: null,
        quota: [],
        credit: null,
        usage: { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, cost: 0 },
      },
    ],
    models: [],
    usage: { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, cost: 0 },
    queued: 0,
    at,
  };
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
      await new Promise((wait) => setTimeout(wait, 50));
      // A burst: only its last state has to reach the page.
      for (let index = 1; index <= 20; index++) subject.next(health(`burst-${index}`, index));
      const { data, raw } = await reading;
      expect((data[0] as PoolHealth).keys[0]!.label).toBe('solo');
      expect((data[1] as PoolHealth).keys[0]!.label).toBe('burst-20');
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

  it('renders a page whose script is self-contained source text', () => {
    const html = dashboardPage({ title: 't' });
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? '';
    // It must parse as a script on its own: no import, no reference to a bundler's module scope.
    expect(() => new Function(script)).not.toThrow();
    expect(script).not.toMatch(/\bimport\b|\brequire\(/);
  });
});

if (!haveChromium) {
  // Registered only when Chromium is missing, so a normal run reports no skipped test.
  describe('the dashboard in Chromium', () => {
    if (process.env.CI !== undefined) {
      it(`needs ${CHROMIUM} (Debian's chromium package)`, () => {
        throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium), or set CHROMIUM_PATH`);
      });
    } else {
      console.warn(`dashboard.test.ts: skipping the Chromium test: ${CHROMIUM} is not installed (apt-get install -y chromium)`);
      it.skip(`needs ${CHROMIUM} (apt-get install -y chromium)`, () => undefined);
    }
  });
}

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
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
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
    await page.waitForFunction(() => document.querySelector('[data-key="alpha"] svg.spark polyline') !== null, undefined, { timeout: 2000 });
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
    await expect.poll(() => page.locator('#states').textContent()).toContain('1 open');

    // What a user sees: take it once the beta card has settled.
    await page.waitForTimeout(300);
    mkdirSync(join(root, 'test-output'), { recursive: true });
    const screenshot = join(root, 'test-output', 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(existsSync(screenshot)).toBe(true);
    if (process.env.UPDATE_DASHBOARD_SCREENSHOT === '1') {
      mkdirSync(join(root, 'docs'), { recursive: true });
      copyFileSync(screenshot, join(root, 'docs', 'dashboard.png'));
    }

    // Nothing came from anywhere but the dashboard server, nothing broke, and no key text is shown.
    const origin = new URL(dashboard.url).origin;
    expect(requested.filter((url) => !url.startsWith(origin))).toEqual([]);
    expect(pageErrors).toEqual([]);
    const html = await page.content();
    // Kept beside the screenshot, so that scripts/scan-secrets.mjs checks the rendered page too.
    writeFileSync(join(root, 'test-output', 'dashboard.html'), html);
    expect(leakedKeyLabels(html)).toEqual([]);
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
