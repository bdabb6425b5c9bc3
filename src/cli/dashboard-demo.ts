import { Subscription, interval, map } from 'rxjs';
import { balance } from '../operators/balance.js';
import { createKeyPool } from '../create-key-pool.js';
import type { KeyPool } from '../create-pool.js';
import type { ChatRequest } from '../core/types.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../testing/index.js';

/**
 * `openrouter-rx dashboard --fake`: a pool under steady load against the embedded fake OpenRouter,
 * so the dashboard has something to show: keys with quotas that run out, a revoked key, an account
 * out of credits, and a model that fails in bursts and recovers. The keys are made up.
 */

export interface DashboardDemo {
  pool: KeyPool;
  fake: FakeOpenRouter;
  stop(): Promise<void>;
}

const MODELS = ['demo/steady', 'demo/fast', 'demo/flaky'] as const;

export async function startDashboardDemo(options: { ratePerSecond: number }): Promise<DashboardDemo> {
  const fake = await startFakeOpenRouter({
    keys: [
      { key: 'sk-or-v1-dash-demo-alpha', label: 'alpha', quota: { requests: 8, windowMs: 1000 }, limit: 25, usage: 6.4 },
      { key: 'sk-or-v1-dash-demo-beta', label: 'beta', quota: { requests: 3, windowMs: 1000 }, limit: 10, usage: 8.9 },
      { key: 'sk-or-v1-dash-demo-gamma', label: 'gamma', limit: null, usage: 2.1 },
      { key: 'sk-or-v1-dash-demo-delta', label: 'delta', revoked: true },
      { key: 'sk-or-v1-dash-demo-omega', label: 'omega', account: 'broke', limit: 5, usage: 5 },
    ],
    accounts: [{ id: 'broke', outOfCredits: true }],
    models: {
      'demo/steady': { latencyMs: 140, chunkCount: 6, chunkGapMs: 25 },
      'demo/fast': { latencyMs: 40, chunkCount: 4, chunkGapMs: 8 },
      'demo/flaky': { latencyMs: 90, chunkCount: 5, chunkGapMs: 15 },
    },
  });
  const pool = createKeyPool({
    baseURL: fake.baseURL,
    keys: [
      // alpha's quota is configured, so the pool admits by it and the page shows what is left;
      // beta's is not: the pool learns it from 429s, and beta turns open (rate-limited) now and then.
      { key: 'sk-or-v1-dash-demo-alpha', label: 'alpha', limits: { quotas: [{ requests: 8, windowMs: 1000 }], maxConcurrent: 4 } },
      { key: 'sk-or-v1-dash-demo-beta', label: 'beta' },
      { key: 'sk-or-v1-dash-demo-gamma', label: 'gamma', limits: { maxConcurrent: 3 } },
      { key: 'sk-or-v1-dash-demo-delta', label: 'delta' },
      { key: 'sk-or-v1-dash-demo-omega', label: 'omega', account: 'broke' },
    ],
    modelBreaker: { consecutiveFailures: 3, cooldownMs: 3000, maxCooldownMs: 6000 },
    appTitle: 'openrouter-rx dashboard demo',
  });
  const subscriptions = new Subscription();
  subscriptions.add(pool.refreshKeyInfo().subscribe({ error: () => undefined }));
  let sequence = 0;
  subscriptions.add(
    interval(Math.max(20, Math.round(1000 / options.ratePerSecond)))
      .pipe(
        map((): ChatRequest => {
          sequence++;
          const model = MODELS[sequence % MODELS.length]!;
          return {
            model,
            models: model === 'demo/flaky' ? ['demo/steady'] : ['demo/fast'],
            stream: sequence % 3 !== 0,
            max_tokens: 64,
            messages: [{ role: 'user', content: `Demo prompt ${sequence}` }],
          };
        }),
        balance(pool, { concurrency: 10 }),
      )
      .subscribe(),
  );
  // The flaky model fails in bursts, so its breaker opens, traffic falls back, and it recovers.
  const burst = () => fake.setFaults('demo/flaky', [{ type: 'status', status: 503, times: 6 }]);
  burst();
  subscriptions.add(interval(15_000).subscribe(burst));
  return {
    pool,
    fake,
    async stop() {
      subscriptions.unsubscribe();
      pool.dispose();
      await fake.close();
    },
  };
}
