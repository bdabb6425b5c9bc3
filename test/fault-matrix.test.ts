/**
 * The failover fault matrix: the 16 scenarios of failoverbench (resilience-anchors.md §11), each
 * run end to end through `balance()` with the real `openai` SDK against the fake OpenRouter, all
 * streaming. Times are scaled down (Retry-After 1 s, silences and stalls of a few hundred ms with
 * matching `firstTokenMs` / `idleMs`), so the whole file runs in well under 30 s.
 *
 * Every test checks four things: the outcome (the exact expected answer, or a clean typed error of
 * the right class), that no truncated or failed stream is ever reported as a completion, a bound on
 * the wall time, and a bound on the upstream calls (from `fake.requests`).
 *
 * Wall-time bounds are generous on the slow side (2 cores, other suites running) but tight enough
 * to tell "the per-attempt limit fired" from "the SDK's 10-minute default fired" or "it waited the
 * whole fault out".
 */
import { of, type Subscription } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AttemptsExhaustedError,
  BadRequestError,
  ContentPolicyError,
  ContextLengthError,
  FirstTokenTimeoutError,
  IdleTimeoutError,
  MalformedResponseError,
  OpenRouterError,
  RateLimitError,
  StreamError,
  UpstreamError,
  balance,
  createKeyPool,
  type BalanceEvent,
  type BalanceOptions,
  type ChatRequest,
  type ChunkEvent,
  type CompletionEvent,
  type FailedEvent,
  type KeyPool,
  type KeyPoolOptions,
  type PoolEvent,
  type RestartEvent,
  type Usage,
} from '../src/index.js';
import { startFakeOpenRouter, type FakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const PRIMARY = 'primary/model';
const FALLBACK = 'fallback/model';
const SMALL = 'small/model';
const PROMPT = 'Tell me about circuit breakers';
/** Content chunks per streamed answer: mid-stream faults land after `afterChunks` of them. */
const CHUNKS = 6;

/** The fake server's default answer for a model. */
function answerOf(model: string): string {
  return `Echo (${model}): ${PROMPT}`;
}

/** The fake server's usage for a generation (one token per 4 characters; fixed prices). */
function fakeUsage(completionText: string): Usage {
  const promptTokens = Math.ceil(PROMPT.length / 4);
  const completionTokens = Math.ceil(completionText.length / 4);
  const cost = Math.round((promptTokens * 0.000001 + completionTokens * 0.000002) * 1e10) / 1e10;
  return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens, cost };
}

function chat(model: string, ...fallbacks: string[]): ChatRequest {
  return {
    model,
    ...(fallbacks.length === 0 ? {} : { models: fallbacks }),
    stream: true,
    messages: [{ role: 'user', content: PROMPT }],
  };
}

// ------------------------------------------------------------------------------------ set-up

const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  fake: FakeOpenRouter;
  pool: KeyPool;
  /** Everything `pool.events$` emitted. */
  poolEvents: PoolEvent[];
}

