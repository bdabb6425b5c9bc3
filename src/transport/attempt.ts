import type { SchedulerLike, Subscriber, Subscription } from 'rxjs';
import { steadyScheduler } from '../core/steady-clock.js';
import { AbortedError, StreamError, type OpenRouterError } from '../core/errors.js';
import type { ChatRequest, Completion, KeyCredential, TransportEvent } from '../core/types.js';
import {
  advanceStream,
  inBandErrorBeforeContent,
  parseCompletionBody,
  parseStreamChunk,
  type StreamChunkContent,
  type StreamChunkResult,
  type StreamProgress,
  type WireContext,
} from '../wire/chunk.js';
import { scheduleAfter } from '../core/timers.js';
import { sseData } from '../wire/sse.js';
import { isRecord, parseJsonBody } from '../wire/values.js';
import { discardBody, readText } from './abortable-fetch.js';
import { truncatedStreamError, type AttemptIdentity, type BodyRead } from './attempt-errors.js';
import { KeyText, StreamRedactor, ToolCallRedactor, redactError, redactValue } from '../core/redact.js';
import { DEFAULT_DONE_GRACE_MS } from './transport-options.js';

/**
 * How an attempt reaches the server: the `openai` SDK (`createOpenRouterTransport`) or plain
 * `fetch` (`createFetchTransport`). Everything after the response headers (reading the body, SSE,
 * chunks, redaction, the end of a stream) is the attempt's own, the same for both.
 */
export interface Exchange {
  /** POSTs a chat completion body for `identity`; resolves once a 2xx response's headers arrived, else rejects. */
  send(body: Record<string, unknown>, signal: AbortSignal, identity: AttemptIdentity): Promise<Response>;
  /** What `send` rejected with, as a typed, key-free error; `request` is the one sent (its body JSON may not carry). */
  errorOf(error: unknown, identity: AttemptIdentity, request: ChatRequest): OpenRouterError;
  /** What reading the body of a response whose status came threw (a stream's events, or a whole answer's body), as a typed, key-free error. */
  bodyReadErrorOf(error: unknown, identity: AttemptIdentity, read: BodyRead): OpenRouterError;
}

export interface AttemptSettings {
  readonly doneGraceMs: number;
  readonly scheduler: SchedulerLike;
  /** What each key's text looks like, worked out once per key, not per attempt. */
  readonly keyTexts: WeakMap<KeyCredential, KeyText>;
  /** Decodes whole bodies only (never `stream: true`), so one serves every attempt. */
  readonly bodyDecoder: TextDecoder;
}

/** The settings of one transport's attempts. */
export function attemptSettingsOf(options: { doneGraceMs?: number; scheduler?: SchedulerLike }): AttemptSettings {
  return {
    doneGraceMs: options.doneGraceMs ?? DEFAULT_DONE_GRACE_MS,
    scheduler: options.scheduler ?? steadyScheduler(),
    keyTexts: new WeakMap(),
    bodyDecoder: new TextDecoder(),
  };
}

/**
 * One subscription's request, and its teardown. `settled` is set once the outcome is decided
 * (completed, failed or torn down); after that, nothing reaches the subscriber and failures are
 * not reported.
 */
export class Attempt {
  private readonly controller = new AbortController();
  /** What key text looks like, for every chunk of the attempt. */
  private readonly keyText: KeyText;
  /** The caller's signal and what listens to it, when the caller gave one. */
  private callerSignal: AbortSignal | undefined;
  private onCallerAbort: (() => void) | undefined;
  /** Streams only (a whole answer is redacted at once): built when the stream starts. */
  private contentRedactor: StreamRedactor | undefined;
  private reasoningRedactor: StreamRedactor | undefined;
  private toolCallRedactor: ToolCallRedactor | undefined;
  private settled = false;
  /** Whether a chunk with text, reasoning or tool calls went out: an in-band error before one is the error its payload names. */
  private contentSent = false;
  private progress: StreamProgress = {};
  /** Completes the stream if usage (or the end of the body) does not follow the finish in time. */
  private graceTimer: Subscription | undefined;
  /** Set when the stream completed on finish + usage: the socket may still deliver `[DONE]`. */
  private completedBeforeEnd = false;
  /** The whole response was read, or nothing was sent: nothing is left to abort (and an abort costs a DOMException). */
  private exchangeDone = false;
  /** Closes the socket if the server lingers after such an early completion. */
  private drainCutoff: Subscription | undefined;
  /**
   * The stream's body, read through a reader of our own: the teardown cancels it, so a body that
   * does not end with the abort (a caller's `fetch` that ignores the signal) ends all the same.
   */
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;

