/** A `fetch` as a caller hands it to a transport. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * A caller's `fetch` held to its signal: an abort rejects the call at once (with the signal's
 * reason, as `fetch` does), and a response that comes after the abort has its body cancelled.
 * A `fetch` that ignores its signal would otherwise keep whatever waits on it (the headers
 * timeout, ours or the SDK's, and the attempt itself) until it settles, and a late response's
 * connection open. The global `fetch` honours its signal and is never wrapped.
 */
export function abortableFetch(fetchImpl: FetchFunction): FetchFunction {
  return (input, init) => {
    // In a promise: a `fetch` that throws rejects, as the global one does.
    const pending = new Promise<Response>((resolve) => resolve(fetchImpl(input, init)));
    const signal = init?.signal;
    if (signal === undefined || signal === null) return pending;
    return new Promise<Response>((resolve, reject) => {
      const onAbort = (): void => {
        // What `fetch` rejects with on an abort: the signal's reason (an `AbortError` unless the aborter gave one).
        reject(signal.reason as Error);
        pending.then(discardBody, ignore);
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      pending.finally(() => signal.removeEventListener('abort', onAbort)).then(resolve, reject);
    });
  };
}

function discardBody(response: Response): void {
  response.body?.cancel().catch(ignore);
}

function ignore(): void {}
