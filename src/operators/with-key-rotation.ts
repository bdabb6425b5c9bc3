import { Observable, type Subscription, mergeMap, throwError, type OperatorFunction, type Subscriber } from 'rxjs';
import { BadRequestError, ContextLengthError, callbackError, copyError, toOpenRouterError, type OpenRouterError } from '../core/errors.js';
import { redactError } from '../core/redact.js';
import { estimateTokens } from '../core/tokens.js';
import { keptUnless } from '../core/subscriptions.js';
import {
  POOL_PORT,
  type AcquireOptions,
  type HeldLease,
  type KeyLease,
  type LeaseHolder,
  type PoolCore,
  type PoolPort,
} from '../pool/types.js';
import { RouteState } from '../routing/route.js';
import { invalidRequestError, validateBalancedRequest } from '../routing/balanced-request.js';
import { toStrategy, type Strategy } from '../pool/strategies.js';
import { checkPoolArgument, priorityOf, withKeyRotationOptions, type WithKeyRotationConfig } from './key-rotation-options.js';

export type { WithKeyRotationConfig } from './key-rotation-options.js';
import { checkOptions } from '../core/validation.js';
import type { ChatRequest, TransportEvent, Usage } from '../core/types.js';
import {
  ATTEMPT_RECORDING,
  carriesContent,
  markMovesOn,
  markTaughtLimit,
  type AttemptEvent,
  type AttemptRecording,
  type AttemptStart,
  type RequestRetries,
} from './attempt-event.js';
import { TimedAttempt, timeoutLimitsOf, type AttemptObserver, type TimeoutLimits } from './attempt-timeouts.js';
import { TaggedEvents, notAnObservableError } from './tagged-events.js';