/** A fake OpenRouter with two keys on two accounts, and a pool over it through the real SDK. */
async function setUp(server: Partial<FakeServerOptions> = {}, poolOptions: Partial<KeyPoolOptions> = {}): Promise<Harness> {
  const fake = await startFakeOpenRouter({
    keys: [
      { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
      { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
    ],
    keepAliveIntervalMs: 50,
    defaultModel: { chunkCount: CHUNKS },
    ...server,
  });
  cleanups.push(() => fake.close());
  const pool = createKeyPool({
    baseURL: fake.baseURL,
    keys: [
      { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
      { key: TEST_KEYS.beta, label: 'beta', account: 'acct-b' },
    ],
    ...poolOptions,
  });
  cleanups.push(() => pool.dispose());
  const poolEvents: PoolEvent[] = [];
  const subscription = pool.events$.subscribe((event) => poolEvents.push(event));
  cleanups.push(() => subscription.unsubscribe());
  return { fake, pool, poolEvents };
}

// ------------------------------------------------------------------------------------ running

interface Run {
  events: BalanceEvent[];
  chunks: ChunkEvent[];
  restarts: RestartEvent[];
  completion: CompletionEvent | undefined;
  failed: FailedEvent | undefined;
  /** Text of the chunks after the last `restart`: what the caller keeps. */
  finalText: string;
  /** Text of every chunk, restarts ignored: what the caller saw go by. */
  deliveredText: string;
  elapsedMs: number;
}

/**
 * Sends one request through `balance()` and collects its events. A request that gets no terminal
 * event within `guardMs` is a hang, which fails the test (and is unsubscribed, aborting it).
 */
function run(pool: KeyPool, request: ChatRequest, options: BalanceOptions = {}, guardMs = 10_000): Promise<Run> {
  const startedAt = Date.now();
  return new Promise<Run>((resolve, reject) => {
    const events: BalanceEvent[] = [];
    let subscription: Subscription | undefined = undefined;
    const guard = setTimeout(() => {
      subscription?.unsubscribe();
      reject(new Error(`no terminal event within ${guardMs} ms (a hang); events so far: ${events.map((event) => event.type).join(', ')}`));
    }, guardMs);
    subscription = of(request)
      .pipe(balance(pool, options))
      .subscribe({
        next: (event) => events.push(event),
        error: (error: unknown) => {
          clearTimeout(guard);
          reject(new Error(`balance() errored its output stream: ${String(error)}`));
        },
        complete: () => {
          clearTimeout(guard);
          resolve(summarise(events, Date.now() - startedAt));
        },
      });
  });
}

function summarise(events: BalanceEvent[], elapsedMs: number): Run {
  const chunks = events.filter((event): event is ChunkEvent => event.type === 'chunk');
  const restarts = events.filter((event): event is RestartEvent => event.type === 'restart');
  const lastRestart = events.map((event) => event.type).lastIndexOf('restart');
  const finalChunks = events.slice(lastRestart + 1).filter((event): event is ChunkEvent => event.type === 'chunk');
  return {
    events,
    chunks,
    restarts,
    completion: events.find((event): event is CompletionEvent => event.type === 'completion'),
    failed: events.find((event): event is FailedEvent => event.type === 'failed'),
    finalText: finalChunks.map((chunk) => chunk.delta).join(''),
    deliveredText: chunks.map((chunk) => chunk.delta).join(''),
    elapsedMs,
  };
}

/**
 * What holds for every run, whatever the fault: exactly one terminal event, last; a completion's
 * content is exactly the chunks the caller kept and ended with a normal finish (never a truncated
 * or failed stream reported as success); a failure is a typed error.
 */
function expectSound(result: Run): void {
  const terminals = result.events.filter((event) => event.type === 'completion' || event.type === 'failed');
  expect(terminals, 'exactly one terminal event').toHaveLength(1);
  expect(result.events.at(-1)).toBe(terminals[0]);
  if (result.completion !== undefined) {
    expect(result.completion.completion.content).toBe(result.finalText);
    expect(result.completion.completion.finishReason).toBe('stop');
  }
  if (result.failed !== undefined) expect(result.failed.error).toBeInstanceOf(OpenRouterError);
}

/** A transparent recovery: the full answer of `model`, no duplicated or foreign tokens kept. */
function expectAnswer(result: Run, model: string): CompletionEvent {
  expectSound(result);
  expect(result.failed?.error.message, 'failed instead of answering').toBeUndefined();
  const completion = result.completion!;
  expect(completion.model).toBe(model);
  expect(completion.completion.content).toBe(answerOf(model));
  expect(result.finalText).toBe(answerOf(model));
  const lastRestart = result.events.map((event) => event.type).lastIndexOf('restart');
  for (const event of result.events.slice(lastRestart + 1)) {
    if (event.type === 'chunk') expect(event.model).toBe(model);
  }
  return completion;
}

/** A clean failure: a `failed` event with a typed error of `type`, and no completion. */
function expectFailure<E extends OpenRouterError>(result: Run, type: abstract new (...args: never[]) => E): E {
  expectSound(result);
  expect(result.completion, 'a failed stream was reported as a completion').toBeUndefined();
  expect(result.failed).toBeDefined();
  expect(result.failed!.error).toBeInstanceOf(type);
  return result.failed!.error as E;
}

/** Chunks that were delivered before a failure are a clean prefix of the real answer: no garbage. */
function expectCleanPrefix(result: Run, model: string): void {
  expect(result.deliveredText.length).toBeGreaterThan(0);
  expect(result.deliveredText.length).toBeLessThan(answerOf(model).length);
  expect(answerOf(model).startsWith(result.deliveredText)).toBe(true);
}

function count(fake: FakeOpenRouter, model?: string): number {
  return fake.countRequests(model === undefined ? {} : { model });
}

/** Polls until `check` holds (the server sees an abort a moment after the client sends it). */
async function eventually(check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * With `FAULT_MATRIX_REPORT=1`, prints what each scenario cost (outcome, upstream calls, wall
 * time): the source of the failover table in docs/failover.md.
 */
function report(scenario: string, variant: string, result: Run, fake: FakeOpenRouter): void {
  if (process.env['FAULT_MATRIX_REPORT'] === undefined) return;
  const outcome = result.completion !== undefined ? `answer from ${result.completion.model}` : `${result.failed?.error.name}`;
  const calls = fake.requests.map(
    (request) => `${request.model.split('/')[0]}:${request.status}${request.clientAborted === true ? '(aborted)' : ''}`,
  );
  console.log(
    `${scenario} | ${variant} | ${outcome} | restarts ${result.restarts.length} | ${calls.length} calls [${calls.join(' ')}] | ${result.elapsedMs} ms`,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function keyStates(pool: KeyPool): string[] {
  return pool.snapshot().keys.map((key) => key.state);
}

function modelHealth(pool: KeyPool, model: string) {
  return pool.snapshot().models.find((entry) => entry.model === model);
}

// ------------------------------------------------------------------------------------ the matrix

describe('fault matrix (failoverbench S01-S16, streaming, real SDK, fake OpenRouter)', () => {
  it('S01 429 with Retry-After: waits the hint out on the only model; fails over at once when a fallback exists', async () => {
    // The only model: the hint is 1 s, so the retry must not come before ~1 s (and not hammer).
    const only = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'rate-limit', retryAfterSeconds: 1, times: 1 }] } } });
    const waited = await run(only.pool, chat(PRIMARY));
    report('S01', 'only model, Retry-After 1 s', waited, only.fake);
    expectAnswer(waited, PRIMARY);
    const arrivals = only.fake.requests.map((request) => request.at);
    expect(arrivals).toHaveLength(2);
    expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(900);
    expect(arrivals.filter((at) => at - arrivals[0]! < 750).length).toBeLessThanOrEqual(2);
    expect(waited.elapsedMs).toBeGreaterThanOrEqual(900);
    expect(waited.elapsedMs).toBeLessThan(3_000);
    expect(waited.completion!.attempts).toBe(2);

    // With a fallback model: no wait at all.
    const chained = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'rate-limit', retryAfterSeconds: 1 }] } } });
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK));
    report('S01', 'with fallback', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(failedOver.elapsedMs).toBeLessThan(800);
    expect(count(chained.fake, PRIMARY)).toBe(1);
    expect(count(chained.fake, FALLBACK)).toBe(1);
    expect(chained.poolEvents).toContainEqual(
      expect.objectContaining({ type: 'fallback', from: PRIMARY, to: FALLBACK, reason: 'rate_limit' }),
    );
  });

  it('S02 429 every time, no header: backs off (growing gaps), then a clean RateLimit failure; a fallback answers at once', async () => {
    // Scaled: the hint-less cooldown is 250 ms instead of the default 1 s (it doubles per 429 in a row).
    const { fake, pool } = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'rate-limit' }] } } }, { rateLimitCooldownMs: 250 });
    const result = await run(pool, chat(PRIMARY));
    report('S02', 'only model, cooldown 250 ms', result, fake);
    const error = expectFailure(result, AttemptsExhaustedError);
    expect(error.lastError).toBeInstanceOf(RateLimitError);
    expect(error.status).toBe(429);
    const arrivals = fake.requests.map((request) => request.at);
    expect(arrivals.length).toBeGreaterThanOrEqual(2);
    expect(arrivals.length).toBeLessThanOrEqual(6);
    expect(arrivals.filter((at) => at - arrivals[0]! < 3_000).length).toBeLessThanOrEqual(4);
    expect(error.attempts).toHaveLength(arrivals.length);
    const gaps = arrivals.slice(1).map((at, index) => at - arrivals[index]!);
    // Each park is the doubled backoff with equal jitter: at least half of 250 ms · 2^n.
    for (let index = 0; index < gaps.length; index++) expect(gaps[index]!).toBeGreaterThanOrEqual((250 * 2 ** index) / 2 - 10);
    expect(gaps.at(-1)!).toBeGreaterThan(gaps[0]!);
    expect(result.elapsedMs).toBeLessThan(4_000);

    const chained = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'rate-limit' }] } } });
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK));
    report('S02', 'with fallback', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(failedOver.elapsedMs).toBeLessThan(800);
    expect(count(chained.fake)).toBe(2);
  });

  it('S03 500 once: the fallback answers at once, the primary is not tried again; alone, one retry on the same model, which answers; 2 calls', async () => {
    const faults = { models: { [PRIMARY]: { faults: [{ type: 'status' as const, status: 500, times: 1 }] } } };
    // Fallback first: a failure of the model moves the request to the next model of its chain, with no backoff.
    const chained = await setUp(faults);
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK));
    report('S03', '500 once, with fallback', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(chained.fake.requests.map((request) => [request.model, request.status])).toEqual([
      [PRIMARY, 500],
      [FALLBACK, 200],
    ]);
    expect(failedOver.completion!.attempts).toBe(2);
    expect(chained.poolEvents).toContainEqual(expect.objectContaining({ type: 'retry', model: PRIMARY, status: 500, delayMs: 0 }));
    expect(chained.poolEvents).toContainEqual(
      expect.objectContaining({ type: 'fallback', from: PRIMARY, to: FALLBACK, reason: 'upstream' }),
    );
    expect(failedOver.elapsedMs).toBeLessThan(1_500);

    // Nowhere to fail over to: one retry on the same model, after a short full-jitter backoff.
    const alone = await setUp(faults);
    const result = await run(alone.pool, chat(PRIMARY));
    report('S03', '500 once, only model', result, alone.fake);
    expectAnswer(result, PRIMARY);
    expect(alone.fake.requests.map((request) => [request.model, request.status])).toEqual([
      [PRIMARY, 500],
      [PRIMARY, 200],
    ]);
    expect(result.completion!.attempts).toBe(2);
    expect(result.elapsedMs).toBeLessThan(1_500);
  });

  it('S04 503 persistent: fails over at once after one try of the primary; without a fallback, the 503 is the outcome', async () => {
    const chained = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'status', status: 503 }] } } });
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK));
    report('S04', 'with fallback', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(count(chained.fake)).toBe(2);
    expect(count(chained.fake, FALLBACK)).toBe(1);
    expect(count(chained.fake, PRIMARY)).toBe(1);
    expect(chained.poolEvents).toContainEqual(expect.objectContaining({ type: 'retry', model: PRIMARY, status: 503, delayMs: 0 }));
    expect(failedOver.elapsedMs).toBeLessThan(1_500);

    const alone = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'status', status: 503 }] } } });
    const result = await run(alone.pool, chat(PRIMARY));
    report('S04', 'only model', result, alone.fake);
    expectSound(result);
    expect(result.completion).toBeUndefined();
    const error = result.failed!.error;
    const original = error instanceof AttemptsExhaustedError ? error.lastError : error;
    expect(original).toBeInstanceOf(UpstreamError);
    expect(original.status).toBe(503);
    expect(error.status).toBe(503);
    expect(count(alone.fake)).toBeGreaterThanOrEqual(1);
    expect(count(alone.fake)).toBeLessThanOrEqual(6);
    expect(result.elapsedMs).toBeLessThan(2_000);
  });

  it('S05 TCP reset before the headers: retried, the caller still gets the answer', async () => {
    const { fake, pool } = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'reset', times: 1 }] } } });
    const result = await run(pool, chat(PRIMARY));
    report('S05', 'reset once', result, fake);
    expectAnswer(result, PRIMARY);
    expect(fake.requests.map((request) => request.status)).toEqual([0, 200]);
    // The reset is the connection's fault: the retry moves to the other key.
    expect(new Set(fake.requests.map((request) => request.keyLabel)).size).toBe(2);
    expect(result.elapsedMs).toBeLessThan(1_500);
  });

  it('S06 silent upstream: costs firstTokenMs per attempt, not the SDK default; fails over without retrying the silent route', async () => {
    const firstTokenMs = 300;
    const chained = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'silent' }] } } });
    const aborts: string[] = [];
    chained.fake.onAbort((event) => aborts.push(event.record?.model ?? event.path));
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK), { timeouts: { firstTokenMs } });
    report('S06', 'with fallback, firstTokenMs 300', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(failedOver.elapsedMs).toBeGreaterThanOrEqual(firstTokenMs - 20);
    expect(failedOver.elapsedMs).toBeLessThan(firstTokenMs + 1_300);
    // Soft: these fail today (a timeout never reaches the route, see the bug report), the rest still runs.
    expect.soft(count(chained.fake, PRIMARY), 'the silent primary was called again').toBe(1);
    expect(count(chained.fake, FALLBACK)).toBe(1);
    expect
      .soft(chained.poolEvents)
      .toContainEqual(expect.objectContaining({ type: 'fallback', from: PRIMARY, to: FALLBACK, reason: 'timeout' }));
    // The silent connection was closed by the client, not left open.
    await eventually(() => aborts.includes(PRIMARY));
    expect(chained.fake.requests.find((request) => request.model === PRIMARY)?.clientAborted).toBe(true);
    expect(chained.fake.abortedConnections).toBeGreaterThanOrEqual(1);

    // Nowhere to fail over to: a bounded number of bounded attempts, then a clean timeout error.
    const alone = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'silent' }] } } });
    const result = await run(alone.pool, chat(PRIMARY), { timeouts: { firstTokenMs } });
    report('S06', 'only model, firstTokenMs 300', result, alone.fake);
    expectSound(result);
    expect(result.completion).toBeUndefined();
    const error = result.failed!.error;
    expect(error instanceof AttemptsExhaustedError ? error.lastError : error).toBeInstanceOf(FirstTokenTimeoutError);
    const calls = count(alone.fake);
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(3);
    expect(result.elapsedMs).toBeLessThan(calls * firstTokenMs + 1_500);
    await eventually(() => alone.fake.requests.every((request) => request.clientAborted === true));
  });

  it('S07 first token after 2 s: a 300 ms first-token limit fails over, answering well before 2 s', async () => {
    const { fake, pool } = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'slow-first-token', delayMs: 2_000 }] } } });
    const result = await run(pool, chat(PRIMARY, FALLBACK), { timeouts: { firstTokenMs: 300 } });
    report('S07', 'with fallback, firstTokenMs 300', result, fake);
    expectAnswer(result, FALLBACK);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(280);
    expect(result.elapsedMs).toBeLessThan(1_600);
    // Soft: fails today (a timeout never reaches the route, see the bug report).
    expect.soft(count(fake, PRIMARY), 'the slow primary was called again').toBe(1);
    expect(count(fake, FALLBACK)).toBe(1);
    await eventually(() => fake.requests.find((request) => request.model === PRIMARY)?.clientAborted === true);

    // Without a first-token limit below the delay, the slow model simply answers.
    const patient = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'slow-first-token', delayMs: 600 }] } } });
    const answered = await run(patient.pool, chat(PRIMARY), { timeouts: { firstTokenMs: 2_000 } });
    report('S07', 'only model, firstTokenMs 2000', answered, patient.fake);
    expectAnswer(answered, PRIMARY);
    expect(answered.elapsedMs).toBeGreaterThanOrEqual(580);
    expect(count(patient.fake)).toBe(1);
  });

  it('S08 stream cut mid-answer: a clear truncation error (error mode) or a restart and the full fallback answer (restart mode); never a truncated success', async () => {
    const faults = { models: { [PRIMARY]: { faults: [{ type: 'cut' as const, afterChunks: 3 }] } } };
    const strict = await setUp(faults);
    const failed = await run(strict.pool, chat(PRIMARY, FALLBACK));
    report('S08', 'error mode', failed, strict.fake);
    const error = expectFailure(failed, StreamError);
    expect(error.truncated).toBe(true);
    expectCleanPrefix(failed, PRIMARY);
    expect(failed.restarts).toHaveLength(0);
    expect(count(strict.fake)).toBe(1);
    expect(failed.elapsedMs).toBeLessThan(1_500);

    const restarting = await setUp(faults);
    const result = await run(restarting.pool, chat(PRIMARY, FALLBACK), { onMidStreamError: 'restart' });
    report('S08', 'restart mode', result, restarting.fake);
    expectAnswer(result, FALLBACK);
    expect(result.restarts.length).toBeGreaterThanOrEqual(1);
    expect(result.restarts.every((restart) => restart.reason === 'stream')).toBe(true);
    // Each restart voids content that was really delivered, and the kept text has no duplicate.
    expect(result.deliveredText.length).toBeGreaterThan(answerOf(FALLBACK).length);
    expect(result.completion!.completion.content).toBe(answerOf(FALLBACK));
    expect(restarting.poolEvents.filter((event) => event.type === 'restart')).toHaveLength(result.restarts.length);
    expect(count(restarting.fake)).toBeLessThanOrEqual(4);
    expect(count(restarting.fake, FALLBACK)).toBe(1);
    expect(result.elapsedMs).toBeLessThan(2_000);
  });

  it('S09 stall mid-stream: the idle limit fires (IdleTimeoutError, or restart + fallback), the call ends early and the keys stay healthy', async () => {
    const idleMs = 300;
    const faults = { models: { [PRIMARY]: { faults: [{ type: 'stall' as const, afterChunks: 3, stallMs: 5_000 }] } } };
    const strict = await setUp(faults);
    const failed = await run(strict.pool, chat(PRIMARY, FALLBACK), { timeouts: { idleMs } });
    report('S09', 'error mode, idleMs 300', failed, strict.fake);
    const error = expectFailure(failed, IdleTimeoutError);
    expect(error.phase).toBe('idle');
    expectCleanPrefix(failed, PRIMARY);
    expect(failed.elapsedMs).toBeGreaterThanOrEqual(idleMs - 20);
    expect(failed.elapsedMs).toBeLessThan(idleMs + 1_000);
    expect(count(strict.fake)).toBe(1);
    await eventually(() => strict.fake.requests[0]?.clientAborted === true);
    expect(keyStates(strict.pool)).toEqual(['closed', 'closed']);

    const restarting = await setUp(faults);
    const result = await run(restarting.pool, chat(PRIMARY, FALLBACK), { timeouts: { idleMs }, onMidStreamError: 'restart' });
    report('S09', 'restart mode, idleMs 300', result, restarting.fake);
    expectAnswer(result, FALLBACK);
    // Soft: fails today (a timeout never reaches the route, see the bug report).
    expect.soft(result.restarts, 'the stalled primary was restarted on again').toHaveLength(1);
    expect(result.restarts.every((restart) => restart.reason === 'timeout')).toBe(true);
    expect.soft(count(restarting.fake, PRIMARY), 'the stalled primary was called again').toBe(1);
    expect(count(restarting.fake, FALLBACK)).toBe(1);
    expect(result.elapsedMs).toBeLessThan(idleMs + 1_500);
    expect(keyStates(restarting.pool)).toEqual(['closed', 'closed']);
    expect(restarting.pool.snapshot().keys.every((key) => key.consecutiveFailures === 0)).toBe(true);
  });

  it('S10 malformed SSE event: fails cleanly or recovers; no garbage reaches the caller; before the first token it is transparent', async () => {
    const afterContent = { models: { [PRIMARY]: { faults: [{ type: 'malformed' as const, afterChunks: 3 }] } } };
    const strict = await setUp(afterContent);
    const failed = await run(strict.pool, chat(PRIMARY));
    report('S10', 'error mode, after 3 chunks', failed, strict.fake);
    expectFailure(failed, MalformedResponseError);
    expectCleanPrefix(failed, PRIMARY);
    expect(failed.deliveredText).not.toContain('{');
    expect(count(strict.fake)).toBe(1);
    expect(failed.elapsedMs).toBeLessThan(1_500);

    const restarting = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'malformed', afterChunks: 3, times: 1 }] } } });
    const recovered = await run(restarting.pool, chat(PRIMARY), { onMidStreamError: 'restart' });
    report('S10', 'restart mode, after 3 chunks, once', recovered, restarting.fake);
    expectAnswer(recovered, PRIMARY);
    expect(recovered.restarts).toHaveLength(1);
    expect(recovered.deliveredText).not.toContain('{');
    expect(count(restarting.fake)).toBe(2);

    const early = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'malformed', afterChunks: 0, times: 1 }] } } });
    const transparent = await run(early.pool, chat(PRIMARY));
    report('S10', 'before the first token, once', transparent, early.fake);
    expectAnswer(transparent, PRIMARY);
    expect(transparent.restarts).toHaveLength(0);
    expect(transparent.deliveredText).toBe(answerOf(PRIMARY));
    expect(count(early.fake)).toBe(2);
    expect(transparent.elapsedMs).toBeLessThan(1_500);
  });

  it('S11 no [DONE]: completes promptly, with usage, whether the socket hangs or closes', async () => {
    for (const ending of ['hang', 'close'] as const) {
      const { fake, pool } = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'missing-done', ending }] } } });
      const result = await run(pool, chat(PRIMARY));
      report('S11', `ending ${ending}`, result, fake);
      const completion = expectAnswer(result, PRIMARY);
      expect(completion.usage).toMatchObject(fakeUsage(answerOf(PRIMARY)));
      expect(completion.completion.usage).toMatchObject(fakeUsage(answerOf(PRIMARY)));
      expect(result.elapsedMs, `ending: ${ending}`).toBeLessThan(1_500);
      expect(count(fake)).toBe(1);
    }
  });

  it('S12 context length: one try on the small model, then the larger fallback; alone, a ContextLengthError after one try; a known small context costs no call', async () => {
    const tooLong = { models: { [PRIMARY]: { faults: [{ type: 'context-length' as const, maxPromptTokens: 5 }] } } };
    const chained = await setUp(tooLong);
    const failedOver = await run(chained.pool, chat(PRIMARY, FALLBACK));
    report('S12', 'with fallback', failedOver, chained.fake);
    expectAnswer(failedOver, FALLBACK);
    expect(chained.fake.countRequests({ status: 400 })).toBe(1);
    expect(count(chained.fake, PRIMARY)).toBe(1);
    expect(count(chained.fake, FALLBACK)).toBe(1);
    expect(failedOver.elapsedMs).toBeLessThan(1_000);

    const alone = await setUp(tooLong);
    const result = await run(alone.pool, chat(PRIMARY));
    report('S12', 'only model', result, alone.fake);
    expectFailure(result, ContextLengthError);
    expect(count(alone.fake)).toBe(1);
    expect(result.elapsedMs).toBeLessThan(1_000);

    // The pool knows the small model's context: it is skipped without any request.
    const known = await setUp({}, { models: { [SMALL]: { contextLength: 5 } } });
    const skipped = await run(known.pool, chat(SMALL, FALLBACK));
    report('S12', 'known contextLength, with fallback', skipped, known.fake);
    expectAnswer(skipped, FALLBACK);
    expect(count(known.fake, SMALL)).toBe(0);
    expect(count(known.fake)).toBe(1);
    known.fake.reset();
    const nowhere = await run(known.pool, chat(SMALL));
    report('S12', 'known contextLength, only model', nowhere, known.fake);
    expectFailure(nowhere, ContextLengthError);
    expect(count(known.fake, SMALL)).toBe(0);
  });

  it('S13 content policy: one try, a ContentPolicyError carrying the reasons; health untouched', async () => {
    const reasons = ['violence', 'self-harm'];
    const { fake, pool } = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'content-policy', reasons }] } } });
    const result = await run(pool, chat(PRIMARY));
    report('S13', 'only model', result, fake);
    const error = expectFailure(result, ContentPolicyError);
    expect(error.metadata?.['reasons']).toEqual(reasons);
    expect(error.message).toContain('violence, self-harm');
    expect(error.scope).toBe('request');
    expect(count(fake)).toBe(1);
    expect(result.elapsedMs).toBeLessThan(1_000);
    expect(modelHealth(pool, PRIMARY)?.consecutiveFailures ?? 0).toBe(0);
    expect(keyStates(pool)).toEqual(['closed', 'closed']);
  });

  it('S14 cut, and the fallback rejects prefill: restart mode restarts with the original messages; error mode reports the cut, not a 400', async () => {
    const faults = {
      models: {
        [PRIMARY]: { faults: [{ type: 'cut' as const, afterChunks: 3 }] },
        [FALLBACK]: { chunkCount: CHUNKS, faults: [{ type: 'reject-prefill' as const }] },
      },
    };
    const restarting = await setUp(faults);
    const result = await run(restarting.pool, chat(PRIMARY, FALLBACK), { onMidStreamError: 'restart' });
    report('S14', 'restart mode', result, restarting.fake);
    expectAnswer(result, FALLBACK);
    expect(result.restarts.length).toBeGreaterThanOrEqual(1);
    // No prefill was ever sent: the fallback's rejection never fired.
    const fallbackCalls = restarting.fake.requests.filter((request) => request.model === FALLBACK);
    expect(fallbackCalls).toHaveLength(1);
    expect(fallbackCalls[0]).toMatchObject({ status: 200 });
    expect(fallbackCalls[0]!.fault).toBeUndefined();
    expect(restarting.fake.countRequests({ status: 400 })).toBe(0);
    expect(count(restarting.fake)).toBeLessThanOrEqual(4);
    expect(result.elapsedMs).toBeLessThan(2_000);

    const strict = await setUp(faults);
    const failed = await run(strict.pool, chat(PRIMARY, FALLBACK));
    report('S14', 'error mode', failed, strict.fake);
    const error = expectFailure(failed, StreamError);
    expect(error.truncated).toBe(true);
    expect(error).not.toBeInstanceOf(BadRequestError);
    expect(error.status).not.toBe(400);
    expect(count(strict.fake, FALLBACK)).toBe(0);
    expect(count(strict.fake)).toBe(1);
  });

  it('S15 flapping primary: the breaker opens, the fallback serves, probes follow, traffic returns to the primary soon after recovery', async () => {
    const cooldownMs = 300;
    const maxCooldownMs = 600;
    const { fake, pool, poolEvents } = await setUp(
      { models: { [PRIMARY]: { faults: [{ type: 'status', status: 503 }] } } },
      { modelBreaker: { consecutiveFailures: 2, cooldownMs, maxCooldownMs } },
    );
    const primaryStates: string[] = [];
    const health = pool.model(PRIMARY).health$.subscribe((entry) => primaryStates.push(entry.state));
    cleanups.push(() => health.unsubscribe());
    const outageMs = 1_800;
    const startedAt = Date.now();
    let recoveredAt: number | undefined;
    const served: Array<{ model: string; startedAt: number; endedAt: number }> = [];
    while (Date.now() - startedAt < outageMs + 2_500) {
      if (recoveredAt === undefined && Date.now() - startedAt >= outageMs) {
        fake.clearFaults(PRIMARY);
        recoveredAt = Date.now();
      }
      const requestStartedAt = Date.now();
      const result = await run(pool, chat(PRIMARY, FALLBACK));
      const model = result.completion?.model ?? 'failed';
      if (model === PRIMARY) expectAnswer(result, PRIMARY);
      else expectAnswer(result, FALLBACK);
      served.push({ model, startedAt: requestStartedAt, endedAt: Date.now() });
      if (recoveredAt !== undefined && model === PRIMARY && served.filter((entry) => entry.model === PRIMARY).length >= 3) break;
      await sleep(40);
    }
    if (process.env['FAULT_MATRIX_REPORT'] !== undefined) {
      const firstBack = served.find((entry) => entry.model === PRIMARY && entry.startedAt >= recoveredAt!);
      console.log(
        `S15 | outage ${outageMs} ms | ${served.length} requests, all answered | primary calls during outage ${fake.countRequests({ model: PRIMARY, status: 503 })}` +
          ` for ${served.filter((entry) => entry.endedAt <= recoveredAt!).length} requests | back on primary ${firstBack === undefined ? 'never' : firstBack.endedAt - recoveredAt!} ms after recovery | ${fake.requests.length} calls`,
      );
    }
    // Every request succeeded: via the fallback during the outage.
    expect(served.every((entry) => entry.model === PRIMARY || entry.model === FALLBACK)).toBe(true);
    const duringOutage = served.filter((entry) => entry.endedAt <= recoveredAt!);
    expect(duringOutage.length).toBeGreaterThanOrEqual(5);
    expect(duringOutage.every((entry) => entry.model === FALLBACK)).toBe(true);
    // The breaker opened, so the primary was spared: far fewer calls than 2 per request.
    expect(poolEvents).toContainEqual(expect.objectContaining({ type: 'state-change', scope: 'model', target: PRIMARY, to: 'open' }));
    expect(poolEvents).toContainEqual(expect.objectContaining({ type: 'state-change', scope: 'model', target: PRIMARY, to: 'half-open' }));
    const failedPrimaryCalls = fake.countRequests({ model: PRIMARY, status: 503 });
    const probesBound = 2 + Math.ceil(outageMs / cooldownMs) + 1;
    expect(failedPrimaryCalls).toBeLessThanOrEqual(probesBound);
    expect(failedPrimaryCalls).toBeLessThan(duringOutage.length);
    // After recovery, traffic is back on the primary within maxCooldown + slack.
    const back = served.find((entry) => entry.model === PRIMARY && entry.startedAt >= recoveredAt!);
    expect(back, 'traffic never returned to the primary').toBeDefined();
    expect(back!.endedAt - recoveredAt!).toBeLessThan(maxCooldownMs + 900);
    expect(served.at(-1)!.model).toBe(PRIMARY);
    expect(modelHealth(pool, PRIMARY)?.state).toBe('closed');
    // health$ showed the whole cycle: closed, open, half-open (probe), ..., closed again.
    expect(primaryStates[0]).toBe('closed');
    expect(primaryStates).toContain('open');
    expect(primaryStates).toContain('half-open');
    expect(primaryStates.at(-1)).toBe('closed');
  });

  it("S16 accounting: the fallback's model and usage are reported; billedUsage adds only the attempts that reported usage; pool totals agree", async () => {
    // The primary fails with an in-band error that carries usage (it was billed), every time.
    const { fake, pool } = await setUp({
      models: { [PRIMARY]: { faults: [{ type: 'in-band-error', afterChunks: 0, code: 502, usage: true }] } },
    });
    const result = await run(pool, chat(PRIMARY, FALLBACK));
    report('S16', 'in-band error with usage', result, fake);
    const completion = expectAnswer(result, FALLBACK);
    const primaryCalls = count(fake, PRIMARY);
    expect(primaryCalls).toBeGreaterThanOrEqual(1);
    expect(primaryCalls).toBeLessThanOrEqual(2);
    expect(count(fake, FALLBACK)).toBe(1);
    const answered = fakeUsage(answerOf(FALLBACK));
    const perFailure = fakeUsage('');
    expect(completion.completion.model).toBe(FALLBACK);
    expect(completion.usage).toMatchObject(answered);
    expect(completion.completion.usage).toMatchObject(answered);
    const billed = completion.billedUsage;
    // Soft: the billed-usage checks fail today (see the bug report); the plain variant still runs.
    expect.soft(billed?.promptTokens, 'billedUsage.promptTokens').toBe(answered.promptTokens + primaryCalls * perFailure.promptTokens);
    expect
      .soft(billed?.completionTokens, 'billedUsage.completionTokens')
      .toBe(answered.completionTokens + primaryCalls * perFailure.completionTokens);
    expect.soft(billed?.totalTokens, 'billedUsage.totalTokens').toBe(answered.totalTokens + primaryCalls * perFailure.totalTokens);
    expect.soft(billed?.cost, 'billedUsage.cost').toBeCloseTo(answered.cost! + primaryCalls * perFailure.cost!, 12);
    const snapshot = pool.snapshot();
    expect.soft(snapshot.usage.totalTokens, 'pool total vs billedUsage').toBe(billed?.totalTokens);
    expect.soft(snapshot.usage.cost, 'pool cost vs billedUsage').toBeCloseTo(billed?.cost ?? -1, 12);
    expect(snapshot.keys.reduce((sum, key) => sum + key.usage.totalTokens, 0)).toBe(snapshot.usage.totalTokens);
    expect(modelHealth(pool, FALLBACK)?.usage).toMatchObject({ requests: 1, totalTokens: answered.totalTokens });
    expect
      .soft(modelHealth(pool, PRIMARY)?.usage, "the failed model's billed usage")
      .toMatchObject({ requests: 0, totalTokens: primaryCalls * perFailure.totalTokens });

    // The primary simply fails (no usage): nothing of it is billed.
    const plain = await setUp({ models: { [PRIMARY]: { faults: [{ type: 'status', status: 500 }] } } });
    const clean = await run(plain.pool, chat(PRIMARY, FALLBACK));
    report('S16', 'plain 500', clean, plain.fake);
    const cleanCompletion = expectAnswer(clean, FALLBACK);
    expect(cleanCompletion.usage).toMatchObject(answered);
    expect(cleanCompletion.billedUsage).toMatchObject(answered);
    expect(plain.pool.snapshot().usage).toMatchObject({ requests: 1, totalTokens: answered.totalTokens });
    expect(modelHealth(plain.pool, PRIMARY)?.usage.totalTokens ?? 0).toBe(0);
    expect(count(plain.fake)).toBeLessThanOrEqual(3);
    expect(result.elapsedMs).toBeLessThan(1_500);
  });
});
