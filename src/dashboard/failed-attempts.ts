import type { Observable, Subscription } from 'rxjs';
import { ERROR_POLICY } from '../core/error-policy.js';
import type { PoolEvent } from '../pool/events.js';

/**
 * Failed attempts, pool-wide, per key and per model, counted from `events$`. Health holds no such
 * total (its `failures` are the breaker's sliding window, and a 429 is no health failure at all),
 * yet a page that shows "0 failed" beside a 429 has to say how many 429s there were. They are
 * counted apart from the other failures, since a 429 only parks its key until the limit resets.
 *
 * A failure counts where health puts it: on the key when it touches the key (its scope is the
 * key, its account or the connection), on the model when the model failed (an upstream 503, a
 * provider's 429), and on neither when the request was at fault (a 400); on the pool always.
 */

/** Failed attempts since the dashboard started. */
export interface FailedAttemptCounts {
  /** Attempts answered 429: the key (or its account, or the model) was parked, not failed. */
  rateLimited: number;
  /** Attempts that failed for any other reason (a timeout, a 5xx, a 401, a bad request). */
  failed: number;
}

/** What the dashboard's feed adds to each health snapshot. */
export interface FailedAttempts {
  pool: FailedAttemptCounts;
  keys: Record<string, FailedAttemptCounts>;
  models: Record<string, FailedAttemptCounts>;
}

export interface FailedAttemptCounter {
  /** The counts so far; undefined when the source has no `events$` to count from. */
  read(): FailedAttempts | undefined;
  /** Stops counting. */
  close(): void;
}

function add(counts: FailedAttemptCounts, rateLimited: boolean): FailedAttemptCounts {
  if (rateLimited) counts.rateLimited++;
  else counts.failed++;
  return counts;
}

function addTo(counts: Map<string, FailedAttemptCounts>, id: string, rateLimited: boolean): void {
  counts.set(id, add(counts.get(id) ?? { rateLimited: 0, failed: 0 }, rateLimited));
}

/** Counts `source`'s failed attempts from now on (a `KeyPool` is a source). */
export function countFailedAttempts(source: { readonly events$?: Observable<PoolEvent> }): FailedAttemptCounter {
  const pool: FailedAttemptCounts = { rateLimited: 0, failed: 0 };
  const keys = new Map<string, FailedAttemptCounts>();
  const models = new Map<string, FailedAttemptCounts>();
  const subscription: Subscription | undefined = source.events$?.subscribe((event: PoolEvent) => {
    // An abort, or a pool that had no key to offer, is no attempt's outcome.
    if (event.type !== 'failure' || ERROR_POLICY[event.kind].health === 'none') return;
    const rateLimited = event.kind === 'rate_limit';
    add(pool, rateLimited);
    if (event.scope === 'key' || event.scope === 'account' || event.scope === 'transport') addTo(keys, event.keyLabel, rateLimited);
    else if (event.scope === 'model') addTo(models, event.model, rateLimited);
  });
  return {
    read: () => (subscription === undefined ? undefined : { pool, keys: Object.fromEntries(keys), models: Object.fromEntries(models) }),
    close: () => subscription?.unsubscribe(),
  };
}
