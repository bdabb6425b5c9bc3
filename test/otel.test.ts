/**
 * `openrouter-rx/otel` against the fake OpenRouter: the OpenTelemetry SDK's in-memory exporters see a
 * span per attempt and the metrics of a run over a revoked key and a provider 429, never key text
 * (the exported JSON also goes to test-output/, where scripts/scan-secrets.mjs looks for keys).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { SpanKind, SpanStatusCode, metrics, trace, type Attributes } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { filter, firstValueFrom, from, lastValueFrom, startWith, toArray, type Subscription } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError, balance, createKeyPool, type ChatRequest, type KeyPool, type PoolEvent } from '../src/index.js';
import { instrumentPool } from '../src/otel/index.js';
import { startFakeOpenRouter, type FakeOpenRouter, type FakeServerOptions } from '../src/testing/index.js';
import { leakedKeyLabels, TEST_KEYS } from './helpers/test-keys.js';

const MODEL = 'test/model-a';
const KEYS = [
  { key: TEST_KEYS.revoked, label: 'revoked' },
  { key: TEST_KEYS.healthy1, label: 'healthy-1' },
  { key: TEST_KEYS.healthy2, label: 'healthy-2' },
];
const CAPTURE_FILE = new URL('../test-output/captured-otel.log', import.meta.url);

/** Teardown, last in first out: instrumentation, providers, pools, servers. */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Telemetry {
  spans: InMemorySpanExporter;
  metrics: InMemoryMetricExporter;
  tracerProvider: BasicTracerProvider;
  meterProvider: MeterProvider;
  /** Collects the metrics now; returns the newest collection (cumulative: everything so far). */
  collect(): Promise<ResourceMetrics>;
}

function startTelemetry(): Telemetry {
  const spans = new InMemorySpanExporter();
  const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  // An interval far past the test: collections happen when the test asks for them.
  const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  cleanups.push(() => Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]));
  return {
    spans,
    metrics,
    tracerProvider,
    meterProvider,
    collect: async () => {
      await reader.forceFlush();
      return metrics.getMetrics().at(-1)!;
    },
  };
}

async function startFake(options: Partial<FakeServerOptions> = {}): Promise<FakeOpenRouter> {
  const fake = await startFakeOpenRouter({
    keys: [{ ...KEYS[0]!, revoked: true }, KEYS[1]!, KEYS[2]!],
    defaultModel: { latencyMs: 30, chunkCount: 3 },
    ...options,
  });
  cleanups.push(() => fake.close());
  return fake;
}

function startPool(fake: FakeOpenRouter, keys = KEYS): KeyPool {
  const pool = createKeyPool({
    baseURL: fake.baseURL,
    keys,
    // Round robin sends the revoked key its share of the opening burst; without reading key info
    // first, the pool learns of the key from its 401s.
    strategy: 'roundRobin',
    discoverAccounts: false,
    rateLimitCooldownMs: 100,
  });
  cleanups.push(() => pool.dispose());
  return pool;
}

function recordEvents(pool: KeyPool): PoolEvent[] {
  const events: PoolEvent[] = [];
  const subscription = pool.events$.subscribe((event) => events.push(event));
  cleanups.push(() => subscription.unsubscribe());
  return events;
}

function instrument(pool: KeyPool, telemetry: Telemetry): Subscription {
  const instrumentation = instrumentPool(pool, { tracerProvider: telemetry.tracerProvider, meterProvider: telemetry.meterProvider });
  cleanups.push(() => instrumentation.unsubscribe());
  return instrumentation;
}

function requestsOf(count: number): ChatRequest[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `otel-${index}`,
    model: MODEL,
    ...(index % 4 === 0 ? { stream: true } : {}),
    messages: [{ role: 'user' as const, content: `question ${index}` }],
  }));
}

function metric(collection: ResourceMetrics, name: string): MetricData {
  const found = collection.scopeMetrics.flatMap((scope) => scope.metrics).find((data) => data.descriptor.name === name);
  if (found === undefined) throw new Error(`no metric ${name}`);
  return found;
}

/** The value of each data point of a sum or gauge, with its attributes. */
function points(data: MetricData): Array<{ attributes: Attributes; value: number }> {
  if (data.dataPointType === DataPointType.HISTOGRAM || data.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
    throw new Error(`${data.descriptor.name} is a histogram`);
  }
  return data.dataPoints.map((point) => ({ attributes: point.attributes, value: point.value }));
}

