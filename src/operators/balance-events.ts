import { Observable, Subscription, type Subscriber } from 'rxjs';
import {
  AttemptsExhaustedError,
  ModelUnavailableError,
  NoKeyAvailableError,
  StreamError,
  copyError,
  toOpenRouterError,
  type AttemptRecord,
  type OpenRouterError,
} from '../core/errors.js';
import { scheduleAfter } from '../core/timers.js';
import { keptUnless } from '../core/subscriptions.js';
import { ToolCallAssembly } from '../core/tool-calls.js';
import type { ChatRequest, Completion, Usage } from '../core/types.js';
import type { BalanceEvent, CompletionEvent } from './balance-event-types.js';
import { QUEUED_ROOM_WAIT_FLOOR_MS, queueTimeoutError } from '../pool/model-availability.js';
import type { PoolPort } from '../pool/types.js';
import type { PlaceInLine } from '../pool/capacity-waiters.js';
import {
  attemptRecordOf,
  retriedErrorOf,
  whileResuming,
  type AttemptEvent,
  type AttemptStart,
  type RequestRetries,
} from './attempt-event.js';
import type { Slot } from './merge-with-slots.js';
import type { QuotaWaitLine } from './quota-wait-line.js';
import { modelChainOf } from './with-key-rotation.js';
import { priorityOf, type WithKeyRotationConfig } from './key-rotation-options.js';

/** How often a request waiting on a half-open model (its probe out) looks again. */
const MODEL_PROBE_POLL_MS = 250;
/**
 * How often a request waiting for a model's quota looks again: room can come before its window
 * says (an assumed quota disproved by the answers in flight, a refund, a limit learned anew).
 */
const MODEL_QUOTA_POLL_MS = 1_000;
/** How often a request waiting for room at a model's concurrency limit looks again, should no answer announce it. */
const CAPACITY_POLL_MS = 5_000;

/** How long a request may wait outside its slot (see `RequestReport.awaitModels`). */
export interface RequestWaits {
  /** For a model out of service to come back (`balance`'s `modelWaitMs`). */
  readonly modelWaitMs: number;
  /** For room at its models' concurrency limits: the queue timeout, `balance`'s or else the pool's. */
  readonly queueTimeoutMs: number | undefined;
  /** `balance`'s `priority`: a request's place in line for room, as in the queue. */
  readonly priority: WithKeyRotationConfig['priority'];
  /** Where the requests of one `balance` stream wait for their models' own quotas, in line. */
  readonly quotaLine: QuotaWaitLine;
}

function addUsage(total: Usage | undefined, usage: Usage | undefined): Usage | undefined {
  if (usage === undefined) return total;
  if (total === undefined) return { ...usage };
  return {
    promptTokens: total.promptTokens + usage.promptTokens,
    completionTokens: total.completionTokens + usage.completionTokens,
    totalTokens: total.totalTokens + usage.totalTokens,
    ...sumOf('cost', total, usage),
    ...sumOf('cachedTokens', total, usage),
    ...sumOf('reasoningTokens', total, usage),
  };
}

/** The sum of an optional usage field, when either side has it. */
function sumOf<F extends 'cost' | 'cachedTokens' | 'reasoningTokens'>(field: F, total: Usage, usage: Usage): Partial<Pick<Usage, F>> {
  const [left, right] = [total[field], usage[field]];
  return left === undefined && right === undefined ? {} : ({ [field]: (left ?? 0) + (right ?? 0) } as Partial<Pick<Usage, F>>);
}

interface StreamedAnswer {
  content: string;
  reasoning: string;
  /** Made at the first tool-call delta. */
  toolCalls: ToolCallAssembly | undefined;
}

/**
 * Turns one request's attempt events into balance events, and guarantees one terminal event:
 * errors become `failed`, and a pipeline that completes without an answer becomes a `failed`
 * with a truncation error, never a silent success.
 */
