/**
 * `balance` against the same chain composed by hand from the public operators (issue 13): for
 * random requests and random attempt outcomes, both send the same calls, at the same frames, to the
 * same keys and models, deliver the same content, end each request the same way, and leave the
 * pool's health the same. `balance` may take internal shortcuts; this is what keeps them honest.
 */
import fc from 'fast-check';
import { EMPTY, Observable, catchError, concat, from, mergeMap, of, tap, throwError, timer } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  AttemptsExhaustedError,
  AuthenticationError,
  BadRequestError,
  type OpenRouterError,
  StreamError,
  balance,
  fallbackOnModelError,
  retryOnRateLimit,
  retryTransient,
  withKeyRotation,
  type BalanceEvent,
  type ChatRequest,
  type KeyPool,
  type TransportEvent,
} from '../src/index.js';
import type { AttemptEvent } from '../src/operators/attempt-event.js';
import { networkError, newTestScheduler, predictablePool, rateLimitError, upstreamError } from './support.js';
import type { TestScheduler } from 'rxjs/testing';

const KEYS = [
  { key: 'sk-diff-1', label: 'k1' },
  { key: 'sk-diff-2', label: 'k2' },
  { key: 'sk-diff-3', label: 'k3' },
];
const TIMEOUTS = { totalMs: 400, firstTokenMs: 150, idleMs: 60 };
/**
 * Two at a time, so that requests queue for a slot and meet on keys: a request's slot and its key's
 * must be free together, or the next request would find a key (or a model's probe) still busy with
 * an answer that is already in, and the two chains would route it differently.
 */
const CONCURRENCY = 2;

type Outcome =
  | { kind: 'answer'; stream: boolean; delay: number }
  | { kind: 'rate-limit'; retryAfterMs: number | undefined; delay: number }
  | { kind: 'upstream'; delay: number }
  | { kind: 'network'; delay: number }
  | { kind: 'revoked'; delay: number }
  | { kind: 'bad-request'; delay: number }
  | { kind: 'cut-after-content'; delay: number }
  | { kind: 'silent' };

const delayArb = fc.integer({ min: 0, max: 30 });
const outcomeArb: fc.Arbitrary<Outcome> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('answer' as const), stream: fc.boolean(), delay: delayArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('rate-limit' as const),
      retryAfterMs: fc.option(fc.integer({ min: 0, max: 80 }), { nil: undefined }),
      delay: delayArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('upstream' as const), delay: delayArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('network' as const), delay: delayArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoked' as const), delay: delayArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bad-request' as const), delay: delayArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut-after-content' as const), delay: delayArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'silent' as const }) },
);

interface RequestPlan {
  arrivesAt: number;
  withFallback: boolean;
  stream: boolean;
  /** One outcome per call of this request, in turn; the last repeats. */
  outcomes: Outcome[];
}

const planArb: fc.Arbitrary<RequestPlan[]> = fc.array(
  fc.record({
    arrivesAt: fc.integer({ min: 0, max: 40 }),
    withFallback: fc.boolean(),
    stream: fc.boolean(),
    outcomes: fc.array(outcomeArb, { minLength: 1, maxLength: 5 }),
  }),
  { minLength: 1, maxLength: 5 },
);

/** The backoff's jitter: one value per run, so that both chains wait the same whatever order they draw in. */
function jitter(seed: number): () => number {
  const value = (seed >>> 0) / 4_294_967_296;
  return () => value;
}

