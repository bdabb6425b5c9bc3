/**
 * `openrouter-rx/otel`: a pool's traffic as OpenTelemetry spans and metrics, following the GenAI
 * semantic conventions where they fit. Needs `@opentelemetry/api` (an optional peer dependency) and
 * an SDK (or any providers) of the user's choosing.
 */
export { instrumentPool } from './instrument-pool.js';
export type { InstrumentPoolOptions, InstrumentedPool } from './options.js';
