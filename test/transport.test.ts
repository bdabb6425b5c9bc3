import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { firstValueFrom, lastValueFrom, toArray, type Observable } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AbortedError,
  AuthenticationError,
  BadRequestError,
  ConfigurationError,
  ContentPolicyError,
  ContextLengthError,
  InsufficientCreditsError,
  KeyLimitError,
  MalformedResponseError,
  NetworkError,
  NotFoundError,
  OpenRouterError,
  RateLimitError,
  StreamError,
  UpstreamError,
  type ErrorScope,
} from '../src/core/errors.js';
import { startFakeOpenRouter, type FakeFault, type FakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import {
  createFetchTransport,
  createOpenRouterTransport,
  fetchKeyInfo,
  parseKeyInfo,
  type OpenRouterTransportOptions,
} from '../src/transport/index.js';
import type { ChatRequest, KeyCredential, TransportEvent } from '../src/core/types.js';
import { KeyText, PoolKeyTexts, StreamRedactor, redactText, redactValue } from '../src/core/redact.js';
import { abortableFetch } from '../src/transport/abortable-fetch.js';
import { globalFetchInit, type RuntimeProcess } from '../src/transport/client-options.js';
import { errorFromSdk } from '../src/transport/sdk-errors.js';
import { connectionError } from '../src/transport/attempt-errors.js';
import { ValidationError } from '../src/core/validation.js';
import { FIXTURES_DIR, fixtureNames, loadFixture } from './helpers/fixtures.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const ALPHA: KeyCredential = { key: 'sk-or-v1-test-alpha', label: 'alpha', fingerprint: 'fp-alpha' };
const BETA: KeyCredential = { key: 'sk-or-v1-test-beta', label: 'beta', fingerprint: 'fp-beta' };
const MODEL = 'test/model-a';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startFake(options: Partial<FakeServerOptions> = {}): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({
    keys: [
      { key: ALPHA.key, label: 'alpha', account: 'acct-1', limit: 10, usage: 2.5, limitReset: 'monthly' },
      { key: BETA.key, label: 'beta', account: 'acct-2' },
    ],
    fixturesDir: FIXTURES_DIR,
    keepAliveIntervalMs: 20,
    ...options,
  });
  cleanups.push(() => fake.close());
  return fake;
}

function withFault(fault: FakeFault, options: Partial<FakeServerOptions> = {}): Promise<FakeOpenRouter> {
  return startFake({ ...options, models: { [MODEL]: { ...options.models?.[MODEL], faults: [fault] } } });
}

function chat(overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { id: 'corr-1', model: MODEL, messages: [{ role: 'user', content: 'hello there' }], ...overrides };
}

interface Outcome {
  events: TransportEvent[];
  error?: unknown;
  completed: boolean;
}

function collect(events$: Observable<TransportEvent>): Promise<Outcome> {
  return new Promise((resolve) => {
    const events: TransportEvent[] = [];
    events$.subscribe({
      next: (event) => events.push(event),
      error: (error: unknown) => resolve({ events, error, completed: false }),
      complete: () => resolve({ events, completed: true }),
    });
  });
}

function textOf(events: readonly TransportEvent[]): string {
  return events.map((event) => (event.type === 'chunk' ? event.delta : '')).join('');
}

function expectTyped(
  error: unknown,
  expected: { type: abstract new (...args: never[]) => OpenRouterError; scope: ErrorScope; retryable: boolean },
): OpenRouterError {
  expect(error).toBeInstanceOf(expected.type);
  const typed = error as OpenRouterError;
  expect({ scope: typed.scope, retryable: typed.retryable }).toEqual({ scope: expected.scope, retryable: expected.retryable });
  expect(typed.message).not.toContain(ALPHA.key);
  expect(JSON.stringify(typed.toJSON())).not.toContain(ALPHA.key);
  return typed;
}

/** The wire behaviour is the same through the SDK and through plain fetch: every case runs on both. */
const TRANSPORTS = [
  ['createOpenRouterTransport (openai SDK)', createOpenRouterTransport],
  ['createFetchTransport', createFetchTransport],
] as const;

