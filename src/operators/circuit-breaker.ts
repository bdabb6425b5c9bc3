import { Observable, type MonoTypeOperatorFunction } from 'rxjs';
import { toOpenRouterError, type OpenRouterError } from '../core/errors.js';
import type { PoolCore } from '../pool/types.js';
import type { Usage } from '../core/types.js';
import { carriesContent, type AttemptEvent, type AttemptStart } from './attempt-event.js';

export interface CircuitBreakerConfig {
  /**
   * Whether a failure counts against health at all. Default: every failure does, as its scope
   * says (request-scoped errors never touch key health, whatever this returns).
   */
  shouldRecord?: (error: OpenRouterError) => boolean;
}

interface AttemptInProgress {
  start: AttemptStart;
  firstContentAt: number | undefined;
  usage: Usage | undefined;
}

/**
 * Records each attempt's outcome into the pool's key, account and model health: successes,
 * failures, latency and time to first token. The breaker policy itself (thresholds, cooldowns,
 * probes) is the pool's, so every request sees the same state. Place it after `withKeyRotation`
 * and before the retry operators, so a retry already sees the key parked or open.
 */
export function circuitBreaker(pool: PoolCore, config: CircuitBreakerConfig = {}): MonoTypeOperatorFunction<AttemptEvent> {
  const shouldRecord = config.shouldRecord ?? (() => true);
  return (source) =>
    new Observable<AttemptEvent>((subscriber) => {
      let current: AttemptInProgress | undefined;
      const now = () => pool.scheduler.now();
      const succeed = (usage: Usage | undefined) => {
        if (current === undefined) return;
        const { start, firstContentAt } = current;
        pool.record({
          type: 'success',
          keyLabel: start.keyLabel,
          model: start.model,
          latencyMs: now() - start.at,
          ...(firstContentAt === undefined ? {} : { timeToFirstTokenMs: firstContentAt - start.at }),
          ...(usage === undefined ? {} : { usage }),
        });
        current = undefined;
      };
      return source.subscribe({
        next: (event) => {
          switch (event.type) {
            case 'attempt':
              current = { start: event, firstContentAt: undefined, usage: undefined };
              break;
            case 'chunk':
              if (current !== undefined && current.firstContentAt === undefined && carriesContent(event)) current.firstContentAt = now();
              break;
            case 'end':
              succeed(event.usage);
              break;
            case 'completion':
              succeed(event.completion.usage);
              break;
            default:
              break;
          }
          subscriber.next(event);
        },
        error: (thrown: unknown) => {
          const error = toOpenRouterError(thrown);
          if (current !== undefined && error.keyLabel === current.start.keyLabel && shouldRecord(error)) {
            pool.record({ type: 'failure', keyLabel: current.start.keyLabel, model: current.start.model, error, ...(error.usage === undefined ? {} : { usage: error.usage }) });
          }
          current = undefined;
          subscriber.error(error);
        },
        complete: () => subscriber.complete(),
      });
    });
}