/** The models a request may use, in order: `model`, then the client-side chain in `models`. */
export function modelChainOf(request: ChatRequest): string[] {
  // Most requests name one model: an array of exactly one, held as long as the request.
  if (request.models === undefined || request.models.length === 0) return typeof request.model === 'string' ? [request.model] : [];
  const chain = [request.model, ...request.models].filter((model): model is string => typeof model === 'string');
  return chain.filter((model, index) => chain.indexOf(model) === index);
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
 *
 * An unknown or invalid option makes it throw a `ValidationError`, naming the field.
 */
export function withKeyRotation(pool: PoolCore, config: WithKeyRotationConfig = {}): OperatorFunction<ChatRequest, AttemptEvent> {
  checkPoolArgument(pool, 'withKeyRotation');
  checkOptions(withKeyRotationOptions, config, 'withKeyRotation options');
  const attemptsOf = keyRotationAttempts(pool, config);
  // The edge of a chain composed by hand: a request that is not one fails here, naming its field,
  // as `balance` fails it, instead of as whatever the transport makes of it.
  const checkedAttemptsOf = (request: ChatRequest): Observable<AttemptEvent> => {
    try {
      validateBalancedRequest(request);
    } catch (error: unknown) {
      return throwError(() => invalidRequestError(error));
    }
    return attemptsOf(request);
  };
  return (source) => source.pipe(mergeMap(checkedAttemptsOf));
}

/**
 * `withKeyRotation` for one request: subscribing makes one attempt. `balance` calls it directly,
 * one request at a time, without the `mergeMap` the operator needs for a stream of requests.
 */
export function keyRotationAttempts(pool: PoolCore, config: WithKeyRotationConfig = {}): KeyRotationAttempts {
  const rotation = new Rotation(pool[POOL_PORT], config);
  const attemptsOf = (request: ChatRequest): Observable<AttemptEvent> =>
    new Observable<AttemptEvent>((subscriber) => {
      const attempt = new KeyAttempt(rotation, request, subscriber);
      attempt.start();
      return attempt;
    });
  return Object.assign(attemptsOf, { retriesOf: (request: ChatRequest): RequestRetries => rotation.routeOf(request) });
}

/** One request's attempts (subscribing makes one), and its retry state for a caller that asks again. */
export interface KeyRotationAttempts {
  (request: ChatRequest): Observable<AttemptEvent>;
  /**
   * The request's retries so far, for a caller that subscribes again to go on with the same request
   * (with `whileResuming`): `balance`, after a wait outside its slot, even when the pool refused
   * the request before any attempt (there is no attempt marker to take them from then).
   */
  readonly retriesOf: (request: ChatRequest) => RequestRetries;
}

/** What every attempt through one `withKeyRotation` shares: its settings and the requests' routes. */
class Rotation {
  readonly strategy: Strategy | undefined;
  readonly serverFallbacks: number;
  readonly timeouts: TimeoutLimits | undefined;
  private readonly maxAttemptsPerModel: number;
  // Routes outlive one attempt (a retry resubscribes) but not their request.
  private readonly routes = new WeakMap<ChatRequest, RouteState>();

  constructor(
    readonly port: PoolPort,
    readonly config: WithKeyRotationConfig,
  ) {
    // Checked by `withKeyRotation` or `balance`, the edges that take it.
    this.strategy = config.strategy === undefined ? undefined : toStrategy(config.strategy);
    this.maxAttemptsPerModel = config.maxAttemptsPerModel ?? 2;
    this.serverFallbacks = config.serverFallbacks ?? 0;
    this.timeouts = config.timeouts === undefined ? undefined : timeoutLimitsOf({ scheduler: port.scheduler, ...config.timeouts });
  }

  /**
   * The request's route: kept while its attempts go on (a retry resubscribes with the same
   * object), new once it was answered, a retry operator gave up on it, or it has no model left:
   * the same object sent again then is a request of its own.
   */
  routeOf(request: ChatRequest): RouteState {
    let route = this.routes.get(request);
    if (route === undefined || route.ended || this.fittingModels(route).length === 0) {
      route = new RouteState(modelChainOf(request), this.maxAttemptsPerModel, estimateTokens(request, 0));
      this.routes.set(request, route);
    }
    return route;
  }

  /**
   * The route's models that can hold the request, as far as the pool knows their context; those
   * the request moved on from come last, so the pool takes one only when the others are out.
   */
  fittingModels(route: RouteState): readonly string[] {
    const needed = route.neededTokens;
    const fitting = route.candidates((model) => (this.port.contextLengthOf(model) ?? Infinity) >= needed);
    if (!route.movedOnAny) return fitting;
    return [...fitting.filter((model) => !route.movedOn(model)), ...fitting.filter((model) => route.movedOn(model))];
  }

  /**
   * Whether a failed attempt on `model` moves the request on to another model of its chain (see
   * `withKeyRotation`): a retryable failure of the model itself, while `models` (the route after
   * the failure) holds a model the request has not moved on from. A model is moved on from once
   * per request: when the pool gives it the request again (the rest of the chain out of service),
   * its next failure is retried like on a lone model.
   */
  movesOnAfter(route: RouteState, model: string, error: OpenRouterError, models: readonly string[]): boolean {
    if (error.scope !== 'model' || !error.retryable || route.movedOn(model)) return false;
    if (!models.some((candidate) => candidate !== model && !route.movedOn(candidate))) return false;
    route.moveOn(model);
    return true;
  }
}

/**
 * One attempt: the key's lease, the transport call, and what the attempt tells the pool and the
 * route. A class, not closures, because every request in flight holds one; it is also the
 * observer of the attempt's events (marker, then the transport's, through the timeouts) and the
 * teardown of the attempt's subscription.
 */
class KeyAttempt implements LeaseHolder {
  private readonly route: RouteState;
  /** Made by a retry of this library: it goes on with the request's retry counts. */
  private readonly resumed: boolean;
  private readonly requestId: string;
  /** The transport's events, once subscribed. */
  private call: Subscription | undefined;
  /** The attempt's timers, when the rotation has timeouts: its events pass through them. */
  private timed: TimedAttempt | undefined;
  /** The key's acquisition, once `subscribe` has returned: a lease, and even its answer, may come inside it. */
  private acquisition: Subscription | undefined;
  /** The lease `acquireNow` granted, when the attempt needed no acquisition: freed as ending one would free it. */
  private granted: HeldLease | undefined;
  /** The lease is to be freed: an acquisition that returns after this is ended at once. */
  private released = false;
  /** Torn down: a call that returns after this is ended at once. */
  private stopped = false;
  private lease: KeyLease | undefined;
  private number = 0;
  private firstContentAt: number | undefined;
  private recording: AttemptRecording | undefined;

  constructor(
    private readonly rotation: Rotation,
    private readonly request: ChatRequest,
    private readonly subscriber: Subscriber<AttemptEvent>,
  ) {
    this.route = rotation.routeOf(request);
    // Read now, while the retry that made it (if one did) is still subscribing.
    this.resumed = this.route.resumes;
    this.requestId = request.id ?? '';
  }

  start(): void {
    const { rotation, route, request, requestId, subscriber } = this;
    const models = rotation.fittingModels(route);
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
      return;
    }
    const { config, strategy } = rotation;
    let priority: number | undefined;
    try {
      priority = priorityOf(config.priority, request);
    } catch (thrown: unknown) {
      const error = copyError(callbackError(thrown, 'priority'), { routeExhausted: true });
      markMovesOn(error, false);
      subscriber.error(error);
      return;
    }
    // Not a retry of ours (sent again after a refusal or its caller left, a plain `retry()`): it joins
    // the line afresh and lists its own attempts, as its retry counts start afresh (`retriesOf`).
    if (!this.resumed) route.startAfresh();
    route.inLineSince ??= rotation.port.scheduler.now();
    const options: AcquireOptions = {
      models,
      avoid: route.triedKeys,
      requestId,
      ...(strategy === undefined ? {} : { strategy }),
      ...(priority === undefined ? {} : { priority }),
      ...(config.queueTimeoutMs === undefined ? {} : { queueTimeoutMs: config.queueTimeoutMs }),
      ...(config.maxQueuedModelParkMs === undefined ? {} : { maxQueuedModelParkMs: config.maxQueuedModelParkMs }),
      ...(config.refuseAtModelLimit === true ? { refuseAtModelLimit: true } : {}),
      ...(this.resumed ? { since: route.inLineSince } : {}), // a new arrival has no place yet
    };
    // A key free now comes without an acquisition to hold for the attempt's whole life.
    const granted = rotation.port.acquireNow?.(request, options);
    if (granted instanceof Error) {
      subscriber.error(toOpenRouterError(granted));
      return;
    }
    if (granted !== undefined) {
      this.granted = granted;
      this.send(granted);
      return;
    }
    const acquisition = rotation.port.acquire(request, options).subscribe({
      next: (lease: KeyLease) => this.send(lease),
      error: (thrown: unknown) => {
        subscriber.error(toOpenRouterError(thrown));
      },
    });
    this.acquisition = keptUnless(acquisition, this.released);
  }

  /**
   * The teardown: rxjs calls it when the attempt's subscriber ends. It aborts the call first, then
   * frees the slot: the lease outlives the request by no time.
   */
  unsubscribe(): void {
    this.stopped = true;
    this.timed?.stop();
    this.call?.unsubscribe();
    // Left, not ended: the acquisition's teardown frees the slot for a waiting request once the
    // caller's teardown is over (it may be tearing down the requests waiting for it too).
    this.endAcquisition();
  }

  /** See `AttemptRecording.fail`: a timer downstream fires while the attempt is still on. */
  private failFromOutside(error: OpenRouterError): boolean {
    if (this.stopped || this.released || this.lease === undefined) return false;
    this.timed?.stop();
    this.call?.unsubscribe();
    this.error(error);
    return true;
  }

  /** The pool was disposed under this attempt (see `KeyLease.heldBy`). */
  abandon(error: OpenRouterError): void {
    this.failFromOutside(error);
  }

  /** Torn down: a synchronous transport may still be emitting, and nothing more is taken. */
  get ended(): boolean {
    return this.stopped;
  }

  /** The attempt has its outcome: the slot goes to a waiting request now. */
  private freeLease(): void {
    this.lease?.release();
    this.endAcquisition();
  }

  /** Ends the acquisition, which frees a lease still held (now, or as soon as the acquisition returns). */
  private endAcquisition(): void {
    this.released = true;
    this.acquisition?.unsubscribe();
    this.granted?.releaseOnTeardown();
  }

  /** The key is ours: the marker, then the transport's events, through the timeouts. */
  private send(lease: KeyLease): void {
    const { rotation, route, request, requestId } = this;
    const port = rotation.port;
    this.lease = lease;
    lease.heldBy?.(this);
    const previousModel = route.lastModel;
    if (previousModel !== undefined && previousModel !== lease.model) {
      port.emit({ type: 'fallback', requestId, from: previousModel, to: lease.model, reason: route.lastError!.kind, at: lease.acquiredAt });
    }
    this.number = route.begin(lease.label, lease.model);
    const marker: AttemptStart = {
      type: 'attempt',
      attempt: this.number,
      at: lease.acquiredAt,
      stream: request.stream === true,
      requestId,
      keyLabel: lease.label,
      model: lease.model,
    };
    const recording: AttemptRecording = {
      shouldRecord: recordEveryError,
      request: route,
      resumed: this.resumed,
      fail: (error) => this.failFromOutside(error),
      emit: port.emit,
      disposed$: port.disposed$,
    };
    this.recording = recording;
    Object.defineProperty(marker, ATTEMPT_RECORDING, { value: recording, enumerable: false });
    // The rest copy is this attempt's own, so it is the wire request: one copy per attempt, not two.
    const { id: _correlationId, models: _chain, ...body } = request;
    const wireRequest: ChatRequest = body;
    wireRequest.model = lease.model;
    const serverFallbacks = rotation.serverFallbacks;
    if (serverFallbacks > 0) {
      const next = route.chain.indexOf(lease.model) + 1;
      const serverChain = route.chain.slice(next, next + serverFallbacks);
      if (serverChain.length > 0) wireRequest.models = [lease.model, ...serverChain];
    }
    // The marker, then the transport's events, through the attempt's timers (inside the attempt,
    // so that the route learns of a timeout like of any failure) to this attempt. Driven here
    // rather than composed from `concat`, `defer` and `attemptTimeouts`, which cost two
    // Observables and their subscribers per attempt in flight.
    const timed = rotation.timeouts === undefined ? undefined : new TimedAttempt(rotation.timeouts, this);
    this.timed = timed;
    const events: AttemptObserver = timed ?? this;
    // On `events$` from here, where the attempt starts, whatever chain the request runs through.
    port.emit(marker);
    events.next(marker);
    // Nothing is sent if the consumer left on the marker (the attempt's teardown runs now, or as
    // soon as the subscription that is making it returns).
    if (this.subscriber.closed) {
      timed?.stop();
      return;
    }
    let transport$: Observable<TransportEvent>;
    try {
      transport$ = port.transport(lease.credential, wireRequest, { onSent: lease.markSent });
    } catch (thrown: unknown) {
      // A transport that throws instead of erroring still fails this attempt only.
      events.error(thrown);
      return;
    }
    if (typeof (transport$ as Partial<Observable<TransportEvent>> | null | undefined)?.subscribe !== 'function') {
      // A transport written as an `async` function (or one that returned nothing) would crash the
      // process from inside rxjs: the request fails, typed, and a promise it made never rejects unhandled.
      events.error(notAnObservableError(transport$));
      return;
    }
    const call = keptUnless(transport$.subscribe(new TaggedEvents(this, events)), this.stopped);
    if (call === undefined) return;
    this.call = call;
    // A timer that fires aborts the HTTP request before it fails the attempt.
    if (timed !== undefined) timed.upstream = call;
  }

  /** A transport event as this attempt's, with the lease told of the answer. */
  tag(event: TransportEvent): AttemptEvent {
    const lease = this.lease!;
    lease.markResponded();
    if (event.type === 'end' && event.usage !== undefined) lease.reconcile(event.usage);
    if (event.type === 'completion' && event.completion.usage !== undefined) lease.reconcile(event.completion.usage);
    const attemptEvent: AttemptEvent = Object.assign({}, event, { requestId: this.requestId, keyLabel: lease.label, model: lease.model });
    // The first token of a stream; a whole answer has no time to a first token.
    if (this.firstContentAt === undefined && attemptEvent.type === 'chunk' && carriesContent(attemptEvent))
      this.firstContentAt = this.rotation.port.scheduler.now();
    return attemptEvent;
  }

  next(event: AttemptEvent): void {
    // Recorded, and the key's slot (or the model's probe) freed, before the answer goes on:
    // whoever reacts to it (the next request of a concurrency cap) sees health current, not a
    // key still busy with an answer that is already in.
    if (event.type === 'end' || event.type === 'completion') {
      this.recordSuccess(event.type === 'end' ? event.usage : event.completion.usage);
      this.route.ended = true;
      this.freeLease();
    }
    this.subscriber.next(event);
  }

  error(thrown: unknown): void {
    const { rotation, route, requestId } = this;
    const lease = this.lease!;
    // The server counted it (or may have): the windows count from now. No acceptance.
    lease.markResponded(false);
    // Our copy, annotated (the transport may hold on to what it threw), and scrubbed of key text:
    // the built-in transports scrub what they report of the key they sent, but a user's may echo
    // it, and a server may echo any other key of the pool.
    const copy = copyError(toOpenRouterError(thrown), { keyLabel: lease.label, model: lease.model });
    const error = rotation.port.redactKeys?.(copy, lease.credential) ?? redactError(copy, lease.credential);
    // A platform 429 reports its quota: the server did not count the refused request.
    if (error.rateLimit !== undefined) lease.refund();
    // Recorded before the error goes on, so a retry already sees the key parked or open.
    const taught = rotation.port.record({
      type: 'failure',
      requestId,
      attempt: this.number,
      keyLabel: lease.label,
      model: lease.model,
      error,
      sentAt: lease.sentAt,
      ...(error.usage === undefined ? {} : { usage: error.usage }),
      ...(this.shouldRecord(error) ? {} : { countsAgainstHealth: false }),
      ...(this.firstContentAt === undefined ? {} : { afterContent: true }),
    });
    route.fail(lease.model, error, this.firstContentAt !== undefined);
    const models = rotation.fittingModels(route);
    if (models.length === 0) error.routeExhausted = true;
    markMovesOn(error, rotation.movesOnAfter(route, lease.model, error, models));
    markTaughtLimit(error, taught === true);
    // The key's slot is free before a retry (or the next request) looks for one.
    this.freeLease();
    this.subscriber.error(error);
  }

  complete(): void {
    this.subscriber.complete();
  }

  /** Whether the failure counts in health; a `circuitBreaker` predicate that throws counts it, and fails nothing else. */
  private shouldRecord(error: OpenRouterError): boolean {
    try {
      return this.recording!.shouldRecord(error);
    } catch {
      return true;
    }
  }

  /** This attempt's outcome into key, account and model health: the lease knows the key. */
  private recordSuccess(usage: Usage | undefined): void {
    const lease = this.lease!;
    const firstContentAt = this.firstContentAt;
    this.rotation.port.record({
      type: 'success',
      requestId: this.requestId,
      attempt: this.number,
      keyLabel: lease.label,
      model: lease.model,
      latencyMs: this.rotation.port.scheduler.now() - lease.acquiredAt,
      ...(firstContentAt === undefined ? {} : { timeToFirstTokenMs: firstContentAt - lease.acquiredAt }),
      ...(usage === undefined ? {} : { usage }),
    });
  }
}

/** Every failure counts in health unless a `circuitBreaker` downstream says otherwise. */
function recordEveryError(): boolean {
  return true;
}
