/**
 * A request JSON cannot carry fails alone through the pool, its key healthy, with no unhandled
 * rejection. (Edge cases a review found; each failed before its fix.)
 */
import { firstValueFrom } from 'rxjs';
import { afterEach, expect, it } from 'vitest';
import { createKeyPool } from '../../src/index.js';
import { startFakeOpenRouter } from '../../src/testing/index.js';
import type { ChatRequest } from '../../src/core/types.js';

const rejections: unknown[] = [];
process.on('unhandledRejection', (reason) => rejections.push(reason));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

it('pool.complete of a request with a pass-through field whose getter throws settles with a typed error', async () => {
  const fake = await startFakeOpenRouter({ keys: [{ key: 'sk-or-v1-test-alpha', label: 'alpha' }] });
  cleanups.push(() => fake.close());
  const pool = createKeyPool({ keys: [{ key: 'sk-or-v1-test-alpha', label: 'alpha' }], baseURL: fake.baseURL });
  cleanups.push(() => pool.dispose());
  const extra = {};
  Object.defineProperty(extra, 'trace', {
    enumerable: true,
    get: () => {
      throw new Error('trace closed');
    },
  });
  const request = { model: 'test/model-a', messages: [{ role: 'user', content: 'hi' }], extra } as unknown as ChatRequest;
  const outcome = await Promise.race([
    firstValueFrom(pool.complete(request)).then(
      () => 'completed',
      (error: unknown) => `failed: ${(error as Error).name}`,
    ),
    new Promise((resolve) => setTimeout(() => resolve('still pending after 3 s'), 3000)),
  ]);
  console.log('OUTCOME', outcome);
  expect(rejections.map(String)).toEqual([]);
  expect(outcome).toMatch(/^failed/);
});
