/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-return --
   these tests read the fake server's raw JSON bodies loosely (`Json` below), and expect() checks every value read. */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  listFixtures,
  loadFixture,
  parseFixture,
  startFakeOpenRouter,
  type FakeFault,
  type FakeOpenRouter,
  type FakeServerOptions,
} from '../src/testing/index.js';

const FIXTURES_DIR = fileURLToPath(new URL('./fixtures/openrouter/', import.meta.url));
const ALPHA = 'sk-or-v1-test-alpha';
const BETA = 'sk-or-v1-test-beta';
const GAMMA = 'sk-or-v1-test-gamma';
const MODEL = 'test/model-a';

const running: FakeOpenRouter[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((fake) => fake.close()));
});

async function startFake(options: Partial<FakeServerOptions> = {}): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({
    keys: [
      { key: ALPHA, label: 'alpha', limit: 10, usage: 2.5 },
      { key: BETA, label: 'beta' },
    ],
    fixturesDir: FIXTURES_DIR,
    keepAliveIntervalMs: 20,
    ...options,
  });
  running.push(fake);
  return fake;
}

function chatBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: MODEL, messages: [{ role: 'user', content: 'hello there' }], ...overrides };
}

function postChat(fake: FakeOpenRouter, body: unknown, options: { key?: string | null; signal?: AbortSignal } = {}): Promise<Response> {
  const key = options.key === undefined ? ALPHA : options.key;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  return fetch(`${fake.baseURL}/chat/completions`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}

async function withFault(fault: FakeFault, options: Partial<FakeServerOptions> = {}): Promise<FakeOpenRouter> {
  return startFake({ ...options, models: { [MODEL]: { faults: [fault] } } });
}

/** SSE events of a complete body, split on the blank line; the last element is what follows the final `\n\n`. */
function sseEvents(body: string): string[] {
  return body.split('\n\n');
}

type Json = Record<string, any>;

function dataPayloads(body: string): Json[] {
  return sseEvents(body)
    .filter((event) => event.startsWith('data: {') && event !== 'data: {not json')
    .map((event) => JSON.parse(event.slice('data: '.length)) as Json);
}

function contentOf(body: string): string {
  return dataPayloads(body)
    .map((chunk) => chunk.choices?.[0]?.delta?.content ?? '')
    .join('');
}

/** Reads a streamed body until `done` says so; returns everything read. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, done: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  while (!done(text)) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

/** Reads a whole streamed body, noting when each piece arrived. */
async function readTimed(response: Response): Promise<Array<{ at: number; text: string }>> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const pieces: Array<{ at: number; text: string }> = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return pieces;
    pieces.push({ at: performance.now(), text: decoder.decode(value, { stream: true }) });
  }
}

const DAY_MS = 24 * 60 * 60 * 1000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('startFakeOpenRouter: listening', () => {
  it('listens on 127.0.0.1 with an /api/v1 baseURL', async () => {
    const fake = await startFake();
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(fake.baseURL).toBe(`${fake.url}/api/v1`);
  });

  it('answers 404 JSON on unknown routes', async () => {
    const fake = await startFake();
    const response = await fetch(`${fake.baseURL}/models/nope`);
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({ error: { message: 'Not Found: /api/v1/models/nope', code: 404 } });
  });
});

describe('chat completions: normal answers', () => {
  it('answers a non-streaming request with an OpenRouter-shaped completion', async () => {
    const fake = await startFake({ models: { [MODEL]: { provider: 'Acme' } } });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(200);
    const body = (await response.json()) as Json;
    expect(response.headers.get('x-generation-id')).toBe(body.id);
    expect(body).toMatchObject({
      id: expect.stringMatching(/^gen-\d+-/),
      provider: 'Acme',
      model: MODEL,
      object: 'chat.completion',
      created: expect.any(Number),
      choices: [
        {
          index: 0,
          finish_reason: 'stop',
          native_finish_reason: 'stop',
          message: { role: 'assistant', content: `Echo (${MODEL}): hello there` },
        },
      ],
    });
    // "hello there" is 11 characters (3 tokens); the answer is 30 (8 tokens).
    expect(body.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 });
    expect(body.usage.cost).toBeGreaterThan(0);
  });

  it('lets respond() choose the text', async () => {
    const fake = await startFake({ respond: ({ model, messages }) => `${model} got ${messages.length}` });
    const body = (await (await postChat(fake, chatBody())).json()) as Json;
    expect(body.choices[0].message.content).toBe(`${MODEL} got 1`);
  });

  it('streams keep-alive, role chunk, content chunks, stop, usage and [DONE] as SSE', async () => {
    const fake = await startFake({ models: { [MODEL]: { chunkCount: 5 } } });
    const response = await postChat(fake, chatBody({ stream: true }));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('cache-control')).toBe('no-cache');
    const body = await response.text();

    const events = sseEvents(body);
    expect(events[0]).toBe(': OPENROUTER PROCESSING');
    expect(events.at(-2)).toBe('data: [DONE]');
    expect(events.at(-1)).toBe('');
    const chunks = dataPayloads(body);
    expect(chunks).toHaveLength(1 + 5 + 2);
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks.every((chunk) => chunk.id === response.headers.get('x-generation-id'))).toBe(true);
    expect(contentOf(body)).toBe(`Echo (${MODEL}): hello there`);
    const [finish, usage] = chunks.slice(-2);
    expect(finish!.choices[0]).toMatchObject({ finish_reason: 'stop', native_finish_reason: 'stop' });
    expect(usage!.choices).toHaveLength(1);
    expect(usage!.choices[0]).toMatchObject({ delta: { content: '' }, finish_reason: null });
    expect(usage!.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 });
  });

  it('sends keep-alives while waiting for the first token, then spaces chunks by chunkGapMs', async () => {
    const fake = await startFake({ models: { [MODEL]: { firstTokenMs: 100, chunkCount: 3, chunkGapMs: 30 } } });
    const started = performance.now();
    const pieces = await readTimed(await postChat(fake, chatBody({ stream: true })));
    const body = pieces.map((piece) => piece.text).join('');
    const keepAlivesBeforeFirstChunk = sseEvents(body.slice(0, body.indexOf('data: '))).filter(
      (event) => event === ': OPENROUTER PROCESSING',
    );
    // One at once, then one every 20 ms over 100 ms.
    expect(keepAlivesBeforeFirstChunk.length).toBeGreaterThanOrEqual(4);
    const firstData = pieces.find((piece) => piece.text.includes('data: '))!;
    expect(firstData.at - started).toBeGreaterThanOrEqual(95);
    // Three gaps: before the second and third content chunks and before the stop chunk.
    expect(pieces.at(-1)!.at - firstData.at).toBeGreaterThanOrEqual(85);
    expect(contentOf(body)).toBe(`Echo (${MODEL}): hello there`);
  });

  it('waits latencyMs before the headers', async () => {
    const fake = await startFake({ defaultModel: { latencyMs: 60 } });
    const started = performance.now();
    const response = await postChat(fake, chatBody({ model: 'other/model' }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(response.status).toBe(200);
  });
});

