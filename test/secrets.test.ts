/**
 * No key text in anything the library reports. A run against the fake OpenRouter with keys that
 * fail every way a key fails (401 revoked, 402 out of credits, 403 key limit, 429 quota), plus a
 * server that echoes the key back in error bodies and answers, and everything the library hands
 * out is searched for every test key: errors (message, stack, toJSON, inspection, cause chain),
 * health snapshots, pool events, balance events, key-info refreshes and the credentials a
 * transport receives. Failures name key labels only, never the key.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { from, lastValueFrom, throwError, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  InsufficientCreditsError,
  KeyLimitError,
  OpenRouterError,
  RateLimitError,
  UpstreamError,
  ValidationError,
  balance,
  createKeyPool,
  createOpenRouterTransport,
  type BalanceEvent,
  type ChatRequest,
  type KeyCredential,
  type KeyHealth,
  type KeyPool,
  type KeyPoolOptions,
  type PoolEvent,
  type PoolHealth,
  type Transport,
} from '../src/index.js';
import { startFakeOpenRouter, type FakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const MODEL = 'test/model-a';
const ECHO_ERROR_MODEL = 'test/echo-error';
const ECHO_STREAM_MODEL = 'test/echo-stream';
const ECHO_ANSWER_MODEL = 'test/echo-answer';

const servers: Array<Pick<FakeOpenRouter, 'close'>> = [];
const pools: KeyPool[] = [];

afterEach(async () => {
  for (const pool of pools.splice(0)) pool.dispose();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** Everything a logger could print of a value: JSON (toJSON included), inspection, error chains. */
function renderings(value: unknown): string[] {
  const texts: string[] = [];
  const seen = new Set<unknown>();
  const visit = (item: unknown, depth: number) => {
    if (item === null || typeof item !== 'object' || seen.has(item) || depth > 6) return;
    seen.add(item);
    if (item instanceof Error) {
      texts.push(item.message, item.stack ?? '', String(item));
      if (item instanceof OpenRouterError) texts.push(JSON.stringify(item.toJSON()));
      visit(item.cause, depth + 1);
      if (item instanceof ValidationError) texts.push(JSON.stringify(item.issues));
    }
    for (const nested of Object.values(item)) visit(nested, depth + 1);
  };
  try {
    texts.push(JSON.stringify(value) ?? '');
  } catch (error) {
    texts.push(`unserialisable: ${String(error)}`);
  }
  texts.push(inspect(value, { depth: Infinity, breakLength: Infinity }));
  visit(value, 0);
  return texts;
}

/** Asserts that no test key appears in any rendering of `value`; reports labels only. */
function expectNoKeyText(value: unknown, what: string): void {
  const leaked = [...new Set(renderings(value).flatMap(leakedKeyLabels))];
  expect(leaked, `test keys found in ${what}`).toEqual([]);
}

async function startFake(options: FakeServerOptions): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({ keepAliveIntervalMs: 20, ...options });
  servers.push(fake);
  return fake;
}

function startPool(options: KeyPoolOptions): KeyPool {
  const pool = createKeyPool(options);
  pools.push(pool);
  return pool;
}

/** A proxy or provider that quotes the Authorization header back, as some do. */
const echoedHeader = (key: string) => `upstream said: invalid header "Authorization: Bearer ${key}"`;

const FAILING_KEYS = [
  { key: TEST_KEYS.secretAuth, label: 'auth-401' },
  { key: TEST_KEYS.secretCredits, label: 'credits-402' },
  { key: TEST_KEYS.secretCap, label: 'cap-403' },
  { key: TEST_KEYS.secretRate, label: 'rate-429' },
  { key: TEST_KEYS.secretGood, label: 'good' },
];

