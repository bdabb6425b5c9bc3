/**
 * The error a request fails with carries its story (issue 14, item 4): every attempt, and the
 * error that led to a failure without an attempt of its own. Against the fake server, through the
 * real SDK transport, as a user meets it with `complete()`.
 */
import { firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AttemptsExhaustedError,
  AuthenticationError,
  NoKeyAvailableError,
  OpenRouterError,
  UpstreamError,
  balance,
  createKeyPool,
  type FailedEvent,
  type KeyPool,
  type Transport,
} from '../src/index.js';
import { copyError } from '../src/core/errors.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const MODEL = 'test/model-a';
const servers: FakeOpenRouter[] = [];
const pools: KeyPool[] = [];

afterEach(async () => {
  for (const pool of pools.splice(0)) pool.dispose();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function track(pool: KeyPool): KeyPool {
  pools.push(pool);
  return pool;
}

describe('the error a request fails with', () => {
  it('a lone revoked key: complete() rejects with NoKeyAvailableError that says 401, lists the attempt and names the 401 as its cause', async () => {
    const fake = await startFakeOpenRouter({ keys: [{ key: TEST_KEYS.revoked, label: 'revoked', revoked: true }] });
    servers.push(fake);
    const pool = track(
      createKeyPool({ baseURL: fake.baseURL, keys: [{ key: TEST_KEYS.revoked, label: 'revoked' }], discoverAccounts: false }),
    );

    const error: unknown = await firstValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(
      (thrown: unknown) => thrown,
    );

    expect(error).toBeInstanceOf(NoKeyAvailableError);
    const failure = error as NoKeyAvailableError;
    expect(failure.status).toBe(401);
    expect(failure.message).toContain('revoked: 401');
    expect(failure.attempts).toEqual([
      expect.objectContaining({ attempt: 1, keyLabel: 'revoked', model: MODEL, kind: 'authentication', status: 401 }),
    ]);
    expect(failure.cause).toBeInstanceOf(AuthenticationError);
    expect((failure.cause as AuthenticationError).status).toBe(401);
    // Logs get the story too, without the stack or the cause chain.
    expect(failure.toJSON()).toMatchObject({ kind: 'no_key_available', status: 401, attempts: failure.attempts });
    expect(JSON.stringify(failure.toJSON())).not.toContain(TEST_KEYS.revoked);
  }, 20_000);

  it('a request that fails on its only attempt carries that one attempt, and its own error is the cause of nothing new', async () => {
    const fake = await startFakeOpenRouter({
      keys: [{ key: TEST_KEYS.healthy1, label: 'k1' }],
      models: { [MODEL]: { faults: [{ type: 'content-policy' }] } },
    });
    servers.push(fake);
    const pool = track(createKeyPool({ baseURL: fake.baseURL, keys: [{ key: TEST_KEYS.healthy1, label: 'k1' }], discoverAccounts: false }));

    // A content-policy refusal is request-scoped: no retry takes it.
    const error = (await firstValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(
      (thrown: unknown) => thrown,
    )) as OpenRouterError;

    expect(error).toBeInstanceOf(OpenRouterError);
    expect(error.attempts).toEqual([expect.objectContaining({ attempt: 1, keyLabel: 'k1', status: error.status })]);
    expect(error.cause).not.toBeInstanceOf(OpenRouterError);
  }, 20_000);

  it('after retries, the failed event and the error list every attempt in order', async () => {
    const fake = await startFakeOpenRouter({
      keys: [{ key: TEST_KEYS.healthy1, label: 'k1' }],
      models: { [MODEL]: { faults: [{ type: 'status', status: 502 }] } },
    });
    servers.push(fake);
    const pool = track(createKeyPool({ baseURL: fake.baseURL, keys: [{ key: TEST_KEYS.healthy1, label: 'k1' }], discoverAccounts: false }));

    const events = await lastValueFrom(
      from([{ id: 'r1', model: MODEL, messages: [{ role: 'user' as const, content: 'hi' }] }]).pipe(
        balance(pool, { transient: { maxAttempts: 3, baseDelayMs: 1 } }),
        toArray(),
      ),
    );

    const failed = events.find((event): event is FailedEvent => event.type === 'failed');
    expect(failed).toBeDefined();
    expect(failed!.error.attempts).toBe(failed!.attempts);
    expect(failed!.attempts.map((record) => record.attempt)).toEqual([1, 2, 3]);
    expect(failed!.attempts.every((record) => record.status === 502)).toBe(true);
  }, 20_000);

  it('a custom transport that throws the same error object every time never sees it changed', async () => {
    const shared = new UpstreamError({ message: 'upstream down', scope: 'model', retryable: true, status: 503 });
    const before = { ...shared, descriptors: Reflect.ownKeys(shared).map(String).sort() };
    const transport: Transport = () => {
      throw shared;
    };
    const pool = track(createKeyPool({ keys: [{ key: TEST_KEYS.healthy1, label: 'k1' }], transport, discoverAccounts: false }));

    const error = (await firstValueFrom(pool.complete({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).catch(
      (thrown: unknown) => thrown,
    )) as OpenRouterError;

    // Retried on the one key, then given up: the last attempt's error is a copy, annotated.
    expect(error).toBeInstanceOf(AttemptsExhaustedError);
    const { lastError } = error as AttemptsExhaustedError;
    expect(lastError).toBeInstanceOf(UpstreamError);
    expect(lastError).not.toBe(shared);
    expect(lastError.keyLabel).toBe('k1');
    expect(error.attempts?.length).toBeGreaterThan(1);
    expect({ ...shared, descriptors: Reflect.ownKeys(shared).map(String).sort() }).toEqual(before);
    expect(shared.keyLabel).toBeUndefined();
    expect(shared.routeExhausted).toBe(false);
  }, 20_000);
});

describe('copyError', () => {
  it('makes a genuine Error of the same class, with every field, the stack and the annotations, and leaves the original alone', () => {
    const original = new UpstreamError({ message: 'upstream down', scope: 'model', retryable: true, status: 503 });
    const copy = copyError(original, { keyLabel: 'k1', model: MODEL, cause: original });

    expect(copy).toBeInstanceOf(UpstreamError);
    expect(Object.prototype.toString.call(copy)).toBe('[object Error]');
    expect(copy.stack).toBe(original.stack);
    expect(copy).toMatchObject({ name: 'UpstreamError', kind: 'upstream', message: 'upstream down', status: 503, keyLabel: 'k1' });
    expect(copy.cause).toBe(original);
    expect(Object.keys(copy)).not.toContain('cause');
    expect(original.keyLabel).toBeUndefined();
    expect(original.cause).toBeUndefined();
  });
});
