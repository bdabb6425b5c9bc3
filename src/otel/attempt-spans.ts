import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type Attributes, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { ErrorKind } from '../core/errors.js';
import type { PoolHealth } from '../health/records.js';
import type { AttemptRetry, AttemptStart, PoolEvent } from '../pool/events.js';
import { ATTR, OPERATION_CHAT, PROVIDER_OPENROUTER, keyAttributes, operationAttributes } from './attributes.js';
import type { LatestHealth } from './latest-health.js';

type SuccessEvent = Extract<PoolEvent, { type: 'success' }>;
type FailureEvent = Extract<PoolEvent, { type: 'failure' }>;
type FallbackEvent = Extract<PoolEvent, { type: 'fallback' }>;

/** An attempt whose span is open: started at its `attempt` event, waiting for its outcome. */
interface OpenAttempt {
  readonly span: Span;
  readonly match: string;
  readonly keyLabel: string;
  /** Scheduler time of the lease: with the outcome's, the attempt's duration on the pool's own clock. */
  readonly at: number;
}

/** What the next attempt of a request carries over from the one before: a link to it, and why it was retried. */
interface RequestTrail {
  previous: SpanContext;
  retryReason?: ErrorKind;
  retryDelayMs?: number;
  fallbackFrom?: string;
}

/**
 * Backstops on what is held between events: an attempt that never reports an outcome and whose key
 * leaves health is abandoned once this many are open, and only this many requests' last attempts
 * are remembered for linking the next one (requests have no terminal event to forget them by).
 */
const MAX_OPEN_ATTEMPTS = 10_000;
const MAX_TRAILS = 10_000;

/** Outcomes are matched to their attempt by request id, attempt number, key and model. */
function matchOf(requestId: string, attempt: number, keyLabel: string, model: string): string {
  return JSON.stringify([requestId, attempt, keyLabel, model]);
}

/**
 * A span per attempt, kind CLIENT, named `chat {model}`: started at the `attempt` event, ended at its
 * `success` or `failure`. Requests without an `id` share the id `''`; their attempts are told apart
 * by key and model as well, and matched first in, first out, which is exact whenever two of them are
 * not in flight on one key and model at once (and then only the pairing of equal spans can swap).
 *
 * Times: spans are stamped by the SDK when the event arrives, not from the events' `at`. Events are
 * sent synchronously as things happen, so the SDK's clock is right for a real run; `at` is the
 * pool's scheduler time, which under a virtual-time scheduler is no wall-clock time at all.
 *
 * Parents: spans start at the root context. An attempt starts when a key frees up, in whatever
 * callback freed it (often another request's), so the context active then says nothing about the
 * request; a request's attempts are linked instead, each to the one before it.
 *
 * An attempt that ends without an outcome (its subscriber left, or a `circuitBreaker` chose not to
 * record its failure) is ended when its request's `retry` names it, or else when health shows its key
 * with fewer attempts in flight than spans open (then the oldest are `abandoned`). Retries and
 * fallbacks are written on the attempt that follows them: the failed attempt's span has ended by the
 * time its `retry` event comes.
 */
export class AttemptSpans {
  /** In start order, oldest first. */
  private readonly open = new Set<OpenAttempt>();
  private readonly byMatch = new Map<string, OpenAttempt[]>();
  /** By request id, least recently started first. */
  private readonly trails = new Map<string, RequestTrail>();

  constructor(
    private readonly tracer: Tracer,
    private readonly health: LatestHealth,
  ) {}

  start(event: AttemptStart): void {
    const trail = event.requestId === '' ? undefined : this.trails.get(event.requestId);
    const attributes: Attributes = {
      [ATTR.system]: PROVIDER_OPENROUTER,
      ...operationAttributes(event.model),
      [ATTR.requestStream]: event.stream,
      ...keyAttributes(event.keyLabel, this.health.key(event.keyLabel)),
      ...(event.requestId === '' ? {} : { [ATTR.requestId]: event.requestId }),
      [ATTR.attempt]: event.attempt,
      ...(trail?.retryReason === undefined ? {} : { [ATTR.retryReason]: trail.retryReason }),
      ...(trail?.retryDelayMs === undefined ? {} : { [ATTR.retryDelayMs]: trail.retryDelayMs }),
      ...(trail?.fallbackFrom === undefined ? {} : { [ATTR.fallbackFrom]: trail.fallbackFrom }),
    };
    const span = this.tracer.startSpan(
      `${OPERATION_CHAT} ${event.model}`,
      { kind: SpanKind.CLIENT, attributes, ...(trail === undefined ? {} : { links: [{ context: trail.previous }] }) },
      ROOT_CONTEXT,
    );
    const attempt: OpenAttempt = {
      span,
      match: matchOf(event.requestId, event.attempt, event.keyLabel, event.model),
      keyLabel: event.keyLabel,
      at: event.at,
    };
    this.open.add(attempt);
    const sameMatch = this.byMatch.get(attempt.match);
    if (sameMatch === undefined) this.byMatch.set(attempt.match, [attempt]);
    else sameMatch.push(attempt);
    if (this.open.size > MAX_OPEN_ATTEMPTS) this.abandon(this.open.values().next().value!);
    if (event.requestId !== '') this.remember(event.requestId, { previous: span.spanContext() });
  }

