import { Observable, Subscription, mergeMap, type OperatorFunction } from 'rxjs';
import { BadRequestError, ContextLengthError, copyError, toOpenRouterError, type OpenRouterError } from '../core/errors.js';
import { estimateTokens } from '../core/tokens.js';
import { POOL_PORT, type KeyLease, type PoolCore } from '../pool/types.js';
import { RouteState } from '../routing/route.js';
import { toStrategy, type StrategyLike } from '../pool/strategies.js';
import type { ChatRequest, TransportEvent, Usage } from '../core/types.js';
import {
  ATTEMPT_RECORDING,
  carriesContent,
  markMovesOn,
  type AttemptEvent,
  type AttemptRecording,
  type AttemptStart,
} from './attempt-event.js';
import { attemptTimeouts, type AttemptTimeoutsConfig } from './attempt-timeouts.js';

/** Options of `withKeyRotation`. */
export interface WithKeyRotationConfig {
  /** Overrides the pool's strategy for these requests. */
  strategy?: StrategyLike;
  /** Admission priority: higher first. A number, or a function of the request. Default 0. */
  priority?: number | ((request: ChatRequest) => number);
  /** How long an attempt may wait for a key; default from the pool config (no limit). */
  queueTimeoutMs?: number;
  /**
   * Attempts a model gets per request before the other models of its chain are preferred. Default
   * 2. It counts every attempt on the model, but a failure of the model itself (scope `model`: a
   * 5xx, a provider's 429, a timeout, a cut stream) does not wait for it: the request moves on to
   * the next model of its chain at once, after one attempt on the failing model. So it bounds the
   * retries on one model of failures that are not the model's (a transport error, a key's
   * refusal), and the same-model retries on the last model of the chain; after that, the models
   * the request moved on from may serve it again. A lone model is retried past it: the retry
   * operators' `maxAttempts` bound the attempts of a request in all.
   */
  maxAttemptsPerModel?: number;
  /**
   * How many of the chain's next models to also hand OpenRouter as its server-side `models`
   * fallback on each attempt (0 to 2; OpenRouter takes 3 in all). Default 0: the library walks
   * the chain itself and keeps per-model health.
   */
  serverFallbacks?: 0 | 1 | 2;
  /**
   * Per-attempt timeouts (`attemptTimeouts`), applied inside each attempt so that a model that
   * timed out is struck from the request's route like any failing model. Default: none.
   */
  timeouts?: AttemptTimeoutsConfig;
}

/** The models a request may use, in order: `model`, then the client-side chain in `models`. */
export function modelChainOf(request: ChatRequest): string[] {
  const chain = [request.model, ...(request.models ?? [])].filter((model): model is string => typeof model === 'string');
  return [...new Set(chain)];
}

/** A request's route, plus the models it moved on from after a failure of the model itself. */
class ChainRoute extends RouteState {
  /** Offered to the pool after the rest of the chain: taken only when the others are out of service. */
  readonly movedOn = new Set<string>();
}

/**
 * Picks a key for every attempt and holds its slot until the attempt ends. Each subscription is
 * one attempt: a retry downstream resubscribes, and the new attempt prefers keys (and models)
 * the request has not failed on yet. Emits an `attempt` marker, then the transport's events
 * tagged with key and model. Unsubscribing aborts the HTTP request and frees the slot.
 *
 * Fallback first: when an attempt fails by a failure of its model (scope `model`: a 5xx, a
 * provider's 429, a timeout, a cut or malformed stream) and the request's chain still has a model
 * it has not moved on from, the request moves on to that model, and the error is marked so that
 * the retry operator taking it retries at once (no backoff). The failing model is not tried again
 * for this request while the rest of the chain can serve it; the pool's model breaker and its
 * adaptive concurrency bring it back for later requests. With no model to move on to (alone, or on
 * the last model of the chain) the failing model is retried as before (see `maxAttemptsPerModel`).
 */
export function withKeyRotation(pool: PoolCore, config: WithKeyRotationConfig = {}): OperatorFunction<ChatRequest, AttemptEvent> {
  const attemptsOf = keyRotationAttempts(pool, config);
  return (source) => source.pipe(mergeMap(attemptsOf));
}

/**
 * `withKeyRotation` for one request: subscribing makes one attempt. `balance` calls it directly,
 * one request at a time, without the `mergeMap` the operator needs for a stream of requests.
 */