  constructor(
    private readonly subscriber: Subscriber<TransportEvent>,
    private readonly exchange: Exchange,
    private readonly identity: AttemptIdentity,
    private readonly settings: AttemptSettings,
  ) {
    let keyText = settings.keyTexts.get(identity.key);
    if (keyText === undefined) {
      keyText = new KeyText(identity.key);
      settings.keyTexts.set(identity.key, keyText);
    }
    this.keyText = keyText;
  }

  /** Sends the request; returns the teardown (the attempt itself). */
  start(request: ChatRequest, callerSignal: AbortSignal | undefined, onSent: (() => void) | undefined): this {
    if (callerSignal !== undefined) {
      if (callerSignal.aborted) {
        // Nothing was sent: the teardown has nothing to abort.
        this.exchangeDone = true;
        this.fail(this.abortedByCaller());
        return this;
      }
      const onCallerAbort = (): void => this.fail(this.abortedByCaller());
      callerSignal.addEventListener('abort', onCallerAbort, { once: true });
      this.callerSignal = callerSignal;
      this.onCallerAbort = onCallerAbort;
    }

    // The exchange goes from here to `fetch` without waiting on anything but microtasks, so the
    // send is when microtasks next run: not now, when the caller has more synchronous work to do
    // first (a batch of inputs taken in at once), which holds the fetch back as long.
    if (onSent !== undefined) queueMicrotask(onSent);
    const run = request.stream === true ? this.stream(request) : this.complete(request);
    // The one handler of the attempt's promise. A torn-down attempt still rejects (its aborted
    // request or body read); that is the expected end, not a failure, and is not even mapped.
    run.catch((error: unknown) => {
      if (!this.settled) this.fail(this.exchange.errorOf(error, this.identity, request));
    });

    return this;
  }

  /** The teardown: rxjs calls it when the subscriber ends. */
  unsubscribe(): void {
    if (this.onCallerAbort !== undefined) this.callerSignal?.removeEventListener('abort', this.onCallerAbort);
    this.graceTimer?.unsubscribe();
    this.settled = true;
    if (this.exchangeDone) return;
    if (this.completedBeforeEnd) {
      // The answer is complete; let a well-behaved server finish with `[DONE]` so the connection
      // closes cleanly, but never hold it open longer than the grace period.
      this.drainCutoff = scheduleAfter(this.settings.scheduler, this.settings.doneGraceMs, () => this.abortExchange());
    } else {
      this.abortExchange();
    }
  }

  /**
   * The body's chunks, through a reader of our own where the body is a web stream; else (a caller's
   * `fetch` that hands back a Node stream) the body's own async iterator, which its abort ends.
   */
  private chunksOf(body: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
    if (typeof body.getReader !== 'function') return body as unknown as AsyncIterable<Uint8Array>;
    this.reader = body.getReader();
    return readerChunks(this.reader);
  }

  /**
   * The whole body as text, through a reader of our own where the body is a web stream: the
   * teardown cancels it, where `text()` would hold the body locked until a body that does not end
   * with the abort (a caller's `fetch` that ignores the signal) ends by itself.
   */
  private async textOf(response: Response): Promise<string> {
    const body = response.body;
    if (body === null || typeof body.getReader !== 'function') return response.text();
    this.reader = body.getReader();
    return readText(this.reader, this.settings.bodyDecoder);
  }

  private abortExchange(): void {
    this.controller.abort();
    this.reader?.cancel().catch(ignore);
  }

  private async complete(request: ChatRequest): Promise<void> {
    const response = await this.exchange.send(bodyOf(request, false), this.controller.signal, this.identity);
    if (this.settled) {
      // Torn down while the headers came: nobody reads the body.
      discardBody(response);
      return;
    }
    // Read here, not in a helper both answers share: another async step per request costs a promise.
    let text: string;
    try {
      text = await this.textOf(response);
    } catch (error: unknown) {
      this.bodyCut(error);
      return;
    }
    const completion = this.answerIn(text, response.headers);
    if (completion === undefined) return;
    this.settled = true;
    this.subscriber.next({ type: 'completion', completion });
    this.subscriber.complete();
  }

