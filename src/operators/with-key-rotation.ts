import { Observable, mergeMap, type OperatorFunction, type Subscription } from 'rxjs';
import { AttemptsExhaustedError, BadRequestError, toOpenRouterError, type AttemptRecord } from '../errors.js';
import type { KeyLease, KeyPool } from '../keys/pool.js';
import { RouteState } from '../routing/route.js';
import { toStrategy, type StrategyLike } from '../routing/strategies.js';
import type { ChatRequest } from '../types.js';
import type { AttemptEvent } from './attempt-event.js';

export interface WithKeyRotationConfig {
  /** Overrides the pool's strategy for these requests. */
  strategy?: StrategyLike;
  /** Admission priority: higher first. A number, or a function of the request. Default 0. */
  priority?: number | ((request: ChatRequest) => number);
  /** How long an attempt may wait for a key; default from the pool config (no limit). */
  queueTimeoutMs?: number;
  /** Failed attempts a model gets per request before the next model in its chain is preferred. Default 2. */
  maxAttemptsPerModel?: number;
}

/** The models a request may use, in order: `model`, then the client-side chain in `models`. */
export function modelChainOf(request: ChatRequest): string[] {
  const chain = [request.model, ...(request.models ?? [])].filter((model): model is string => typeof model === 'string');
  return [...new Set(chain)];
}

/**
 * Picks a key for every attempt and holds its slot until the attempt ends. Each subscription is
 * one attempt: a retry downstream resubscribes, and the new attempt prefers keys (and models)
 * the request has not failed on yet. Emits an `attempt` marker, then the transport's events
 * tagged with key and model. Unsubscribing aborts the HTTP request and frees the slot.
 */
export function withKeyRotation(pool: KeyPool, config: WithKeyRotationConfig = {}): OperatorFunction<ChatRequest, AttemptEvent> {
  const strategy = config.strategy === undefined ? undefined : toStrategy(config.strategy);
  const maxAttemptsPerModel = config.maxAttemptsPerModel ?? 2;
  // Routes outlive one attempt (a retry resubscribes) but not their request.
  const routes = new WeakMap<ChatRequest, RouteState>();
  const routeOf = (request: ChatRequest) => {
    let route = routes.get(request);
    if (route === undefined) {
      route = new RouteState(modelChainOf(request), maxAttemptsPerModel);
      routes.set(request, route);
    }
    return route;
  };

  const attempt = (request: ChatRequest) =>
    new Observable<AttemptEvent>((subscriber) => {
      const route = routeOf(request);
      const requestId = request.id ?? '';
      const models = route.candidates();
      if (models.length === 0) {
        const lastError = route.lastError ?? new BadRequestError({ message: 'request.model: a model is required', scope: 'request', retryable: false });
        const record: AttemptRecord = { attempt: route.attempts, kind: lastError.kind, message: lastError.message, at: pool.scheduler.now(), ...(lastError.model === undefined ? {} : { model: lastError.model }) };
        subscriber.error(route.attempts > 0 ? new AttemptsExhaustedError(lastError, [record]) : lastError);
        return undefined;
      }
      let call: Subscription | undefined;
      const priority = typeof config.priority === 'function' ? config.priority(request) : config.priority;
      const acquisition = pool
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
            const number = route.begin(lease.label, lease.model);
            subscriber.next({ type: 'attempt', attempt: number, at: lease.acquiredAt, ...tag });
            const { id: _correlationId, models: _chain, ...body } = request;
            call = pool.transport(lease.credential, { ...body, model: lease.model }).subscribe({
              next: (event) => {
                lease.markResponded();
                if (event.type === 'end' && event.usage !== undefined) lease.reconcile(event.usage);
                if (event.type === 'completion' && event.completion.usage !== undefined) lease.reconcile(event.completion.usage);
                subscriber.next({ ...event, ...tag });
              },
              error: (thrown: unknown) => {
                lease.markResponded();
                const error = toOpenRouterError(thrown);
                error.keyLabel = lease.label;
                error.model = lease.model;
                route.fail(lease.model, error);
                subscriber.error(error);
              },
              complete: () => subscriber.complete(),
            });
          },
          error: (error: unknown) => subscriber.error(toOpenRouterError(error)),
        });
      // Abort the call first, then free the slot: the lease outlives the request by no time.
      return () => {
        call?.unsubscribe();
        acquisition.unsubscribe();
      };
    });

  return (source) => source.pipe(mergeMap(attempt));
}
