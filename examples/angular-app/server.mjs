/**
 * The backend of the Angular example: it serves the built app and holds the API keys. The key
 * pool runs in the browser with placeholder keys (`backend:<label>`) and `createFetchTransport()`
 * pointed here; this server swaps each placeholder for its real key and forwards the request to
 * OpenRouter, streaming the answer back as it comes. The page never sees a key.
 *
 *   npm run build && npm start                                   # the fake OpenRouter, three keys, one revoked
 *   OPENROUTER_API_KEYS=sk-or-...,sk-or-... npm start            # the real OpenRouter
 *
 * PORT picks the port (default 4300; 0 for any free one). It listens on 127.0.0.1 only: anyone who
 * can reach it spends your credits, so put your own authentication in front before exposing it.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const STATIC_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), 'dist', 'browser');
const MAX_BODY_BYTES = 1_000_000;
/** Response headers the pool reads: the body's type, and what a 429 says about waiting. */
const FORWARDED_HEADERS = /^(content-type|cache-control|retry-after|x-ratelimit-[a-z-]+)$/i;
const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.ico': 'image/x-icon',
};

/** Where requests go, and the real key of each label. */
async function openUpstream() {
  const realKeys = (process.env.OPENROUTER_API_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key.length > 0);
  if (realKeys.length > 0) {
    return {
      description: `OpenRouter with ${realKeys.length} key(s)`,
      baseURL: 'https://openrouter.ai/api/v1',
      keys: new Map(realKeys.map((key, index) => [`key-${index + 1}`, key])),
      close: async () => undefined,
    };
  }
  // The fake OpenRouter of openrouter-rx/testing: alpha's key was revoked (401), so the pool in the
  // page turns alpha `disabled` on the first request that meets it and another key answers.
  const { startFakeOpenRouter } = await import('openrouter-rx/testing');
  const keys = new Map([
    ['alpha', 'sk-or-v1-angular-app-alpha'],
    ['beta', 'sk-or-v1-angular-app-beta'],
    ['gamma', 'sk-or-v1-angular-app-gamma'],
  ]);
  const fake = await startFakeOpenRouter({
    keys: [...keys].map(([label, key]) => ({ key, label, ...(label === 'alpha' ? { revoked: true } : {}) })),
    // Slow enough to watch the tokens arrive.
    defaultModel: { latencyMs: 80, chunkCount: 16, chunkGapMs: 120 },
    respond: () =>
      'Many keys, one stream: each request takes the key that can serve it, a revoked key steps aside, and the words keep coming.',
  });
  return { description: `the fake OpenRouter at ${fake.url}`, baseURL: fake.baseURL, keys, close: () => fake.close() };
}

function sendJson(response, status, body) {
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(body));
}

/** An error in OpenRouter's shape, so the pool classifies it as it would OpenRouter's own. */
function sendError(response, status, message) {
  sendJson(response, status, { error: { code: status, message } });
}

async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** POST /api/openrouter/chat/completions: the placeholder key swapped for the real one, the answer streamed back. */
async function forward(upstream, request, response) {
  const label = /^Bearer backend:(.+)$/.exec(request.headers.authorization ?? '')?.[1];
  const key = label === undefined ? undefined : upstream.keys.get(label);
  if (key === undefined) return sendError(response, 401, 'Unknown key placeholder.');
  let body;
  try {
    body = await readBody(request);
  } catch {
    return sendError(response, 413, 'Request body too large.');
  }
  // The page went away (or its pool gave up on the attempt): stop the upstream request too.
  const controller = new AbortController();
  response.on('close', () => controller.abort());
  let answer;
  try {
    answer = await fetch(`${upstream.baseURL}/chat/completions`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: request.headers.accept ?? 'application/json, text/event-stream',
      },
      body,
      signal: controller.signal,
    });
  } catch {
    if (!controller.signal.aborted) sendError(response, 502, 'OpenRouter could not be reached.');
    return;
  }
  const headers = Object.fromEntries([...answer.headers].filter(([name]) => FORWARDED_HEADERS.test(name)));
  if (!answer.ok) {
    // Error bodies are small: read whole, with any echo of the key taken out before it reaches the page.
    const text = await answer.text().catch(() => '');
    response.writeHead(answer.status, headers).end(text.replaceAll(key, '[redacted]'));
    return;
  }
  response.writeHead(answer.status, headers);
  if (answer.body === null) return response.end();
  // Chunk by chunk, with backpressure; a closed page cancels the upstream body.
  await pipeline(Readable.fromWeb(answer.body), response).catch(() => response.destroy());
}

/** The built app: its files, and index.html for any other path. */
async function serveStatic(request, response) {
  const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
  let file = resolve(STATIC_DIR, `.${path}`);
  if (file !== STATIC_DIR && !file.startsWith(STATIC_DIR + sep)) return sendError(response, 404, 'Not found.');
  const info = await stat(file).catch(() => undefined);
  if (info === undefined || !info.isFile()) {
    if (extname(path) !== '') return sendError(response, 404, 'Not found.');
    file = join(STATIC_DIR, 'index.html');
  }
  const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
  response.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache' });
  await pipeline(createReadStream(file), response).catch(() => response.destroy());
}

const upstream = await openUpstream();
const server = createServer((request, response) => {
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  let handled;
  if (path === '/api/keys' && request.method === 'GET') {
    // Labels only: the key text stays here.
    handled = sendJson(response, 200, { keys: [...upstream.keys.keys()].map((keyLabel) => ({ label: keyLabel })) });
  } else if (path === '/api/openrouter/chat/completions' && request.method === 'POST') {
    handled = forward(upstream, request, response);
  } else if (path.startsWith('/api/')) {
    handled = sendError(response, 404, 'Not found.');
  } else if (request.method === 'GET' || request.method === 'HEAD') {
    handled = serveStatic(request, response);
  } else {
    handled = sendError(response, 405, 'Method not allowed.');
  }
  Promise.resolve(handled).catch((error) => {
    console.error(`angular-app: ${request.method} ${path} failed: ${error instanceof Error ? error.message : String(error)}`);
    if (!response.headersSent) sendError(response, 500, 'Internal error.');
    else response.destroy();
  });
});

const port = Number(process.env.PORT ?? 4300);
server.listen(port, '127.0.0.1', () => {
  console.log(`angular-app: http://127.0.0.1:${server.address().port}/ (keys held here; requests go to ${upstream.description})`);
});

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  server.close();
  server.closeAllConnections();
  await upstream.close();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
