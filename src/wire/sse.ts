import { MalformedResponseError } from '../core/errors.js';

/**
 * The most bytes `sseData` holds for one event by default: 16 MiB. A streamed chat chunk is a few
 * hundred bytes; the largest to expect carry a whole image (base64) or tool-call argument in one
 * delta, a few MiB. Past the limit the attempt fails instead of buffering an endless line.
 */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024;

export interface SseOptions {
  /**
   * The most bytes held for one event: its `data` lines so far plus the line being read (line
   * endings aside). An event past it fails the read with a `MalformedResponseError`. Default
   * `DEFAULT_MAX_EVENT_BYTES` (16 MiB).
   */
  maxEventBytes?: number;
}

/**
 * Server-sent events, read from a byte stream: yields the `data` of each event, skipping comment
 * lines (`: OPENROUTER PROCESSING` keep-alives), and stops at `data: [DONE]`. Reading the events
 * ourselves, instead of through the SDK's stream, keeps the whole event when it carries an
 * in-band `error`: its `usage` (tokens OpenRouter billed) would otherwise be lost.
 *
 * Each byte is looked at once, however the lines are cut into chunks, so a long event costs time
 * in proportion to its length.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>, options: SseOptions = {}): AsyncGenerator<string, void, undefined> {
  const parser = new SseParser(options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES);
  for await (const chunk of body) {
    for (const payload of parser.push(chunk)) {
      if (payload === DONE) return;
      yield payload;
    }
  }
  for (const payload of parser.end()) {
    if (payload === DONE) return;
    yield payload;
  }
}

const DONE = Symbol('[DONE]');
const LF = 0x0a;
const CR = 0x0d;
const MiB = 1024 * 1024;

type Payload = string | typeof DONE;

/** The event stream format of server-sent events (HTML standard), read on bytes: CR, LF and CRLF end lines. */
class SseParser {
  /**
   * Lines are split on bytes (CR and LF never occur inside a UTF-8 sequence) and decoded once;
   * the decoder streams only across the chunks of one line, so a character cut between two
   * chunks is whole again.
   */
  private readonly decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  /** The decoded start of a line that continues in the next chunk. */
  private pieces: string[] = [];
  private lineBytes = 0;
  private data: string[] = [];
  private dataBytes = 0;
  /** The last chunk ended in CR: an LF starting the next one ends no second line. */
  private afterCr = false;
  private firstLine = true;

  constructor(private readonly maxEventBytes: number) {}

  push(chunk: Uint8Array): Payload[] {
    const payloads: Payload[] = [];
    if (chunk.length === 0) return payloads;
    let start = this.afterCr && chunk[0] === LF ? 1 : 0;
    this.afterCr = false;
    for (let end = start; end < chunk.length; end++) {
      const byte = chunk[end];
      if (byte !== LF && byte !== CR) continue;
      this.grow(end - start);
      const line = this.pieces.length === 0 ? this.decoder.decode(chunk.subarray(start, end)) : this.joinPieces(chunk.subarray(start, end));
      if (byte === CR && end + 1 === chunk.length) this.afterCr = true;
      else if (byte === CR && chunk[end + 1] === LF) end++;
      start = end + 1;
      this.line(line, payloads);
    }
    if (start < chunk.length) {
      this.grow(chunk.length - start);
      this.pieces.push(this.decoder.decode(chunk.subarray(start), { stream: true }));
    }
    return payloads;
  }

  /** The stream ended: a last line without its ending still counts, and so does its event. */
  end(): Payload[] {
    const payloads: Payload[] = [];
    if (this.pieces.length > 0) this.line(this.joinPieces(new Uint8Array(0)), payloads);
    this.line('', payloads);
    return payloads;
  }

  private joinPieces(last: Uint8Array): string {
    this.pieces.push(this.decoder.decode(last));
    const line = this.pieces.join('');
    this.pieces = [];
    return line;
  }

  /** Counts `bytes` more of the current line against the event's limit. */
  private grow(bytes: number): void {
    this.lineBytes += bytes;
    if (this.dataBytes + this.lineBytes <= this.maxEventBytes) return;
    throw new MalformedResponseError({
      message: `stream event larger than ${describeBytes(this.maxEventBytes)} (the maxEventBytes limit of the SSE reader)`,
      scope: 'model',
      retryable: true,
    });
  }

  private line(text: string, payloads: Payload[]): void {
    const bytes = this.lineBytes;
    this.lineBytes = 0;
    // A byte order mark may open the stream, and only the stream (the standard drops it there).
    const line = this.firstLine && text.startsWith('\uFEFF') ? text.slice(1) : text;
    this.firstLine = false;
    if (line === '') {
      if (this.data.length > 0) {
        const payload = this.data.join('\n');
        this.data = [];
        this.dataBytes = 0;
        payloads.push(payload === '[DONE]' ? DONE : payload);
      }
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    const value = colon < 0 ? '' : line.slice(line[colon + 1] === ' ' ? colon + 2 : colon + 1);
    this.data.push(value);
    this.dataBytes += bytes;
  }
}

function describeBytes(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes} bytes`;
}
