import { diag, metrics, trace } from '@opentelemetry/api';
import { Subscription } from 'rxjs';
import packageJson from '../../package.json' with { type: 'json' };
import { ValidationError, formatZodError } from '../core/validation.js';
import type { PoolEvent } from '../pool/events.js';
import { AttemptMetrics } from './attempt-metrics.js';
import { AttemptSpans } from './attempt-spans.js';
import { HealthGauges } from './health-gauges.js';
import { LatestHealth } from './latest-health.js';
import { optionsSchema, poolSchema, type InstrumentPoolOptions, type InstrumentedPool } from './options.js';

/** The instrumentation scope of the tracer and the meter. */
const SCOPE_NAME = 'openrouter-rx';

/**
 * Records `pool`'s traffic with OpenTelemetry: a span per attempt and the GenAI client metrics from
 * `events$`, gauges of key and model health from `health$` (see README, "OpenTelemetry"). Attributes
 * carry key labels, fingerprints and account ids, never key text. Throws a `ValidationError` for
 * options that are no providers.
 *
 * Returns the subscription: unsubscribing stops recording, ends the spans of attempts still open
 * (status unset, `openrouter_rx.outcome` `abandoned`) and removes the gauges' callback.
 */
export function instrumentPool(pool: InstrumentedPool, options: InstrumentPoolOptions = {}): Subscription {
  const checkedPool = poolSchema.safeParse(pool);
  if (!checkedPool.success) throw new ValidationError(formatZodError(checkedPool.error, 'instrumentPool pool'), checkedPool.error.issues);
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new ValidationError(formatZodError(parsed.error, 'instrumentPool options'), parsed.error.issues);
  const { tracerProvider = trace.getTracerProvider(), meterProvider = metrics.getMeterProvider() } = parsed.data;

  const tracer = tracerProvider.getTracer(SCOPE_NAME, packageJson.version);
  const meter = meterProvider.getMeter(SCOPE_NAME, packageJson.version);
  const health = new LatestHealth();
  const spans = new AttemptSpans(tracer, health);
  const attemptMetrics = new AttemptMetrics(meter, health);
  const gauges = new HealthGauges(meter, health);

  const record = (event: PoolEvent): void => {
    switch (event.type) {
      case 'attempt':
        spans.start(event);
        return;
      case 'success':
        spans.succeed(event);
        attemptMetrics.recordSuccess(event);
        return;
      case 'failure':
        attemptMetrics.recordFailure(event, spans.fail(event));
        return;
      case 'retry':
        spans.retry(event);
        return;
      case 'fallback':
        spans.fallback(event);
        return;
      default:
        return;
    }
  };

  const instrumentation = new Subscription();
  // Health first: its current snapshot comes at once, so the first attempt's key already has its account.
  instrumentation.add(
    pool.health$.subscribe((snapshot) =>
      guarded(() => {
        health.update(snapshot);
        spans.reconcile(snapshot);
      }),
    ),
  );
  instrumentation.add(
    pool.events$.subscribe({
      next: (event) => guarded(() => record(event)),
      // A disposed pool sends no more outcomes.
      complete: () => guarded(() => spans.abandonAll()),
    }),
  );
  instrumentation.add(() => {
    spans.abandonAll();
    gauges.close();
  });
  return instrumentation;
}

/**
 * Runs `work`, reporting a throw to OpenTelemetry's diagnostic logger: telemetry must never take the
 * pool down, and a throw in an `events$` subscriber would surface as an uncaught exception.
 */
function guarded(work: () => void): void {
  try {
    work();
  } catch (error) {
    diag.error('openrouter-rx: recording an event failed', error);
  }
}