describe('chat completions: platform checks', () => {
  it('answers 401 "No auth credentials found" without an Authorization header', async () => {
    const fake = await startFake();
    const response = await postChat(fake, chatBody(), { key: null });
    expect(response.status).toBe(401);
    expect(await response.text()).toBe('{"error":{"message":"No auth credentials found","code":401}}');
  });

  it('answers 401 "User not found." for an unknown key and for a key revoked mid-test', async () => {
    const fake = await startFake();
    const unknown = await postChat(fake, chatBody(), { key: 'sk-or-v1-test-nobody' });
    expect(unknown.status).toBe(401);
    expect(await unknown.text()).toBe('{"error":{"message":"User not found.","code":401}}');

    expect((await postChat(fake, chatBody())).status).toBe(200);
    fake.setKey(ALPHA, { revoked: true });
    const revoked = await postChat(fake, chatBody());
    expect(revoked.status).toBe(401);
    expect(((await revoked.json()) as Json).error.message).toBe('User not found.');
  });

  it('answers 403 key limit with limit_source openrouter_key_limit', async () => {
    const fake = await startFake();
    fake.setKey(ALPHA, { keyLimitExceeded: true });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({
      error: { code: 403, message: 'Key limit exceeded (total limit)', metadata: { limit_source: 'openrouter_key_limit' } },
    });
    expect((await postChat(fake, chatBody(), { key: BETA })).status).toBe(200);
  });

  it('answers 402 for every key of an account out of credits, until credits are restored', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
      ],
      accounts: [{ id: 'acct', outOfCredits: true }],
    });
    for (const key of [ALPHA, BETA]) {
      const response = await postChat(fake, chatBody({ max_tokens: 500 }), { key });
      expect(response.status).toBe(402);
      expect(await response.json()).toEqual({
        error: {
          message:
            'This request requires more credits, or fewer max_tokens. You requested up to 500 tokens, but can only ' +
            'afford 0. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account',
          code: 402,
          metadata: { provider_name: null },
        },
        user_id: 'user_fake_acct',
      });
    }
    fake.setAccount('acct', { outOfCredits: false });
    expect((await postChat(fake, chatBody())).status).toBe(200);
  });

  it.each([
    ['invalid JSON', '{"model": ', 'Invalid JSON in request body'],
    ['more than 3 models', chatBody({ models: ['a/1', 'a/2', 'a/3', 'a/4'] }), "'models' array must have 3 items or fewer."],
    [
      'an unknown provider field',
      chatBody({ provider: { order: ['x'], speed: 'max' } }),
      "provider: Unrecognized key(s) in object: 'speed'",
    ],
    ['no messages', { model: MODEL }, 'Input required: specify "prompt" or "messages"'],
  ])('answers 400 for %s', async (_case, body, message) => {
    const fake = await startFake();
    const response = await postChat(fake, body);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: { message, code: 400 } });
  });

  it('accepts every documented provider field and up to 3 models', async () => {
    const fake = await startFake();
    const provider = {
      order: ['a'],
      allow_fallbacks: false,
      require_parameters: true,
      data_collection: 'deny',
      zdr: true,
      enforce_distillable_text: false,
      only: ['a'],
      ignore: ['b'],
      quantizations: ['fp8'],
      sort: 'price',
      preferred_min_throughput: 10,
      preferred_max_latency: 2,
      max_price: { prompt: 1 },
    };
    const response = await postChat(fake, chatBody({ provider, models: ['a/1', 'a/2', 'a/3'] }));
    expect(response.status).toBe(200);
  });
});

