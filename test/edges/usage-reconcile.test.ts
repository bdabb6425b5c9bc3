/**
 * A custom transport's absurd token totals never close a token quota for good. (Checks a review
 * ran: they held.)
 */
import { firstValueFrom, of } from 'rxjs';
import { expect, it } from 'vitest';
import { createKeyPool } from '../../src/index.js';
import type { Transport } from '../../src/core/types.js';

it("a custom transport's finite but absurd token total (1e308, twice) does not close a token quota for good", async () => {
  const transport: Transport = (_key, request) =>
    of({
      type: 'completion' as const,
      completion: {
        id: 'gen',
        model: request.model ?? '',
        content: 'ok',
        finishReason: 'stop' as const,
        raw: {},
        usage: { promptTokens: 0, completionTokens: 0, totalTokens: 1e308 },
      },
    });
  const pool = createKeyPool({
    keys: [{ key: 'sk-or-v1-test-alpha', label: 'alpha', limits: { quotas: [{ tokens: 100_000, windowMs: 300 }] } }],
    transport,
    discoverAccounts: false,
    queue: { timeoutMs: 1500 },
  });
  const request = { model: 'm/a', messages: [{ role: 'user' as const, content: 'hi' }] };
  try {
    await firstValueFrom(pool.complete(request));
    await firstValueFrom(pool.complete(request));
    // Both entries have left the 300 ms window long before this.
    await new Promise((resolve) => setTimeout(resolve, 700));
    const outcome = await firstValueFrom(pool.complete(request)).then(
      () => 'served',
      (error: unknown) => `${(error as Error).name}: ${(error as Error).message}`,
    );
    expect(outcome).toBe('served');
  } finally {
    pool.dispose();
  }
});