  /**
   * The status came, so the key and the connection to OpenRouter worked: a body cut off after it
   * is the model's, as a cut stream is (not the transport's, whose failures fail the keys).
   */
  private bodyCut(error: unknown, read: BodyRead = 'body'): void {
    if (!this.settled) this.fail(this.exchange.bodyReadErrorOf(error, this.identity, read));
  }

  /** The answer in a whole JSON body read to its end; undefined once the attempt has failed (or was torn down). */
  private answerIn(text: string, headers: Headers | undefined): Completion | undefined {
    this.exchangeDone = true;
    if (this.settled) return undefined;
    // Parsed before scrubbing: a key is redacted in the decoded strings, escapes resolved.
    const parsed = parseJsonBody(text);
    const result = parseCompletionBody(
      this.keyText.mentionedIn(text) ? redactValue(parsed, this.identity.key) : parsed,
      this.wireContext(headers),
    );
    if (result.kind === 'error') {
      this.fail(result.error);
      return undefined;
    }
    return result.completion;
  }

  /**
   * A stream request answered with one JSON body, not events: an error OpenRouter (or a proxy)
   * sends before any event, with status 200 too (openrouter-wire.md §6), or a whole answer. Read
   * as a non-streamed answer is: the error is the one it names, not a truncated stream; an answer
   * is handed on as one chunk and the end.
   */
  private async streamAnsweredWhole(response: Response, read: Promise<string>): Promise<void> {
    let text: string;
    try {
      text = await read;
    } catch (error: unknown) {
      this.bodyCut(error);
      return;
    }
    const completion = this.answerIn(text, response.headers);
    if (completion === undefined) return;
    const { id, model, provider, content, reasoning, toolCalls, finishReason, usage } = completion;
    const named = provider === undefined ? {} : { provider };
    this.settled = true;
    this.subscriber.next({
      type: 'chunk',
      delta: content,
      ...(reasoning === undefined ? {} : { reasoning }),
      // Numbered as a stream's deltas are, so that a consumer joining deltas by index finds each call.
      ...(toolCalls === undefined ? {} : { toolCalls: toolCalls.map((call, index) => ({ index, ...call })) }),
      model,
      ...named,
      finishReason,
    });
    this.subscriber.next({ type: 'end', id, model, ...named, finishReason, ...(usage === undefined ? {} : { usage }) });
    this.subscriber.complete();
  }

  private async stream(request: ChatRequest): Promise<void> {
    // The exchange sends the request and maps HTTP errors; the events themselves are read here (see sseData).
    this.contentRedactor = new StreamRedactor(this.keyText);
    this.reasoningRedactor = new StreamRedactor(this.keyText);
    this.toolCallRedactor = new ToolCallRedactor(this.keyText);
    const response = await this.exchange.send(bodyOf(request, true), this.controller.signal, this.identity);
    if (this.settled || response.body === null) {
      if (!this.settled) this.fail(truncatedStreamError(this.identity));
      this.controller.abort();
      discardBody(response);
      return;
    }
    let chunks: AsyncIterable<Uint8Array>;
    if (typeof response.body.getReader !== 'function' || isEventStream(response.headers)) {
      // A caller's `fetch` that hands back a Node stream is taken at its label.
      if (isJsonBody(response.headers)) return this.streamAnsweredWhole(response, this.textOf(response));
      chunks = this.chunksOf(response.body);
    } else {
      // Not labelled an event stream: a JSON body (an error sent before any event), or events a
      // server labelled otherwise (some label them JSON, or not at all). The first byte tells.
      const reader = (this.reader = response.body.getReader());
      let sniffed: { read: Uint8Array[]; first: number };
      try {
        sniffed = await firstByteOf(reader);
      } catch (error: unknown) {
        // Cut before its first byte, as a stream cut later.
        this.bodyCut(error, 'stream');
        return;
      }
      const { read, first } = sniffed;
      if (first === LEFT_BRACE || first === LEFT_BRACKET) {
        return this.streamAnsweredWhole(response, readText(reader, this.settings.bodyDecoder, read));
      }
      chunks = readAfter(read, reader);
    }
    const context = this.wireContext(response.headers);
    try {
      for await (const data of sseData(chunks)) {
        // After the outcome is decided the loop keeps draining (breaking out would abort the
        // socket at once): the teardown bounds how long.
        if (this.settled) continue;
        let chunk: unknown;
        try {
          chunk = JSON.parse(data);
        } catch (error: unknown) {
          this.fail(this.exchange.bodyReadErrorOf(error, this.identity, 'stream'));
          continue;
        }
        this.onChunk(this.parseChunk(data, chunk, context));
      }
      this.exchangeDone = true;
      if (this.settled) return;
      if (this.progress.finishReason !== undefined) this.end();
      else this.fail(truncatedStreamError(this.identity));
    } catch (error: unknown) {
      if (this.settled) return;
      const failure = this.exchange.bodyReadErrorOf(error, this.identity, 'stream');
      // A socket that breaks after a normal finish_reason lost nothing but `[DONE]`; an in-band
      // error or a malformed event after it is still a failed attempt (§6).
      if (this.progress.finishReason !== undefined && failure instanceof StreamError && failure.truncated) this.end();
      else this.fail(failure);
    } finally {
      this.drainCutoff?.unsubscribe();
    }
  }

