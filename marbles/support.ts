/**
 * Shared helpers of the marble suites: a vitest-wired TestScheduler, request and transport-event
 * builders, the errors and seeded random sources the suites share, a scripted fake transport that
 * hands out pre-built cold observables, so a test can assert their subscription frames with
 * `expectSubscriptions`, and predictable pools over it.
 */
import type { Observable } from 'rxjs';
import { expect } from 'vitest';
import { TestScheduler } from 'rxjs/testing';
import type { KeyPoolInput } from '../src/pool/config.js';
import type { KeyHealth } from '../src/health/records.js';
import { createPool, type KeyPool } from '../src/create-pool.js';
import {
  NetworkError,
  RateLimitError,
  UpstreamError,
  copyError,
  type AttemptRecord,
  type ErrorAnnotations,
  type OpenRouterError,
} from '../src/core/errors.js';
import type { FailedEvent } from '../src/operators/balance.js';
import { retryTransient, type RetryTransientConfig } from '../src/operators/retry-transient.js';
import type { ChatRequest, Completion, KeyCredential, Transport, TransportEvent, Usage } from '../src/core/types.js';

export function newTestScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

export const MODEL = 'acme/model-a';

/**
 * A failed attempt's error as the routing operators pass it on: `withKeyRotation` annotates a copy
 * of what the transport threw with the attempt's key and model (and `routeExhausted` once no other
 * target is left), never the thrown object itself.
 */
export function asReported(error: OpenRouterError, annotations: ErrorAnnotations = {}): OpenRouterError {
  return copyError(error, { keyLabel: 'k1', model: MODEL, ...annotations });
}

/** A request's `failed` event: its error carries the same attempts as the event (the request's story). */
export function failedEvent(requestId: string, error: OpenRouterError, attempts: AttemptRecord[]): FailedEvent {
  return { type: 'failed', requestId, error: copyError(error, { attempts }), attempts };
}

export function chatRequest(content = 'hello', overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { model: MODEL, messages: [{ role: 'user', content }], ...overrides };
}

export function completion(id = 'gen-1', content = 'hi there', usage?: Usage): Completion {
  return { id, model: MODEL, content, finishReason: 'stop', raw: null, ...(usage === undefined ? {} : { usage }) };
}

export function completionEvent(id = 'gen-1', content = 'hi there', usage?: Usage): TransportEvent {
  return { type: 'completion', completion: completion(id, content, usage) };
}

export function chunkEvent(delta: string): TransportEvent {
  return { type: 'chunk', delta, model: MODEL };
}

export function endEvent(id = 'gen-1', usage?: Usage): TransportEvent {
  return { type: 'end', id, model: MODEL, finishReason: 'stop', ...(usage === undefined ? {} : { usage }) };
}

/** A retryable failure of the transport ('connection reset'). */
export const networkError = () => new NetworkError({ message: 'connection reset', scope: 'transport', retryable: true });

/** A 429, with a Retry-After of `retryAfterMs` when given. */
export const rateLimitError = (retryAfterMs?: number, scope: 'key' | 'account' = 'key') =>
  new RateLimitError({
    message: 'rate limited',
    scope,
    retryable: true,
    status: 429,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });

/** A retryable 5xx of the model, with the message `upstream <status>`. */
export const upstreamError = (status = 503) =>
  new UpstreamError({ message: `upstream ${status}`, scope: 'model', retryable: true, status });

/** A seeded `random`: returns `values` in turn, then repeats the last one. */
export function randomSequence(...values: number[]): () => number {
  let index = 0;
  return () => values[Math.min(index++, values.length - 1)]!;
}

/** Cold observables a fake transport hands out in turn, by script name. */
export type TransportScripts = Record<string, Observable<TransportEvent>[]>;

export interface TransportCall {
  label: string;
  /** The user message of the request, which the tests use to tell requests apart. */
  content: string;
  /** Scheduler time of the call. */
  at: number;
  /** The body the transport was given. */
  request: ChatRequest;
}

/**
 * A fake transport that returns, for each call, the next observable of the script of the key's
 * label (or of the request's first message content, when `by: 'content'`). A script that runs out
 * fails the test loudly.
 */
