/**
 * Prometheus's text exposition format, read by an independent parser (parse-prometheus-text-format,
 * a port of the Prometheus Python client's parser): what a scraper would make of `/metrics`. It
 * throws on a line that is not a sample, a comment or a `# HELP`/`# TYPE` line.
 */
import { createRequire } from 'node:module';

export interface PrometheusSample {
  labels?: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

export interface PrometheusFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: PrometheusSample[];
}

// The package ships CommonJS without types.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => PrometheusFamily[];

export function parsePrometheusText(text: string): PrometheusFamily[] {
  return parse(text);
}
