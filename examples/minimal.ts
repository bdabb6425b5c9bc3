/**
 * The smallest use: a pool of keys and one completion.
 *
 *   npx tsx examples/minimal.ts                                  # the embedded fake OpenRouter
 *   OPENROUTER_API_KEYS=sk-or-...,sk-or-... npx tsx examples/minimal.ts
 */
import { lastValueFrom } from 'rxjs';
import { createKeyPool } from 'openrouter-rx';
import { exampleEndpoint } from './support/endpoint.js';

const endpoint = await exampleEndpoint();
const pool = createKeyPool({
  keys: endpoint.keys,
  ...(endpoint.baseURL === undefined ? {} : { baseURL: endpoint.baseURL }),
});

try {
  // `complete` emits one `completion` event, or errors with a typed OpenRouterError (its message names key labels, never keys).
  const answer = await lastValueFrom(
    pool.complete({ model: endpoint.model, messages: [{ role: 'user', content: 'Say hello in five words.' }] }),
  );
  console.log(`answer: ${answer.completion.content}`);
  console.log(
    `served by key ${answer.keyLabel} (${answer.model}) in ${Math.round(answer.latencyMs)} ms after ${answer.attempts} attempt(s)`,
  );
} catch (error: unknown) {
  console.error(`failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  pool.dispose();
  await endpoint.close();
}