async function startFailingFake(): Promise<FakeOpenRouter> {
  return startFake({
    keys: [
      { key: TEST_KEYS.secretAuth, label: 'auth-401', revoked: true },
      { key: TEST_KEYS.secretCredits, label: 'credits-402', account: 'broke' },
      { key: TEST_KEYS.secretCap, label: 'cap-403', keyLimitExceeded: true, limit: 1, usage: 1 },
      { key: TEST_KEYS.secretRate, label: 'rate-429', quota: { requests: 1, windowMs: 60_000 } },
      { key: TEST_KEYS.secretGood, label: 'good', limit: 20, usage: 3 },
    ],
    accounts: [{ id: 'broke', outOfCredits: true }],
    models: {
      [ECHO_ERROR_MODEL]: { faults: [{ type: 'status', status: 500, message: echoedHeader(TEST_KEYS.secretGood) }] },
      [ECHO_STREAM_MODEL]: {
        chunkCount: 4,
        faults: [{ type: 'in-band-error', afterChunks: 2, code: 502, message: echoedHeader(TEST_KEYS.secretGood) }],
      },
    },
    // The answer quotes the key too (a model repeating its prompt, say).
    respond: ({ model }) => (model === ECHO_ANSWER_MODEL ? `your key is ${TEST_KEYS.secretGood}` : 'a fine answer'),
  });
}

function requests(count: number, model = MODEL, streams = true): ChatRequest[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `secret-${model}-${index}`,
    model,
    ...(streams && index % 3 === 0 ? { stream: true } : {}),
    messages: [{ role: 'user' as const, content: `question ${index}` }],
  }));
}