  /**
   * Copying every chunk to scrub it costs per token; only one that holds key text needs it. Its
   * answer text and tool-call arguments still go to the stream redactors unscrubbed: key text split
   * across chunks is only found there, and scrubbing this chunk's part first would release the
   * rest as plain text.
   */
  private parseChunk(data: string, chunk: unknown, context: WireContext): StreamChunkResult {
    if (!this.keyText.mentionedIn(data)) return parseStreamChunk(chunk, context);
    const scrubbed = parseStreamChunk(redactValue(chunk, this.identity.key), context);
    if (scrubbed.kind === 'error') return scrubbed;
    const raw = parseStreamChunk(chunk, context);
    if (raw.kind === 'error') return scrubbed;
    const unscrubbed: Partial<StreamChunkContent> = { delta: raw.delta };
    if (raw.reasoning !== undefined) unscrubbed.reasoning = raw.reasoning;
    if (scrubbed.toolCalls !== undefined) unscrubbed.toolCalls = withRawArguments(scrubbed.toolCalls, raw.toolCalls);
    return Object.assign({}, scrubbed, unscrubbed);
  }

  private onChunk(result: StreamChunkResult): void {
    if (result.kind === 'error') {
      this.fail(this.contentSent ? result.error : inBandErrorBeforeContent(result.error));
      return;
    }
    this.progress = advanceStream(this.progress, result);
    if (result.hasChoices) {
      const event = this.chunkEvent(result);
      this.contentSent ||= event.delta !== '' || (event.reasoning ?? '') !== '' || (event.toolCalls?.length ?? 0) > 0;
      this.subscriber.next(event);
    }
    // The subscriber may have unsubscribed from inside `next` (a `take`, a `timeout`).
    if (this.settled || this.progress.finishReason === undefined) return;
    if (this.progress.usage !== undefined) {
      this.completedBeforeEnd = true;
      this.end();
    } else {
      // Usage may follow the finish (§6); do not wait for it, or for `[DONE]`, forever.
      this.graceTimer ??= scheduleAfter(this.settings.scheduler, this.settings.doneGraceMs, () => this.end());
    }
  }

  private chunkEvent(content: StreamChunkContent): Extract<TransportEvent, { type: 'chunk' }> {
    const reasoning = content.reasoning === undefined ? undefined : this.reasoningRedactor!.push(content.reasoning);
    return {
      type: 'chunk',
      delta: this.contentRedactor!.push(content.delta),
      ...(reasoning === undefined ? {} : { reasoning }),
      ...(content.toolCalls === undefined ? {} : { toolCalls: this.toolCallRedactor!.push(content.toolCalls) }),
      model: content.model ?? this.progress.model ?? this.identity.model ?? '',
      ...(content.provider === undefined ? {} : { provider: content.provider }),
      ...(content.finishReason === undefined ? {} : { finishReason: content.finishReason }),
    };
  }

  private end(): void {
    if (this.settled) return;
    const { id, model, provider, finishReason, usage } = this.progress;
    // Text held back in case it began the key: it did not, so it is part of the answer.
    const heldContent = this.contentRedactor?.flush() ?? '';
    const heldReasoning = this.reasoningRedactor?.flush() ?? '';
    const heldToolCalls = this.toolCallRedactor?.flush();
    if (heldContent !== '' || heldReasoning !== '' || heldToolCalls !== undefined) {
      this.subscriber.next({
        type: 'chunk',
        delta: heldContent,
        ...(heldReasoning === '' ? {} : { reasoning: heldReasoning }),
        ...(heldToolCalls === undefined ? {} : { toolCalls: heldToolCalls }),
        model: model ?? this.identity.model ?? '',
        ...(provider === undefined ? {} : { provider }),
      });
    }
    this.settled = true;
    this.subscriber.next({
      type: 'end',
      id: id ?? '',
      model: model ?? this.identity.model ?? '',
      ...(provider === undefined ? {} : { provider }),
      finishReason: finishReason ?? 'unknown',
      ...(usage === undefined ? {} : { usage }),
    });
    this.subscriber.complete();
  }