/** What a call answers, on the test's clock: cold, so each call plays it from its own frame. */
function answerOf(outcome: Outcome, stream: boolean, model: string, content: string): Observable<TransportEvent> {
  const after = (delay: number, events: () => Observable<TransportEvent>) => timer(delay).pipe(mergeMap(events));
  const failWith = (delay: number, error: () => OpenRouterError) => after(delay, () => throwError(error));
  switch (outcome.kind) {
    case 'answer':
      return stream
        ? after(outcome.delay, () =>
            from<TransportEvent[]>([
              { type: 'chunk', delta: `${content}:`, model },
              { type: 'chunk', delta: 'ok', model },
              { type: 'end', id: 'gen', model, finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 } },
            ]),
          )
        : after(outcome.delay, () =>
            of<TransportEvent>({
              type: 'completion',
              completion: { id: 'gen', model, content: `${content}:ok`, finishReason: 'stop', raw: null },
            }),
          );
    case 'rate-limit':
      return failWith(outcome.delay, () => rateLimitError(outcome.retryAfterMs));
    case 'upstream':
      return failWith(outcome.delay, () => upstreamError(503));
    case 'network':
      return failWith(outcome.delay, networkError);
    case 'revoked':
      return failWith(
        outcome.delay,
        () => new AuthenticationError({ message: '401 User not found.', scope: 'key', retryable: true, status: 401 }),
      );
    case 'bad-request':
      return failWith(
        outcome.delay,
        () => new BadRequestError({ message: '400 temperature: must be at most 2', scope: 'request', retryable: false, status: 400 }),
      );
    case 'cut-after-content':
      // Content, then the connection drops: no model can take the request over without repeating it.
      return stream
        ? after(outcome.delay, () =>
            concat(
              of<TransportEvent>({ type: 'chunk', delta: `${content}:partial`, model }),
              throwError(() => new StreamError({ message: 'stream cut', scope: 'model', retryable: true, truncated: true })),
            ),
          )
        : failWith(outcome.delay, networkError);
    case 'silent':
      return new Observable<TransportEvent>(() => undefined);
  }
}

/** The pool of one run, over a transport that plays each request's outcomes in turn. */
function poolFor(scheduler: TestScheduler, plans: RequestPlan[]) {
  const calls: Array<{ label: string; model: string; content: string; at: number }> = [];
  const callsByRequest = new Map<string, number>();
  const pool: KeyPool = predictablePool(
    scheduler,
    (key, request) => {
      const content = request.messages[0]?.content as string;
      const model = request.model ?? '';
      calls.push({ label: key.label, model, content, at: scheduler.now() });
      const index = callsByRequest.get(content) ?? 0;
      callsByRequest.set(content, index + 1);
      const plan = plans[Number(content.slice(1))]!;
      return answerOf(plan.outcomes[Math.min(index, plan.outcomes.length - 1)]!, plan.stream, model, content);
    },
    KEYS,
  );
  return { pool, calls };
}

function requestsOf(plans: RequestPlan[]): Array<{ at: number; request: ChatRequest }> {
  return plans
    .map((plan, index) => ({
      at: plan.arrivesAt,
      request: {
        id: `r${index}`,
        model: 'acme/a',
        ...(plan.withFallback ? { models: ['acme/b'] } : {}),
        stream: plan.stream,
        messages: [{ role: 'user' as const, content: `q${index}` }],
      },
    }))
    .sort((left, right) => left.at - right.at);
}

/** What a request's subscriber sees, reduced to what both chains must agree on. */
type Seen = string[];

function errorLine(error: OpenRouterError): string {
  const last = error instanceof AttemptsExhaustedError ? error.lastError : error;
  // An `AttemptsExhaustedError`'s message says how many attempts the loop that gave up counted.
  return `failed ${error.name} ${last.kind} ${last.status ?? ''} ${error.message}`;
}

/** A run's record: what each request's subscriber saw, the transport's calls, the pool's health at the end. */
interface RunRecord {
  seen: Map<string, Seen>;
  calls: Array<{ label: string; model: string; content: string; at: number }>;
  health: unknown;
}

/** Runs `plans` on a fresh pool and clock; `route` subscribes the requests (arriving on time) through its chain. */
function runPlans(
  plans: RequestPlan[],
  route: (arrivals: Observable<ChatRequest>, pool: KeyPool, scheduler: TestScheduler, seen: Map<string, Seen>) => void,
): RunRecord {
  const scheduler = newTestScheduler();
  const seen = new Map<string, Seen>();
  const record: RunRecord = { seen, calls: [], health: undefined };
  scheduler.run(({ flush }) => {
    const made = poolFor(scheduler, plans);
    record.calls = made.calls;
    const arrivals = from(requestsOf(plans)).pipe(mergeMap(({ at, request }) => timer(at).pipe(mergeMap(() => of(request)))));
    route(arrivals, made.pool, scheduler, seen);
    flush();
    record.health = made.pool.snapshot();
    made.pool.dispose();
  });
  return record;
}

/** The retry operators' settings, the same for both chains. */
interface RetrySettings {
  onMidStreamError: 'error' | 'restart';
  rateLimitAttempts: number;
  fallbackAttempts: number;
  transientAttempts: number;
}