function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('no API key text in what the library reports', () => {
  it('a run over keys failing with 401, 402, 403 and 429: balance events, errors, health and pool events', async () => {
    const fake = await startFailingFake();
    const credentials: KeyCredential[] = [];
    const real = createOpenRouterTransport({ baseURL: fake.baseURL });
    const transport: Transport = (credential, request, options) => {
      credentials.push(credential);
      return real(credential, request, options);
    };
    const pool = startPool({ baseURL: fake.baseURL, keys: FAILING_KEYS, strategy: 'roundRobin', transport });
    const poolEvents: PoolEvent[] = [];
    const snapshots: PoolHealth[] = [];
    const keyHealth: KeyHealth[] = [];
    const subscriptions = [
      pool.events$.subscribe((event) => poolEvents.push(event)),
      pool.health$.subscribe((snapshot) => snapshots.push(snapshot)),
      ...FAILING_KEYS.map(({ label }) => pool.key(label).health$.subscribe((health) => keyHealth.push(health))),
    ];

    const events: BalanceEvent[] = await lastValueFrom(
      from([
        ...requests(20),
        ...requests(3, ECHO_ERROR_MODEL),
        ...requests(3, ECHO_STREAM_MODEL),
        ...requests(3, ECHO_ANSWER_MODEL, false),
      ]).pipe(
        balance(pool, { concurrency: 5, rateLimit: { maxAttempts: 5 }, transient: { maxAttempts: 2, baseDelayMs: 1, budget: false } }),
        toArray(),
      ),
    );
    const refreshed = await lastValueFrom(pool.refreshKeyInfo());
    for (const subscription of subscriptions) subscription.unsubscribe();

    // The run went through every failure it is meant to show.
    for (const status of [401, 402, 403, 429, 500, 200]) expect(fake.countRequests({ status }), `answers ${status}`).toBeGreaterThan(0);
    const failures = events.flatMap((event) => (event.type === 'failed' ? [event.error] : []));
    expect(failures.length).toBeGreaterThan(0);
    expect(events.some((event) => event.type === 'completion' && event.model === ECHO_ANSWER_MODEL)).toBe(true);
    expect(poolEvents.some((event) => event.type === 'cooldown' && event.reason === 'disabled')).toBe(true);
    expect(poolEvents.some((event) => event.type === 'cooldown' && event.reason === 'exhausted')).toBe(true);
    expect(poolEvents.some((event) => event.type === 'cooldown' && event.reason === 'rate-limit')).toBe(true);

    expectNoKeyText(events, 'balance events');
    for (const error of failures) expectNoKeyText(error, `a ${error.kind} error`);
    expectNoKeyText(poolEvents, 'pool events');
    expectNoKeyText(snapshots, 'health$ snapshots');
    expectNoKeyText(keyHealth, 'key health$');
    expectNoKeyText(pool.snapshot(), 'the final snapshot');
    expectNoKeyText(refreshed, 'refreshKeyInfo results');
    expectNoKeyText(
      FAILING_KEYS.map(({ label }) => pool.key(label)),
      'key handles',
    );
    // What the transport receives is logged by careless callers: the key is not enumerable.
    expect(credentials.length).toBeGreaterThan(0);
    expectNoKeyText(credentials, 'credentials handed to the transport');
  }, 30_000);

  it("a user's transport that echoes its key in what it throws or fails with: the failure, pool events and health hold no key", async () => {
    // Three ways a transport of one's own fails quoting the key: a typed error, a foreign error
    // emitted, and a throw before it returns an Observable.
    const failures = [
      (key: KeyCredential) =>
        throwError(() => new UpstreamError({ message: echoedHeader(key.key), scope: 'model', retryable: false, status: 500 })),
      (key: KeyCredential) => throwError(() => new Error(`connect failed for ${key.key}`, { cause: new Error(`socket of ${key.key}`) })),
      (key: KeyCredential): never => {
        throw new Error(`bad header ${key.key}`);
      },
    ];
    let call = 0;
    const transport: Transport = (key) => failures[call++ % failures.length]!(key);
    const pool = startPool({ keys: [{ key: TEST_KEYS.secretGood, label: 'good' }], transport, discoverAccounts: false });
    const poolEvents: PoolEvent[] = [];
    const subscription = pool.events$.subscribe((event) => poolEvents.push(event));
    const events: BalanceEvent[] = await lastValueFrom(
      from(requests(6, MODEL, false)).pipe(balance(pool, { concurrency: 1, transient: false, modelWaitMs: 0 }), toArray()),
    );
    subscription.unsubscribe();
    const failed = events.flatMap((event) => (event.type === 'failed' ? [event.error] : []));
    expect(failed).toHaveLength(6);
    expect(call).toBeGreaterThanOrEqual(3);
    expect(failed.map((error) => error.message).join('\n')).toContain('[key good ');
    expectNoKeyText(events, 'balance events');
    for (const error of failed) expectNoKeyText(error, `a ${error.kind} error`);
    expectNoKeyText(poolEvents, 'pool events');
    expectNoKeyText(pool.snapshot(), 'the snapshot');
  });

  it('an error one key drew that quotes the pool’s other keys holds none of them: the failure, pool events, the log and health', async () => {
    // A proxy that lists the keys it knows; the request carried the last one only.
    const listed = `keys on file: ${TEST_KEYS.paddedNewline}, "${TEST_KEYS.paddedSpace}" / ${TEST_KEYS.echoedPrefix}`;
    const keys = [
      { key: TEST_KEYS.paddedNewline, label: 'listed-1' },
      { key: TEST_KEYS.paddedSpace, label: 'listed-2' },
      { key: TEST_KEYS.echoedPrefix, label: 'sender' },
    ];
    const fake = await startFake({ keys, models: { [MODEL]: { faults: [{ type: 'status', status: 500, message: listed }] } } });
    const logged: unknown[] = [];
    const log = (fields: unknown, message: string) => logged.push(fields, message);
    const pool = startPool({
      baseURL: fake.baseURL,
      keys,
      strategy: (eligible) => eligible.find((key) => key.label === 'sender'),
      discoverAccounts: false,
      logger: { debug: log, info: log, warn: log, error: log },
      logLevel: 'debug',
    });
    const poolEvents: PoolEvent[] = [];
    const subscription = pool.events$.subscribe((event) => poolEvents.push(event));
    const events: BalanceEvent[] = await lastValueFrom(
      from(requests(2, MODEL, true)).pipe(balance(pool, { transient: false, modelWaitMs: 0 }), toArray()),
    );
    subscription.unsubscribe();
    const failed = events.flatMap((event) => (event.type === 'failed' ? [event.error] : []));
    expect(failed).toHaveLength(2);
    // Each key quoted is named by its placeholder, the others' as much as the sender's.
    for (const label of ['listed-1', 'listed-2', 'sender']) expect(failed[0]!.message.includes(`[key ${label} `), label).toBe(true);
    expectNoKeyText(events, 'balance events');
    for (const error of failed) expectNoKeyText(error, `a ${error.kind} error`);
    expectNoKeyText(poolEvents, 'pool events');
    expectNoKeyText(logged, 'the log');
    expectNoKeyText(pool.snapshot(), 'the snapshot');
  });

  it("scrubbing a user's transport error leaves the user's own errors, and their causes, as they were", async () => {
    const made: { outer: UpstreamError; inner: AuthenticationError }[] = [];
    const transport: Transport = (key) => {
      const inner = new AuthenticationError({ message: `bad key ${key.key}`, scope: 'key', retryable: false, status: 401 });
      const outer = new UpstreamError({ message: 'wrapped', scope: 'model', retryable: false, status: 500, cause: inner });
      made.push({ outer, inner });
      return throwError(() => outer);
    };
    const pool = startPool({ keys: [{ key: TEST_KEYS.secretGood, label: 'good' }], transport, discoverAccounts: false });
    const events: BalanceEvent[] = await lastValueFrom(
      from(requests(1, MODEL, false)).pipe(balance(pool, { concurrency: 1, transient: false, modelWaitMs: 0 }), toArray()),
    );
    const failure = events.find((event) => event.type === 'failed');
    expectNoKeyText(failure, 'the failure');
    expect(made.length).toBeGreaterThan(0);
    expect(made[0]!.outer.cause).toBe(made[0]!.inner);
    expect(made[0]!.inner.message).toBe(`bad key ${TEST_KEYS.secretGood}`);
  });

  it('the typed error of each key failure, thrown by pool.complete and pool.stream, holds no key', async () => {
    const fake = await startFailingFake();
    const single = (index: number) => startPool({ baseURL: fake.baseURL, keys: [FAILING_KEYS[index]!] });
    const hello = (model = MODEL): ChatRequest => ({ model, messages: [{ role: 'user', content: 'hello' }] });
    const noRetries = { rateLimit: false, transient: false } as const;

    const expected = [
      [0, AuthenticationError, 401],
      [1, InsufficientCreditsError, 402],
      [2, KeyLimitError, 403],
    ] as const;
    for (const [index, type, status] of expected) {
      const error = await errorOf(lastValueFrom(single(index).complete(hello(), noRetries)));
      expect(error, FAILING_KEYS[index]!.label).toBeInstanceOf(type);
      expect((error as OpenRouterError).status).toBe(status);
      expectNoKeyText(error, `the ${status} error of complete()`);
      const streamed = await errorOf(lastValueFrom(single(index).stream(hello(), noRetries)));
      expect(streamed).toBeInstanceOf(type);
      expectNoKeyText(streamed, `the ${status} error of stream()`);
    }

    // 429: the first request spends the key's quota on the server, the second is refused.
    const ratePool = single(3);
    await lastValueFrom(ratePool.complete(hello(), noRetries));
    const limited = await errorOf(lastValueFrom(ratePool.complete(hello(), noRetries)));
    expect(limited).toBeInstanceOf(RateLimitError);
    expect((limited as RateLimitError).retryAfterMs).toBeGreaterThan(0);
    expectNoKeyText(limited, 'the 429 error');
    expectNoKeyText(ratePool.snapshot(), 'health after a 429');

    // Key text echoed by the server is redacted from errors and answers.
    const goodPool = single(4);
    const echoed = await errorOf(lastValueFrom(goodPool.complete(hello(ECHO_ERROR_MODEL), noRetries)));
    expect(echoed).toBeInstanceOf(OpenRouterError);
    expect((echoed as OpenRouterError).message).toContain('[key good');
    expectNoKeyText(echoed, 'an error whose body quoted the key');
    const broken = await errorOf(lastValueFrom(goodPool.stream(hello(ECHO_STREAM_MODEL), noRetries)));
    expect(broken).toBeInstanceOf(OpenRouterError);
    expectNoKeyText(broken, 'an in-band stream error that quoted the key');
    const answer = await lastValueFrom(goodPool.complete(hello(ECHO_ANSWER_MODEL)));
    expect(answer.completion.content).toContain('[key good');
    expectNoKeyText(answer, 'an answer that quoted the key');
    expectNoKeyText(goodPool.snapshot(), 'health after echoed keys');

    // A revoked key found by the key-info refresh.
    const authPool = single(0);
    const refreshed = await lastValueFrom(authPool.refreshKeyInfo());
    expect(refreshed[0]!.state).toBe('disabled');
    expectNoKeyText(refreshed, 'a refresh of a revoked key');
  }, 30_000);

  // The answer arrives in chunks: a key quoted across two of them must be redacted all the same,
  // in the chunk deltas and in the assembled completion.
  it('a streamed answer that quotes the key is redacted like a complete one', async () => {
    const fake = await startFailingFake();
    const pool = startPool({ baseURL: fake.baseURL, keys: [FAILING_KEYS[4]!] });
    const hello: ChatRequest = { model: ECHO_ANSWER_MODEL, messages: [{ role: 'user', content: 'hello' }] };
    const events = await lastValueFrom(pool.stream(hello).pipe(toArray()));
    const completion = events.at(-1);
    expect(completion?.type).toBe('completion');
    expectNoKeyText(events, 'a streamed answer that quoted the key');
  });

  it('the search itself finds a key anywhere a logger would print it', () => {
    const hidden = new OpenRouterError({
      message: 'outer',
      scope: 'key',
      retryable: true,
      cause: new Error(`inner ${TEST_KEYS.secretCap}`),
    });
    expect(renderings(hidden).flatMap(leakedKeyLabels)).toContain('secretCap');
    expect(renderings({ nested: [{ deep: { key: TEST_KEYS.secretRate } }] }).flatMap(leakedKeyLabels)).toContain('secretRate');
    // An OpenRouter-shaped key is found by its first 20 characters alone, at any depth.
    expect(renderings({ message: `quoted ${TEST_KEYS.echoedPrefix.slice(0, 20)}…` }).flatMap(leakedKeyLabels)).toContain('echoedPrefix');
    expect(renderings(nestedQuote(TEST_KEYS.echoedPrefix, 40)).flatMap(leakedKeyLabels)).toContain('echoedPrefix');
    const credential = Object.defineProperty({ label: 'x' }, 'key', { value: TEST_KEYS.secretAuth, enumerable: false });
    expect(renderings(credential).flatMap(leakedKeyLabels)).toEqual([]);
  });

  it('a pool printed whole, as a debugger or an object-walking logger prints it, shows no key', async () => {
    const pool = createKeyPool({
      keys: [
        { key: TEST_KEYS.secretAuth, label: 'first' },
        { key: TEST_KEYS.secretRate, label: 'second', limits: { rpm: 60 } },
      ],
      baseURL: 'http://127.0.0.1:9/api/v1',
      discoverAccounts: false,
    });
    try {
      const printed = inspect(pool, { depth: 12 });
      // The pool's config and registry are in the print: the labels are there, the keys not.
      expect(printed.includes("label: 'second'")).toBe(true);
      expect(leakedKeyLabels(printed)).toEqual([]);
    } finally {
      pool.dispose();
    }
  });

  it('config validation errors name the field, never the key', () => {
    const invalid: unknown[] = [
      { keys: [{ key: TEST_KEYS.secretGood }, { key: TEST_KEYS.secretGood }] },
      { keys: [{ key: TEST_KEYS.secretGood, label: 'good', weight: TEST_KEYS.secretCap }] },
      { keys: [{ key: TEST_KEYS.secretGood, lable: TEST_KEYS.secretCap }] },
      { keys: [TEST_KEYS.secretGood] },
    ];
    for (const [index, options] of invalid.entries()) {
      let thrown: unknown;
      try {
        createKeyPool({ baseURL: 'http://127.0.0.1:9/api/v1', ...(options as KeyPoolOptions) });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, `config #${index}`).toBeInstanceOf(ValidationError);
      expectNoKeyText(thrown, `the validation error of config #${index}`);
    }
  });
});

