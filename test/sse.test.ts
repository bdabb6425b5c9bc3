import { describe, expect, it } from 'vitest';
import { MalformedResponseError } from '../src/core/errors.js';
import { DEFAULT_MAX_EVENT_BYTES, sseData } from '../src/wire/sse.js';

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

async function* bodyOf(chunks: Iterable<string | Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield typeof chunk === 'string' ? encoder.encode(chunk) : chunk;
}

async function collect(body: AsyncIterable<Uint8Array>, options?: Parameters<typeof sseData>[1]): Promise<string[]> {
  const payloads: string[] = [];
  for await (const payload of sseData(body, options)) payloads.push(payload);
  return payloads;
}

/** What reading `body` threw; a short description of what it yielded if it did not throw. */
async function failureOf(body: AsyncIterable<Uint8Array>, options?: Parameters<typeof sseData>[1]): Promise<unknown> {
  return collect(body, options).then(
    (payloads) => `no error: ${payloads.length} events of ${payloads.map((payload) => payload.length).join(', ')} characters`,
    (thrown: unknown) => thrown,
  );
}

/** `count` chunks of `size` bytes of `x`, counting how many the parser pulled. */
function filler(count: number, size: number): { body: AsyncGenerator<Uint8Array>; pulled: () => number } {
  const chunk = encoder.encode('x'.repeat(size));
  let pulled = 0;
  async function* body(): AsyncGenerator<Uint8Array> {
    for (; pulled < count;) {
      pulled++;
      yield chunk;
    }
  }
  return { body: body(), pulled: () => pulled };
}

describe('sseData: lines and events', () => {
  it('ends lines at \\r\\n, \\r and \\n alike, skips comments and other fields, joins data lines, stops at [DONE]', async () => {
    const body = bodyOf([
      ': OPENROUTER PROCESSING\r\n\r\n',
      'data: {"a":1}\n\n',
      'data: one\rdata:two\r\rid: 7\nevent: x\ndata\n\n',
      'data: [DONE]\n\ndata: after\n\n',
    ]);
    expect(await collect(body)).toEqual(['{"a":1}', 'one\ntwo', '']);
  });

  it('a \\r at the end of one chunk and a \\n at the start of the next end one line, not two', async () => {
    expect(await collect(bodyOf(['data: a\r', '\ndata: b\r', '\n\r', '\n']))).toEqual(['a\nb']);
    // An empty chunk between them changes nothing; a CR followed by anything else ends its line alone.
    expect(await collect(bodyOf(['data: a\r', new Uint8Array(0), '\ndata: b\r', 'data: c\r\n\r\n']))).toEqual(['a\nb\nc']);
  });

  it('a line split anywhere, inside a UTF-8 character too, reads as one', async () => {
    const bytes = encoder.encode('data: héllo → wörld\n\n');
    const oneByOne = Array.from(bytes, (byte) => Uint8Array.of(byte));
    expect(await collect(bodyOf(oneByOne))).toEqual(['héllo → wörld']);
  });

  it('drops a leading byte order mark, and dispatches an event the stream ends in without a blank line', async () => {
    expect(await collect(bodyOf(['\uFEFFdata: first\n\n', 'data: last']))).toEqual(['first', 'last']);
  });
});

describe('sseData: one huge event', () => {
  it('reads a 32 MiB data line arriving in 64 KiB chunks in linear time (it took about 30 s when each chunk re-searched the whole line)', async () => {
    // The body gives up once 3 s have passed: a linear parser needs about 0.4 s (mostly UTF-8
    // decoding), a quadratic one about 30 s, so the test fails fast rather than slowly.
    const size = 32 * MiB;
    const chunk = encoder.encode('x'.repeat(64 * 1024));
    const budgetMs = 3_000;
    async function* body(): AsyncGenerator<Uint8Array> {
      const started = performance.now();
      yield encoder.encode('data: ');
      for (let sent = 0; sent < size; sent += chunk.length) {
        if (performance.now() - started > budgetMs) throw new Error(`parsing took over ${budgetMs} ms at ${sent / MiB} MiB`);
        yield chunk;
      }
      yield encoder.encode('\n\n');
    }
    const payloads = await collect(body(), { maxEventBytes: 64 * MiB });
    expect(payloads.map((payload) => payload.length)).toEqual([size]);
  });

  it('fails with a MalformedResponseError naming the limit once an event passes maxEventBytes, without reading the rest', async () => {
    const { body, pulled } = filler(64, 64 * 1024);
    async function* stream(): AsyncGenerator<Uint8Array> {
      yield encoder.encode('data: ');
      yield* body;
    }
    const error = await failureOf(stream(), { maxEventBytes: MiB });
    expect(error).toBeInstanceOf(MalformedResponseError);
    expect(error).toMatchObject({ kind: 'malformed_response', retryable: true, scope: 'model' });
    expect((error as Error).message).toContain('maxEventBytes');
    expect((error as Error).message).toContain('1 MiB');
    // 1 MiB is 16 chunks of 64 KiB after the 6 bytes of `data: `: the 16th passes the limit.
    expect(pulled()).toBe(16);
  });

  it('counts every data line of an event against the limit, and starts again at each event', async () => {
    const line = `data: ${'y'.repeat(1000)}\n`;
    // Many events of 100 lines each fit ...
    const events = Array.from({ length: 50 }, () => `${line.repeat(100)}\n`);
    expect((await collect(bodyOf(events), { maxEventBytes: 200 * 1024 })).length).toBe(50);
    // ... one event of 300 lines does not.
    expect(await failureOf(bodyOf([line.repeat(300), '\n']), { maxEventBytes: 200 * 1024 })).toBeInstanceOf(MalformedResponseError);
  });

  it('has a default limit of 16 MiB', async () => {
    expect(DEFAULT_MAX_EVENT_BYTES).toBe(16 * MiB);
    const { body } = filler(DEFAULT_MAX_EVENT_BYTES / MiB + 1, MiB);
    expect(await failureOf(body)).toBeInstanceOf(MalformedResponseError);
  });
});