describe.each(TRANSPORTS)('%s', (_name, createTransport) => {
  const transportFor = (fake: FakeOpenRouter, options: OpenRouterTransportOptions = {}) =>
    createTransport({ baseURL: fake.baseURL, ...options });

  describe('answers', () => {
    it('non-streaming: one completion event, then complete', async () => {
      const fake = await startFake({ defaultModel: { provider: 'Acme' } });
      const events = await lastValueFrom(transportFor(fake)(ALPHA, chat()).pipe(toArray()));
      expect(events).toHaveLength(1);
      const [event] = events;
      expect(event?.type).toBe('completion');
      if (event?.type !== 'completion') return;
      expect(event.completion).toMatchObject({ model: MODEL, provider: 'Acme', finishReason: 'stop' });
      expect(event.completion.id).toMatch(/^gen-/);
      expect(event.completion.content.length).toBeGreaterThan(0);
      expect(event.completion.usage?.totalTokens).toBeGreaterThan(0);
      expect(fake.requests).toMatchObject([{ keyLabel: 'alpha', model: MODEL, stream: false, status: 200 }]);
    });

    it('reports the send when the request goes out: after the synchronous work its caller does first (a batch taken in at once)', async () => {
      const fake = await startFake();
      let sentAt: number | undefined;
      const done = lastValueFrom(transportFor(fake)(ALPHA, chat(), { onSent: () => (sentAt = performance.now()) }).pipe(toArray()));
      // The caller goes on synchronously (balance taking in thousands of inputs): nothing is sent meanwhile.
      const busyUntil = performance.now() + 50;
      while (performance.now() < busyUntil);
      expect(sentAt).toBeUndefined();
      await done;
      expect(sentAt).toBeGreaterThanOrEqual(busyUntil);
    });

    it('a timeoutMs or doneGraceMs longer than a timer can wait is waited out (capped for the SDK), not fired at once (which timed every request out)', async () => {
      const warnings: string[] = [];
      const onWarning = (warning: Error): void => {
        warnings.push(warning.name);
      };
      process.on('warning', onWarning);
      try {
        const fake = await startFake({ defaultModel: { chunkCount: 3 } });
        const transport = transportFor(fake, { timeoutMs: 3e9, doneGraceMs: 3e9 });
        const complete = await lastValueFrom(transport(ALPHA, chat()).pipe(toArray()));
        const streamed = await lastValueFrom(transport(ALPHA, chat({ stream: true })).pipe(toArray()));
        expect(complete.map((event) => event.type)).toEqual(['completion']);
        expect(streamed.at(-1)?.type).toBe('end');
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(warnings).toEqual([]);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('streaming: chunks (role-only first), then end with finishReason and usage; same text as non-streaming', async () => {
      const fake = await startFake({ defaultModel: { chunkCount: 5 } });
      const transport = transportFor(fake);
      const completion = await firstValueFrom(transport(ALPHA, chat()));
      const { events, completed } = await collect(transport(ALPHA, chat({ stream: true })));
      expect(completed).toBe(true);
      expect(events[0]).toEqual({ type: 'chunk', delta: '', model: MODEL, provider: 'FakeProvider' });
      expect(events.slice(0, -1).every((event) => event.type === 'chunk')).toBe(true);
      expect(textOf(events)).toBe(completion.type === 'completion' ? completion.completion.content : 'no completion');
      // The chunk with the finish reason says so (the idle timeout ends there); no other does.
      const finishing = events.filter((event) => event.type === 'chunk' && event.finishReason !== undefined);
      expect(finishing).toEqual([expect.objectContaining({ type: 'chunk', finishReason: 'stop' })]);
      const end = events.at(-1);
      expect(end).toMatchObject({ type: 'end', model: MODEL, provider: 'FakeProvider', finishReason: 'stop' });
      expect(end?.type === 'end' && end.id).toMatch(/^gen-/);
      expect(end?.type === 'end' && end.usage?.totalTokens).toBeGreaterThan(0);
      // The stream ran to `[DONE]`: the connection was not cut by the client.
      expect(fake.abortedConnections).toBe(0);
    });

    it('a default header overrides an attribution header whatever the case of its name', async () => {
      // The fetch transport sent both, joined (`x-title: Example App, Mine`).
      const seen: IncomingHttpHeaders[] = [];
      const server = await listen(async (request, respond) => {
        seen.push(request.headers);
        await readAll(request);
        respond(200, {
          id: 'gen-1',
          model: MODEL,
          choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hi' } }],
        });
      });
      const transport = createTransport({
        baseURL: server.baseURL,
        appUrl: 'https://example.test/app',
        appTitle: 'Example App',
        defaultHeaders: { 'x-title': 'Mine', 'http-referer': 'https://mine.example' },
      });
      await firstValueFrom(transport(ALPHA, chat()));
      expect(seen[0]).toMatchObject({ 'x-title': 'Mine', 'http-referer': 'https://mine.example', 'x-openrouter-title': 'Example App' });
    });

    it('keep-alive comments produce no events', async () => {
      const fake = await startFake({ defaultModel: { chunkCount: 3, firstTokenMs: 200 }, keepAliveIntervalMs: 10 });
      const { events, completed } = await collect(transportFor(fake)(ALPHA, chat({ stream: true })));
      expect(completed).toBe(true);
      // role-only chunk, 3 content chunks, the finish chunk, the usage chunk (non-empty choices), end.
      expect(events.map((event) => event.type)).toEqual(['chunk', 'chunk', 'chunk', 'chunk', 'chunk', 'chunk', 'end']);
    });

    it('strips the correlation id and sends attribution headers when configured', async () => {
      const seen: Array<{ headers: IncomingHttpHeaders; body: Record<string, unknown> }> = [];
      const server = await listen(async (request, respond) => {
        seen.push({ headers: request.headers, body: JSON.parse(await readAll(request)) as Record<string, unknown> });
        respond(200, {
          id: 'gen-1',
          model: MODEL,
          provider: 'Acme',
          choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hi' } }],
        });
      });
      const transport = createTransport({ baseURL: server.baseURL, appUrl: 'https://example.test/app', appTitle: 'Example App' });
      await firstValueFrom(transport(ALPHA, chat({ id: 'corr-42' })));
      await firstValueFrom(createTransport({ baseURL: server.baseURL })(ALPHA, chat()));

      const [configured, plain] = seen;
      expect(configured?.headers['http-referer']).toBe('https://example.test/app');
      expect(configured?.headers['x-openrouter-title']).toBe('Example App');
      expect(configured?.headers['x-title']).toBe('Example App');
      expect(configured?.headers.authorization).toBe(`Bearer ${ALPHA.key}`);
      expect(configured?.body).not.toHaveProperty('id');
      expect(configured?.body).toMatchObject({ model: MODEL, stream: false });
      expect(plain?.headers).not.toHaveProperty('http-referer');
      expect(plain?.headers).not.toHaveProperty('x-title');
    });
  });

  interface ErrorCase {
    name: string;
    options?: Partial<FakeServerOptions>;
    fault?: FakeFault;
    key?: KeyCredential;
    /** Requests to send first, which succeed (to fill a quota). */
    warmup?: number;
    type: abstract new (...args: never[]) => OpenRouterError;
    scope: ErrorScope;
    retryable: boolean;
    status: number;
    retryAfterMs?: (value: number | undefined) => void;
  }

  const errorCases: ErrorCase[] = [
    {
      name: '401 revoked key',
      options: { keys: [{ key: ALPHA.key, label: 'alpha', revoked: true }] },
      type: AuthenticationError,
      scope: 'key',
      retryable: true,
      status: 401,
    },
    {
      name: '402 account out of credits',
      options: { accounts: [{ id: 'acct-1', outOfCredits: true }] },
      type: InsufficientCreditsError,
      scope: 'account',
      retryable: true,
      status: 402,
    },
    {
      name: '403 key limit exceeded',
      options: { keys: [{ key: ALPHA.key, label: 'alpha', keyLimitExceeded: true }] },
      type: KeyLimitError,
      scope: 'key',
      retryable: true,
      status: 403,
    },
    {
      name: '403 moderation',
      fault: { type: 'content-policy', reasons: ['violence'] },
      type: ContentPolicyError,
      scope: 'request',
      retryable: false,
      status: 403,
    },
    {
      name: '429 per-key quota, with Retry-After and X-RateLimit-* headers',
      options: { keys: [{ key: ALPHA.key, label: 'alpha', quota: { requests: 1, windowMs: 30_000 } }] },
      warmup: 1,
      type: RateLimitError,
      scope: 'key',
      retryable: true,
      status: 429,
      retryAfterMs: (value) => {
        expect(value).toBeGreaterThan(25_000);
        expect(value).toBeLessThanOrEqual(30_000);
      },
    },
    {
      name: '429 free-models-per-min account quota',
      options: {
        keys: [{ key: ALPHA.key, label: 'alpha', account: 'acct-1' }],
        accounts: [{ id: 'acct-1', quota: { requests: 1, windowMs: 60_000 } }],
      },
      warmup: 1,
      type: RateLimitError,
      scope: 'account',
      retryable: true,
      status: 429,
      retryAfterMs: (value) => expect(value).toBeGreaterThan(55_000),
    },
    {
      name: '429 upstream provider with a hint',
      fault: { type: 'rate-limit', retryAfterSeconds: 7, providerName: 'Venice' },
      type: RateLimitError,
      scope: 'model',
      retryable: true,
      status: 429,
      retryAfterMs: (value) => expect(value).toBe(7000),
    },
    { name: '500 internal', fault: { type: 'status', status: 500 }, type: UpstreamError, scope: 'model', retryable: true, status: 500 },
    {
      name: '503 with Retry-After',
      fault: { type: 'status', status: 503, retryAfterSeconds: 3 },
      type: UpstreamError,
      scope: 'model',
      retryable: true,
      status: 503,
      retryAfterMs: (value) => expect(value).toBe(3000),
    },
    {
      name: '400 context length',
      fault: { type: 'context-length', maxPromptTokens: 1 },
      type: ContextLengthError,
      scope: 'request',
      retryable: false,
      status: 400,
    },
    {
      name: '404 no endpoints',
      fault: { type: 'status', status: 404 },
      type: NotFoundError,
      scope: 'request',
      retryable: false,
      status: 404,
    },
    { name: '408 timeout', fault: { type: 'status', status: 408 }, type: UpstreamError, scope: 'transport', retryable: true, status: 408 },
  ];

  describe('HTTP errors', () => {
    for (const stream of [false, true]) {
      for (const testCase of errorCases) {
        it(`${testCase.name} (${stream ? 'streaming' : 'non-streaming'})`, async () => {
          const fake = testCase.fault === undefined ? await startFake(testCase.options) : await withFault(testCase.fault, testCase.options);
          const transport = transportFor(fake);
          for (let index = 0; index < (testCase.warmup ?? 0); index += 1) await lastValueFrom(transport(ALPHA, chat()));
          const { events, error } = await collect(transport(testCase.key ?? ALPHA, chat({ stream })));
          expect(events).toEqual([]);
          const typed = expectTyped(error, testCase);
          expect(typed.status).toBe(testCase.status);
          expect(typed.keyLabel).toBe('alpha');
          expect(typed.model).toBe(MODEL);
          if (testCase.retryAfterMs !== undefined) testCase.retryAfterMs(typed.retryAfterMs);
          if (testCase.type === ContentPolicyError) expect(typed.metadata?.['reasons']).toEqual(['violence']);
        });
      }
    }
  });

  describe("error bodies without OpenRouter's `{error}` wrapper (OpenAI-style, a bare JSON string)", () => {
    // The SDK keeps only a JSON body's `error` member: the SDK transport read such bodies as none,
    // and classified a key's spending cap as an account-wide denial, a free-model (account) 429 as
    // a key's, a context-length 400 as a plain bad request.
    const replies = [
      { status: 403, body: { message: 'Key limit exceeded', code: 403 }, type: KeyLimitError, scope: 'key', message: 'Key limit exceeded' },
      {
        status: 429,
        body: { message: 'Rate limit exceeded: free-models-per-min', code: 429 },
        type: RateLimitError,
        scope: 'account',
        message: 'free-models-per-min',
      },
      {
        status: 400,
        body: {
          message: "This model's maximum context length is 8192 tokens",
          type: 'invalid_request_error',
          code: 'context_length_exceeded',
        },
        type: ContextLengthError,
        scope: 'request',
        message: 'maximum context length',
      },
      { status: 429, body: 'slow down', type: RateLimitError, scope: 'key', message: 'slow down' },
    ] as const;
    for (const reply of replies) {
      it(`${reply.status} ${JSON.stringify(reply.body)}`, async () => {
        const server = await listen(async (request, respond) => {
          await readAll(request);
          respond(reply.status, reply.body);
        });
        const { error } = await collect(createTransport({ baseURL: server.baseURL })(ALPHA, chat()));
        expect(error).toBeInstanceOf(reply.type);
        expect(error).toMatchObject({ scope: reply.scope, status: reply.status });
        expect((error as Error).message).toContain(reply.message);
      });
    }
  });

  describe('a request JSON cannot carry (in a field the edge passes through)', () => {
    // It was reported as a NetworkError on the transport: retried on every key, each failure
    // counted against a healthy key's breaker.
    const cycle: Record<string, unknown> = { name: 'loop' };
    cycle['self'] = cycle;
    const cases = [
      { name: 'a BigInt', extra: { metadata: { trace: 5n } }, path: 'request.metadata.trace' },
      { name: 'a cycle', extra: { metadata: cycle }, path: 'request.metadata.self' },
      {
        name: 'a toJSON that throws',
        extra: {
          tools: [
            {
              toJSON: () => {
                throw new Error('no');
              },
            },
          ],
        },
        path: 'request.tools[0]',
      },
    ];
    for (const testCase of cases) {
      it(`${testCase.name}: fails on its own, request-scoped, naming where; nothing is sent`, async () => {
        const fake = await startFake();
        const { events, error } = await collect(transportFor(fake)(ALPHA, chat(testCase.extra)));
        expect(events).toEqual([]);
        expect(error).toBeInstanceOf(BadRequestError);
        expect(error).toMatchObject({ scope: 'request', retryable: false, keyLabel: 'alpha', model: MODEL });
        expect((error as Error).message).toMatch(new RegExp(`^${testCase.path.replace(/[.[\]]/g, '\\$&')}: cannot be sent as JSON`));
        expect(fake.requests).toEqual([]);
      });
    }
  });

  describe('fixtures replayed', () => {
    const expectations: Record<string, (outcome: Outcome) => void> = {
      'chat-nonstream-usage': ({ events }) =>
        expect(events).toMatchObject([
          { type: 'completion', completion: { model: 'z-ai/glm-4.6', provider: 'AtlasCloud', content: '\nok', usage: { cost: 1.4e-5 } } },
        ]),
      'chat-nonstream-model-fallback': ({ events }) =>
        expect(events).toMatchObject([{ type: 'completion', completion: { model: 'x-ai/grok-4', provider: 'xAI', finishReason: 'stop' } }]),
      'chat-stream-usage-done': ({ events, completed }) => {
        expect(completed).toBe(true);
        expect(textOf(events)).toBe('Pebbles and Skipper.');
        expect(events.at(-1)).toMatchObject({
          type: 'end',
          finishReason: 'stop',
          model: 'openai/gpt-4o',
          provider: 'OpenAI',
          usage: { totalTokens: 23, cost: 0.0001025 },
        });
      },
      'chat-stream-keepalives-fallback': ({ events, completed }) => {
        expect(completed).toBe(true);
        expect(textOf(events)).toMatch(/^I'm Grok/);
        expect(events.at(-1)).toMatchObject({
          type: 'end',
          finishReason: 'stop',
          model: 'x-ai/grok-4',
          provider: 'xAI',
          usage: { cachedTokens: 679, reasoningTokens: 118 },
        });
      },
      'chat-stream-tool-call': ({ events, completed }) => {
        expect(completed).toBe(true);
        expect(events.flatMap((event) => (event.type === 'chunk' ? (event.toolCalls ?? []) : []))).toHaveLength(2);
        expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: 'tool_calls', usage: { totalTokens: 59 } });
      },
      'chat-stream-midstream-error': ({ events, error }) => {
        expect(events.map((event) => (event.type === 'chunk' ? event.reasoning : event.type))).toEqual([
          'We need',
          ' to respond to a greeting. The user',
          undefined,
        ]);
        const typed = expectTyped(error, { type: StreamError, scope: 'request', retryable: false });
        expect(typed.cause).toBeInstanceOf(ContextLengthError);
        expect(typed.code).toBe(400);
      },
      // Nothing of the answer came before the error: it is the provider's 429 its code names, as
      // it would be in a 200 body or as the status, not a cut stream.
      'chat-stream-midstream-error-docs-example': ({ events, error }) => {
        expect(events).toEqual([]);
        const typed = expectTyped(error, { type: RateLimitError, scope: 'model', retryable: true });
        expect(typed.errorType).toBe('rate_limit_exceeded');
      },
      'error-401-no-auth-credentials': ({ error }) => void expectTyped(error, { type: AuthenticationError, scope: 'key', retryable: true }),
      'error-401-user-not-found': ({ error }) => void expectTyped(error, { type: AuthenticationError, scope: 'key', retryable: true }),
      'error-402-insufficient-credits': ({ error }) =>
        void expectTyped(error, { type: InsufficientCreditsError, scope: 'account', retryable: true }),
      'error-404-no-endpoints': ({ error }) => void expectTyped(error, { type: NotFoundError, scope: 'request', retryable: false }),
      'error-429-docs-example': ({ error }) =>
        expect(expectTyped(error, { type: RateLimitError, scope: 'key', retryable: true }).retryAfterMs).toBe(60_000),
      'error-429-free-models-per-day': ({ error }) => void expectTyped(error, { type: RateLimitError, scope: 'account', retryable: true }),
      'error-429-provider-retry-after': ({ error }) => {
        const typed = expectTyped(error, { type: RateLimitError, scope: 'model', retryable: true });
        expect(typed.retryAfterMs).toBe(17_000);
        expect(typed.providerName).toBe('Venice');
      },
      'error-429-provider-upstream': ({ error }) => {
        const typed = expectTyped(error, { type: RateLimitError, scope: 'model', retryable: true });
        expect(typed.message).toContain('temporarily rate-limited upstream');
      },
    };

    it('has an expectation for every chat and error fixture', () => {
      const replayable = fixtureNames().filter((name) => !name.startsWith('key-'));
      expect(Object.keys(expectations).sort()).toEqual(replayable);
    });

    for (const [name, expectation] of Object.entries(expectations)) {
      it(name, async () => {
        const fake = await withFault({ type: 'replay', fixture: name });
        const stream = loadFixture(name).response.headers['content-type'] === 'text/event-stream';
        expectation(await collect(transportFor(fake)(ALPHA, chat({ stream }))));
      });
    }
  });

  describe('failures after the status line', () => {
    it('in-band mid-stream error → StreamError after the chunks', async () => {
      const fake = await withFault({ type: 'in-band-error', afterChunks: 2 }, { defaultModel: { chunkCount: 5 } });
      const { events, error } = await collect(transportFor(fake)(ALPHA, chat({ stream: true })));
      expect(events.map((event) => event.type)).toEqual(['chunk', 'chunk', 'chunk']);
      const typed = expectTyped(error, { type: StreamError, scope: 'model', retryable: true });
      expect(typed.code).toBe(502);
      expect((typed as StreamError).truncated).toBe(false);
    });

    it('in-band error before any content → the error its code names, as in a 200 body; after content → StreamError', async () => {
      const message = "This endpoint's maximum context length is 10 tokens. However, you requested about 500 tokens.";
      const before = await withFault({ type: 'in-band-error', afterChunks: 0, code: 400, message, usage: true });
      const early = await collect(transportFor(before)(ALPHA, chat({ stream: true })));
      expect(early.events.filter((event) => event.type === 'chunk' && event.delta !== '')).toEqual([]);
      const typed = expectTyped(early.error, { type: ContextLengthError, scope: 'request', retryable: false });
      expect(typed.message).toContain('maximum context length');
      // The billed usage the error event carried stays with it.
      expect(typed.usage?.totalTokens).toBeGreaterThan(0);
      const after = await withFault({ type: 'in-band-error', afterChunks: 2, code: 400, message }, { defaultModel: { chunkCount: 5 } });
      const late = await collect(transportFor(after)(ALPHA, chat({ stream: true })));
      expect(late.events.filter((event) => event.type === 'chunk' && event.delta !== '').length).toBeGreaterThan(0);
      expect(expectTyped(late.error, { type: StreamError, scope: 'request', retryable: false }).cause).toBeInstanceOf(ContextLengthError);
    });

    it('in-band error in a 200 non-streaming body → typed error', async () => {
      const fake = await withFault({ type: 'in-band-error', afterChunks: 0, code: 503, message: 'Overloaded' });
      const { events, error } = await collect(transportFor(fake)(ALPHA, chat()));
      expect(events).toEqual([]);
      expectTyped(error, { type: UpstreamError, scope: 'model', retryable: true });
    });

    it('a stream cut before any finish_reason → StreamError truncated, on the model (the key had answered)', async () => {
      const fake = await withFault({ type: 'cut', afterChunks: 2 }, { defaultModel: { chunkCount: 5 } });
      const { events, error } = await collect(transportFor(fake)(ALPHA, chat({ stream: true })));
      expect(events.length).toBe(3);
      const typed = expectTyped(error, { type: StreamError, scope: 'model', retryable: true });
      expect((typed as StreamError).truncated).toBe(true);
    });

    it('a non-streaming body cut short after its status → StreamError truncated, on the model (the key had answered)', async () => {
      const fake = await withFault({ type: 'cut', afterChunks: 0 });
      const typed = expectTyped((await collect(transportFor(fake)(ALPHA, chat()))).error, {
        type: StreamError,
        scope: 'model',
        retryable: true,
      });
      expect((typed as StreamError).truncated).toBe(true);
      expect(typed.message).toContain('answer body cut off before its end (truncated answer)');
    });

    it('connection reset before the headers → NetworkError', async () => {
      for (const stream of [false, true]) {
        const fake = await withFault({ type: 'reset' });
        const { events, error } = await collect(transportFor(fake)(ALPHA, chat({ stream })));
        expect(events).toEqual([]);
        expectTyped(error, { type: NetworkError, scope: 'transport', retryable: true });
        // What `fetch` threw, as both transports say it (the SDK's wrapper said `Connection error: ` first).
        expect((error as Error).message).toMatch(/^fetch failed: /);
      }
    });

    it('a malformed SSE event → MalformedResponseError, without console noise', async () => {
      const fake = await withFault({ type: 'malformed', afterChunks: 1 }, { defaultModel: { chunkCount: 4 } });
      const { events, error } = await collect(transportFor(fake)(ALPHA, chat({ stream: true })));
      expect(events.length).toBe(2);
      expectTyped(error, { type: MalformedResponseError, scope: 'model', retryable: true });
    });

    it('a malformed non-streaming body → MalformedResponseError', async () => {
      const fake = await withFault({ type: 'malformed', afterChunks: 0 });
      expectTyped((await collect(transportFor(fake)(ALPHA, chat()))).error, {
        type: MalformedResponseError,
        scope: 'model',
        retryable: true,
      });
    });

    it('missing [DONE] on a socket kept open: completes at once after finish + usage, then closes the socket', async () => {
      const fake = await withFault({ type: 'missing-done', ending: 'hang' });
      const startedAt = Date.now();
      const { events, completed } = await collect(transportFor(fake, { doneGraceMs: 150 })(ALPHA, chat({ stream: true })));
      expect(completed).toBe(true);
      expect(Date.now() - startedAt).toBeLessThan(500);
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      expect(events.at(-1)?.type === 'end' && events.at(-1)).toHaveProperty('usage');
      // The lingering socket is closed once the grace period is over.
      const abort = await fake.waitForAbort(1000);
      expect(abort.record?.stream).toBe(true);
    });

    it('missing [DONE] on a socket closed cleanly after finish → end', async () => {
      const fake = await withFault({ type: 'missing-done', ending: 'close' });
      const { events, completed } = await collect(transportFor(fake)(ALPHA, chat({ stream: true })));
      expect(completed).toBe(true);
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    });

    it('the SDK timeout (headers never come) → NetworkError', async () => {
      const fake = await withFault({ type: 'silent' });
      const { error } = await collect(transportFor(fake, { timeoutMs: 150 })(ALPHA, chat({ stream: true })));
      expectTyped(error, { type: NetworkError, scope: 'transport', retryable: true });
    });
  });

  describe('cancellation', () => {
    it('unsubscribing mid-stream closes the server-side connection within 100 ms, and reports nothing', async () => {
      const fake = await startFake({ defaultModel: { chunkCount: 50, chunkGapMs: 40 } });
      const seen: TransportEvent[] = [];
      let reported: unknown;
      const aborted = fake.waitForAbort(2000);
      await new Promise<void>((resolve) => {
        const subscription = transportFor(fake)(ALPHA, chat({ stream: true })).subscribe({
          next: (event) => {
            seen.push(event);
            if (seen.length === 3) {
              subscription.unsubscribe();
              resolve();
            }
          },
          error: (error: unknown) => (reported = error),
          complete: () => (reported = 'complete'),
        });
      });
      const unsubscribedAt = Date.now();
      const event = await aborted;
      expect(event.at - unsubscribedAt).toBeLessThan(100);
      expect(event.record?.clientAborted).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(reported).toBeUndefined();
      expect(seen).toHaveLength(3);
    });

    it('firstValueFrom on a stream takes the first chunk and aborts the rest', async () => {
      const fake = await startFake({ defaultModel: { chunkCount: 50, chunkGapMs: 40 } });
      const aborted = fake.waitForAbort(2000);
      expect(await firstValueFrom(transportFor(fake)(ALPHA, chat({ stream: true })))).toMatchObject({ type: 'chunk', delta: '' });
      expect((await aborted).record?.clientAborted).toBe(true);
    });

    it('unsubscribing before the headers aborts the request too', async () => {
      const fake = await startFake({ defaultModel: { latencyMs: 2000 } });
      const aborted = fake.waitForAbort(2000);
      const subscription = transportFor(fake)(ALPHA, chat()).subscribe({ error: () => expect.fail('no error expected') });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const unsubscribedAt = Date.now();
      subscription.unsubscribe();
      expect((await aborted).at - unsubscribedAt).toBeLessThan(100);
    });

    it("the caller's signal aborts the request with AbortedError", async () => {
      const fake = await startFake({ defaultModel: { chunkCount: 50, chunkGapMs: 40 } });
      const controller = new AbortController();
      const aborted = fake.waitForAbort(2000);
      setTimeout(() => controller.abort(), 150);
      const { events, error } = await collect(transportFor(fake)(ALPHA, chat({ stream: true }), { signal: controller.signal }));
      expect(events.length).toBeGreaterThan(0);
      expectTyped(error, { type: AbortedError, scope: 'request', retryable: false });
      await aborted;
      const already = await collect(transportFor(fake)(ALPHA, chat(), { signal: controller.signal }));
      expect(already.error).toBeInstanceOf(AbortedError);
    });
  });

  describe('key secrecy', () => {
    it('redacts key text echoed by the server from messages and metadata', async () => {
      const server = await listen(async (request, respond) => {
        await readAll(request);
        const echoed = request.headers.authorization ?? '';
        respond(400, { error: { code: 400, message: `Invalid key header: ${echoed}`, metadata: { raw: echoed } } });
      });
      const { error } = await collect(createTransport({ baseURL: server.baseURL })(ALPHA, chat()));
      const typed = expectTyped(error, { type: OpenRouterError, scope: 'request', retryable: false });
      expect(typed.message).toBe('400 Invalid key header: Bearer [key alpha fp-alpha]');
      expect(JSON.stringify(typed.metadata)).not.toContain(ALPHA.key);
      expect(typed.stack ?? '').not.toContain(ALPHA.key);
    });

    it('redacts a key a stream splits after its first 20 characters, in content and in tool-call arguments alike', async () => {
      // A chunk that holds 20 characters of the key is scrubbed on its own; the tool-call arguments
      // of the next chunk (the rest of the key, which alone looks like nothing) went out as they were.
      const echoed: KeyCredential = Object.defineProperty({ label: 'echo', fingerprint: '#ec40ed' }, 'key', {
        value: TEST_KEYS.echoedPrefix,
      }) as KeyCredential;
      const secret = echoed.key;
      const server = createServer((request, response) => {
        request.resume();
        request.on('end', () => {
          const data = (delta: Record<string, unknown>, finish: string | null = null) =>
            `data: ${JSON.stringify({ id: 'g', model: MODEL, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
          response.writeHead(200, { 'content-type': 'text/event-stream' });
          response.write(
            data({
              content: `key ${secret.slice(0, 20)}`,
              tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'f', arguments: `{"k":"${secret.slice(0, 20)}` } }],
            }),
          );
          response.write(
            data({ content: `${secret.slice(20)} end`, tool_calls: [{ index: 0, function: { arguments: `${secret.slice(20)}"}` } }] }),
          );
          response.end(`${data({}, 'stop')}data: [DONE]\n\n`);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
      const { events, completed } = await collect(createTransport({ baseURL, doneGraceMs: 50 })(echoed, chat({ stream: true })));
      expect(completed).toBe(true);
      const text = JSON.stringify(events);
      expect(text.includes(secret.slice(20))).toBe(false);
      expect(textOf(events)).toBe('key [key echo #ec40ed] end');
      const args = events.flatMap((event) => (event.type === 'chunk' ? (event.toolCalls ?? []) : []));
      expect(args.map((call) => (call['function'] as { arguments?: string } | undefined)?.arguments ?? '').join('')).toBe(
        '{"k":"[key echo #ec40ed]"}',
      );
    });

    it('uses one client per key: each request carries its own key', async () => {
      const fake = await startFake();
      const transport = transportFor(fake);
      await lastValueFrom(transport(ALPHA, chat()));
      await lastValueFrom(transport(BETA, chat()));
      await lastValueFrom(transport(ALPHA, chat()));
      expect(fake.requests.map((record) => record.keyLabel)).toEqual(['alpha', 'beta', 'alpha']);
    });
  });
});

type FetchFunction = NonNullable<OpenRouterTransportOptions['fetch']>;
/** Nothing listens there: every test below answers from its own `fetch`. */
const NOWHERE = 'http://127.0.0.1:9/api/v1';
const sseText = (payloads: string[]) => payloads.map((payload) => `data: ${payload}\n\n`).join('');
const firstChunk = JSON.stringify({ id: 'g', model: MODEL, choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' } }] });

/** A `fetch` that ignores its signal and answers only when told. */
function deafFetch() {
  let answer: ((response: Response) => void) | undefined;
  const fetchImpl: FetchFunction = () => new Promise<Response>((resolve) => (answer = resolve));
  return {
    fetchImpl,
    /** The SDK reaches `fetch` a few turns of the event loop after the subscription. */
    async called(): Promise<void> {
      for (let turn = 0; turn < 20_000 && answer === undefined; turn++) await new Promise((resolve) => setImmediate(resolve));
      if (answer === undefined) throw new Error('fetch was never called');
    },
    answer: (response: Response) => answer?.(response),
  };
}

/** A body that never ends unless it is cancelled. */
function endlessBody(first: string) {
  const state = { cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    start: (controller) => controller.enqueue(new TextEncoder().encode(first)),
    cancel: () => {
      state.cancelled = true;
    },
  });
  return { body, state };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

describe.each(TRANSPORTS)("%s with a caller's fetch that ignores its signal", (_name, createTransport) => {
  afterEach(() => {
    vi.useRealTimers();
  });

  for (const stream of [true, false]) {
    it(`unsubscribing before the headers leaves no timer armed (stream: ${String(stream)})`, async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
      const deaf = deafFetch();
      const subscription = createTransport({ baseURL: NOWHERE, fetch: deaf.fetchImpl, timeoutMs: 60_000 })(
        ALPHA,
        chat({ stream }),
      ).subscribe({
        error: () => expect.fail('an unsubscribed attempt reports nothing'),
      });
      await deaf.called();
      expect(vi.getTimerCount(), 'the headers timeout, while the request is out').toBe(1);
      subscription.unsubscribe();
      for (let turn = 0; turn < 20; turn++) await Promise.resolve();
      expect(vi.getTimerCount(), 'timers left after unsubscribing').toBe(0);
    });

    it(`a response that comes after unsubscribing has its body cancelled (stream: ${String(stream)})`, async () => {
      const deaf = deafFetch();
      const subscription = createTransport({ baseURL: NOWHERE, fetch: deaf.fetchImpl })(ALPHA, chat({ stream })).subscribe({
        error: () => expect.fail('an unsubscribed attempt reports nothing'),
      });
      await deaf.called();
      subscription.unsubscribe();
      const { body, state } = endlessBody(stream ? ': keep-alive\n\n' : '{"id":');
      deaf.answer(new Response(body, { status: 200 }));
      await settle();
      expect(state.cancelled).toBe(true);
    });
  }

  it('a streamed body that does not end with the abort is cancelled when the caller leaves mid-stream', async () => {
    const { body, state } = endlessBody(sseText([firstChunk]));
    const fetchImpl: FetchFunction = () =>
      Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }));
    await new Promise<void>((resolve) => {
      const subscription = createTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat({ stream: true })).subscribe({
        next: () => {
          subscription.unsubscribe();
          resolve();
        },
      });
    });
    await settle();
    expect(state.cancelled).toBe(true);
  });

  it('an error answer whose body is cut off after its status is classified by the status, not blamed on the connection', async () => {
    for (const [status, type, scope] of [
      [429, RateLimitError, 'key'],
      [503, UpstreamError, 'model'],
    ] as const) {
      const fetchImpl: FetchFunction = () => {
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('{"error":{"message":'));
            controller.error(new TypeError('terminated'));
          },
        });
        return Promise.resolve(new Response(body, { status, headers: { 'content-type': 'application/json' } }));
      };
      for (const stream of [false, true]) {
        const { error } = await collect(createTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat({ stream })));
        expectTyped(error, { type, scope, retryable: true });
      }
    }
  });

  it('a whole-answer body that does not end with the abort is cancelled when the caller leaves while it is read', async () => {
    const { body, state } = endlessBody('{"id":');
    const fetchImpl: FetchFunction = () =>
      Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'application/json' } }));
    const subscription = createTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat()).subscribe({
      error: () => expect.fail('an unsubscribed attempt reports nothing'),
    });
    await settle();
    expect(state.cancelled, 'still reading').toBe(false);
    subscription.unsubscribe();
    await settle();
    expect(state.cancelled).toBe(true);
  });

  it("an OpenRouterError of the caller's own (its body failed with it after usage) is left as it was", async () => {
    const own = new StreamError({ message: 'cut', scope: 'model', retryable: true, truncated: true });
    const withUsage = JSON.stringify({
      id: 'g',
      model: MODEL,
      choices: [{ index: 0, delta: { content: 'a' } }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(sseText([withUsage])));
        setTimeout(() => controller.error(own), 5);
      },
    });
    const fetchImpl: FetchFunction = () =>
      Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }));
    const { error } = await collect(createTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat({ stream: true })));
    expect(error).toBeInstanceOf(StreamError);
    expect((error as StreamError).usage, 'the attempt reports the billed usage').toBeDefined();
    expect(own.usage, "on the caller's error").toBeUndefined();
  });
});