describe('chat completions: quotas', () => {
  it('answers 429 with X-RateLimit-* and Retry-After past the key quota, and recovers after the window', async () => {
    const fake = await startFake({
      keys: [{ key: ALPHA, label: 'alpha', quota: { requests: 2, windowMs: 150 } }],
    });
    const firstAdmittedAt = Date.now();
    expect((await postChat(fake, chatBody())).status).toBe(200);
    // Spaced, so the second admission is still in the window when the first one leaves.
    await sleep(50);
    expect((await postChat(fake, chatBody())).status).toBe(200);

    const limited = await postChat(fake, chatBody());
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(limited.headers.get('x-ratelimit-limit')).toBe('2');
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
    const resetAt = Number(limited.headers.get('x-ratelimit-reset'));
    expect(resetAt).toBeGreaterThanOrEqual(firstAdmittedAt + 150);
    expect(resetAt).toBeLessThan(firstAdmittedAt + 150 + 50);
    expect(await limited.json()).toEqual({
      error: {
        message: 'Rate limit exceeded: requests-per-key',
        code: 429,
        metadata: {
          headers: { 'X-RateLimit-Limit': '2', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(resetAt) },
          provider_name: null,
          error_type: 'rate_limit_exceeded',
        },
      },
      user_id: 'user_fake_account-of-alpha',
    });

    // A 429 does not take a place in the window: once the first admission leaves, one request fits.
    expect((await postChat(fake, chatBody())).status).toBe(429);
    await sleep(resetAt - Date.now() + 5);
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect((await postChat(fake, chatBody())).status).toBe(429);
    expect(fake.countRequests({ status: 429 })).toBe(3);
  });

  it('shares an account quota across the keys of the account', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
      ],
      accounts: [{ id: 'acct', quota: { requests: 1, windowMs: 1000 } }],
    });
    const admittedAt = Date.now();
    expect((await postChat(fake, chatBody(), { key: ALPHA })).status).toBe(200);
    const limited = await postChat(fake, chatBody(), { key: BETA });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('x-ratelimit-limit')).toBe('1');
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
    const resetAt = Number(limited.headers.get('x-ratelimit-reset'));
    // The oldest admission leaves the window.
    expect(resetAt).toBeGreaterThanOrEqual(admittedAt + 1000);
    expect(resetAt).toBeLessThan(admittedAt + 1000 + 100);
    expect(await limited.json()).toEqual({
      error: {
        message: 'Rate limit exceeded: free-models-per-min',
        code: 429,
        metadata: {
          headers: { 'X-RateLimit-Limit': '1', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(resetAt) },
          provider_name: null,
          error_type: 'rate_limit_exceeded',
        },
      },
      user_id: 'user_fake_acct',
    });
  });

  it('answers free-models-per-day past an account daily quota, with X-RateLimit-Reset at the next 00:00 UTC', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
      ],
      accounts: [{ id: 'acct', dailyQuota: { requests: 2 } }],
    });
    expect((await postChat(fake, chatBody(), { key: ALPHA })).status).toBe(200);
    expect((await postChat(fake, chatBody(), { key: BETA })).status).toBe(200);

    const limited = await postChat(fake, chatBody(), { key: ALPHA });
    const now = Date.now();
    const nextUtcMidnight = (Math.floor(now / DAY_MS) + 1) * DAY_MS;
    expect(limited.status).toBe(429);
    expect(limited.headers.get('x-ratelimit-limit')).toBe('2');
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(limited.headers.get('x-ratelimit-reset')).toBe(String(nextUtcMidnight));
    expect(Number(limited.headers.get('retry-after'))).toBeCloseTo((nextUtcMidnight - now) / 1000, -1);
    expect(await limited.json()).toEqual({
      error: {
        message: 'Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day',
        code: 429,
        metadata: {
          headers: { 'X-RateLimit-Limit': '2', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(nextUtcMidnight) },
          provider_name: null,
          error_type: 'rate_limit_exceeded',
        },
      },
      user_id: 'user_fake_acct',
    });
    expect((await postChat(fake, chatBody(), { key: BETA })).status).toBe(429);

    // Key info reports the day's count against the quota.
    const info = (await (await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${BETA}` } })).json()) as Json;
    expect(info.data.free_model_daily_requests).toEqual({ used: 2, limit: 2, remaining: 0 });
  });

  it('with freeModelsOnly, counts and limits only :free models, and names a configured bucket', async () => {
    const fake = await startFake({
      keys: [{ key: ALPHA, label: 'alpha', account: 'acct' }],
      accounts: [{ id: 'acct', dailyQuota: { requests: 1, bucket: 'free-models-per-day-high-balance', freeModelsOnly: true } }],
    });
    for (let attempt = 0; attempt < 3; attempt += 1) expect((await postChat(fake, chatBody())).status).toBe(200);
    const free = chatBody({ model: 'x/model:free' });
    expect((await postChat(fake, free)).status).toBe(200);

    const limited = await postChat(fake, free);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('x-ratelimit-limit')).toBe('1');
    const body = (await limited.json()) as Json;
    expect(body.error.message).toBe('Rate limit exceeded: free-models-per-day-high-balance');
    expect(body.error.metadata.headers).toMatchObject({ 'X-RateLimit-Limit': '1', 'X-RateLimit-Remaining': '0' });
    expect((await postChat(fake, chatBody())).status).toBe(200);
  });
});

describe('chat completions: provider capacity', () => {
  const upstreamRaw =
    `${MODEL} is temporarily rate-limited upstream. Please retry shortly, or add your own key ` +
    'to accumulate your rate limits: https://openrouter.ai/settings/integrations';

  it('answers the upstream 429 past `concurrent` requests of the model across keys, without X-RateLimit-* or Retry-After', async () => {
    const fake = await startFake({
      models: {
        [MODEL]: { provider: 'Acme', firstTokenMs: 150, capacity: { concurrent: 2, providerName: 'Groq' } },
        'other/model': { capacity: { concurrent: 1 } },
      },
    });
    // Streams hold their place from the headers to the end of the body.
    const held = [await postChat(fake, chatBody({ stream: true })), await postChat(fake, chatBody({ stream: true }), { key: BETA })];
    expect(held.map((response) => response.status)).toEqual([200, 200]);

    for (const key of [ALPHA, BETA]) {
      const limited = await postChat(fake, chatBody(), { key });
      expect(limited.status).toBe(429);
      for (const header of ['retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) {
        expect(limited.headers.get(header), header).toBeNull();
      }
      expect(await limited.json()).toEqual({
        error: { message: 'Provider returned error', code: 429, metadata: { raw: upstreamRaw, provider_name: 'Groq', is_byok: false } },
        user_id: key === ALPHA ? 'user_fake_account-of-alpha' : 'user_fake_account-of-beta',
      });
    }
    // Another model's providers have a capacity of their own.
    expect((await postChat(fake, chatBody({ model: 'other/model' }))).status).toBe(200);

    await Promise.all(held.map((response) => response.text()));
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect(fake.countRequests({ model: MODEL, status: 429 })).toBe(2);
  });

  it('names the model provider by default, waits latencyMs, and gives each unlisted model its own defaultModel capacity', async () => {
    const fake = await startFake({ defaultModel: { provider: 'Acme', latencyMs: 40, firstTokenMs: 200, capacity: { concurrent: 1 } } });
    const held = await postChat(fake, chatBody({ model: 'x/one', stream: true }));
    expect(held.status).toBe(200);

    const started = performance.now();
    const limited = await postChat(fake, chatBody({ model: 'x/one' }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(35);
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as Json).error.metadata).toMatchObject({ provider_name: 'Acme', raw: expect.stringContaining('x/one') });

    const other = await postChat(fake, chatBody({ model: 'x/two', stream: true }));
    expect(other.status).toBe(200);
    await Promise.all([held.text(), other.text()]);
  });

  it('frees the place when the client aborts, and a capacity 429 spends no fault', async () => {
    const fake = await startFake({
      models: {
        [MODEL]: {
          capacity: { concurrent: 1 },
          faults: [
            { type: 'silent', times: 1 },
            { type: 'status', status: 503, times: 1 },
          ],
        },
      },
    });
    const controller = new AbortController();
    const pending = postChat(fake, chatBody(), { signal: controller.signal }).catch(() => undefined);
    await sleep(30);
    expect((await postChat(fake, chatBody())).status).toBe(429);

    const aborted = fake.waitForAbort(500);
    controller.abort();
    await pending;
    await aborted;
    expect((await postChat(fake, chatBody())).status).toBe(503);
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect(fake.requests.map((record) => [record.status, record.fault])).toEqual([
      [0, 'silent'],
      [429, undefined],
      [503, 'status'],
      [200, undefined],
    ]);
  });
});

describe('chat completions: in-flight budget', () => {
  it('answers 402 in_flight_budget_exhausted with Retry-After while the account has `concurrent` requests in flight', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
        { key: GAMMA, label: 'gamma' },
      ],
      accounts: [{ id: 'acct', inFlightBudget: { concurrent: 2, retryAfterSeconds: 4 } }],
      models: { [MODEL]: { firstTokenMs: 150 } },
    });
    const held = [await postChat(fake, chatBody({ stream: true })), await postChat(fake, chatBody({ stream: true }), { key: BETA })];
    expect(held.map((response) => response.status)).toEqual([200, 200]);

    const refused = await postChat(fake, chatBody(), { key: BETA });
    expect(refused.status).toBe(402);
    expect(refused.headers.get('retry-after')).toBe('4');
    expect(refused.headers.get('x-ratelimit-limit')).toBeNull();
    expect(await refused.json()).toEqual({
      error: {
        message:
          'Too many paid requests in flight for your credit balance (in_flight_budget_exhausted). Retry after 4 seconds, ' +
          'or add credits at https://openrouter.ai/settings/credits to raise your in-flight budget',
        code: 402,
        metadata: {
          provider_name: null,
          reason: 'in_flight_budget_exhausted',
          limit_source: 'openrouter_in_flight_budget',
          retry_after_seconds: 4,
        },
      },
      user_id: 'user_fake_acct',
    });
    // Another account is not held back.
    expect((await postChat(fake, chatBody(), { key: GAMMA })).status).toBe(200);

    await Promise.all(held.map((response) => response.text()));
    expect((await postChat(fake, chatBody(), { key: BETA })).status).toBe(200);
    expect(fake.countRequests({ status: 402 })).toBe(1);
  });

  it('defaults Retry-After to 2 s, frees the place on a client abort, and a 402 takes no quota place', async () => {
    const fake = await startFake({
      keys: [{ key: ALPHA, label: 'alpha', account: 'acct' }],
      accounts: [{ id: 'acct', inFlightBudget: { concurrent: 1 }, quota: { requests: 2, windowMs: 60_000 } }],
      models: { [MODEL]: { faults: [{ type: 'silent', times: 1 }] } },
    });
    const controller = new AbortController();
    const pending = postChat(fake, chatBody(), { signal: controller.signal }).catch(() => undefined);
    await sleep(30);
    const refused = await postChat(fake, chatBody());
    expect(refused.status).toBe(402);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(((await refused.json()) as Json).error).toMatchObject({
      code: 402,
      message: expect.stringContaining('in_flight_budget_exhausted'),
      metadata: { retry_after_seconds: 2 },
    });

    const aborted = fake.waitForAbort(500);
    controller.abort();
    await pending;
    await aborted;
    // The silent request and this one fill the quota of 2; the 402 took no place in it.
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect((await postChat(fake, chatBody())).status).toBe(429);
  });

  it('answers 402 weight_exceeds_budget when max_tokens exceeds maxTokensBudget, before the quotas', async () => {
    const fake = await startFake({
      keys: [{ key: ALPHA, label: 'alpha', account: 'acct' }],
      accounts: [{ id: 'acct', maxTokensBudget: 1000, quota: { requests: 1, windowMs: 60_000 } }],
    });
    const refused = await postChat(fake, chatBody({ max_tokens: 4000 }));
    expect(refused.status).toBe(402);
    expect(refused.headers.get('retry-after')).toBeNull();
    expect(await refused.json()).toEqual({
      error: {
        message:
          'This request requires more credits, or fewer max_tokens. You requested up to 4000 tokens, but can only afford 1000. ' +
          'To increase, visit https://openrouter.ai/settings/credits and add more credits (weight_exceeds_budget)',
        code: 402,
        metadata: { provider_name: null, reason: 'weight_exceeds_budget', limit_source: 'openrouter_credits' },
      },
      user_id: 'user_fake_acct',
    });
    const viaCompletionTokens = await postChat(fake, chatBody({ max_completion_tokens: 1001 }));
    expect(viaCompletionTokens.status).toBe(402);
    expect(((await viaCompletionTokens.json()) as Json).error.message).toMatch(/up to 1001 tokens.*weight_exceeds_budget/);

    // Without max_tokens a request passes (and takes the quota's one place); a heavy one is still a 402, not a 429.
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect((await postChat(fake, chatBody({ max_tokens: 4000 }))).status).toBe(402);
    expect((await postChat(fake, chatBody({ max_tokens: 1000 }))).status).toBe(429);
  });
});

describe('chat completions: faults that answer with an error', () => {
  it('status: 500 once, then a normal answer', async () => {
    const fake = await withFault({ type: 'status', status: 500, times: 1 });
    const failed = await postChat(fake, chatBody());
    expect(failed.status).toBe(500);
    expect(failed.headers.get('retry-after')).toBeNull();
    expect(await failed.json()).toMatchObject({
      error: { code: 500, message: 'Internal Server Error', metadata: { error_type: 'server' } },
    });
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect(fake.requests.map((record) => [record.status, record.fault])).toEqual([
      [500, 'status'],
      [200, undefined],
    ]);
  });

  it('status: 503 persistent with Retry-After', async () => {
    const fake = await withFault({ type: 'status', status: 503, retryAfterSeconds: 7 });
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const response = await postChat(fake, chatBody());
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('7');
      expect(((await response.json()) as Json).error.metadata.error_type).toBe('provider_overloaded');
    }
  });

  it('rate-limit: upstream 429 "Provider returned error" with provider_name and raw', async () => {
    const fake = await withFault({ type: 'rate-limit', providerName: 'Google' });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBeNull();
    expect(response.headers.get('x-ratelimit-limit')).toBeNull();
    const body = (await response.json()) as Json;
    expect(body.error).toMatchObject({ code: 429, message: 'Provider returned error', metadata: { provider_name: 'Google' } });
    expect(body.error.metadata.raw).toContain(`${MODEL} is temporarily rate-limited upstream`);
    expect(body.error.metadata.retry_after_seconds).toBeUndefined();
  });

  it('rate-limit: with retryAfterSeconds, a Retry-After header and metadata.retry_after_seconds', async () => {
    const fake = await withFault({ type: 'rate-limit', retryAfterSeconds: 17 });
    const response = await postChat(fake, chatBody());
    expect(response.headers.get('retry-after')).toBe('17');
    expect(((await response.json()) as Json).error.metadata).toMatchObject({
      provider_name: 'FakeProvider',
      retry_after_seconds: 17,
      headers: { 'Retry-After': '17' },
    });
  });

  it('context-length: 400 only when the prompt is over the limit', async () => {
    const fake = await startFake({
      models: { [MODEL]: { contextLength: 8, faults: [{ type: 'context-length', maxPromptTokens: 8 }] } },
    });
    expect((await postChat(fake, chatBody())).status).toBe(200);
    const long = chatBody({ messages: [{ role: 'user', content: 'x'.repeat(40) }] });
    const response = await postChat(fake, long);
    expect(response.status).toBe(400);
    const body = (await response.json()) as Json;
    expect(body.error.metadata.error_type).toBe('context_length_exceeded');
    expect(body.error.message).toMatch(/^This endpoint's maximum context length is 8 tokens\. However, you requested about 10 tokens/);
  });

  it('content-policy: 403 moderation body with reasons', async () => {
    const fake = await withFault({ type: 'content-policy', reasons: ['violence'] });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(403);
    const body = (await response.json()) as Json;
    expect(body.error.message).toMatch(new RegExp(`^${MODEL} requires moderation .* flagged`));
    expect(body.error.metadata).toMatchObject({ reasons: ['violence'], error_type: 'content_policy_violation' });
  });

  it('reject-prefill: 400 only when the last message is the assistant', async () => {
    const fake = await withFault({ type: 'reject-prefill' });
    expect((await postChat(fake, chatBody())).status).toBe(200);
    const prefill = chatBody({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'Sure' },
      ],
    });
    const response = await postChat(fake, prefill);
    expect(response.status).toBe(400);
    expect(((await response.json()) as Json).error.message).toMatch(/^This model does not support assistant message prefill/);
  });

  it('gives precedence to the first fault with hits left, and spends only the faults that hit', async () => {
    const fake = await startFake();
    fake.setFaults(MODEL, [
      { type: 'status', status: 502, times: 1 },
      { type: 'status', status: 503, times: 1 },
    ]);
    fake.addFault(MODEL, { type: 'status', status: 504 });
    const statuses = [];
    for (let attempt = 0; attempt < 4; attempt += 1) statuses.push((await postChat(fake, chatBody())).status);
    expect(statuses).toEqual([502, 503, 504, 504]);
    fake.clearFaults(MODEL);
    expect((await postChat(fake, chatBody())).status).toBe(200);
  });

  it('applies defaultModel faults to unlisted models, with their own times each', async () => {
    const fake = await startFake({ defaultModel: { faults: [{ type: 'status', status: 500, times: 1 }] } });
    expect((await postChat(fake, chatBody({ model: 'x/one' }))).status).toBe(500);
    expect((await postChat(fake, chatBody({ model: 'x/two' }))).status).toBe(500);
    expect((await postChat(fake, chatBody({ model: 'x/one' }))).status).toBe(200);
    fake.clearFaults();
    expect((await postChat(fake, chatBody({ model: 'x/three' }))).status).toBe(200);
  });

  it('rejects a named replay without fixturesDir when the fault is set', async () => {
    const fake = await startFake({ fixturesDir: undefined });
    expect(() => fake.addFault(MODEL, { type: 'replay', fixture: 'error-404-no-endpoints' })).toThrow(/fixturesDir/);
  });
});

describe('chat completions: faults on the connection', () => {
  it('reset: drops the socket before any headers', async () => {
    const fake = await withFault({ type: 'reset', times: 1 });
    await expect(postChat(fake, chatBody())).rejects.toThrow(TypeError);
    expect((await postChat(fake, chatBody())).status).toBe(200);
    expect(fake.requests.map((record) => record.status)).toEqual([0, 200]);
    expect(fake.abortedConnections).toBe(0);
  });

  it('silent: never answers; the client abort is counted and reported', async () => {
    const fake = await withFault({ type: 'silent' });
    const controller = new AbortController();
    const pending = postChat(fake, chatBody(), { signal: controller.signal });
    await sleep(30);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.status).toBe(0);
    const aborted = fake.waitForAbort(500);
    controller.abort();
    await expect(pending).rejects.toThrow();
    const event = await aborted;
    expect(event.path).toBe('/api/v1/chat/completions');
    expect(event.record).toBe(fake.requests[0]);
    expect(fake.requests[0]!.clientAborted).toBe(true);
    expect(fake.abortedConnections).toBe(1);
  });

  it('slow-first-token: headers and keep-alives at once, the first token after delayMs', async () => {
    const fake = await withFault({ type: 'slow-first-token', delayMs: 120 });
    const started = performance.now();
    const response = await postChat(fake, chatBody({ stream: true }));
    expect(performance.now() - started).toBeLessThan(80);
    const pieces = await readTimed(response);
    expect(pieces[0]!.text.startsWith(': OPENROUTER PROCESSING\n\n')).toBe(true);
    const firstData = pieces.find((piece) => piece.text.includes('data: '))!;
    expect(firstData.at - started).toBeGreaterThanOrEqual(115);
    expect(
      pieces
        .map((piece) => piece.text)
        .join('')
        .endsWith('data: [DONE]\n\n'),
    ).toBe(true);
  });

  it('cut: afterChunks content chunks, then the socket closes without finish_reason or [DONE]', async () => {
    const fake = await withFault({ type: 'cut', afterChunks: 3 });
    const response = await postChat(fake, chatBody({ stream: true }));
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    await expect(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          received += decoder.decode(value, { stream: true });
        }
      })(),
    ).rejects.toThrow(/terminated/);
    const chunks = dataPayloads(received);
    expect(chunks).toHaveLength(1 + 3);
    expect(chunks.some((chunk) => chunk.choices[0].finish_reason !== null)).toBe(false);
    expect(received).not.toContain('[DONE]');
    expect(fake.abortedConnections).toBe(0);
  });

  it('stall: silence for stallMs after afterChunks chunks, then the rest', async () => {
    const fake = await withFault({ type: 'stall', afterChunks: 2, stallMs: 120 });
    const sentAt = performance.now();
    const pieces = await readTimed(await postChat(fake, chatBody({ stream: true })));
    const body = pieces.map((piece) => piece.text).join('');
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(contentOf(body)).toBe(`Echo (${MODEL}): hello there`);
    // The whole answer takes the stall at least; the gap itself is read from when the client got
    // the pieces around it, which a busy event loop may have read late: a bound it always clears.
    expect(pieces.at(-1)!.at - sentAt).toBeGreaterThanOrEqual(115);
    const longestGap = Math.max(...pieces.slice(1).map((piece, index) => piece.at - pieces[index]!.at));
    expect(longestGap).toBeGreaterThanOrEqual(60);
    expect(body).not.toMatch(/data: .*\n\n: OPENROUTER PROCESSING/);
  });

  it('malformed: a data line that is not JSON, then the rest', async () => {
    const fake = await withFault({ type: 'malformed', afterChunks: 1 });
    const body = await (await postChat(fake, chatBody({ stream: true }))).text();
    const events = sseEvents(body);
    const malformedAt = events.indexOf('data: {not json');
    expect(malformedAt).toBeGreaterThan(0);
    expect(dataPayloads(events.slice(0, malformedAt).join('\n\n'))).toHaveLength(1 + 1);
    expect(contentOf(body)).toBe(`Echo (${MODEL}): hello there`);
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('missing-done: stop and usage but no [DONE], and the connection hangs until the client leaves', async () => {
    const fake = await withFault({ type: 'missing-done' });
    const controller = new AbortController();
    const response = await postChat(fake, chatBody({ stream: true }), { signal: controller.signal });
    const reader = response.body!.getReader();
    const received = await readUntil(reader, (text) => text.includes('"usage":{'));
    expect(dataPayloads(received).at(-2)!.choices[0].finish_reason).toBe('stop');
    const next = reader.read();
    const outcome = await Promise.race([next.then(() => 'data'), sleep(80).then(() => 'silent')]);
    expect(outcome).toBe('silent');
    const aborted = fake.waitForAbort(500);
    controller.abort();
    await expect(next).rejects.toThrow();
    await aborted;
    expect(fake.abortedConnections).toBe(1);
    expect(fake.requests[0]!.status).toBe(200);
  });

  it('missing-done with ending "close": the stream ends cleanly without [DONE]', async () => {
    const fake = await withFault({ type: 'missing-done', ending: 'close' });
    const body = await (await postChat(fake, chatBody({ stream: true }))).text();
    expect(body).not.toContain('[DONE]');
    expect(dataPayloads(body).at(-1)!.usage).toBeDefined();
    expect(fake.abortedConnections).toBe(0);
  });

  it('in-band-error: the documented error event after afterChunks chunks, status 200, then the end', async () => {
    const fake = await withFault({ type: 'in-band-error', afterChunks: 2, code: 'server_error', message: 'Upstream died' });
    const response = await postChat(fake, chatBody({ stream: true }));
    expect(response.status).toBe(200);
    const body = await response.text();
    expect(body).not.toContain('[DONE]');
    const chunks = dataPayloads(body);
    expect(chunks).toHaveLength(1 + 2 + 1);
    expect(chunks.at(-1)).toMatchObject({
      error: { code: 'server_error', message: 'Upstream died', metadata: { error_type: 'server', provider_code: 'server_error' } },
      choices: [{ delta: { content: '' }, finish_reason: 'error' }],
    });
    expect(fake.requests[0]!.status).toBe(200);
  });
});

describe('chat completions: streaming faults on non-streaming requests', () => {
  it('in-band-error answers 200 with an {error} body', async () => {
    const fake = await withFault({ type: 'in-band-error', afterChunks: 0 });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      error: { code: 502, message: 'Provider returned error', metadata: { error_type: 'provider_unavailable' } },
    });
  });

  it('malformed answers 200 with a body that is not JSON', async () => {
    const fake = await withFault({ type: 'malformed', afterChunks: 0 });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{not json');
  });

  it('cut sends half the body, then drops the socket', async () => {
    const fake = await withFault({ type: 'cut', afterChunks: 0 });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(200);
    await expect(response.text()).rejects.toThrow(/terminated/);
  });
});

describe('chat completions: replay', () => {
  it('replays every fixture byte for byte: status, headers and body', async () => {
    const names = await listFixtures(FIXTURES_DIR);
    expect(names.length).toBeGreaterThanOrEqual(17);
    const fake = await startFake();
    for (const name of names) {
      const { response: recorded } = await loadFixture(name, FIXTURES_DIR);
      fake.setFaults(MODEL, [{ type: 'replay', fixture: name }]);
      const response = await postChat(fake, chatBody({ stream: true }));
      expect(response.status, name).toBe(recorded.status);
      for (const [header, value] of Object.entries(recorded.headers)) {
        expect(response.headers.get(header), `${name}: ${header}`).toBe(value);
      }
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(bytes.equals(Buffer.from(recorded.body, 'utf8')), name).toBe(true);
    }
  });

  it('replays an inline recording', async () => {
    const recording = { status: 418, headers: { 'content-type': 'text/plain', 'x-note': 'teapot' }, body: 'short and stout' };
    const fake = await withFault({ type: 'replay', fixture: recording });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(418);
    expect(response.headers.get('x-note')).toBe('teapot');
    expect(await response.text()).toBe('short and stout');
    expect(fake.requests[0]!.status).toBe(418);
  });

  it('answers 500 naming a fixture that does not exist', async () => {
    const fake = await withFault({ type: 'replay', fixture: 'no-such-fixture' });
    const response = await postChat(fake, chatBody());
    expect(response.status).toBe(500);
    expect(((await response.json()) as Json).error.message).toMatch(/no-such-fixture/);
  });
});

describe('key endpoints', () => {
  it('GET /key reports the key config', async () => {
    const fake = await startFake({ keys: [{ key: ALPHA, label: 'alpha', limit: 10, usage: 2.5, limitReset: 'monthly' }] });
    const response = await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${ALPHA}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      data: {
        label: 'alpha',
        limit: 10,
        limit_reset: 'monthly',
        limit_remaining: 7.5,
        include_byok_in_limit: false,
        usage: 2.5,
        usage_daily: 2.5,
        usage_weekly: 2.5,
        usage_monthly: 2.5,
        byok_usage: 0,
        byok_usage_daily: 0,
        byok_usage_weekly: 0,
        byok_usage_monthly: 0,
        is_free_tier: false,
        is_management_key: false,
        is_provisioning_key: false,
        creator_user_id: 'user_fake_account-of-alpha',
        expires_at: null,
      },
    });
  });

  it('GET /key follows setKey and reports null limits for a key without one', async () => {
    const fake = await startFake();
    fake.setKey(BETA, { usage: 1, isFreeTier: true });
    const body = (await (await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${BETA}` } })).json()) as Json;
    expect(body.data).toMatchObject({ label: 'beta', limit: null, limit_remaining: null, limit_reset: null, usage: 1, is_free_tier: true });
  });

  it('GET /key reports creator_user_id: the account user id shared by its keys, or the configured one', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
      ],
    });
    const creatorOf = async (key: string): Promise<unknown> =>
      ((await (await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${key}` } })).json()) as Json).data.creator_user_id;
    expect(await creatorOf(ALPHA)).toBe('user_fake_acct');
    expect(await creatorOf(BETA)).toBe('user_fake_acct');
    fake.setKey(BETA, { creatorUserId: 'user_2dHFtVWx2n56w6HkM0000000000' });
    expect(await creatorOf(BETA)).toBe('user_2dHFtVWx2n56w6HkM0000000000');
    fake.setKey(BETA, { creatorUserId: null });
    expect(await creatorOf(BETA)).toBeNull();
    // The error bodies keep the account's user id.
    fake.setKey(BETA, { keyLimitExceeded: true });
    expect(((await (await postChat(fake, chatBody(), { key: BETA })).json()) as Json).user_id).toBe('user_fake_acct');
  });

  it('GET /key reports free_model_daily_requests only when configured, per account or per key', async () => {
    const fake = await startFake({
      keys: [
        { key: ALPHA, label: 'alpha', account: 'acct' },
        { key: BETA, label: 'beta', account: 'acct' },
        { key: GAMMA, label: 'gamma' },
      ],
      accounts: [{ id: 'acct', freeModelDailyRequests: { used: 12, limit: 50 } }],
    });
    const dataOf = async (key: string): Promise<Json> =>
      ((await (await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${key}` } })).json()) as Json).data;
    expect((await dataOf(ALPHA)).free_model_daily_requests).toEqual({ used: 12, limit: 50, remaining: 38 });
    expect(await dataOf(GAMMA)).not.toHaveProperty('free_model_daily_requests');

    fake.setKey(BETA, { freeModelDailyRequests: { used: 3, limit: 1000, remaining: 990 } });
    expect((await dataOf(BETA)).free_model_daily_requests).toEqual({ used: 3, limit: 1000, remaining: 990 });
    fake.setKey(BETA, { freeModelDailyRequests: null });
    expect(await dataOf(BETA)).not.toHaveProperty('free_model_daily_requests');
    fake.setAccount('acct', { freeModelDailyRequests: { used: 60, limit: 50 } });
    expect((await dataOf(ALPHA)).free_model_daily_requests).toEqual({ used: 60, limit: 50, remaining: 0 });
    // The legacy endpoint has no such field.
    const legacy = (await (await fetch(`${fake.baseURL}/auth/key`, { headers: { authorization: `Bearer ${ALPHA}` } })).json()) as Json;
    expect(legacy.data).not.toHaveProperty('free_model_daily_requests');
  });

  it('GET /auth/key answers the legacy shape', async () => {
    const fake = await startFake();
    const response = await fetch(`${fake.baseURL}/auth/key`, { headers: { authorization: `Bearer ${ALPHA}` } });
    expect(await response.json()).toEqual({
      data: {
        label: 'alpha',
        limit: 10,
        usage: 2.5,
        is_provisioning_key: false,
        limit_remaining: 7.5,
        is_free_tier: false,
        rate_limit: { requests: 50, interval: '10s' },
      },
    });
  });

  it('answers 401 for unknown keys and missing credentials', async () => {
    const fake = await startFake();
    for (const path of ['/key', '/auth/key']) {
      const unknown = await fetch(`${fake.baseURL}${path}`, { headers: { authorization: 'Bearer sk-or-v1-test-nobody' } });
      expect(unknown.status).toBe(401);
      expect(((await unknown.json()) as Json).error.message).toBe('User not found.');
      expect((await fetch(`${fake.baseURL}${path}`)).status).toBe(401);
    }
  });

  it('with legacyKeyEndpointOnly, GET /key is 404 and /auth/key still answers', async () => {
    const fake = await startFake({ legacyKeyEndpointOnly: true });
    const headers = { authorization: `Bearer ${ALPHA}` };
    expect((await fetch(`${fake.baseURL}/key`, { headers })).status).toBe(404);
    expect((await fetch(`${fake.baseURL}/auth/key`, { headers })).status).toBe(200);
  });
});