const retrySettingsArb: fc.Arbitrary<RetrySettings> = fc.record({
  onMidStreamError: fc.constantFrom('error' as const, 'restart' as const),
  rateLimitAttempts: fc.integer({ min: 1, max: 4 }),
  fallbackAttempts: fc.integer({ min: 1, max: 4 }),
  transientAttempts: fc.integer({ min: 1, max: 4 }),
});

/** One run through `balance`. */
function viaBalance(plans: RequestPlan[], seed: number, retries: RetrySettings): RunRecord {
  return runPlans(plans, (arrivals, pool, scheduler, seen) => {
    arrivals
      .pipe(
        balance(pool, {
          concurrency: CONCURRENCY,
          timeouts: TIMEOUTS,
          modelWaitMs: 0,
          onMidStreamError: retries.onMidStreamError,
          rateLimit: { maxAttempts: retries.rateLimitAttempts },
          fallback: { maxAttempts: retries.fallbackAttempts },
          transient: { random: jitter(seed), maxAttempts: retries.transientAttempts },
        }),
      )
      .subscribe((event: BalanceEvent) => {
        const lines = seen.get(event.requestId) ?? [];
        seen.set(event.requestId, lines);
        const at = scheduler.now();
        if (event.type === 'chunk') lines.push(`${at} chunk ${event.keyLabel} ${event.model} ${event.delta}`);
        else if (event.type === 'restart') lines.push(`${at} restart ${event.reason}`);
        else if (event.type === 'completion')
          lines.push(`${at} completion ${event.keyLabel} ${event.model} ${event.completion.content} after ${event.attempts}`);
        else lines.push(`${at} ${errorLine(event.error)}`);
      });
  });
}

/** One run through the public operators, composed by hand as `balance` documents its chain. */
function viaOperators(plans: RequestPlan[], seed: number, retries: RetrySettings): RunRecord {
  return runPlans(plans, (arrivals, pool, scheduler, seen) => {
    // One instance of each, shared by every request, as `balance` shares them (the retry budget spans them all).
    const rotation = withKeyRotation(pool, { timeouts: TIMEOUTS });
    const { onMidStreamError } = retries;
    const rateLimit = retryOnRateLimit({ scheduler, onMidStreamError, maxAttempts: retries.rateLimitAttempts });
    const fallback = fallbackOnModelError({ scheduler, onMidStreamError, maxAttempts: retries.fallbackAttempts });
    const transient = retryTransient({ scheduler, onMidStreamError, random: jitter(seed), maxAttempts: retries.transientAttempts });
    arrivals
      .pipe(
        mergeMap((request) => {
          const lines: Seen = [];
          seen.set(request.id!, lines);
          let answer = '';
          let attempts = 0;
          return of(request).pipe(
            rotation,
            rateLimit,
            fallback,
            transient,
            tap((event: AttemptEvent) => {
              const at = scheduler.now();
              if (event.type === 'attempt') attempts = event.attempt;
              else if (event.type === 'restart') {
                answer = '';
                lines.push(`${at} restart ${event.reason}`);
              } else if (event.type === 'chunk' && event.delta.length > 0) {
                answer += event.delta;
                lines.push(`${at} chunk ${event.keyLabel} ${event.model} ${event.delta}`);
              } else if (event.type === 'end') lines.push(`${at} completion ${event.keyLabel} ${event.model} ${answer} after ${attempts}`);
              else if (event.type === 'completion')
                lines.push(`${at} completion ${event.keyLabel} ${event.model} ${event.completion.content} after ${attempts}`);
            }),
            // The request's failure is its outcome, as in `balance`: the other requests go on.
            catchError((error: unknown) => {
              lines.push(`${scheduler.now()} ${errorLine(error as OpenRouterError)}`);
              return EMPTY;
            }),
          );
        }, CONCURRENCY),
      )
      .subscribe();
  });
}

describe('balance and the same chain composed by hand from the public operators', () => {
  it('send the same calls at the same frames, deliver the same content, end each request alike and leave health alike', () => {
    fc.assert(
      fc.property(planArb, fc.integer(), retrySettingsArb, (plans, seed, retries) => {
        const balanced = viaBalance(plans, seed, retries);
        const composed = viaOperators(plans, seed, retries);
        expect(balanced.calls).toEqual(composed.calls);
        expect(Object.fromEntries(balanced.seen)).toEqual(Object.fromEntries(composed.seen));
        expect(balanced.health).toEqual(composed.health);
      }),
      { numRuns: 300 },
    );
  });
});