export function toBalanceEvents(
  pool: PoolPort,
  requestId: string,
  arrival: RequestArrival,
  attempts$: Observable<AttemptEvent>,
  slot: Slot,
  waits: RequestWaits,
  request: ChatRequest,
  retriesOf: (request: ChatRequest) => RequestRetries,
): Observable<BalanceEvent> {
  return new Observable<BalanceEvent>((subscriber) => {
    const report = new RequestReport(pool, requestId, arrival, attempts$, slot, waits, request, retriesOf, subscriber);
    report.subscribeAttempts();
    return report;
  });
}

/**
 * When a request came to `balance` (scheduler time), and its number among the inputs: its place
 * in a line for a model's room, kept across its attempts and waits, so that a retry (a provider 429
 * drawn by a probe of the limit) waits where it waited before, and a batch taken in at once waits in
 * the order it came, whichever of its requests a refusal reached first.
 */
export interface RequestArrival {
  readonly at: number;
  readonly number: number;
}

/**
 * One request's story as `balance` reports it: its attempts, its streamed answer, its billed
 * usage. A class, not closures, because every request in flight holds one; it is also the
 * observer of the request's attempts, and the teardown of its subscription.
 */
class RequestReport {
  /** The attempts, while subscribed. */
  private attemptsRun: Subscription | undefined;
  /** While every model is out: the wait, then the slot's reacquisition. */
  private modelWait: Subscription | undefined;
  /**
   * The queue timeout of a wait for room at a model's limit. It runs on once the wait ends, while
   * the woken request waits in the admission queue (at its place in line, behind requests that
   * came before it), until a key takes it or it fails otherwise.
   */
  private roomTimeout: Subscription | undefined;
  /** Unsubscribed: nothing starts after this. */
  private stopped = false;
  private readonly records: AttemptRecord[] = [];
  private attempts = 0;
  private lastStart: AttemptStart | undefined;
  private billed: Usage | undefined;
  /** A streamed answer so far; made by its first chunk. */
  private answer: StreamedAnswer | undefined;
  private settled = false;
  /** The error of the last attempt a retry operator retried. */
  private retriedError: OpenRouterError | undefined;
  /**
   * Since its last attempt: when every model of the request was first found out of service, when
   * its `modelWaitMs` (for the latest refusal) ends, and that refusal (what it then fails with).
   */
  private outage: { readonly since: number; until: number; error: OpenRouterError } | undefined;
  /**
   * Since its last attempt: when its wait for room at its models' concurrency limits started to
   * count against the queue timeout (its turn among the requests aside came, see `Slot.release`).
   */
  private atCapacitySince: number | undefined;

  constructor(
    private readonly pool: PoolPort,
    private readonly requestId: string,
    private readonly arrival: RequestArrival,
    private readonly attempts$: Observable<AttemptEvent>,
    private readonly slot: Slot,
    private readonly waits: RequestWaits,
    private readonly request: ChatRequest,
    /** A request's retries, which its attempts go on with after a wait (the rotation's `retriesOf`, shared by every request). */
    private readonly retriesOf: (request: ChatRequest) => RequestRetries,
    private readonly subscriber: Subscriber<BalanceEvent>,
  ) {}

  subscribeAttempts(): void {
    if (this.stopped) return;
    this.attemptsRun = keptUnless(this.attempts$.subscribe(this), this.stopped);
  }

  /** The teardown: rxjs calls it when the request's subscriber ends. */
  unsubscribe(): void {
    this.stopped = true;
    this.modelWait?.unsubscribe();
    this.endRoomTimeout();
    this.attemptsRun?.unsubscribe();
  }

  private endRoomTimeout(): void {
    this.roomTimeout?.unsubscribe();
    this.roomTimeout = undefined;
  }

