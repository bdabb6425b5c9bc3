import type { BatchObservableCallback, Meter, Observable } from '@opentelemetry/api';
import type { KeyState } from '../health/records.js';
import { ATTR, keyAttributes } from './attributes.js';
import type { LatestHealth } from './latest-health.js';

const KEY_STATES: readonly KeyState[] = ['closed', 'open', 'half-open', 'disabled', 'exhausted'];
const MODEL_STATES: readonly KeyState[] = ['closed', 'open', 'half-open'];

/**
 * Observable instruments read off the newest health snapshot at each collection: state (a series
 * per state, 1 for the current one and 0 for the rest, so a state left drops to 0 instead of
 * lingering), attempts in flight, requests queued, and adaptive concurrency limits. In-flight and
 * queued counts are up-down counters (OpenTelemetry's instrument for counts that rise and fall, like
 * active requests); states and limits are gauges.
 */
export class HealthGauges {
  private readonly instruments: Observable[];
  private readonly observe: BatchObservableCallback;

  constructor(
    private readonly meter: Meter,
    health: LatestHealth,
  ) {
    const keyState = meter.createObservableGauge('openrouter_rx.key.state', {
      description: 'Whether the key is in this state (1) or not (0): closed, open, half-open, disabled or exhausted.',
    });
    const keyInFlight = meter.createObservableUpDownCounter('openrouter_rx.key.in_flight', {
      description: 'Attempts in flight on the key.',
      unit: '{attempt}',
    });
    const modelState = meter.createObservableGauge('openrouter_rx.model.state', {
      description: 'Whether the model is in this state (1) or not (0): closed, open or half-open.',
    });
    const modelInFlight = meter.createObservableUpDownCounter('openrouter_rx.model.in_flight', {
      description: 'Attempts in flight on the model.',
      unit: '{attempt}',
    });
    const concurrencyLimit = meter.createObservableGauge('openrouter_rx.concurrency.limit', {
      description: "An adaptive concurrency limit: a model's (its providers' capacity) or an account's (its in-flight budget).",
      unit: '{attempt}',
    });
    const queued = meter.createObservableUpDownCounter('openrouter_rx.queued', {
      description: 'Requests waiting for a key.',
      unit: '{request}',
    });
    this.instruments = [keyState, keyInFlight, modelState, modelInFlight, concurrencyLimit, queued];

    this.observe = (result) => {
      const snapshot = health.snapshot;
      if (snapshot === undefined) return;
      const accountLimits = new Map<string, number>();
      for (const key of snapshot.keys) {
        const attributes = keyAttributes(key.label, key);
        for (const state of KEY_STATES)
          result.observe(keyState, key.state === state ? 1 : 0, Object.assign({}, attributes, { [ATTR.keyState]: state }));
        result.observe(keyInFlight, key.inFlight, attributes);
        // A key's limit is its account's: reported once per account.
        if (key.concurrencyLimit !== null) accountLimits.set(key.account, key.concurrencyLimit);
      }
      for (const model of snapshot.models) {
        const attributes = { [ATTR.requestModel]: model.model };
        for (const state of MODEL_STATES) {
          result.observe(modelState, model.state === state ? 1 : 0, Object.assign({}, attributes, { [ATTR.modelState]: state }));
        }
        result.observe(modelInFlight, model.inFlight, attributes);
        if (model.concurrencyLimit !== null) {
          result.observe(concurrencyLimit, model.concurrencyLimit, Object.assign({}, attributes, { [ATTR.concurrencyScope]: 'model' }));
        }
      }
      for (const [account, limit] of accountLimits) {
        result.observe(concurrencyLimit, limit, { [ATTR.keyAccount]: account, [ATTR.concurrencyScope]: 'account' });
      }
      result.observe(queued, snapshot.queued);
    };
    meter.addBatchObservableCallback(this.observe, this.instruments);
  }

  /** Stops reporting: the meter calls back no more. */
  close(): void {
    this.meter.removeBatchObservableCallback(this.observe, this.instruments);
  }
}
