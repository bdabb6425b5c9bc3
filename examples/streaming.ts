/**
 * Streaming to the terminal: text appears as the model writes it. If an attempt breaks after some
 * text went out and `onMidStreamError: 'restart'` is set, a `restart` event says to start over.
 *
 *   npx tsx examples/streaming.ts "Write a haiku about rate limits"
 */
import { lastValueFrom, tap } from 'rxjs';
import { createKeyPool } from 'openrouter-rx';
import { exampleEndpoint } from './support/endpoint.js';

const question = process.argv[2] ?? 'Write a haiku about rate limits.';
const endpoint = await exampleEndpoint({
  defaultModel: { latencyMs: 20, chunkCount: 12, chunkGapMs: 25 },
  respond: () => 'Keys wait in a queue; one rests until its reset, the others answer.',
});
const pool = createKeyPool({
  keys: endpoint.keys,
  ...(endpoint.baseURL === undefined ? {} : { baseURL: endpoint.baseURL }),
});

try {
  const done = await lastValueFrom(
    pool
      .stream(
        { model: endpoint.model, messages: [{ role: 'user', content: question }] },
        { onMidStreamError: 'restart', timeouts: { firstTokenMs: 20_000, idleMs: 20_000, totalMs: 120_000 } },
      )
      .pipe(
        tap((event) => {
          if (event.type === 'chunk') process.stdout.write(event.delta);
          if (event.type === 'restart') process.stdout.write(`\n[${event.reason}: starting over on another key]\n`);
        }),
      ),
  );
  if (done.type === 'completion') {
    process.stdout.write(`\n\n(${done.completion.finishReason}; key ${done.keyLabel}; ${done.usage?.totalTokens ?? '?'} tokens)\n`);
  }
} catch (error: unknown) {
  // A typed OpenRouterError: its message names key labels, never keys.
  process.stderr.write(`\nfailed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
} finally {
  pool.dispose();
  await endpoint.close();
}