describe('counters', () => {
  it('records every chat request with key label, model, stream flag, status and arrival time', async () => {
    const fake = await startFake();
    const before = Date.now();
    await (await postChat(fake, chatBody())).text();
    await (await postChat(fake, chatBody({ model: 'b/model', stream: true }), { key: BETA })).text();
    await (await postChat(fake, chatBody(), { key: 'sk-or-v1-test-nobody' })).text();
    await (await fetch(`${fake.baseURL}/key`, { headers: { authorization: `Bearer ${ALPHA}` } })).text();

    expect(fake.requests).toEqual([
      { keyLabel: 'alpha', model: MODEL, stream: false, status: 200, at: expect.any(Number) },
      { keyLabel: 'beta', model: 'b/model', stream: true, status: 200, at: expect.any(Number) },
      { keyLabel: undefined, model: MODEL, stream: false, status: 401, at: expect.any(Number) },
    ]);
    expect(fake.requests[0]!.at).toBeGreaterThanOrEqual(before);
    expect(fake.countRequests()).toBe(3);
    expect(fake.countRequests({ keyLabel: 'alpha' })).toBe(1);
    expect(fake.countRequests({ model: MODEL, status: 200 })).toBe(1);
    expect(fake.countRequests({ status: 401 })).toBe(1);

    fake.reset();
    expect(fake.requests).toHaveLength(0);
    expect(fake.abortedConnections).toBe(0);
  });

  it('proves an abort mid-stream closes the server-side connection within 100 ms', async () => {
    const fake = await startFake({ models: { [MODEL]: { chunkCount: 50, chunkGapMs: 20 } } });
    const controller = new AbortController();
    const response = await postChat(fake, chatBody({ stream: true }), { signal: controller.signal });
    await readUntil(response.body!.getReader(), (text) => dataPayloads(text).length >= 3);

    const serverSawAbort = fake.waitForAbort(1000);
    const abortedAt = Date.now();
    controller.abort();
    const event = await serverSawAbort;
    expect(event.at - abortedAt).toBeLessThan(100);
    expect(event.record?.clientAborted).toBe(true);
    expect(fake.abortedConnections).toBe(1);
    expect(fake.requests[0]!.status).toBe(200);
  });

  it('onAbort listeners hear every abort until unsubscribed', async () => {
    const fake = await withFault({ type: 'silent' });
    const heard: string[] = [];
    const unsubscribe = fake.onAbort((event) => heard.push(event.path));
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const controller = new AbortController();
      const pending = postChat(fake, chatBody(), { signal: controller.signal }).catch(() => undefined);
      await sleep(20);
      const aborted = fake.waitForAbort(500);
      controller.abort();
      await pending;
      await aborted;
      if (attempt === 0) unsubscribe();
    }
    expect(heard).toEqual(['/api/v1/chat/completions']);
    expect(fake.abortedConnections).toBe(2);
  });

  it('waitForAbort rejects after its timeout', async () => {
    const fake = await startFake();
    await expect(fake.waitForAbort(20)).rejects.toThrow(/no client abort within 20 ms/);
  });
});

