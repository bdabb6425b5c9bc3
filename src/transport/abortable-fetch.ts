/** A `fetch` as a caller hands it to a transport. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** How `abortableFetch` holds a response to its signal beyond the call itself. */
export interface AbortableFetchOptions {
  /**
   * Whether an abort also cancels the body of an error response (4xx, 5xx) that someone else is
   * reading, as the global `fetch` does: the SDK reads such a body itself, which locks it, so a
   * body that never ends could not be cancelled otherwise. Such a response comes as a copy whose
   * body passes the original's through. The transports' own reads cancel their readers themselves.
   */
  readonly cancelsErrorBodies?: boolean;
}

/**
 * A caller's `fetch` held to its signal, as the global `fetch` is: an abort rejects the call at
 * once (with the signal's reason), and cancels the response's body, whether the response came
 * before the abort or after it; a call on a signal already aborted is not made. A `fetch` that
 * ignores its signal would otherwise keep whatever waits on it (the headers timeout, ours or the
 * SDK's, and the attempt itself) until it settles, and its connection open. The global `fetch` is
 * never wrapped.
 *
 * Lean on purpose, since it is held by every request in flight: the abort listener stays on the
 * signal (one per request, gone with it) instead of being removed when the call settles.
 */
export function abortableFetch(fetchImpl: FetchFunction, options: AbortableFetchOptions = {}): FetchFunction {
  const cancelsErrorBodies = options.cancelsErrorBodies === true;
  return (input, init) => {
    const signal = init?.signal;
    // What `fetch` rejects with on an abort: the signal's reason (an `AbortError` unless the aborter gave one).
    if (signal?.aborted === true) return Promise.reject(signal.reason as Error);
    const pending = fetchImpl(input, init);
    if (signal === undefined || signal === null) return pending;
    return new Promise<Response>((resolve, reject) => {
      pending.then(cancelsErrorBodies ? (response) => resolve(withErrorBodyCancelledBy(signal, response)) : resolve, reject);
      signal.addEventListener(
        'abort',
        () => {
          reject(signal.reason as Error);
          pending.then(discardBody, ignore);
        },
        { once: true },
      );
    });
  };
}

/**
 * `response`, or for an error response (4xx, 5xx) a copy whose body `signal`'s abort cancels while
 * another reads it. Its status text, which the classifier never reads, is left out: text outside
 * Latin-1 (a proxy's reason phrase, decoded) would make the response fail to build.
 */
function withErrorBodyCancelledBy(signal: AbortSignal, response: Response): Response {
  const original = response.body;
  if (response.status < 400 || response.status > 599 || original === null || typeof original.getReader !== 'function') return response;
  const reader = original.getReader();
  const cancel = (): void => {
    reader.cancel().catch(ignore);
  };
  if (signal.aborted) cancel();
  else signal.addEventListener('abort', cancel, { once: true });
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

/**
 * A response's whole body as text, through a reader that `signal`'s abort cancels: `text()` would
 * hold the body locked, so a body that does not end with the abort (a caller's `fetch` that
 * ignores its signal) would keep its connection until it ended by itself. After an abort it
 * resolves with what was read.
 */
export async function bodyText(response: Response, signal: AbortSignal): Promise<string> {
  const body = response.body;
  if (body === null || typeof body.getReader !== 'function') return response.text();
  const reader = body.getReader();
  const cancel = (): void => {
    reader.cancel().catch(ignore);
  };
  if (signal.aborted) cancel();
  else signal.addEventListener('abort', cancel, { once: true });
  try {
    return await readText(reader, new TextDecoder());
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** Everything `reader` holds until its end (or its cancel), decoded once; `decoder` must not be streaming. */
export async function readText(reader: ReadableStreamDefaultReader<Uint8Array>, decoder: TextDecoder): Promise<string> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.byteLength;
  }
  return decoder.decode(chunks.length === 1 ? chunks[0] : concatBytes(chunks, length));
}

function concatBytes(chunks: readonly Uint8Array[], length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Cancels a response's body if it has a WHATWG one; whatever a caller's `fetch` resolved with, nothing throws. */
export function discardBody(response: unknown): void {
  try {
    const body = (response as { body?: { cancel?: unknown } } | undefined)?.body;
    if (typeof body?.cancel === 'function') (body as ReadableStream).cancel().catch(ignore);
  } catch {
    // Not a response we can cancel: there is nothing else to free.
  }
}

function ignore(): void {}