  /**
   * Bounds a wait for the room of `models` (outside the slot, for one, or in the queue once woken:
   * as in the queue, not once a slot frees or its turn comes) by the queue timeout and by the end
   * of the outage the request found since its last attempt, unless one of the models has answered
   * since (it is back in service). At the bound the request fails where it waits.
   */
  private armRoomTimeout(models: readonly string[]): void {
    this.endRoomTimeout();
    const { pool, waits } = this;
    const outage = this.outageGoingOn(models);
    const queueAt =
      waits.queueTimeoutMs === undefined || this.atCapacitySince === undefined ? Infinity : this.atCapacitySince + waits.queueTimeoutMs;
    const outageEnds = outage !== undefined && outage.until < queueAt;
    const at = outageEnds ? outage.until : queueAt;
    if (at === Infinity) return;
    this.roomTimeout = scheduleAfter(pool.scheduler, at - pool.scheduler.now(), () => {
      this.roomTimeout = undefined;
      // The model answered meanwhile (only the queue timeout bounds the wait now), or the request
      // found it out again for a longer wait (a spent quota's).
      if (outageEnds && (pool.modelAnsweredSince(models, outage.since) || outage.until > pool.scheduler.now()))
        return this.armRoomTimeout(models);
      this.modelWait?.unsubscribe();
      this.modelWait = undefined;
      this.fail(outageEnds ? outage.error : queueTimeoutError(waits.queueTimeoutMs!));
    });
  }

  /** The outage the request found since its last attempt, unless one of `models` has answered since: then it is over. */
  private outageGoingOn(models: readonly string[]): RequestReport['outage'] {
    if (this.outage !== undefined && this.pool.modelAnsweredSince(models, this.outage.since)) this.outage = undefined;
    return this.outage;
  }

  next(event: AttemptEvent): void {
    const { subscriber, requestId } = this;
    switch (event.type) {
      case 'attempt':
        this.attempts = event.attempt;
        this.lastStart = event;
        // A model took it: a later wait for one gets its own `modelWaitMs` (the retries bound how many).
        this.outage = undefined;
        this.atCapacitySince = undefined;
        this.slot.served();
        this.endRoomTimeout();
        return;
      case 'retry':
        // The attempt after the wait failed before any key took it: the retry's own waits bound it.
        this.endRoomTimeout();
        this.billed = addUsage(this.billed, event.usage);
        this.retriedError = retriedErrorOf(event) ?? this.retriedError;
        this.records.push({
          attempt: event.attempt,
          kind: event.reason,
          message: event.message,
          at: event.at,
          ...(event.status === undefined ? {} : { status: event.status }),
          ...(event.keyLabel === undefined ? {} : { keyLabel: event.keyLabel }),
          ...(event.model === undefined ? {} : { model: event.model }),
        });
        return;
      case 'restart':
        this.answer = undefined;
        subscriber.next({ type: 'restart', requestId, attempt: event.attempt, reason: event.reason });
        return;
      case 'chunk': {
        const hasContent = event.delta.length > 0 || (event.reasoning?.length ?? 0) > 0 || (event.toolCalls?.length ?? 0) > 0;
        // Role-only and empty deltas are held back: the subscriber sees content only.
        if (!hasContent) return;
        const answer = (this.answer ??= { content: '', reasoning: '', toolCalls: undefined });
        answer.content += event.delta;
        if (event.reasoning !== undefined) answer.reasoning += event.reasoning;
        if (event.toolCalls !== undefined) {
          // Assembled (copied) now: the chunk's own go to the subscriber, who may change them before the end.
          const assembly = (answer.toolCalls ??= new ToolCallAssembly());
          for (const call of event.toolCalls) assembly.add(call);
        }
        subscriber.next({
          type: 'chunk',
          requestId,
          delta: event.delta,
          keyLabel: event.keyLabel,
          model: event.model,
          ...(event.reasoning === undefined ? {} : { reasoning: event.reasoning }),
          ...(event.toolCalls === undefined ? {} : { toolCalls: event.toolCalls }),
        });
        return;
      }
      case 'end': {
        this.billed = addUsage(this.billed, event.usage);
        const answer = this.answer;
        const completion: Completion = {
          id: event.id,
          model: event.model,
          content: answer?.content ?? '',
          finishReason: event.finishReason,
          raw: null,
          ...(event.provider === undefined ? {} : { provider: event.provider }),
          ...(answer === undefined || answer.reasoning.length === 0 ? {} : { reasoning: answer.reasoning }),
          ...(answer?.toolCalls === undefined ? {} : { toolCalls: answer.toolCalls.calls }),
          ...(event.usage === undefined ? {} : { usage: event.usage }),
        };
        this.succeed({
          completion,
          keyLabel: event.keyLabel,
          model: event.model,
          ...(event.usage === undefined ? {} : { usage: event.usage }),
        });
        return;
      }
      case 'completion':
        this.billed = addUsage(this.billed, event.completion.usage);
        this.succeed({
          completion: event.completion,
          keyLabel: event.keyLabel,
          model: event.model,
          ...(event.completion.usage === undefined ? {} : { usage: event.completion.usage }),
        });
        return;
    }
  }