/**
 * An upstream that quotes back the key it was sent everywhere an answer can hold text: an error's
 * message and metadata nested 12 levels deep, an answer's content, reasoning and raw body, stream
 * chunks (split 7 characters at a time), an in-band stream error, and `GET /key`. The model says
 * what it quotes: `whole/<shape>` the key, `prefix/<shape>` only its first 20 characters,
 * `secret/<shape>` the secret after `sk-or-v1-` (as a proxy that strips the scheme may).
 */
const ECHO_DEPTH = 12;

function nestedQuote(text: string, levels: number): unknown {
  let value: unknown = { quoted: text };
  for (let level = levels; level > 0; level--) value = { level, inner: value };
  return value;
}

async function startEchoServer(): Promise<string> {
  const server = createServer((request, response) => {
    answerWithEcho(request, response).catch(() => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push({
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
}

async function answerWithEcho(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const key = (request.headers.authorization ?? '').replace(/^Bearer /, '');
  const json = (status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  if (request.method === 'GET') {
    json(401, { error: { code: 401, message: `User not found for ${key.slice(0, 20)}`, metadata: nestedQuote(key, ECHO_DEPTH) } });
    return;
  }
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model: string; stream?: boolean };
  const [quote, shape] = body.model.split('/');
  const text = quote === 'prefix' ? key.slice(0, 20) : quote === 'secret' ? key.slice('sk-or-v1-'.length) : key;
  const error = (code: number) => ({ code, message: `upstream saw ${text}`, metadata: { raw: text, deep: nestedQuote(text, ECHO_DEPTH) } });
  if (shape === 'auth') return json(401, { error: error(401) });
  if (shape === 'bad-request') return json(400, { error: error(400) });
  const said = `your key is ${text}, keep it safe`;
  if (body.stream !== true) {
    if (shape === 'in-band') return json(200, { error: error(502) });
    return json(200, {
      id: 'gen-echo',
      model: body.model,
      echo: nestedQuote(text, ECHO_DEPTH),
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: said, reasoning: said } }],
      usage: { prompt_tokens: 3, completion_tokens: 9, total_tokens: 12 },
    });
  }
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  const send = (data: unknown): boolean => response.write(`data: ${JSON.stringify(data)}\n\n`);
  const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
    id: 'gen-echo',
    model: body.model,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  });
  send(chunk({ role: 'assistant', content: '' }));
  for (let at = 0; at < said.length; at += 7) {
    const piece = said.slice(at, at + 7);
    // A tool call's arguments arrive in pieces too: the first delta names the call, the rest only add to its arguments.
    const call =
      at === 0
        ? { id: 'call_echo', type: 'function', function: { name: 'remember', arguments: piece } }
        : { function: { arguments: piece } };
    send(chunk({ content: piece, reasoning: piece, tool_calls: [{ index: 0, ...call }] }));
  }
  if (shape === 'in-band') {
    send({ ...chunk({ content: '' }, 'error'), error: error(502) });
    response.end();
    return;
  }
  send(chunk({}, 'stop'));
  send({ ...chunk({}), choices: [], usage: { prompt_tokens: 3, completion_tokens: 9, total_tokens: 12 } });
  response.end('data: [DONE]\n\n');
}