  private fail(error: OpenRouterError): void {
    if (this.settled) return;
    this.settled = true;
    // Usage reported earlier in the stream was billed even though the attempt failed.
    if (error.usage === undefined && this.progress.usage !== undefined) error.usage = this.progress.usage;
    this.subscriber.error(redactError(error, this.identity.key));
  }

  private abortedByCaller(): AbortedError {
    return new AbortedError({
      message: 'request aborted by its caller',
      scope: 'request',
      retryable: false,
      keyLabel: this.identity.key.label,
      model: this.identity.model,
    });
  }

  private wireContext(headers: Headers | undefined): WireContext {
    return { nowMs: Date.now(), model: this.identity.model, keyLabel: this.identity.key.label, headers };
  }
}

/**
 * A reader's chunks as an async iterable, without a generator's extra promise per chunk: `read()`
 * already answers as an iterator does. Leaving early (`[DONE]`) cancels the rest, as a stream's
 * own iterator does; unlike that iterator, this one needs no `Symbol.asyncIterator` on the stream
 * (Safari has none).
 */
function readerChunks(reader: ReadableStreamDefaultReader<Uint8Array>): AsyncIterable<Uint8Array> {
  const iterator: AsyncIterator<Uint8Array, undefined> = {
    next: () => reader.read() as Promise<IteratorResult<Uint8Array, undefined>>,
    return: () =>
      reader.cancel().then(
        () => ({ done: true, value: undefined }),
        () => ({ done: true, value: undefined }),
      ),
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

function ignore(): void {}

/** Scrubbed tool-call deltas with the raw `arguments` of `raw` back in them, for the tool-call redactor to scrub across chunks. */
function withRawArguments(
  scrubbed: ReadonlyArray<Record<string, unknown>>,
  raw: ReadonlyArray<Record<string, unknown>> | undefined,
): Array<Record<string, unknown>> {
  return scrubbed.map((call, index) => {
    const rawFunction = raw?.[index]?.['function'];
    const args = isRecord(rawFunction) ? rawFunction['arguments'] : undefined;
    const scrubbedFunction = call['function'];
    if (typeof args !== 'string' || !isRecord(scrubbedFunction)) return call;
    return Object.assign({}, call, { function: Object.assign({}, scrubbedFunction, { arguments: args }) });
  });
}

const LEFT_BRACE = 0x7b;
const LEFT_BRACKET = 0x5b;

/** A body labelled JSON (`application/json`, `application/problem+json`; not `json-seq`). */
function isJsonBody(headers: Headers | undefined): boolean {
  const type = headers?.get('content-type')?.toLowerCase() ?? '';
  return /^application\/([\w.+-]*\+)?json\s*(;|$)/.test(type.trim());
}

/** A body labelled an event stream. */
function isEventStream(headers: Headers | undefined): boolean {
  return (headers?.get('content-type')?.toLowerCase() ?? '').trim().startsWith('text/event-stream');
}

/** The bytes before a body's first character that tell nothing of it: white space, and a UTF-8 byte order mark's. */
const SKIPPED_BYTES = new Set([0x20, 0x0a, 0x0d, 0x09, 0xef, 0xbb, 0xbf]);

/** Reads `reader` up to the body's first byte that is not white space (nor a BOM): the chunks read, and that byte (-1: the body ended first). */
async function firstByteOf(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<{ read: Uint8Array[]; first: number }> {
  const read: Uint8Array[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { read, first: -1 };
    read.push(value);
    for (const byte of value) if (!SKIPPED_BYTES.has(byte)) return { read, first: byte };
  }
}

/** The chunks `read` already, then the rest of `reader`'s. */
async function* readAfter(read: readonly Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): AsyncIterable<Uint8Array> {
  yield* read;
  yield* readerChunks(reader);
}

/** The request as OpenRouter takes it: without the caller's correlation `id`. */
function bodyOf(request: ChatRequest, stream: boolean): Record<string, unknown> {
  // One copy, ours to complete, without `delete` (which would turn it into a slow dictionary object).
  const { id: _correlationId, ...body }: Record<string, unknown> = request;
  body['stream'] = stream;
  return body;
}