describe('close()', () => {
  it('closes promptly with a silent request pending, and leaves no server, socket or timer behind', async () => {
    // Handles closed by the previous test leave the list one event-loop turn after their close.
    await sleep(10);
    const handlesBefore = countHandles();
    const fake = await startFakeOpenRouter({
      keys: [{ key: ALPHA }],
      models: { [MODEL]: { faults: [{ type: 'silent' }] }, 'slow/model': { firstTokenMs: 60_000 } },
    });
    expect(countHandles().servers).toBe(handlesBefore.servers + 1);
    const silentFailed = expect(postChat(fake, chatBody())).rejects.toThrow();
    const slowResponse = await postChat(fake, chatBody({ model: 'slow/model', stream: true }));
    const slowFailed = expect(slowResponse.text()).rejects.toThrow();
    await sleep(20);
    expect(fake.openConnections).toBe(2);
    const waitingRejected = expect(fake.waitForAbort(60_000)).rejects.toThrow(/closed/);

    const started = performance.now();
    await fake.close();
    expect(performance.now() - started).toBeLessThan(100);
    await silentFailed;
    await slowFailed;
    await waitingRejected;
    expect(fake.openConnections).toBe(0);
    expect(fake.abortedConnections).toBe(0);
    await sleep(10);
    const handlesAfter = countHandles();
    expect(handlesAfter.servers).toBe(handlesBefore.servers);
    // undici keeps a timer of its own for pooled client sockets, so it may only have gone down.
    expect(handlesAfter.timers).toBeLessThanOrEqual(handlesBefore.timers);
    await fake.close();
  });

  it('refuses waitForAbort after close', async () => {
    const fake = await startFake();
    await fake.close();
    await expect(fake.waitForAbort(10)).rejects.toThrow(/closed/);
  });
});

/** Servers and timers alive in this process; client sockets are left to undici's own pool. */
function countHandles(): { servers: number; timers: number } {
  const resources = process.getActiveResourcesInfo();
  return {
    servers: resources.filter((resource) => resource === 'TCPServerWrap').length,
    timers: resources.filter((resource) => resource === 'Timeout').length,
  };
}

describe('fixture helpers', () => {
  it('loadFixture accepts the bare name or the file name', async () => {
    const byName = await loadFixture('error-401-user-not-found', FIXTURES_DIR);
    const byFile = await loadFixture('error-401-user-not-found.http.json', FIXTURES_DIR);
    expect(byName).toEqual(byFile);
    expect(byName.response).toEqual({
      status: 401,
      headers: { 'content-type': 'application/json' },
      body: '{"error":{"message":"User not found.","code":401}}',
    });
  });

  it('parseFixture rejects objects that are not fixtures, and path-like names are refused', async () => {
    expect(() => parseFixture({ response: { status: 200 } }, 'bad.json')).toThrow(/bad\.json is not an OpenRouter fixture/);
    await expect(loadFixture('../secrets', FIXTURES_DIR)).rejects.toThrow(/bare file name/);
  });
});