  error(thrown: unknown): void {
    const error = toOpenRouterError(thrown);
    const waitable = error instanceof ModelUnavailableError || (error instanceof NoKeyAvailableError && error.retryable);
    const outcome = waitable ? this.awaitModels(error) : error;
    if (outcome === undefined) return;
    this.billed = addUsage(this.billed, outcome.usage);
    this.fail(outcome);
  }

  complete(): void {
    if (!this.settled)
      this.fail(new StreamError({ message: 'the attempt ended without an answer', scope: 'transport', retryable: false, truncated: true }));
  }

  private fail(error: OpenRouterError): void {
    this.settled = true;
    const { records } = this;
    // The final attempt's own reason, not the wrapper's "gave up" summary.
    const reason = error instanceof AttemptsExhaustedError ? error.lastError : error;
    // A failure after retries that came without an attempt of its own (no key left, the queue
    // timed out) adds no record: the last record is the attempt that led to it.
    const endedAnAttempt = this.attempts > records.length || this.attempts === 0;
    if (endedAnAttempt) records.push(attemptRecordOf(reason, this.lastStart, this.pool.scheduler.now()));
    // The request's story on the error it fails with: every attempt, and the last attempt's
    // error as the cause of a failure without an attempt (a pool left without keys names the 401).
    const lastCause = !endedAnAttempt && error.cause === undefined ? this.retriedError : undefined;
    const failure = copyError(error, { attempts: records, ...(lastCause === undefined ? {} : { cause: lastCause }) });
    this.subscriber.next({ type: 'failed', requestId: this.requestId, error: failure, attempts: records });
    this.subscriber.complete();
  }

  /** The terminal `completion` (the observer's `complete` is the attempts ending). */
  private succeed(event: Omit<CompletionEvent, 'type' | 'requestId' | 'attempts' | 'latencyMs' | 'billedUsage'>): void {
    this.settled = true;
    const billed = this.billed;
    this.subscriber.next({
      type: 'completion',
      requestId: this.requestId,
      attempts: this.attempts,
      latencyMs: this.pool.scheduler.now() - this.arrival.at,
      ...event,
      ...(billed === undefined ? {} : { billedUsage: billed }),
    });
    this.subscriber.complete();
  }

  /** Its wait for room at `models` counts against the queue timeout from now (see `Slot.release`). */
  private startCounting(models: readonly string[]): void {
    if (this.atCapacitySince !== undefined || this.stopped) return;
    this.atCapacitySince = this.pool.scheduler.now();
    this.armRoomTimeout(models);
  }

  /** Its place in a line for room: its admission priority, then its arrival. */
  private placeInLine(): Required<PlaceInLine> {
    return { priority: this.priorityInLine(), since: this.arrival.at, arrival: this.arrival.number };
  }

  /** The request's admission priority (as `withKeyRotation` reads it): its place in line for room at a model's limit. */
  private priorityInLine(): number {
    try {
      return priorityOf(this.waits.priority, this.request) ?? 0;
    } catch {
      // The attempt that was refused read it without a throw; a function that throws now gets the default place.
      return 0;
    }
  }

