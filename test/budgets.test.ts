/**
 * OpenRouter's two 402s that are not an empty balance (openrouter-wire.md §5), through the real SDK
 * against the fake server: `weight_exceeds_budget` fails only its request (fewer `max_tokens` would
 * pass), and `in_flight_budget_exhausted` parks the account for its `Retry-After` without
 * exhausting it, so every request still gets its answer.
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { InsufficientCreditsError, balance, createKeyPool, type FailedEvent, type PoolEvent } from '../src/index.js';
import { startFakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'alpha', account: 'acct-a' },
  { key: TEST_KEYS.beta, label: 'beta', account: 'acct-a' },
];

describe('402 budgets', () => {
  it('weight_exceeds_budget fails that request once, naming max_tokens; health and the next requests are untouched', async () => {
    const fake = await startFakeOpenRouter({ keys: KEYS, accounts: [{ id: 'acct-a', maxTokensBudget: 1_000 }] });
    cleanups.push(() => fake.close());
    const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, keyInfo: () => Promise.reject(new Error('not polled')) });
    cleanups.push(() => pool.dispose());
    const request = (id: string, maxTokens: number) => ({
      id,
      model: 'acme/model',
      max_tokens: maxTokens,
      messages: [{ role: 'user' as const, content: id }],
    });
    const events = await lastValueFrom(from([request('heavy', 50_000), request('light', 100)]).pipe(balance(pool), toArray()));

    const heavy = events.find((event): event is FailedEvent => event.type === 'failed' && event.requestId === 'heavy');
    expect(heavy?.error).toBeInstanceOf(InsufficientCreditsError);
    expect(heavy?.error).toMatchObject({ scope: 'request', retryable: false, status: 402 });
    expect(heavy?.error.message).toMatch(/max_tokens/);
    expect(heavy?.attempts).toHaveLength(1);
    expect(events.some((event) => event.type === 'completion' && event.requestId === 'light')).toBe(true);
    expect(fake.countRequests({ status: 402 })).toBe(1);
    for (const key of pool.snapshot().keys) expect(key).toMatchObject({ state: 'closed', lastError: null });
  });

  it('in_flight_budget_exhausted parks the account for its Retry-After, then every request is answered', async () => {
    const fake = await startFakeOpenRouter({
      keys: KEYS,
      accounts: [{ id: 'acct-a', inFlightBudget: { concurrent: 2, retryAfterSeconds: 1 } }],
      defaultModel: { latencyMs: 150 },
    });
    cleanups.push(() => fake.close());
    const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, keyInfo: () => Promise.reject(new Error('not polled')) });
    cleanups.push(() => pool.dispose());
    const poolEvents: PoolEvent[] = [];
    const subscription = pool.events$.subscribe((event) => poolEvents.push(event));
    cleanups.push(() => subscription.unsubscribe());

    const requests = Array.from({ length: 6 }, (_, index) => ({
      id: `r${index}`,
      model: 'acme/model',
      messages: [{ role: 'user' as const, content: `r${index}` }],
    }));
    const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 6 }), toArray()));

    expect(events.filter((event) => event.type === 'completion')).toHaveLength(6);
    expect(fake.countRequests({ status: 402 })).toBeGreaterThan(0);
    const parks = poolEvents.filter((event) => event.type === 'cooldown' && event.scope === 'account');
    expect(parks.length).toBeGreaterThan(0);
    expect(
      parks.every((event) => event.type === 'cooldown' && event.reason === 'rate-limit' && event.errorKind === 'insufficient_credits'),
    ).toBe(true);
    // A transient budget: the account is never exhausted, and no key's breaker counted it.
    for (const key of pool.snapshot().keys) expect(key.state === 'exhausted' || key.consecutiveFailures > 0).toBe(false);
  });
});
