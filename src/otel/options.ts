import type { MeterProvider, TracerProvider } from '@opentelemetry/api';
import type { Observable } from 'rxjs';
import * as z from 'zod';
import type { PoolHealth } from '../health/records.js';
import type { PoolEvent } from '../pool/events.js';

/** What `instrumentPool` reads of a pool: its events and its health (a `KeyPool` has both). */
export interface InstrumentedPool {
  /** Attempts and their outcomes, retries and fallbacks: the spans and the counters. */
  readonly events$: Observable<PoolEvent>;
  /** Key and model health: the gauges, and each key's fingerprint and account. */
  readonly health$: Observable<PoolHealth>;
}

/** Where `instrumentPool` sends what it records; by default the global providers of `@opentelemetry/api`. */
export interface InstrumentPoolOptions {
  /** Provides the tracer for the attempt spans; default `trace.getTracerProvider()`. */
  tracerProvider?: TracerProvider;
  /** Provides the meter for the metrics; default `metrics.getMeterProvider()`. */
  meterProvider?: MeterProvider;
}

const hasMethod = (name: string) => (value: unknown) =>
  typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)[name] === 'function';

const isObservable = (value: unknown) => hasMethod('subscribe')(value);

export const optionsSchema = z.strictObject({
  tracerProvider: z.custom<TracerProvider>(hasMethod('getTracer'), { message: 'expected a TracerProvider (with getTracer)' }).optional(),
  meterProvider: z.custom<MeterProvider>(hasMethod('getMeter'), { message: 'expected a MeterProvider (with getMeter)' }).optional(),
});

export const poolSchema = z.object({
  events$: z.custom<Observable<PoolEvent>>(isObservable, { message: 'expected an Observable (a KeyPool has one)' }),
  health$: z.custom<Observable<PoolHealth>>(isObservable, { message: 'expected an Observable (a KeyPool has one)' }),
});