describe('globalFetchInit', () => {
  it('tells only the fetch of a Node that bundles undici: a runtime that calls itself Node without it (Workers with nodejs_compat) follows redirects as before', () => {
    expect(globalFetchInit()).toEqual({ redirect: 'error' });
    expect(globalFetchInit({ release: { name: 'node' }, versions: { undici: '6.24.1' } })).toEqual({ redirect: 'error' });
    expect(globalFetchInit({ release: { name: 'node' }, versions: { node: '22.0.0' } as RuntimeProcess['versions'] })).toEqual({});
    expect(globalFetchInit({ release: { name: 'bun' }, versions: { undici: '6.0.0' } })).toEqual({});
    expect(globalFetchInit({})).toEqual({});
  });
});

describe('connectionError', () => {
  it("types a redirect a fetch refused as the request's ConfigurationError, whichever runtime's words it comes in; other failures stay network errors", () => {
    const undici = new TypeError('fetch failed', { cause: new Error('unexpected redirect') });
    const deno = new TypeError("Encountered redirect while redirect mode is set to 'error'");
    for (const cause of [undici, deno])
      expectTyped(connectionError(cause, { key: ALPHA, model: MODEL }), { type: ConfigurationError, scope: 'request', retryable: false });
    const reset = new TypeError('fetch failed', { cause: new Error('other side closed') });
    expectTyped(connectionError(reset, { key: ALPHA, model: MODEL }), { type: NetworkError, scope: 'transport', retryable: true });
  });
});

