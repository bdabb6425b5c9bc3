import type { Observable, Subscription } from 'rxjs';
import type { KeyHealth, PoolHealth } from '../health/records.js';
import type { PoolEvent } from '../pool/events.js';
import type { HealthSource } from './events.js';

/** What `/metrics` reads of a pool: its health, and its events for the counters (a `KeyPool` has both). */
export interface MetricsSource extends HealthSource {
  readonly events$?: Observable<PoolEvent>;
}

/** Attempt durations, in seconds: LLM answers take from a fraction of a second to minutes. */
const DURATION_BUCKETS_S = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
const KEY_STATES = ['closed', 'open', 'half-open', 'disabled', 'exhausted'] as const;
const MODEL_STATES = ['closed', 'open', 'half-open'] as const;

type Labels = Record<string, string>;

/** A label value in the text format: backslash, double quote and line feed escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** One metric family: its HELP and TYPE lines, then a sample per label set. */
class Family {
  private readonly samples: string[] = [];
  constructor(
    readonly name: string,
    private readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly help: string,
  ) {}

  add(labels: Labels, value: number, suffix = ''): void {
    this.samples.push(
      `${this.name}${suffix}${labelText(labels)} ${Number.isFinite(value) || Number.isNaN(value) ? String(value) : value > 0 ? '+Inf' : '-Inf'}`,
    );
  }

  text(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, ...this.samples].join('\n');
  }
}

interface Histogram {
  buckets: number[];
  count: number;
  sum: number;
}

/**
 * A pool's metrics in Prometheus's text format: gauges and running totals read off its health at
 * each scrape (state, in flight, limits learned or configured, tokens and cost), and counters and
 * a latency histogram counted from `events$` since this was created (attempts by outcome, 429s).
 * Labels carry key labels and fingerprints, never key text.
 */
export class PoolMetrics {
  private readonly attempts = new Map<string, { labels: Labels; count: number }>();
  private readonly durations = new Map<string, { labels: Labels; histogram: Histogram }>();
  private readonly subscription: Subscription | undefined;

  constructor(private readonly source: MetricsSource) {
    this.subscription = source.events$?.subscribe((event) => this.count(event));
  }

  /** Stops counting. */
  close(): void {
    this.subscription?.unsubscribe();
  }

  private count(event: PoolEvent): void {
    if (event.type !== 'success' && event.type !== 'failure') return;
    const labels: Labels =
      event.type === 'success'
        ? { key: event.keyLabel, model: event.model, outcome: 'success', kind: '' }
        : { key: event.keyLabel, model: event.model, outcome: 'failure', kind: event.kind };
    const id = labelText(labels);
    const counted = this.attempts.get(id) ?? { labels, count: 0 };
    counted.count++;
    this.attempts.set(id, counted);
    if (event.type !== 'success') return;
    const durationLabels = { model: event.model };
    const durationId = labelText(durationLabels);
    const timed = this.durations.get(durationId) ?? {
      labels: durationLabels,
      histogram: { buckets: DURATION_BUCKETS_S.map(() => 0), count: 0, sum: 0 },
    };
    const seconds = event.latencyMs / 1000;
    DURATION_BUCKETS_S.forEach((bound, index) => {
      if (seconds <= bound) timed.histogram.buckets[index]!++;
    });
    timed.histogram.count++;
    timed.histogram.sum += seconds;
    this.durations.set(durationId, timed);
  }

  /** The text Prometheus scrapes. */
  render(): string {
    const health = this.source.snapshot();
    return [...this.healthFamilies(health), ...this.eventFamilies()].map((family) => family.text()).join('\n\n') + '\n';
  }

