/**
 * What a TypeScript user hand-builds without openrouter-rx: `cockatiel` 3 for retry, circuit
 * breaking and timeouts, `p-queue` 9 for the concurrency cap, the `openai` SDK with its retries
 * off. Per key a `circuitBreaker(handleWhen(...), { halfOpenAfter, breaker: ConsecutiveBreaker(5) })`;
 * `retry(...)` with a `DelegateBackoff` that waits the server's `retry-after` (when it is short)
 * or a jittered exponential delay; `timeout(ms, Aggressive)`; `wrap(retry, breaker, timeout)`
 * with the next key on each retry. The key chooser tracks when each breaker opened, since
 * cockatiel reports a breaker as Open until the next call even after `halfOpenAfter`.
 */
import { APIConnectionError, APIUserAbortError } from 'openai';
import {
  BrokenCircuitError,
  ConsecutiveBreaker,
  DelegateBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
  type CircuitBreakerPolicy,
  type IRetryBackoffContext,
} from 'cockatiel';
import PQueue from 'p-queue';
import { sdkCall, sdkClient } from './bare-sdk.js';
import { Cancellation, failure, statusOf, type Outcome, type Peer, type PeerContext, type PeerSession } from './types.js';

const HALF_OPEN_AFTER_MS = 10_000;
const RETRIES = 3;
const ATTEMPT_TIMEOUT_MS = 60_000;
/** A server hint longer than this is not waited out: the next key is tried after a normal backoff. */
const MAX_HINT_MS = 10_000;

const retryableStatus = (status: number) =>
  status === 401 || status === 403 || status === 408 || status === 409 || status === 429 || status >= 500;

/**
 * Failures that say something about the key or the route: what the breaker counts. A 429 counts
 * only when its reset is far off (the key is out for a while); a short one is the normal pace of a
 * quota, waited out by the retry, and counting it would open every key's breaker at saturation.
 */
function isKeyFailure(error: Error): boolean {
  if (error instanceof APIUserAbortError) return false;
  if (error instanceof TaskCancelledError || error instanceof APIConnectionError) return true;
  const status = statusOf(error);
  if (status === 429) return (retryAfterMs(error) ?? 0) > MAX_HINT_MS;
  return status !== undefined && retryableStatus(status);
}

function isRetryable(error: Error): boolean {
  if (error instanceof APIUserAbortError) return false;
  if (error instanceof BrokenCircuitError || error instanceof TaskCancelledError || error instanceof APIConnectionError) return true;
  const status = statusOf(error);
  return status !== undefined && retryableStatus(status);
}

/** `retry-after-ms`, else `retry-after` in seconds, from an SDK error's response headers. */
function retryAfterMs(error: unknown): number | undefined {
  const headers = (error as { headers?: unknown } | null)?.headers;
  if (!(headers instanceof Headers)) return undefined;
  const ms = Number(headers.get('retry-after-ms'));
  if (headers.has('retry-after-ms') && Number.isFinite(ms) && ms >= 0) return ms;
  const seconds = Number(headers.get('retry-after'));
  if (headers.has('retry-after') && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  return undefined;
}

export const cockatielPeer: Peer = {
  id: 'cockatiel',
  name: 'cockatiel + p-queue',
  description: `cockatiel 3 (per-key ConsecutiveBreaker(5) over 401/403/5xx/network/timeouts and 429s with a reset beyond ${MAX_HINT_MS / 1000} s, halfOpenAfter ${HALF_OPEN_AFTER_MS / 1000} s; retry ×${RETRIES} on the next key, waiting retry-after up to ${MAX_HINT_MS / 1000} s else jittered exponential from 128 ms; Aggressive timeout ${ATTEMPT_TIMEOUT_MS / 1000} s) + p-queue 9 concurrency; SDK maxRetries 0`,
  async start(context: PeerContext): Promise<PeerSession> {
    const clients = context.keys.map((key) => sdkClient(context, key.key, { maxRetries: 0 }));
    const openedAt: Array<number | undefined> = clients.map(() => undefined);
    const breakers: CircuitBreakerPolicy[] = clients.map((_, index) => {
      const breaker = circuitBreaker(handleWhen(isKeyFailure), { halfOpenAfter: HALF_OPEN_AFTER_MS, breaker: new ConsecutiveBreaker(5) });
      breaker.onBreak(() => {
        openedAt[index] = Date.now();
      });
      breaker.onReset(() => {
        openedAt[index] = undefined;
      });
      return breaker;
    });
    const backoff = new DelegateBackoff<IRetryBackoffContext<unknown>>((retryContext) => {
      const hint = 'error' in retryContext.result ? retryAfterMs(retryContext.result.error) : undefined;
      if (hint !== undefined && hint <= MAX_HINT_MS) return hint;
      return Math.random() * Math.min(30_000, 128 * 2 ** (retryContext.attempt - 1));
    });
    const retryPolicy = retry(handleWhen(isRetryable), { maxAttempts: RETRIES, backoff });
    const completionTimeout = timeout(ATTEMPT_TIMEOUT_MS, TimeoutStrategy.Aggressive);
    const streamTimeout = timeout(ATTEMPT_TIMEOUT_MS, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });
    const perKey = breakers.map((breaker) => ({
      completion: wrap(breaker, completionTimeout),
      stream: wrap(breaker, streamTimeout),
    }));
    const queue = new PQueue({ concurrency: context.concurrency });
    const cancellation = new Cancellation();
    let cursor = 0;

    const nextKey = (): number => {
      const now = Date.now();
      for (let step = 0; step < clients.length; step++) {
        const index = (cursor + step) % clients.length;
        const opened = openedAt[index];
        if (opened === undefined || now - opened >= HALF_OPEN_AFTER_MS) {
          cursor = (index + 1) % clients.length;
          return index;
        }
      }
      const index = cursor;
      cursor = (cursor + 1) % clients.length;
      return index;
    };

    return {
      run(request) {
        return queue.add(async (): Promise<Outcome> => {
          try {
            let label = '';
            const chunks = await cancellation.with((callerSignal) =>
              retryPolicy.execute(({ signal: retrySignal }) => {
                const index = nextKey();
                label = context.keys[index]!.label;
                const policy = request.stream ? perKey[index]!.stream : perKey[index]!.completion;
                return policy.execute(({ signal }) => sdkCall(clients[index]!, context.model, request, signal), retrySignal);
              }, callerSignal),
            );
            return { ok: true, chunks, keyLabel: label };
          } catch (error) {
            return failure(error);
          }
        });
      },
      pick() {
        nextKey();
      },
      async close() {
        queue.clear();
        cancellation.abortAll();
      },
    };
  },
};