/** The count of each data point of a histogram, with its attributes. */
function histogramCounts(data: MetricData): Array<{ attributes: Attributes; count: number; sum: number }> {
  if (data.dataPointType !== DataPointType.HISTOGRAM) throw new Error(`${data.descriptor.name} is no histogram`);
  return data.dataPoints.map((point) => ({ attributes: point.attributes, count: point.value.count, sum: point.value.sum ?? 0 }));
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

/** A span as an exporter sends it: every field, in plain data. */
function spanData(span: ReadableSpan) {
  return {
    name: span.name,
    kind: span.kind,
    context: span.spanContext(),
    parent: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes: span.attributes,
    links: span.links,
    events: span.events,
    resource: span.resource.attributes,
    scope: span.instrumentationScope,
  };
}

function metricsData(collection: ResourceMetrics) {
  return { resource: collection.resource.attributes, scopeMetrics: collection.scopeMetrics };
}

describe('instrumentPool against the fake OpenRouter', () => {
  it('exports a span per attempt and the metrics of a run over a revoked key and a provider 429, with no key text', async () => {
    const fake = await startFake({ models: { [MODEL]: { latencyMs: 30, chunkCount: 3, faults: [{ type: 'rate-limit', times: 1 }] } } });
    const pool = startPool(fake);
    const telemetry = startTelemetry();
    instrument(pool, telemetry);
    const events = recordEvents(pool);

    // Midway, attempts are in flight: the in-flight counts are collected then.
    const run = lastValueFrom(from(requestsOf(20)).pipe(balance(pool, { concurrency: 6 }), toArray()));
    await firstValueFrom(pool.health$.pipe(filter((health) => health.keys.some((key) => key.inFlight > 0))));
    const midway = await telemetry.collect();
    const results = await run;
    const collection = await telemetry.collect();

    expect(results.filter((event) => event.type === 'completion')).toHaveLength(20);
    const attempts = events.filter((event) => event.type === 'attempt');
    const failures = events.filter((event) => event.type === 'failure');
    expect(failures.some((event) => event.kind === 'authentication')).toBe(true);
    expect(failures.some((event) => event.kind === 'rate_limit')).toBe(true);

    // ── Spans: one per attempt, each ended with its outcome ──
    const spans = telemetry.spans.getFinishedSpans();
    expect(spans).toHaveLength(attempts.length);
    const spanOf = (requestId: string, attempt: number) => {
      const found = spans.filter(
        (span) => span.attributes['openrouter_rx.request.id'] === requestId && span.attributes['openrouter_rx.attempt'] === attempt,
      );
      expect(found, `${requestId} attempt ${attempt}`).toHaveLength(1);
      return found[0]!;
    };
    for (const attempt of attempts) {
      const span = spanOf(attempt.requestId, attempt.attempt);
      expect(span.name).toBe(`chat ${MODEL}`);
      expect(span.kind).toBe(SpanKind.CLIENT);
      expect(span.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openrouter',
        'gen_ai.request.model': MODEL,
        'gen_ai.request.stream': attempt.stream,
        'openrouter_rx.key.label': attempt.keyLabel,
        'openrouter_rx.key.fingerprint': expect.any(String),
        'openrouter_rx.key.account': expect.any(String),
      });
    }
    for (const event of events) {
      if (event.type === 'success') {
        const span = spanOf(event.requestId!, event.attempt!);
        expect(span.status.code).toBe(SpanStatusCode.UNSET);
        expect(span.attributes).toMatchObject({
          'openrouter_rx.outcome': 'success',
          'gen_ai.usage.input_tokens': event.usage!.promptTokens,
          'gen_ai.usage.output_tokens': event.usage!.completionTokens,
          'openrouter_rx.cost': event.usage!.cost,
        });
        expect(event.usage!.completionTokens).toBeGreaterThan(0);
      } else if (event.type === 'failure') {
        const span = spanOf(event.requestId!, event.attempt!);
        expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: event.message });
        expect(span.attributes).toMatchObject({ 'openrouter_rx.outcome': event.kind, 'error.type': event.kind });
        if (event.kind === 'authentication') {
          expect(span.attributes).toMatchObject({ 'openrouter_rx.key.label': 'revoked', 'http.response.status_code': 401 });
        }
      }
    }
    expect(spans.filter((span) => span.attributes['openrouter_rx.outcome'] === 'abandoned')).toEqual([]);
    // A retry's attempt links the attempt it retries and says why.
    const retried = spans.find((span) => span.attributes['openrouter_rx.attempt'] === 2)!;
    expect(retried.attributes['openrouter_rx.retry.reason']).toMatch(/^(authentication|rate_limit)$/);
    const first = spanOf(retried.attributes['openrouter_rx.request.id'] as string, 1);
    expect(retried.links.map((link) => link.context.spanId)).toEqual([first.spanContext().spanId]);
    expect(retried.spanContext().traceId).not.toBe(first.spanContext().traceId);
    expect(spans.every((span) => span.instrumentationScope.name === 'openrouter-rx')).toBe(true);

    // ── Metrics ──
    const successes = events.filter((event) => event.type === 'success');
    const duration = histogramCounts(metric(collection, 'gen_ai.client.operation.duration'));
    expect(sum(duration.map((point) => point.count))).toBe(successes.length + failures.length);
    expect(duration.find((point) => point.attributes['error.type'] === 'authentication')?.count).toBe(
      failures.filter((event) => event.kind === 'authentication').length,
    );
    expect(duration.find((point) => point.attributes['error.type'] === undefined)).toMatchObject({
      attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openrouter', 'gen_ai.request.model': MODEL },
      count: successes.length,
    });

    const tokens = histogramCounts(metric(collection, 'gen_ai.client.token.usage'));
    const tokensOf = (type: string) => tokens.find((point) => point.attributes['gen_ai.token.type'] === type)!;
    expect(tokensOf('input').count).toBe(successes.length);
    expect(tokensOf('input').sum).toBe(sum(successes.map((event) => event.usage!.promptTokens)));
    expect(tokensOf('output').sum).toBe(sum(successes.map((event) => event.usage!.completionTokens)));
    expect(histogramCounts(metric(collection, 'gen_ai.client.operation.time_to_first_chunk')).length).toBeGreaterThan(0);

    const attemptCounts = points(metric(collection, 'openrouter_rx.attempts'));
    const attemptsWith = (outcome: string) =>
      sum(attemptCounts.filter((point) => point.attributes['openrouter_rx.outcome'] === outcome).map((point) => point.value));
    expect(attemptsWith('success')).toBe(20);
    expect(attemptsWith('authentication')).toBe(failures.filter((event) => event.kind === 'authentication').length);
    expect(
      attemptCounts.every(
        (point) =>
          point.attributes['openrouter_rx.outcome'] !== 'authentication' || point.attributes['openrouter_rx.key.label'] === 'revoked',
      ),
    ).toBe(true);
    expect(sum(points(metric(collection, 'openrouter_rx.rate_limits')).map((point) => point.value))).toBe(1);
    expect(sum(points(metric(collection, 'openrouter_rx.cost')).map((point) => point.value))).toBeCloseTo(
      sum(successes.map((event) => event.usage!.cost ?? 0)),
    );

    const inFlightMidway = points(metric(midway, 'openrouter_rx.key.in_flight'));
    expect(inFlightMidway.map((point) => point.attributes['openrouter_rx.key.label']).sort()).toEqual([
      'healthy-1',
      'healthy-2',
      'revoked',
    ]);
    expect(sum(inFlightMidway.map((point) => point.value))).toBeGreaterThan(0);
    expect(sum(points(metric(collection, 'openrouter_rx.key.in_flight')).map((point) => point.value))).toBe(0);
    const keyStates = points(metric(collection, 'openrouter_rx.key.state'));
    const stateOf = (label: string) =>
      keyStates
        .filter((point) => point.attributes['openrouter_rx.key.label'] === label && point.value === 1)
        .map((point) => point.attributes['openrouter_rx.key.state']);
    expect(stateOf('revoked')).toEqual(['disabled']);
    expect(stateOf('healthy-1')).toEqual(['closed']);
    expect(points(metric(collection, 'openrouter_rx.model.in_flight'))).toEqual([
      { attributes: { 'gen_ai.request.model': MODEL }, value: 0 },
    ]);
    expect(points(metric(collection, 'openrouter_rx.queued'))).toEqual([{ attributes: {}, value: 0 }]);

    // ── No key text in either, here or in the file the secret scan reads ──
    const exported = JSON.stringify({ spans: spans.map(spanData), metrics: telemetry.metrics.getMetrics().map(metricsData) }, null, 1);
    expect(exported).toContain('healthy-1');
    expect(leakedKeyLabels(exported)).toEqual([]);
    mkdirSync(new URL('.', CAPTURE_FILE), { recursive: true });
    writeFileSync(CAPTURE_FILE, exported);
  });

  it('ends the span of an attempt its subscriber left as abandoned, and every open span when it stops', async () => {
    const fake = await startFake({ keys: [KEYS[1]!], defaultModel: { latencyMs: 10_000 } });
    const pool = startPool(fake, [KEYS[1]!]);
    const telemetry = startTelemetry();
    const instrumentation = instrument(pool, telemetry);
    const events = recordEvents(pool);
    // From what was recorded so far, then from each event: the lease may come during `subscribe`.
    const attemptStarted = (count: number) =>
      firstValueFrom(
        pool.events$.pipe(
          startWith(undefined),
          filter(() => events.filter((event) => event.type === 'attempt').length >= count),
        ),
      );

    // The subscriber leaves mid-attempt: no outcome comes, but health shows the key's lease let go.
    const left = pool.complete({ id: 'left', model: MODEL, messages: [{ role: 'user', content: 'hi' }] }).subscribe({ error: () => {} });
    cleanups.push(() => left.unsubscribe());
    await attemptStarted(1);
    left.unsubscribe();
    const abandoned = telemetry.spans.getFinishedSpans();
    expect(abandoned).toHaveLength(1);
    expect(abandoned[0]!.status.code).toBe(SpanStatusCode.UNSET);
    expect(abandoned[0]!.attributes).toMatchObject({ 'openrouter_rx.request.id': 'left', 'openrouter_rx.outcome': 'abandoned' });

    // Instrumentation stops mid-attempt: the span ends, and the gauges go.
    const waiting = pool
      .complete({ id: 'waiting', model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .subscribe({ error: () => {} });
    cleanups.push(() => waiting.unsubscribe());
    await attemptStarted(2);
    expect(points(metric(await telemetry.collect(), 'openrouter_rx.key.in_flight'))).toEqual([
      { attributes: expect.objectContaining({ 'openrouter_rx.key.label': 'healthy-1' }), value: 1 },
    ]);
    instrumentation.unsubscribe();
    const stopped = telemetry.spans.getFinishedSpans().find((span) => span.attributes['openrouter_rx.request.id'] === 'waiting');
    expect(stopped?.attributes['openrouter_rx.outcome']).toBe('abandoned');
    // The gauges read health no more: the attempt lets go of its key, and the SDK keeps the last reading.
    waiting.unsubscribe();
    expect(pool.snapshot().keys[0]!.inFlight).toBe(0);
    expect(points(metric(await telemetry.collect(), 'openrouter_rx.key.in_flight')).map((point) => point.value)).toEqual([1]);
    expect(telemetry.spans.getFinishedSpans()).toHaveLength(2);
  });

  it('uses the global providers when given none', async () => {
    const fake = await startFake({ keys: [KEYS[1]!] });
    const pool = startPool(fake, [KEYS[1]!]);
    const telemetry = startTelemetry();
    trace.setGlobalTracerProvider(telemetry.tracerProvider);
    metrics.setGlobalMeterProvider(telemetry.meterProvider);
    cleanups.push(() => {
      trace.disable();
      metrics.disable();
    });
    const instrumentation = instrumentPool(pool);
    cleanups.push(() => instrumentation.unsubscribe());

    await firstValueFrom(pool.complete({ id: 'global', model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    expect(telemetry.spans.getFinishedSpans().map((span) => [span.name, span.attributes['openrouter_rx.outcome']])).toEqual([
      [`chat ${MODEL}`, 'success'],
    ]);
    const attempts = points(metric(await telemetry.collect(), 'openrouter_rx.attempts'));
    expect(attempts.map((point) => point.value)).toEqual([1]);
  });

  it('refuses what is not a pool or not a provider, naming the field', async () => {
    const fake = await startFake();
    const pool = startPool(fake);
    expect(() => instrumentPool(pool, { tracerProvider: {} as never })).toThrow(ValidationError);
    expect(() => instrumentPool(pool, { tracerProvider: {} as never })).toThrow(/tracerProvider: expected a TracerProvider/);
    expect(() => instrumentPool(pool, { meterProvider: null as never })).toThrow(/meterProvider/);
    expect(() => instrumentPool(pool, { tracer: {} } as never)).toThrow(/tracer: unrecognized key/);
    expect(() => instrumentPool({ events$: pool.events$ } as never)).toThrow(/health\$/);
  });
});
