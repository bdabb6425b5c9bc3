/**
 * A routing operator of your own, composed from the library's operators: prompts longer than a
 * threshold go to a large-context model, the rest to a small, cheap one (with the large one as
 * its fallback). Each request then runs through the same resilience steps `balance()` uses, in
 * the same order, so keys still rotate, rate limits park keys, failing models fall back, and
 * transient errors retry with backoff.
 *
 *   npx tsx examples/custom-routing.ts
 */
import {
  catchError,
  from,
  lastValueFrom,
  map,
  mergeMap,
  of,
  reduce,
  toArray,
  type MonoTypeOperatorFunction,
  type OperatorFunction,
} from 'rxjs';
import {
  attemptTimeouts,
  circuitBreaker,
  createKeyPool,
  estimatePromptTokens,
  fallbackOnModelError,
  retryOnRateLimit,
  retryTransient,
  toOpenRouterError,
  withKeyRotation,
  type AttemptEvent,
  type ChatRequest,
  type KeyPool,
} from 'openrouter-rx';
import { exampleEndpoint } from './support/endpoint.js';

export interface LengthRoute {
  /** Prompts estimated above this many tokens take the long route. */
  maxShortTokens: number;
  /** Model chains, first choice first. */
  shortModels: readonly [string, ...string[]];
  longModels: readonly [string, ...string[]];
}

/** Sets each request's model chain from its prompt's length. */
export function routeByLength(route: LengthRoute): MonoTypeOperatorFunction<ChatRequest> {
  return map((request) => {
    const [model, ...models] = estimatePromptTokens(request) > route.maxShortTokens ? route.longModels : route.shortModels;
    return { ...request, model, models };
  });
}

export type RoutedAnswer =
  { id: string; ok: true; model: string; keyLabel: string; text: string; attempts: number } | { id: string; ok: false; error: string };

/** Folds one request's attempt events into its answer: text of the attempt that succeeded. */
function toAnswer(id: string): OperatorFunction<AttemptEvent, RoutedAnswer> {
  return (events) =>
    events.pipe(
      reduce(
        (answer, event) => {
          switch (event.type) {
            case 'attempt':
              return { ...answer, attempts: event.attempt, text: '' };
            case 'restart':
              return { ...answer, text: '' };
            case 'chunk':
              return { ...answer, text: answer.text + event.delta, model: event.model, keyLabel: event.keyLabel };
            case 'completion':
              return { ...answer, text: event.completion.content, model: event.model, keyLabel: event.keyLabel };
            default:
              return answer;
          }
        },
        { id, ok: true as const, model: '', keyLabel: '', text: '', attempts: 0 },
      ),
      catchError((error: unknown) => of<RoutedAnswer>({ id, ok: false, error: toOpenRouterError(error).message })),
    );
}

/** The custom operator: route by length, then the resilience steps, `concurrency` at a time. */
export function lengthRouted(pool: KeyPool, route: LengthRoute, concurrency = 4): OperatorFunction<ChatRequest, RoutedAnswer> {
  // One instance of each step for the whole stream: the retry budget and routes are shared.
  const rotation = withKeyRotation(pool);
  const timeouts = attemptTimeouts({ totalMs: 120_000, firstTokenMs: 15_000, idleMs: 15_000, scheduler: pool.scheduler });
  const breaker = circuitBreaker(pool);
  const rateLimits = retryOnRateLimit({ scheduler: pool.scheduler });
  const modelFallback = fallbackOnModelError({ scheduler: pool.scheduler });
  const transient = retryTransient({ scheduler: pool.scheduler });
  let sequence = 0;
  return (requests) =>
    requests.pipe(
      routeByLength(route),
      mergeMap((request) => {
        const routed = { ...request, id: request.id ?? `request-${++sequence}` };
        // Order matters, as in balance(): timeouts per attempt, health recorded before any retry.
        return of(routed).pipe(rotation, timeouts, breaker, rateLimits, modelFallback, transient, toAnswer(routed.id));
      }, concurrency),
    );
}

const endpoint = await exampleEndpoint({
  respond: ({ model, messages }) => `${model} read ${JSON.stringify(messages).length} characters.`,
  models: {
    // The small model refuses prompts above 60 tokens, as a real one would past its context window.
    'example/small': { latencyMs: 10, chunkCount: 3, faults: [{ type: 'context-length', maxPromptTokens: 60 }] },
    'example/large-context': { latencyMs: 40, chunkCount: 3 },
  },
});
const route: LengthRoute =
  endpoint.fake === undefined
    ? { maxShortTokens: 2_000, shortModels: ['openai/gpt-4o-mini'], longModels: ['google/gemini-2.0-flash-001', 'openai/gpt-4.1-mini'] }
    : { maxShortTokens: 60, shortModels: ['example/small', 'example/large-context'], longModels: ['example/large-context'] };
const pool = createKeyPool({ keys: endpoint.keys, ...(endpoint.baseURL === undefined ? {} : { baseURL: endpoint.baseURL }) });

const longText = 'Here is a long report about key rotation, quotas and breakers. '.repeat(12);
const prompts: ChatRequest[] = [
  { id: 'short-1', messages: [{ role: 'user', content: 'Name one prime number.' }], max_tokens: 20 },
  { id: 'long-1', messages: [{ role: 'user', content: `${longText}\nSummarise the report in one line.` }], max_tokens: 40 },
  { id: 'short-2', messages: [{ role: 'user', content: 'Name one colour.' }], max_tokens: 20 },
];
const answers = await lastValueFrom(from(prompts).pipe(lengthRouted(pool, route), toArray()));
for (const answer of answers.sort((a, b) => a.id.localeCompare(b.id))) {
  console.log(
    answer.ok ? `${answer.id} -> ${answer.model} (key ${answer.keyLabel}): ${answer.text}` : `${answer.id} failed: ${answer.error}`,
  );
}

pool.dispose();
await endpoint.close();