  private healthFamilies(health: PoolHealth): Family[] {
    const state = new Family('openrouter_rx_key_state', 'gauge', 'Whether the key is in this state (1) or not (0).');
    const inFlight = new Family('openrouter_rx_key_in_flight', 'gauge', 'Attempts in flight on the key.');
    const concurrency = new Family('openrouter_rx_key_concurrency_limit', 'gauge', "The adaptive concurrency limit of the key's account.");
    const quotaLimit = new Family('openrouter_rx_key_quota_limit', 'gauge', 'A quota of the key or its account: its limit per window.');
    const quotaRemaining = new Family('openrouter_rx_key_quota_remaining', 'gauge', 'What the quota has left in its window.');
    const requests = new Family('openrouter_rx_key_requests_total', 'counter', 'Successful attempts on the key.');
    const tokens = new Family('openrouter_rx_key_tokens_total', 'counter', 'Tokens billed on the key.');
    const cost = new Family('openrouter_rx_key_cost_usd_total', 'counter', 'Credits (USD) billed on the key.');
    const latency = new Family('openrouter_rx_key_latency_seconds', 'gauge', "Moving average of the key's attempt latency.");
    for (const key of health.keys) {
      const labels = keyLabels(key);
      for (const name of KEY_STATES) state.add(Object.assign({}, labels, { state: name }), key.state === name ? 1 : 0);
      inFlight.add(labels, key.inFlight);
      if (key.concurrencyLimit !== null) concurrency.add(labels, key.concurrencyLimit);
      for (const quota of key.quota) {
        const quotaLabels = Object.assign({}, labels, {
          scope: quota.scope,
          unit: quota.unit,
          window_ms: String(quota.windowMs),
          source: quota.source,
          bucket: quota.bucket ?? '',
          model: quota.model ?? '',
        });
        quotaLimit.add(quotaLabels, quota.limit);
        quotaRemaining.add(quotaLabels, quota.remaining);
      }
      requests.add(labels, key.usage.requests);
      tokens.add(Object.assign({}, labels, { type: 'prompt' }), key.usage.promptTokens);
      tokens.add(Object.assign({}, labels, { type: 'completion' }), key.usage.completionTokens);
      cost.add(labels, key.usage.cost);
      if (key.latencyMs !== null) latency.add(labels, key.latencyMs / 1000);
    }
    const modelState = new Family('openrouter_rx_model_state', 'gauge', 'Whether the model is in this state (1) or not (0).');
    const modelInFlight = new Family('openrouter_rx_model_in_flight', 'gauge', 'Attempts in flight on the model.');
    const modelConcurrency = new Family('openrouter_rx_model_concurrency_limit', 'gauge', "The model's adaptive concurrency limit.");
    for (const model of health.models) {
      const labels = { model: model.model };
      for (const name of MODEL_STATES) modelState.add(Object.assign({}, labels, { state: name }), model.state === name ? 1 : 0);
      modelInFlight.add(labels, model.inFlight);
      if (model.concurrencyLimit !== null) modelConcurrency.add(labels, model.concurrencyLimit);
    }
    const queued = new Family('openrouter_rx_queued', 'gauge', 'Requests waiting for a key.');
    queued.add({}, health.queued);
    return [
      state,
      inFlight,
      concurrency,
      quotaLimit,
      quotaRemaining,
      requests,
      tokens,
      cost,
      latency,
      modelState,
      modelInFlight,
      modelConcurrency,
      queued,
    ];
  }

  private eventFamilies(): Family[] {
    const attempts = new Family(
      'openrouter_rx_attempts_total',
      'counter',
      'Attempts by key, model and outcome (kind: the error kind of a failure; rate_limit for a 429).',
    );
    for (const { labels, count } of this.attempts.values()) attempts.add(labels, count);
    const duration = new Family('openrouter_rx_attempt_duration_seconds', 'histogram', 'Latency of successful attempts, by model.');
    for (const { labels, histogram } of this.durations.values()) {
      DURATION_BUCKETS_S.forEach((bound, index) =>
        duration.add(Object.assign({}, labels, { le: String(bound) }), histogram.buckets[index]!, '_bucket'),
      );
      duration.add(Object.assign({}, labels, { le: '+Inf' }), histogram.count, '_bucket');
      duration.add(labels, histogram.sum, '_sum');
      duration.add(labels, histogram.count, '_count');
    }
    return [attempts, duration];
  }
}

function keyLabels(key: KeyHealth): Labels {
  return { key: key.label, fingerprint: key.fingerprint, account: key.account };
}
