/**
 * Server-sent events, read from a byte stream: yields the `data` of each event, skipping comment
 * lines (`: OPENROUTER PROCESSING` keep-alives), and stops at `data: [DONE]`. Reading the events
 * ourselves, instead of through the SDK's stream, keeps the whole event when it carries an
 * in-band `error`: its `usage` (tokens OpenRouter billed) would otherwise be lost.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  const dispatch = function* (line: string): Generator<string | typeof DONE, void, undefined> {
    if (line === '') {
      if (data.length > 0) {
        const payload = data.join('\n');
        data = [];
        yield payload === '[DONE]' ? DONE : payload;
      }
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    data.push(value);
  };
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let newline = buffer.search(/\r\n|\r|\n/);
    while (newline >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(buffer[newline] === '\r' && buffer[newline + 1] === '\n' ? newline + 2 : newline + 1);
      for (const payload of dispatch(line)) {
        if (payload === DONE) return;
        yield payload;
      }
      newline = buffer.search(/\r\n|\r|\n/);
    }
  }
  buffer += decoder.decode();
  for (const line of [...buffer.split(/\r\n|\r|\n/), '']) {
    for (const payload of dispatch(line)) {
      if (payload === DONE) return;
      yield payload;
    }
  }
}

const DONE = Symbol('[DONE]');