export function scriptedTransport(
  scheduler: { now(): number },
  scripts: TransportScripts,
  by: 'label' | 'content' = 'label',
): { transport: Transport; calls: TransportCall[] } {
  const calls: TransportCall[] = [];
  const cursors = new Map<string, number>();
  const transport: Transport = (key: KeyCredential, request: ChatRequest) => {
    const first = request.messages[0]?.content;
    const content = typeof first === 'string' ? first : first == null ? '' : JSON.stringify(first);
    const name = by === 'label' ? key.label : content;
    calls.push({ label: key.label, content, at: scheduler.now(), request });
    const index = cursors.get(name) ?? 0;
    cursors.set(name, index + 1);
    const script = scripts[name];
    const next = script?.[index] ?? script?.[script.length - 1];
    if (next === undefined) throw new Error(`no script for "${name}" (call ${index + 1})`);
    return next;
  };
  return { transport, calls };
}

/** The fields of a key's health that the breaker tests look at. */
export function breakerView(health: KeyHealth): Pick<KeyHealth, 'state' | 'openReason' | 'cooldownUntil' | 'consecutiveFailures'> {
  return {
    state: health.state,
    openReason: health.openReason,
    cooldownUntil: health.cooldownUntil,
    consecutiveFailures: health.consecutiveFailures,
  };
}

/** A strategy function that always takes the first eligible key, to make picks predictable. */
export const firstEligible = (eligible: readonly KeyHealth[]): KeyHealth | undefined => eligible[0];

/** Pool settings a test may change: everything but the scheduler and the transport, which are the test's. */
export type PoolOverrides = Omit<Partial<KeyPoolInput>, 'scheduler' | 'transport'>;

/**
 * A pool of `keys` on `scheduler` over `transport` that always takes the first eligible key and
 * whose random source always returns 0.5, so its picks and backoffs are predictable; `overrides`
 * replace any of that (`keys` too).
 */
export function predictablePool(
  scheduler: TestScheduler,
  transport: Transport,
  keys: KeyPoolInput['keys'],
  overrides: PoolOverrides = {},
): KeyPool {
  return createPool({ keys, random: () => 0.5, strategy: firstEligible, ...overrides, scheduler, transport });
}

export interface ScriptedPoolOptions extends PoolOverrides {
  /** What the scripts are named by: the key's label (the default) or the request's message content. */
  by?: 'label' | 'content';
}

/**
 * Makes a suite's `makePool(scheduler, scripts, options?)`: a `predictablePool` of `keys` over
 * `scriptedTransport(scheduler, scripts, by)`, returned with the transport's call log. A call's
 * `options` apply over the suite's `defaults`.
 */
export function scriptedPoolFactory(
  keys: KeyPoolInput['keys'],
  defaults: ScriptedPoolOptions = {},
): (scheduler: TestScheduler, scripts: TransportScripts, options?: ScriptedPoolOptions) => { pool: KeyPool; calls: TransportCall[] } {
  return (scheduler, scripts, options = {}) => {
    const { by, ...overrides } = { ...defaults, ...options };
    const { transport, calls } = scriptedTransport(scheduler, scripts, by);
    return { pool: predictablePool(scheduler, transport, keys, overrides), calls };
  };
}

/** A one-line description of an attempt event, for timelines. */
export function describeEvent(event: { type: string } & Record<string, unknown>): string {
  switch (event.type) {
    case 'attempt':
      return `attempt ${String(event['attempt'])} ${String(event['keyLabel'])}`;
    case 'retry':
      return `retry ${String(event['reason'])} +${String(event['delayMs'])}`;
    case 'restart':
      return `restart ${String(event['reason'])}`;
    case 'chunk':
      return `chunk ${JSON.stringify(event['delta'])} ${String(event['keyLabel'])}`;
    default:
      return `${event.type} ${typeof event['keyLabel'] === 'string' ? event['keyLabel'] : ''}`.trim();
  }
}

/**
 * Subscribes to `source` and logs `"<frame> <event>"` lines, `"<frame> error <name>"` and
 * `"<frame> complete"`, for tests where several events share a frame (which marbles cannot draw
 * after a group). Read the log after `run()` returned.
 */
export function timeline(scheduler: { now(): number }, source: Observable<{ type: string }>): { log: string[]; error: () => unknown } {
  const log: string[] = [];
  let failure: unknown;
  source.subscribe({
    next: (event) => log.push(`${scheduler.now()} ${describeEvent(event)}`),
    error: (error: unknown) => {
      failure = error;
      log.push(`${scheduler.now()} error ${(error as Error).name}`);
    },
    complete: () => log.push(`${scheduler.now()} complete`),
  });
  return { log, error: () => failure };
}

/** A `retryTransient` whose backoff is `delayMs` less one, every time, with no budget: retries a test can place. */
export function fixedBackoffRetry(scheduler: TestScheduler, delayMs: number, config: RetryTransientConfig = {}) {
  return retryTransient({ scheduler, baseDelayMs: delayMs, maxDelayMs: delayMs, random: () => 0.999, budget: false, ...config });
}
