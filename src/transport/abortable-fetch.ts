/** A `fetch` as a caller hands it to a transport. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * What a caller of `abortableFetch` makes of each response before it is handed on, given the
 * call's signal: the response itself, or a copy held to the signal further.
 */
export type HeldResponse = (response: Response, signal: AbortSignal) => Response;

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
export function abortableFetch(fetchImpl: FetchFunction, held?: HeldResponse): FetchFunction {
  return (input, init) => {
    const signal = init?.signal;
    // What `fetch` rejects with on an abort: the signal's reason (an `AbortError` unless the aborter gave one).
    if (signal?.aborted === true) return Promise.reject(signal.reason as Error);
    const pending = fetchImpl(input, init);
    if (signal === undefined || signal === null) return pending;
    return new Promise<Response>((resolve, reject) => {
      pending.then(held === undefined ? resolve : (response) => holdThenResolve(held, response, signal, resolve, reject), reject);
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

/** Resolves with what `held` makes of `response`, or rejects with what it threw: no rejection goes unhandled. */
function holdThenResolve(
  held: HeldResponse,
  response: Response,
  signal: AbortSignal,
  resolve: (response: Response) => void,
  reject: (error: unknown) => void,
): void {
  try {
    resolve(held(response, signal));
  } catch (error: unknown) {
    reject(error);
  }
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
  const cancel = cancelOnAbort(reader, signal);
  try {
    return await readText(reader, new TextDecoder());
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** Cancels `reader` when `signal` aborts (at once if it has); returns the listener, for a caller that removes it. */
export function cancelOnAbort(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal): () => void {
  const cancel = (): void => {
    reader.cancel().catch(ignore);
  };
  if (signal.aborted) cancel();
  else signal.addEventListener('abort', cancel, { once: true });
  return cancel;
}

/** Everything `reader` holds until its end (or its cancel), decoded once; `decoder` must not be streaming. */
export async function readText(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  decoder: TextDecoder,
  /** Chunks of the body read already, before the reader's next (the array is the caller's to give up). */
  read?: Uint8Array[],
): Promise<string> {
  const chunks: Uint8Array[] = read ?? [];
  let length = 0;
  for (const chunk of chunks) length += chunk.byteLength;
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
