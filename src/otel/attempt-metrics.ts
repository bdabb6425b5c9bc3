import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import type { PoolEvent } from '../pool/events.js';
import { ATTR, keyAttributes, operationAttributes } from './attributes.js';
import type { LatestHealth } from './latest-health.js';

type SuccessEvent = Extract<PoolEvent, { type: 'success' }>;
type FailureEvent = Extract<PoolEvent, { type: 'failure' }>;

/** The GenAI conventions' advised buckets: seconds for durations, powers of 4 for token counts. */
const DURATION_BUCKETS_S = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

/**
 * The metrics counted from each attempt's outcome (`success` and `failure` on `events$`): the GenAI
 * client metrics (duration, token usage, time to a stream's first chunk), and attempts by key, model
 * and outcome, 429s by scope, and cost. Token usage and cost are those of successful attempts; a
 * failed attempt's billed tokens show in health's totals only.
 */
export class AttemptMetrics {
  private readonly duration: Histogram;
  private readonly tokens: Histogram;
  private readonly timeToFirstChunk: Histogram;
  private readonly attempts: Counter;
  private readonly rateLimits: Counter;
  private readonly cost: Counter;

  constructor(
    meter: Meter,
    private readonly health: LatestHealth,
  ) {
    this.duration = meter.createHistogram('gen_ai.client.operation.duration', {
      description: 'Duration of a chat attempt, from the lease of its key to the end of its answer or its failure.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
    });
    this.tokens = meter.createHistogram('gen_ai.client.token.usage', {
      description: 'Tokens a successful attempt used, by gen_ai.token.type (input or output).',
      unit: '{token}',
      advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
    });
    this.timeToFirstChunk = meter.createHistogram('gen_ai.client.operation.time_to_first_chunk', {
      description: "Time from the lease of a streamed attempt's key to its first content.",
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
    });
    this.attempts = meter.createCounter('openrouter_rx.attempts', {
      description: 'Attempts by key, model and outcome (success, or the error kind of a failure).',
      unit: '{attempt}',
    });
    this.rateLimits = meter.createCounter('openrouter_rx.rate_limits', {
      description: 'Attempts answered 429, by key, model and the scope the 429 parked (key, account or model).',
      unit: '{attempt}',
    });
    this.cost = meter.createCounter('openrouter_rx.cost', {
      description: 'Credits (USD) OpenRouter billed for successful attempts, by key and model.',
      unit: '{USD}',
    });
  }

  recordSuccess(event: SuccessEvent): void {
    const operation = operationAttributes(event.model);
    const key = keyAttributes(event.keyLabel, this.health.key(event.keyLabel));
    this.duration.record(event.latencyMs / 1000, operation);
    if (event.timeToFirstTokenMs !== undefined) this.timeToFirstChunk.record(event.timeToFirstTokenMs / 1000, operation);
    this.attempts.add(1, Object.assign({}, key, { [ATTR.requestModel]: event.model, [ATTR.outcome]: 'success' }));
    const usage = event.usage;
    if (usage === undefined) return;
    this.tokens.record(usage.promptTokens, Object.assign({}, operation, { [ATTR.tokenType]: 'input' }));
    this.tokens.record(usage.completionTokens, Object.assign({}, operation, { [ATTR.tokenType]: 'output' }));
    if (usage.cost !== undefined && usage.cost > 0) this.cost.add(usage.cost, Object.assign({}, key, { [ATTR.requestModel]: event.model }));
  }

  /** `leasedAt`: the scheduler time of the failed attempt's lease, when its `attempt` event was seen. */
  recordFailure(event: FailureEvent, leasedAt: number | undefined): void {
    const key = keyAttributes(event.keyLabel, this.health.key(event.keyLabel));
    if (leasedAt !== undefined) {
      this.duration.record(
        Math.max(0, event.at - leasedAt) / 1000,
        Object.assign({}, operationAttributes(event.model), { [ATTR.errorType]: event.kind }),
      );
    }
    this.attempts.add(1, Object.assign({}, key, { [ATTR.requestModel]: event.model, [ATTR.outcome]: event.kind }));
    if (event.kind === 'rate_limit')
      this.rateLimits.add(1, Object.assign({}, key, { [ATTR.requestModel]: event.model, [ATTR.rateLimitScope]: event.scope }));
  }
}
