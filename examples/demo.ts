/**
 * The demo: a few hundred prompts through `balance()` over a pool of keys with different quotas,
 * one revoked key, one key whose account is out of credits and one flaky model, against the
 * embedded fake OpenRouter (no key needed). Shows a live per-key table, then a summary; Ctrl-C
 * aborts the prompts not answered yet and prints the summary of those that were.
 *
 *   npm run demo                                   # embedded fake server
 *   OPENROUTER_API_KEYS=sk-or-...,sk-or-... npm run demo   # the real OpenRouter (20 short prompts)
 */
import { auditTime, from, fromEvent, lastValueFrom, takeUntil, tap, toArray } from 'rxjs';
import { balance, createKeyPool, type BalanceEvent, type ChatRequest, type KeyPoolOptions } from 'openrouter-rx';
import { startFakeOpenRouter, type FakeOpenRouter } from 'openrouter-rx/testing';
// The CLI's health table, not part of the package: in your app, render `pool.health$` your own way.
import { createHealthPrinter } from '../src/cli/health-table.js';
import { keysFromEnvironment } from './support/env-keys.js';

interface DemoSetup {
  pool: KeyPoolOptions;
  prompts: ChatRequest[];
  fake?: FakeOpenRouter;
}

const realKeys = keysFromEnvironment();

async function fakeSetup(): Promise<DemoSetup> {
  const second = { requests: 0, windowMs: 1000 };
  const fake = await startFakeOpenRouter({
    keys: [
      { key: 'sk-or-v1-demo-alpha', label: 'alpha', quota: { ...second, requests: 25 } },
      { key: 'sk-or-v1-demo-beta', label: 'beta', quota: { ...second, requests: 15 } },
      // The pool is not told gamma's quota: it learns it from 429s and their reset headers.
      { key: 'sk-or-v1-demo-gamma', label: 'gamma', quota: { ...second, requests: 10 } },
      { key: 'sk-or-v1-demo-delta', label: 'delta', revoked: true },
      { key: 'sk-or-v1-demo-omega', label: 'omega', account: 'broke' },
    ],
    accounts: [{ id: 'broke', outOfCredits: true }],
    defaultModel: { latencyMs: 40, chunkCount: 6, chunkGapMs: 15 },
    models: {
      // Down for its first 40 requests: its breaker opens and traffic falls back to demo/steady.
      'demo/flaky': { latencyMs: 40, chunkCount: 6, chunkGapMs: 15, faults: [{ type: 'status', status: 503, times: 40 }] },
    },
  });
  const prompts = Array.from({ length: 300 }, (_, index): ChatRequest => ({
    id: `prompt-${index + 1}`,
    model: 'demo/flaky',
    models: ['demo/steady'],
    stream: index % 2 === 0,
    max_tokens: 64,
    messages: [{ role: 'user', content: `Prompt number ${index + 1}: say something short.` }],
  }));
  return {
    fake,
    prompts,
    pool: {
      baseURL: fake.baseURL,
      keys: [
        { key: 'sk-or-v1-demo-alpha', label: 'alpha', limits: { quotas: [{ requests: 25, windowMs: 1000 }] } },
        { key: 'sk-or-v1-demo-beta', label: 'beta', limits: { quotas: [{ requests: 15, windowMs: 1000 }] } },
        { key: 'sk-or-v1-demo-gamma', label: 'gamma' },
        { key: 'sk-or-v1-demo-delta', label: 'delta' },
        { key: 'sk-or-v1-demo-omega', label: 'omega', account: 'broke' },
      ],
      modelBreaker: { cooldownMs: 1000, maxCooldownMs: 2000 },
    },
  };
}

function realSetup(): DemoSetup {
  const model = process.env.OPENROUTER_MODEL ?? 'openai/gpt-4o-mini';
  const fallbacks = (process.env.OPENROUTER_FALLBACK_MODELS ?? 'meta-llama/llama-3.3-70b-instruct').split(',').filter(Boolean);
  return {
    prompts: Array.from({ length: 20 }, (_, index): ChatRequest => ({
      id: `prompt-${index + 1}`,
      model,
      models: fallbacks,
      stream: index % 2 === 0,
      max_tokens: 32,
      messages: [{ role: 'user', content: `In five words, name a fact about the number ${index + 1}.` }],
    })),
    pool: {
      keys: realKeys,
      appTitle: 'openrouter-rx demo',
      // A demo ends: a prompt that finds no key it can use for a minute (keys revoked, OpenRouter
      // out of reach) fails with the reason, where a pool's default queue waits as long as it takes.
      queue: { timeoutMs: 60_000 },
    },
  };
}

async function main(): Promise<void> {
  const setup = realKeys.length > 0 ? realSetup() : await fakeSetup();
  console.log(
    setup.fake === undefined
      ? `openrouter-rx demo against OpenRouter with ${realKeys.length} key(s)`
      : `openrouter-rx demo against the embedded fake OpenRouter at ${setup.fake.url}`,
  );
  const pool = createKeyPool(setup.pool);
  const print = createHealthPrinter();
  const redraw = pool.health$.pipe(auditTime(100)).subscribe((health) => print(health));
  const startedAt = Date.now();
  let fallbacks = 0;
  const events = pool.events$.subscribe((event) => {
    if (event.type === 'fallback') fallbacks++;
  });

  let interrupted = false;
  const terminal = await lastValueFrom(
    from(setup.prompts).pipe(
      balance(pool, { concurrency: 24 }),
      tap((event: BalanceEvent) => {
        if (event.type === 'failed') console.error(`${event.requestId} failed: ${event.error.name}: ${event.error.message}`);
      }),
      // Ctrl-C unsubscribes: the requests in flight are aborted, their keys' slots freed.
      takeUntil(fromEvent(process, 'SIGINT').pipe(tap(() => (interrupted = true)))),
      toArray(),
    ),
  );
  redraw.unsubscribe();
  events.unsubscribe();
  print(pool.snapshot(), true);

  const completions = terminal.filter((event) => event.type === 'completion');
  const failures = terminal.filter((event) => event.type === 'failed');
  const attempts = completions.reduce((sum, event) => sum + event.attempts, 0);
  const seconds = (Date.now() - startedAt) / 1000;
  const unanswered = setup.prompts.length - completions.length - failures.length;
  console.log(
    `\n${setup.prompts.length} prompts in ${seconds.toFixed(1)} s: ${completions.length} completed, ${failures.length} failed, ${attempts} attempts for the completed ones, ${fallbacks} model fallbacks.` +
      (interrupted ? ` Interrupted: ${unanswered} not answered.` : ''),
  );
  if (setup.fake !== undefined) {
    const rateLimited = setup.fake.countRequests({ status: 429 });
    console.log(`The fake server answered ${setup.fake.requests.length} requests, ${rateLimited} of them with 429.`);
  }
  pool.dispose();
  await setup.fake?.close();
  if (interrupted) process.exitCode = 130;
  else if (unanswered !== 0) {
    console.error(`${unanswered} prompt(s) got no terminal event`);
    process.exitCode = 1;
  }
}

await main();