function settled(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => value,
    (error: unknown) => error,
  );
}

/** The arguments of the streamed tool call, as a caller assembles them from the chunks' deltas. */
function toolArgumentsOf(events: readonly BalanceEvent[]): string {
  let text = '';
  for (const event of events) {
    if (event.type !== 'chunk') continue;
    for (const call of event.toolCalls ?? []) {
      const fn = call['function'] as { arguments?: unknown } | undefined;
      if (typeof fn?.arguments === 'string') text += fn.arguments;
    }
  }
  return text;
}

/** Every shape, quoted whole and in part, through complete and stream (tool calls too); then a 401 and a key-info refresh. */
async function runAgainstEchoes(pool: KeyPool): Promise<{ reported: unknown[]; answers: string[]; errors: OpenRouterError[] }> {
  const reported: unknown[] = [];
  const answers: string[] = [];
  const noRetries = { rateLimit: false, transient: false } as const;
  const events = pool.events$.subscribe((event) => reported.push(event));
  for (const quote of ['whole', 'prefix', 'secret']) {
    for (const shape of ['bad-request', 'in-band', 'answer']) {
      const request: ChatRequest = { model: `${quote}/${shape}`, messages: [{ role: 'user', content: 'hello' }] };
      const completed = await settled(lastValueFrom(pool.complete(request, noRetries)));
      const streamed = await settled(lastValueFrom(pool.stream(request, noRetries).pipe(toArray())));
      reported.push(completed, streamed);
      for (const outcome of [completed, streamed].flat() as Array<Partial<BalanceEvent>>) {
        if (outcome.type === 'completion' && 'completion' in outcome) answers.push(outcome.completion!.content);
      }
      if (shape === 'answer' && Array.isArray(streamed)) answers.push(toolArgumentsOf(streamed as BalanceEvent[]));
    }
  }
  reported.push(
    await settled(lastValueFrom(pool.complete({ model: 'whole/auth', messages: [{ role: 'user', content: 'hello' }] }, noRetries))),
  );
  reported.push(await settled(lastValueFrom(pool.refreshKeyInfo())));
  reported.push(pool.snapshot());
  events.unsubscribe();
  const errors = reported.filter((item): item is OpenRouterError => item instanceof OpenRouterError);
  return { reported, answers, errors };
}

