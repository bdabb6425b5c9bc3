/**
 * A transport that holds every request in flight for good, for the scale row and the pick's A/B
 * (`ab-pick.ts`): both time picks only once every request has reached it, so that no SDK work of
 * the requests still on their way runs between the rounds of picks, or collects its garbage in them.
 */
import { sleep } from './measure.js';

/** A `fetch` that never answers; it rejects only when its signal aborts. */
export function neverAnsweringFetch() {
  let pending = 0;
  const fetchImpl = ((_input: unknown, init?: RequestInit) =>
    new Promise<Response>((_resolve, reject) => {
      pending++;
      const signal = init?.signal;
      const abort = () => {
        pending--;
        reject(new DOMException('This operation was aborted', 'AbortError'));
      };
      if (signal?.aborted) abort();
      else signal?.addEventListener('abort', abort, { once: true });
    })) as typeof fetch;
  return { fetch: fetchImpl, pending: () => pending };
}

/** Whether `condition` came true within `timeoutMs`, looking every 10 ms. */
export async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) return false;
    await sleep(10);
  }
  return true;
}
