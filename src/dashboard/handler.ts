import type { IncomingMessage, ServerResponse } from 'node:http';
import { streamHealth, type HealthSource } from './events.js';
import { dashboardPage } from './page.js';

/**
 * The dashboard as a request handler, for a user's own `node:http` server (or Express, Connect and
 * the like, which take the same `(request, response, next)` shape). It answers under `basePath`:
 * the page at `basePath/`, the SSE feed at `basePath/events` and one snapshot at
 * `basePath/health.json`; anything else is left to the caller.
 */

export interface DashboardOptions {
  /** Where the dashboard lives on the server, e.g. `/ops/keys`. Default: the root. */
  basePath?: string;
  /** Shown in the page header and tab. Default `openrouter-rx`. */
  title?: string;
  /** Least time between two snapshots on the feed. Default 100 ms. */
  throttleMs?: number;
  /** Comment lines that keep an idle feed open. Default 15 s. */
  heartbeatMs?: number;
}

export interface DashboardHandler {
  /** Returns whether it answered; when it did not and `next` is given, calls `next()`. */
  (request: IncomingMessage, response: ServerResponse, next?: (error?: unknown) => void): boolean;
  /** Ends every open feed (call it before closing your server, which waits for open responses). */
  close(): void;
  /** Feeds open right now. */
  readonly connections: number;
}

function normalizeBase(basePath: string | undefined): string {
  if (basePath === undefined || basePath === '' || basePath === '/') return '';
  const withSlash = basePath.startsWith('/') ? basePath : `/${basePath}`;
  return withSlash.replace(/\/+$/, '');
}

export function dashboardHandler(pool: HealthSource, options: DashboardOptions = {}): DashboardHandler {
  const base = normalizeBase(options.basePath);
  const page = dashboardPage({ ...(options.title === undefined ? {} : { title: options.title }) });
  const streamOptions = { throttleMs: options.throttleMs ?? 100, heartbeatMs: options.heartbeatMs ?? 15_000 };
  const feeds = new Set<() => void>();

  const handle = (request: IncomingMessage, response: ServerResponse, next?: (error?: unknown) => void): boolean => {
    const method = request.method ?? 'GET';
    const path = new URL(request.url ?? '/', 'http://dashboard.invalid').pathname;
    const ours = path === base || path === `${base}/` || path === `${base}/events` || path === `${base}/health.json`;
    if (!ours || (method !== 'GET' && method !== 'HEAD')) {
      next?.();
      return false;
    }
    if (path === base && base !== '') {
      // The page loads `events` relative to itself, which needs the trailing slash.
      response.writeHead(308, { location: `${base}/` }).end();
      return true;
    }
    if (path.endsWith('/events')) {
      const teardown = streamHealth(pool, response, streamOptions);
      feeds.add(teardown);
      response.once('close', () => feeds.delete(teardown));
      return true;
    }
    const json = path.endsWith('/health.json');
    const body = json ? JSON.stringify(pool.snapshot()) : page;
    response.writeHead(200, {
      'content-type': json ? 'application/json; charset=utf-8' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Inline style and script only; the page loads nothing from anywhere else.
      ...(json ? {} : { 'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:" }),
    });
    response.end(method === 'HEAD' ? undefined : body);
    return true;
  };

  return Object.defineProperties(handle, {
    close: {
      value: () => {
        for (const teardown of [...feeds]) teardown();
        feeds.clear();
      },
    },
    connections: { get: () => feeds.size },
  }) as DashboardHandler;
}