describe('no key text, whole or in part, when keys are padded or echoed partially', () => {
  it.each([
    ['with a trailing newline', `${TEST_KEYS.paddedNewline}\n`],
    ['between spaces and a tab', ` ${TEST_KEYS.paddedSpace} \t`],
    ['as is', TEST_KEYS.echoedPrefix],
  ])(
    'a key configured %s, echoed whole, by its first 20 characters and by its secret alone everywhere',
    async (_how, key) => {
      const baseURL = await startEchoServer();
      // Not an OpenRouter: its key route answers 401, which at start would disable the key.
      const pool = startPool({ baseURL, keys: [{ key, label: 'echoed' }], discoverAccounts: false });
      const { reported, answers, errors } = await runAgainstEchoes(pool);

      // The upstream did quote the key, and what it quoted became the key's placeholder. (Matched
      // as booleans: a failing match must not print the text it found.)
      const placeholder = /^your key is \[key echoed #[0-9a-f]{6}\], keep it safe$/;
      // Each quote's answer, complete and streamed, and the streamed tool call's arguments.
      expect(answers.map((answer) => placeholder.test(answer))).toEqual([true, true, true, true, true, true, true, true, true]);
      expect(errors.length).toBeGreaterThanOrEqual(9);
      const badRequest = errors.find((error) => error.status === 400);
      expect(badRequest?.message.includes('[key echoed')).toBe(true);
      // Metadata deeper than any fixed cutoff is scrubbed too.
      expect(JSON.stringify(badRequest?.metadata).includes('"quoted":"[key echoed')).toBe(true);
      expect(pool.snapshot().keys[0]?.lastError?.message.includes('[key echoed')).toBe(true);

      expectNoKeyText(reported, 'errors, answers, events, health and key info of an echoing upstream');
      for (const error of errors) expectNoKeyText(error, `a ${error.kind} error`);
    },
    30_000,
  );
});