  /**
   * Every model out of service, or at its concurrency limit (or every key's breaker open): wait
   * outside the concurrency slot (requests for other models take it meanwhile) until the first is
   * due back or has room, then take a slot again and retry. Returns undefined while it waits, else
   * the outcome: the refusal once `modelWaitMs` is spent. A model at its limit is in service, and
   * its room is waited for as in the queue: as long as it takes, or up to the queue timeout (then
   * the outcome is a `QueueTimeoutError`, as in the queue).
   */
  private awaitModels(error: ModelUnavailableError | NoKeyAvailableError): OpenRouterError | undefined {
    // Unsubscribed while an attempt was being made: nothing is waited for.
    if (this.stopped) return error;
    const { pool, slot, waits } = this;
    const now = pool.scheduler.now();
    const atCapacity = error instanceof ModelUnavailableError && error.modelsAtCapacity.length > 0;
    const quotaSpent = error instanceof ModelUnavailableError && error.quotaSpent;
    let leftMs = Infinity;
    if (atCapacity) {
      if (waits.queueTimeoutMs !== undefined && this.atCapacitySince !== undefined && this.atCapacitySince + waits.queueTimeoutMs <= now)
        return queueTimeoutError(waits.queueTimeoutMs);
      // A model at its limit is in service, and its room is waited for as in the queue. But once
      // the request found its models out since its last attempt, and none has answered since,
      // their room is part of that outage, whose end bounds it: a model that refuses each probe of
      // its limit parks, fills with the probe and parks again, its waiting requests never tried.
      const outage = this.outageGoingOn(error.modelsAtCapacity);
      if (outage !== undefined && outage.until <= now) return outage.error;
    } else {
      // Room a model's own quota brings is waited for as long as the queue would have, at least.
      const longestMs = quotaSpent && waits.modelWaitMs > 0 ? Math.max(waits.modelWaitMs, QUEUED_ROOM_WAIT_FLOOR_MS) : waits.modelWaitMs;
      this.outage ??= { since: now, until: now, error };
      this.outage.error = error;
      this.outage.until = this.outage.since + longestMs;
      leftMs = this.outage.until - now;
      // No use waiting for a model known to stay out past the deadline.
      if (leftMs <= 0 || (error.retryAfterMs ?? 0) > leftMs) return error;
    }
    slot.release(atCapacity ? () => this.startCounting(error.modelsAtCapacity) : undefined);
    // The slot went to the next input at once, and that ended this request's caller.
    if (this.stopped) return undefined;
    // A half-open model's return hangs on its probe: look again soon. Room at a model's limit is
    // announced (`modelRoom`); the timer only guards against an announcement that never comes.
    const waitMs = atCapacity
      ? CAPACITY_POLL_MS
      : Math.min(leftMs, error.retryAfterMs ?? MODEL_PROBE_POLL_MS, quotaSpent ? MODEL_QUOTA_POLL_MS : Infinity);
    const wait = new Subscription();
    this.modelWait = wait;
    const endWait = (): void => {
      wait.unsubscribe();
      this.modelWait = undefined;
    };
    // What ends the wait outside the slot; the queue timeout also bounds the slot's reacquisition.
    const wakeUps = new Subscription();
    wait.add(wakeUps);
    const resume = (): void => {
      wakeUps.unsubscribe();
      const reacquisition = slot.reacquire().subscribe(() => {
        endWait();
        // The same request, after a wait: its route (keys tried, models out) and retry counts go on.
        whileResuming(this.retriesOf(this.request), () => this.subscribeAttempts());
      });
      // A slot granted at once has already started the attempts.
      if (!reacquisition.closed) wait.add(reacquisition);
    };
    if (atCapacity) this.armRoomTimeout(error.modelsAtCapacity);
    // Room a window brings goes to the first in line, not to whoever looks first after it turns.
    if (quotaSpent) wakeUps.add(waits.quotaLine.wait(this.placeInLine(), modelChainOf(this.request), waitMs, leftMs).subscribe(resume));
    else wakeUps.add(scheduleAfter(pool.scheduler, waitMs, resume));
    if (atCapacity && !wakeUps.closed) {
      const place = this.placeInLine();
      wakeUps.add(pool.modelRoom(error.modelsAtCapacity, place.since, place.priority, place.arrival).subscribe(resume));
    }
    // A pool disposed meanwhile ends the wait: the acquisition fails the request now, not when the wait would end.
    if (!wakeUps.closed) wakeUps.add(pool.disposed$.subscribe(resume));
    return undefined;
  }
}