export function keyRotationAttempts(
  pool: PoolCore,
  config: WithKeyRotationConfig = {},
): (request: ChatRequest) => Observable<AttemptEvent> {
  const port = pool[POOL_PORT];
  const strategy = config.strategy === undefined ? undefined : toStrategy(config.strategy);
  const maxAttemptsPerModel = config.maxAttemptsPerModel ?? 2;
  // Routes outlive one attempt (a retry resubscribes) but not their request.
  const routes = new WeakMap<ChatRequest, ChainRoute>();
  const routeOf = (request: ChatRequest) => {
    let route = routes.get(request);
    if (route === undefined) {
      route = new ChainRoute(modelChainOf(request), maxAttemptsPerModel, estimateTokens(request, 0));
      routes.set(request, route);
    }
    return route;
  };

  const serverFallbacks = config.serverFallbacks ?? 0;
  const timeouts = config.timeouts === undefined ? undefined : attemptTimeouts({ scheduler: port.scheduler, ...config.timeouts });

  /**
   * The route's models that can hold the request, as far as the pool knows their context; those
   * the request moved on from come last, so the pool takes one only when the others are out.
   */
  const fittingModels = (route: ChainRoute): string[] => {
    const needed = route.neededTokens;
    const fitting = route.candidates((model) => (port.contextLengthOf(model) ?? Infinity) >= needed);
    return [...fitting.filter((model) => !route.movedOn.has(model)), ...fitting.filter((model) => route.movedOn.has(model))];
  };

  /**
   * Whether a failed attempt on `model` moves the request on to another model of its chain (see
   * `withKeyRotation`): a retryable failure of the model itself, while `models` (the route after
   * the failure) holds a model the request has not moved on from. A model is moved on from once
   * per request: when the pool gives it the request again (the rest of the chain out of service),
   * its next failure is retried like on a lone model.
   */
  const movesOnAfter = (route: ChainRoute, model: string, error: OpenRouterError, models: readonly string[]): boolean => {
    if (error.scope !== 'model' || !error.retryable || route.movedOn.has(model)) return false;
    if (!models.some((candidate) => candidate !== model && !route.movedOn.has(candidate))) return false;
    route.movedOn.add(model);
    return true;
  };

  const attempt = (request: ChatRequest) =>
    new Observable<AttemptEvent>((subscriber) => {
      const route = routeOf(request);
      const requestId = request.id ?? '';
      const models = fittingModels(route);
      if (models.length === 0) {
        const error = copyError(
          route.lastError ??
            (route.chain.length === 0
              ? new BadRequestError({ message: 'request.model: a model is required', scope: 'request', retryable: false })
              : new ContextLengthError({
                  message: `the prompt needs about ${route.neededTokens} tokens, more than the context of ${route.chain.join(', ')}`,
                  scope: 'request',
                  retryable: false,
                })),
          { routeExhausted: true },
        );
        markMovesOn(error, false);
        subscriber.error(error);
        return undefined;
      }
      const call = new Subscription();
      const priority = typeof config.priority === 'function' ? config.priority(request) : config.priority;
      // A holder, so that an answer that comes synchronously, inside the acquisition, can free the
      // lease too: a subscription added to a closed holder is unsubscribed at once.
      const acquisition = new Subscription();
      acquisition.add(
        port
          .acquire(request, {
            models,
            avoid: route.triedKeys,
            requestId,
            ...(strategy === undefined ? {} : { strategy }),
            ...(priority === undefined ? {} : { priority }),
            ...(config.queueTimeoutMs === undefined ? {} : { queueTimeoutMs: config.queueTimeoutMs }),
          })
          .subscribe({
            next: (lease: KeyLease) => {
              const tag = { requestId, keyLabel: lease.label, model: lease.model };
              const previousModel = route.lastModel;
              if (previousModel !== undefined && previousModel !== lease.model) {
                port.emit({
                  type: 'fallback',
                  requestId,
                  from: previousModel,
                  to: lease.model,
                  reason: route.lastError!.kind,
                  at: lease.acquiredAt,
                });
              }
              const number = route.begin(lease.label, lease.model);
              let firstContentAt: number | undefined;
              const marker: AttemptStart = {
                type: 'attempt',
                attempt: number,
                at: lease.acquiredAt,
                stream: request.stream === true,
                ...tag,
              };
              const recording: AttemptRecording = { shouldRecord: () => true };
              Object.defineProperty(marker, ATTEMPT_RECORDING, { value: recording, enumerable: false });
              /** This attempt's outcome into key, account and model health: the lease knows the key. */
              const recordSuccess = (usage: Usage | undefined) => {
                const now = port.scheduler.now();
                port.record({
                  type: 'success',
                  requestId,
                  attempt: number,
                  keyLabel: lease.label,
                  model: lease.model,
                  latencyMs: now - lease.acquiredAt,
                  ...(firstContentAt === undefined ? {} : { timeToFirstTokenMs: firstContentAt - lease.acquiredAt }),
                  ...(usage === undefined ? {} : { usage }),
                });
              };
              const { id: _correlationId, models: _chain, ...body } = request;
              const serverChain =
                serverFallbacks > 0
                  ? route.chain.slice(route.chain.indexOf(lease.model) + 1, route.chain.indexOf(lease.model) + 1 + serverFallbacks)
                  : [];
              const wireRequest: ChatRequest =
                serverChain.length > 0
                  ? { ...body, model: lease.model, models: [lease.model, ...serverChain] }
                  : { ...body, model: lease.model };
              /** A transport event as this attempt's, with the lease told of the answer. */
              const tagged = (event: TransportEvent): AttemptEvent => {
                lease.markResponded();
                if (event.type === 'end' && event.usage !== undefined) lease.reconcile(event.usage);
                if (event.type === 'completion' && event.completion.usage !== undefined) lease.reconcile(event.completion.usage);
                const attemptEvent: AttemptEvent = { ...event, ...tag };
                // The first token of a stream; a whole answer has no time to a first token.
                if (firstContentAt === undefined && attemptEvent.type === 'chunk' && carriesContent(attemptEvent))
                  firstContentAt = port.scheduler.now();
                return attemptEvent;
              };
              // The marker, then the transport's events: written out rather than composed from
              // `concat`, `defer` and `map`, which cost five subscribers per attempt.
              const events$ = new Observable<AttemptEvent>((attemptSubscriber) => {
                attemptSubscriber.next(marker);
                // Nothing is sent if the consumer left on the marker.
                if (attemptSubscriber.closed) return undefined;
                if (subscriber.closed) {
                  attemptSubscriber.complete();
                  return undefined;
                }
                let transport$: Observable<TransportEvent>;
                try {
                  transport$ = port.transport(lease.credential, wireRequest, { onSent: () => lease.markSent() });
                } catch (thrown: unknown) {
                  // A transport that throws instead of erroring still fails this attempt only.
                  attemptSubscriber.error(thrown);
                  return undefined;
                }
                return transport$.subscribe({
                  next: (event) => {
                    let attemptEvent: AttemptEvent;
                    try {
                      attemptEvent = tagged(event);
                    } catch (thrown: unknown) {
                      attemptSubscriber.error(thrown);
                      return;
                    }
                    attemptSubscriber.next(attemptEvent);
                  },
                  error: (thrown: unknown) => attemptSubscriber.error(thrown),
                  complete: () => attemptSubscriber.complete(),
                });
              });
              // Timeouts inside the attempt, so that the route learns of them like of any failure.
              call.add(
                (timeouts === undefined ? events$ : events$.pipe(timeouts)).subscribe({
                  next: (event) => {
                    // Recorded, and the key's slot (or the model's probe) freed, before the answer goes
                    // on: whoever reacts to it (the next request of a concurrency cap) sees health
                    // current, not a key still busy with an answer that is already in.
                    if (event.type === 'end' || event.type === 'completion') {
                      recordSuccess(event.type === 'end' ? event.usage : event.completion.usage);
                      acquisition.unsubscribe();
                    }
                    subscriber.next(event);
                  },
                  error: (thrown: unknown) => {
                    // The server counted it (or may have): the windows count from now. No acceptance.
                    lease.markResponded(false);
                    // Our copy, annotated: the transport may hold on to what it threw.
                    const error = copyError(toOpenRouterError(thrown), { keyLabel: lease.label, model: lease.model });
                    // A platform 429 reports its quota: the server did not count the refused request.
                    if (error.rateLimit !== undefined) lease.refund();
                    // Recorded before the error goes on, so a retry already sees the key parked or open.
                    if (recording.shouldRecord(error)) {
                      port.record({
                        type: 'failure',
                        requestId,
                        attempt: number,
                        keyLabel: lease.label,
                        model: lease.model,
                        error,
                        sentAt: lease.sentAt,
                        ...(error.usage === undefined ? {} : { usage: error.usage }),
                      });
                    }
                    route.fail(lease.model, error, firstContentAt !== undefined);
                    const models = fittingModels(route);
                    if (models.length === 0) error.routeExhausted = true;
                    markMovesOn(error, movesOnAfter(route, lease.model, error, models));
                    // The key's slot is free before a retry (or the next request) looks for one.
                    acquisition.unsubscribe();
                    subscriber.error(error);
                  },
                  complete: () => subscriber.complete(),
                }),
              );
            },
            error: (error: unknown) => subscriber.error(toOpenRouterError(error)),
          }),
      );
      // Abort the call first, then free the slot: the lease outlives the request by no time.
      return () => {
        call.unsubscribe();
        acquisition.unsubscribe();
      };
    });

  return attempt;
}