describe.each(TRANSPORTS)('%s with the global fetch (Node: undici)', (_name, createTransport) => {
  it("has no request body copied by Node's fetch (undici tees a body it might resend on a redirect), streamed or whole", async () => {
    const fake = await startFake();
    const tee = vi.spyOn(ReadableStream.prototype, 'tee');
    cleanups.push(() => tee.mockRestore());
    for (const stream of [false, true]) {
      const { completed } = await collect(createTransport({ baseURL: fake.baseURL })(ALPHA, chat({ stream })));
      expect(completed).toBe(true);
    }
    expect(tee).not.toHaveBeenCalled();
  });

  it('follows no redirect: the request fails alone with a ConfigurationError naming baseURL, and the key goes nowhere else', async () => {
    // Redirects are refused so that Node's fetch need not copy each request's body for one (`globalFetchInit`).
    const arrivals: string[] = [];
    const server = createServer((request, response) => {
      arrivals.push(`${request.method} ${request.url}`);
      request.resume();
      request.on('end', () => {
        if (request.url?.startsWith('/old/') === true) {
          response.writeHead(308, { location: request.url.replace('/old/', '/new/') });
          response.end();
          return;
        }
        response.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/old/api/v1`;
    for (const stream of [false, true]) {
      const { events, error } = await collect(createTransport({ baseURL })(ALPHA, chat({ stream })));
      expect(events).toEqual([]);
      const typed = expectTyped(error, { type: ConfigurationError, scope: 'request', retryable: false });
      expect(typed.message).toContain('redirect');
      expect(typed.message).toContain('baseURL');
      expect(typed.keyLabel).toBe('alpha');
    }
    expect(arrivals).toEqual(['POST /old/api/v1/chat/completions', 'POST /old/api/v1/chat/completions']);
  });
});

describe('createFetchTransport: what a fetch may hand back', () => {
  /** A whole stream: 'hi', then the finish with usage, then `[DONE]`. */
  const text = sseText([
    firstChunk,
    JSON.stringify({
      id: 'g',
      model: MODEL,
      choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }),
    '[DONE]',
  ]);

  it('streams a body that is not async-iterable (Safari has no ReadableStream[Symbol.asyncIterator])', async () => {
    const fetchImpl: FetchFunction = () => {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(text));
          controller.close();
        },
      });
      Object.defineProperty(body, Symbol.asyncIterator, { value: undefined });
      Object.defineProperty(body, 'values', { value: undefined });
      const response = new Response(null, { status: 200, headers: { 'content-type': 'text/event-stream' } });
      Object.defineProperty(response, 'body', { value: body });
      return Promise.resolve(response);
    };
    const outcome = await collect(createFetchTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat({ stream: true })));
    expect(outcome.error).toBeUndefined();
    expect(textOf(outcome.events)).toBe('hi');
    expect(outcome.events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
  });

  it('streams a body that is a Node stream (a fetch such as node-fetch hands one back)', async () => {
    const fetchImpl: FetchFunction = () =>
      Promise.resolve({
        ok: true,
        status: 200,
        headers: new Headers({ 'content-type': 'text/event-stream' }),
        body: Readable.from([Buffer.from(text)]),
      } as unknown as Response);
    const outcome = await collect(createFetchTransport({ baseURL: NOWHERE, fetch: fetchImpl })(ALPHA, chat({ stream: true })));
    expect(outcome.error).toBeUndefined();
    expect(textOf(outcome.events)).toBe('hi');
    expect(outcome.events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
  });

  it('an error body that does not end with the abort is cancelled when the caller leaves while it is read (and a key-info body too)', async () => {
    const error = endlessBody('{"error":');
    const errorFetch: FetchFunction = () => Promise.resolve(new Response(error.body, { status: 500 }));
    const attempt = createFetchTransport({ baseURL: NOWHERE, fetch: errorFetch })(ALPHA, chat()).subscribe({
      error: () => expect.fail('an unsubscribed attempt reports nothing'),
    });
    const info = endlessBody('{"data":');
    const infoFetch: FetchFunction = () => Promise.resolve(new Response(info.body, { status: 200 }));
    const reading = fetchKeyInfo(ALPHA, { baseURL: NOWHERE, fetch: infoFetch }).subscribe({
      error: () => expect.fail('an unsubscribed read reports nothing'),
    });
    await settle();
    expect({ error: error.state.cancelled, info: info.state.cancelled }, 'still reading').toEqual({ error: false, info: false });
    attempt.unsubscribe();
    reading.unsubscribe();
    await settle();
    expect({ error: error.state.cancelled, info: info.state.cancelled }).toEqual({ error: true, info: true });
  });

  it("a fetch that rejects with an OpenRouterError of its own: the attempt's error is a redacted copy, the caller's is left as it was", async () => {
    const own = new NetworkError({ message: `proxy refused ${ALPHA.key}`, scope: 'transport', retryable: true });
    const { error } = await collect(createFetchTransport({ baseURL: NOWHERE, fetch: () => Promise.reject(own) })(ALPHA, chat()));
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).message).toBe('proxy refused [key alpha fp-alpha]');
    expect(own.message).toBe(`proxy refused ${ALPHA.key}`);
  });
});

describe("abortableFetch (a caller's fetch held to its signal)", () => {
  it('makes no call on a signal already aborted, and rejects with its reason', async () => {
    let calls = 0;
    const wrapped = abortableFetch(() => {
      calls++;
      return Promise.resolve(new Response('{}'));
    });
    const controller = new AbortController();
    controller.abort();
    await expect(wrapped(NOWHERE, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(0);
  });

  it('an abort after the call resolved with something that is not a web Response throws nowhere (no unhandled rejection)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (const answer of [{ ok: true, status: 200, body: {} }, { ok: true, status: 200 }, undefined]) {
        const controller = new AbortController();
        const wrapped = abortableFetch(() => Promise.resolve(answer as unknown as Response));
        await wrapped(NOWHERE, { signal: controller.signal });
        controller.abort();
      }
      await settle();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

describe('redaction', () => {
  /** An OpenRouter-shaped key: `sk-or-v1-` and 64 hex. */
  const LONG: KeyCredential = Object.defineProperty({ label: 'long', fingerprint: '#10ab9e' }, 'key', {
    value: TEST_KEYS.echoedPrefix,
  }) as KeyCredential;
  const secret = TEST_KEYS.echoedPrefix;
  const leaks = (value: unknown) =>
    leakedKeyLabels(typeof value === 'string' ? value : `${JSON.stringify(value)} ${inspect(value, { depth: Infinity })}`);

  it('maps an aborted body read (a DOMException, whose message is read-only) without touching it', () => {
    const abort = new DOMException('This operation was aborted', 'AbortError');
    const mapped = errorFromSdk(abort, { key: ALPHA, model: MODEL }, new WeakMap());
    expect(mapped).toBeInstanceOf(NetworkError);
    expect(mapped.message).toBe('This operation was aborted');
    expect(abort.message).toBe('This operation was aborted');
  });

  it('never rewrites a foreign error: the typed error holds a redacted copy of its cause', () => {
    const text = `connect failed for ${secret} (${secret.slice(0, 24)})`;
    const foreign = new Error(text);
    const stack = foreign.stack;
    const mapped = errorFromSdk(foreign, { key: LONG }, new WeakMap());
    expect(foreign.message === text && foreign.stack === stack, 'the foreign error is untouched').toBe(true);
    expect(mapped.message).toBe('connect failed for [key long #10ab9e] ([key long #10ab9e])');
    expect(mapped.cause).not.toBe(foreign);
    expect((mapped.cause as Error).message).toBe(mapped.message);
    expect(leaks(mapped)).toEqual([]);
    expect(leaks(String((mapped.cause as Error).stack))).toEqual([]);
  });

  it('redacts the key and any echo of its first 20 characters or more; shorter starts and ends stay', () => {
    const text = `whole ${secret}; twenty ${secret.slice(0, 20)}…; forty ${secret.slice(0, 40)}…; twice ${secret}${secret}`;
    // Compared as booleans: a failing comparison must not print key text.
    const redacted = redactText(text, LONG);
    expect(leaks(redacted)).toEqual([]);
    expect(
      redacted ===
        'whole [key long #10ab9e]; twenty [key long #10ab9e]…; forty [key long #10ab9e]…; twice [key long #10ab9e][key long #10ab9e]',
    ).toBe(true);
    // What OpenRouter itself shows of a key (`sk-or-v1-aa1...566`) is not distinctive: it stays readable.
    const preview = `${secret.slice(0, 12)}...${secret.slice(-3)} and ${secret.slice(0, 19)}`;
    expect(redactText(preview, LONG) === preview).toBe(true);
    // A key shorter than 20 characters is matched whole only.
    expect(redactText(`${ALPHA.key} and ${ALPHA.key.slice(0, 15)}`, ALPHA)).toBe(`[key alpha fp-alpha] and ${ALPHA.key.slice(0, 15)}`);
  });

  it('redacts at any depth, keys included; a pathological depth becomes a placeholder, never the raw value', () => {
    let deep: unknown = { quoted: secret };
    for (let level = 0; level < 12; level++) deep = { level, inner: deep, [secret.slice(0, 30)]: [secret] };
    expect(leaks(redactValue(deep, LONG))).toEqual([]);
    expect(JSON.stringify(redactValue(deep, LONG))).toContain('"quoted":"[key long #10ab9e]"');

    let abyss: unknown = { quoted: secret };
    for (let level = 0; level < 50_000; level++) abyss = { inner: abyss };
    let cursor = redactValue(abyss, LONG);
    let levels = 0;
    while (typeof cursor === 'object' && cursor !== null && 'inner' in cursor) {
      cursor = cursor.inner;
      levels += 1;
    }
    expect(levels).toBeGreaterThan(8);
    expect(typeof cursor).toBe('string');
    expect(leaks(String(cursor))).toEqual([]);

    const cyclic: Record<string, unknown> = { quoted: secret };
    cyclic['self'] = cyclic;
    expect(leaks(inspect(redactValue(cyclic, LONG), { depth: 4 }))).toEqual([]);
  });

  it('a stream redactor catches the key, or its first 20 characters, split at any point of the pieces', () => {
    const text = `a ${secret.slice(0, 20)}, b ${secret} c ${secret.slice(0, 33)}!`;
    const expected = redactText(text, LONG);
    expect(leaks(expected)).toEqual([]);
    for (let first = 1; first < text.length; first++) {
      for (const second of [first + 1, first + 7, first + 21]) {
        const redactor = new StreamRedactor(new KeyText(LONG));
        const out =
          [text.slice(0, first), text.slice(first, second), text.slice(second)].map((piece) => redactor.push(piece)).join('') +
          redactor.flush();
        if (out !== expected) expect.fail(`split at ${first}/${second}: ${leaks(out).length === 0 ? 'wrong text' : 'key text released'}`);
      }
    }
    // A start of the key held back at the end is released by flush, redacted if it is distinctive.
    const held = new StreamRedactor(new KeyText(LONG));
    expect(held.push(`tail ${secret.slice(0, 25)}`) === 'tail ').toBe(true);
    expect(held.flush() === '[key long #10ab9e]').toBe(true);
  });

  it('a pool’s key texts scrub an error of the sender and of any of a thousand keys it quotes, wherever a logger would find it', () => {
    const keys = Array.from(
      { length: 1000 },
      (_, index) =>
        Object.defineProperty({ label: `k${index}`, fingerprint: '#0f0f0f' }, 'key', {
          value: `sk-or-v1-${String(index).padStart(4, '0')}${secret.slice(13)}`,
        }) as KeyCredential,
    );
    const texts = new PoolKeyTexts(keys);
    const sender = keys[0]!;
    const quoting = new UpstreamError({
      message: `rejected ${keys[537]!.key}`,
      scope: 'model',
      retryable: true,
      metadata: {
        raw: { header: `Bearer ${keys[12]!.key.slice(0, 24)}` },
        // What JSON does not show, but an inspection does.
        seen: new Map([['by', keys[13]!.key]]),
        inner: new Error(`inner ${keys[14]!.key}`),
        hidden: { quoted: keys[15]!.key, toJSON: () => 'nothing here' },
      },
      // A transport's own error, with the request it made (its headers) on it.
      cause: Object.assign(new Error(`socket of ${keys[999]!.key.slice(9)}`), {
        config: { headers: { Authorization: `Bearer ${sender.key}` } },
      }),
    });
    expect(texts.redactError(quoting, sender)).toBe(quoting);
    expect(quoting.message).toBe('rejected [key k537 #0f0f0f]');
    expect(JSON.stringify(quoting.metadata)).toContain('[key k12 #0f0f0f]');
    expect((quoting.cause as Error).message).toBe('socket of [key k999 #0f0f0f]');
    const printed = `${inspect(quoting, { depth: Infinity, showHidden: true })} ${JSON.stringify(quoting)}`;
    for (const index of [0, 12, 13, 14, 15, 537, 999]) expect(printed.includes(keys[index]!.key.slice(0, 20)), `k${index}`).toBe(false);
    const plain = new UpstreamError({ message: 'upstream failed', scope: 'model', retryable: true, metadata: { provider: 'p' } });
    texts.redactError(plain, sender);
    expect(plain.message).toBe('upstream failed');
    expect(plain.metadata).toEqual({ provider: 'p' });
  });

  it('a stream redactor releases what the whole text redacts to when a key ends a piece, or the stream, with an end that begins its secret again', () => {
    // The end of an echo that could begin the key again was held back, then redacted on its own:
    // a second placeholder, or a stray character of the key after the first.
    for (const [label, key] of [
      ['loopingTail', TEST_KEYS.loopingTail],
      ['tailBeginsSecret', TEST_KEYS.tailBeginsSecret],
      ['echoedPrefix', secret],
    ] as const) {
      const credential = Object.defineProperty({ label, fingerprint: '#0f0f0f' }, 'key', { value: key }) as KeyCredential;
      const echoed = key.slice('sk-or-v1-'.length);
      for (const text of [`your key is ${key}`, key, `a ${key} ${key}`, `x ${echoed}`, `${key}${key.slice(0, 30)}`, `${key}!`]) {
        const expected = redactText(text, credential);
        expect(leaks(expected)).toEqual([]);
        for (let first = 0; first <= text.length; first++) {
          for (const second of [first, first + 1, first + 13]) {
            const redactor = new StreamRedactor(new KeyText(credential));
            const out =
              [text.slice(0, first), text.slice(first, second), text.slice(second)].map((piece) => redactor.push(piece)).join('') +
              redactor.flush();
            if (out !== expected)
              expect.fail(
                `${label}, text ${text.length} long, split at ${first}/${second}: ${leaks(out).length === 0 ? 'wrong text' : 'key text released'}`,
              );
          }
        }
      }
    }
  });
});

describe('fetchKeyInfo', () => {
  it('reads GET /key', async () => {
    const fake = await startFake();
    expect(await firstValueFrom(fetchKeyInfo(ALPHA, { baseURL: fake.baseURL }))).toEqual({
      label: 'alpha',
      limit: 10,
      limitRemaining: 7.5,
      limitReset: 'monthly',
      usage: 2.5,
      usageDaily: 2.5,
      usageWeekly: 2.5,
      usageMonthly: 2.5,
      isFreeTier: false,
      isManagementKey: false,
      expiresAt: null,
      // The account the key belongs to: the pool groups keys by it.
      creatorUserId: 'user_fake_acct-1',
    });
  });

  it('refuses a key that is not a credential at the call, without echoing it (it failed unheard, as an unhandled rejection)', () => {
    for (const key of [ALPHA.key, { label: 'team-a', fingerprint: '#abcdef' }, null]) {
      let thrown: unknown;
      try {
        fetchKeyInfo(key as unknown as KeyCredential, { baseURL: 'http://127.0.0.1:9/api/v1' });
      } catch (error: unknown) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as Error).message).toMatch(/^Invalid key credential: /);
      expect((thrown as Error).message).not.toContain(ALPHA.key);
    }
  });

  it('falls back to the legacy /auth/key on 404', async () => {
    const fake = await startFake({ legacyKeyEndpointOnly: true });
    expect(await firstValueFrom(fetchKeyInfo(BETA, { baseURL: fake.baseURL }))).toEqual({
      label: 'beta',
      limit: null,
      limitRemaining: null,
      limitReset: null,
      usage: 0,
      isFreeTier: false,
      rateLimit: { requests: 50, interval: '10s' },
    });
  });

  it('fails with the typed error of the response', async () => {
    const fake = await startFake({ keys: [{ key: ALPHA.key, label: 'alpha', revoked: true }] });
    const error = await firstValueFrom(fetchKeyInfo(ALPHA, { baseURL: fake.baseURL })).catch((caught: unknown) => caught);
    expectTyped(error, { type: AuthenticationError, scope: 'key', retryable: true });
  });

  it('parses both fixture shapes and rejects malformed bodies', () => {
    expect(parseKeyInfo(loadFixture('key-current-docs-example').response.body, ALPHA)).toEqual({
      label: 'sk-or-v1-au7...890',
      limit: 100,
      limitRemaining: 74.5,
      limitReset: 'monthly',
      usage: 25.5,
      usageDaily: 25.5,
      usageWeekly: 25.5,
      usageMonthly: 25.5,
      isFreeTier: false,
      isManagementKey: false,
      expiresAt: '2027-12-31T23:59:59Z',
      rateLimit: { requests: 1000, interval: '1h' },
      creatorUserId: 'user_2dHFtVWx2n56w6HkM0000000000',
    });
    expect(parseKeyInfo(loadFixture('key-legacy-auth-key').response.body, ALPHA)).toEqual({
      label: 'REDACTED',
      limit: 5,
      limitRemaining: 4.8984355238,
      limitReset: null,
      usage: 0.1015644762,
      isFreeTier: false,
      rateLimit: { requests: 50, interval: '10s' },
    });
    // The newer fields: free-model requests of the UTC day (remaining worked out when absent); garbage there is dropped.
    const data = { label: 'x', limit: null, usage: 0, is_free_tier: true };
    expect(parseKeyInfo({ data: { ...data, free_model_daily_requests: { used: 12, limit: 50 } } }, ALPHA).freeModelDailyRequests).toEqual({
      used: 12,
      limit: 50,
      remaining: 38,
    });
    expect(parseKeyInfo({ data: { ...data, free_model_daily_requests: 'lots', creator_user_id: 7 } }, ALPHA)).toEqual({
      label: 'x',
      limit: null,
      limitRemaining: null,
      limitReset: null,
      usage: 0,
      isFreeTier: true,
    });
    for (const body of ['not json', '{"data":{"label":"x"}}', { data: null }, 7]) {
      expect(() => parseKeyInfo(body, ALPHA)).toThrow(MalformedResponseError);
    }
  });
});

/** A one-route HTTP server for what the fake server does not expose (request headers, echoes). */
async function listen(
  handler: (request: IncomingMessage, respond: (status: number, body: unknown) => void) => Promise<void>,
): Promise<{ baseURL: string }> {
  const server: Server = createServer((request, response) => {
    const respond = (status: number, body: unknown): void => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    handler(request, respond).catch(() => respond(500, { error: { code: 500, message: 'test server failed' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return { baseURL: `http://127.0.0.1:${port}/api/v1` };
}

async function readAll(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