  succeed(event: SuccessEvent): void {
    const attempt = this.take(event.requestId, event.attempt, event.keyLabel, event.model);
    if (attempt === undefined) return;
    const usage = event.usage;
    attempt.span.setAttributes({
      [ATTR.outcome]: 'success',
      ...(usage === undefined
        ? {}
        : {
            [ATTR.inputTokens]: usage.promptTokens,
            [ATTR.outputTokens]: usage.completionTokens,
            ...(usage.cachedTokens === undefined ? {} : { [ATTR.cacheReadInputTokens]: usage.cachedTokens }),
            ...(usage.reasoningTokens === undefined ? {} : { [ATTR.reasoningOutputTokens]: usage.reasoningTokens }),
            ...(usage.cost === undefined ? {} : { [ATTR.cost]: usage.cost }),
          }),
      ...(event.timeToFirstTokenMs === undefined ? {} : { [ATTR.timeToFirstChunk]: event.timeToFirstTokenMs / 1000 }),
    });
    attempt.span.end();
  }

  /** Ends the failed attempt's span; returns the scheduler time of its lease, if its attempt was seen. */
  fail(event: FailureEvent): number | undefined {
    const attempt = this.take(event.requestId, event.attempt, event.keyLabel, event.model);
    if (attempt === undefined) return undefined;
    attempt.span.setAttribute(ATTR.errorScope, event.scope);
    this.endFailed(attempt, event.kind, event.message, event.status);
    return attempt.at;
  }

  /** A retry: its attempt failed (ended here if no `failure` ended it), and the next one is a retry. */
  retry(event: AttemptRetry): void {
    if (event.keyLabel !== undefined && event.model !== undefined) {
      const unreported = this.take(event.requestId, event.attempt, event.keyLabel, event.model);
      if (unreported !== undefined) this.endFailed(unreported, event.reason, event.message, event.status);
    }
    const trail = this.trails.get(event.requestId);
    if (trail === undefined) return;
    trail.retryReason = event.reason;
    trail.retryDelayMs = event.delayMs;
  }

  /** Sent just before the attempt on the model the request falls back to. */
  fallback(event: FallbackEvent): void {
    const trail = this.trails.get(event.requestId);
    if (trail !== undefined) trail.fallbackFrom = event.from;
  }

  /**
   * Abandons, oldest first, the spans of a key beyond the attempts health counts in flight on it:
   * those attempts let go of their lease without an outcome. Health counts an attempt in flight
   * before its `attempt` event and until after its outcome's, so it never undercounts an open one.
   */
  reconcile(health: PoolHealth): void {
    const openByKey = new Map<string, number>();
    for (const attempt of this.open) openByKey.set(attempt.keyLabel, (openByKey.get(attempt.keyLabel) ?? 0) + 1);
    const excessByKey = new Map<string, number>();
    for (const key of health.keys) {
      const excess = (openByKey.get(key.label) ?? 0) - key.inFlight;
      if (excess > 0) excessByKey.set(key.label, excess);
    }
    if (excessByKey.size === 0) return;
    for (const attempt of [...this.open]) {
      const excess = excessByKey.get(attempt.keyLabel);
      if (excess === undefined || excess === 0) continue;
      excessByKey.set(attempt.keyLabel, excess - 1);
      this.abandon(attempt);
    }
  }

  /** Ends every open span as `abandoned`: instrumentation stops. */
  abandonAll(): void {
    for (const attempt of [...this.open]) this.abandon(attempt);
    this.trails.clear();
  }

  private take(requestId: string | undefined, attemptNumber: number | undefined, keyLabel: string, model: string): OpenAttempt | undefined {
    if (attemptNumber === undefined) return undefined;
    const match = matchOf(requestId ?? '', attemptNumber, keyLabel, model);
    const candidates = this.byMatch.get(match);
    const attempt = candidates?.shift();
    if (attempt === undefined) return undefined;
    if (candidates!.length === 0) this.byMatch.delete(match);
    this.open.delete(attempt);
    return attempt;
  }

  private endFailed(attempt: OpenAttempt, kind: ErrorKind, message: string, status: number | undefined): void {
    attempt.span.setAttributes({
      [ATTR.outcome]: kind,
      [ATTR.errorType]: kind,
      ...(status === undefined ? {} : { [ATTR.httpStatus]: status }),
    });
    // The library's error messages never hold key text (it redacts any echo of a key).
    attempt.span.setStatus({ code: SpanStatusCode.ERROR, message });
    attempt.span.end();
  }

  /** Ends an open span with no outcome: status unset, `openrouter_rx.outcome` `abandoned`. */
  private abandon(attempt: OpenAttempt): void {
    const candidates = this.byMatch.get(attempt.match);
    const index = candidates?.indexOf(attempt) ?? -1;
    if (index >= 0) candidates!.splice(index, 1);
    if (candidates?.length === 0) this.byMatch.delete(attempt.match);
    this.open.delete(attempt);
    attempt.span.setAttribute(ATTR.outcome, 'abandoned');
    attempt.span.end();
  }

  private remember(requestId: string, trail: RequestTrail): void {
    // Deleted first, so that the map's order stays least recently started first.
    this.trails.delete(requestId);
    this.trails.set(requestId, trail);
    if (this.trails.size > MAX_TRAILS) this.trails.delete(this.trails.keys().next().value!);
  }
}
