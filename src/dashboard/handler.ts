import type { IncomingMessage, ServerResponse } from 'node:http';
import * as z from 'zod';
import { ValidationError, formatZodError } from '../core/validation.js';
import { HOST_NAME_RULE, TOKEN_PATTERN, TOKEN_RULE, dashboardAccess, normalizeHostName } from './access.js';
import { streamHealth } from './events.js';
import { countFailedAttempts } from './failed-attempts.js';
import { PoolMetrics, type MetricsSource } from './metrics.js';
import { dashboardPage } from './page.js';

/**
 * The dashboard as a request handler, for a user's own `node:http` server (or Express, Connect and
 * the like, which take the same `(request, response, next)` shape). It answers under `basePath`:
 * the page at `basePath/`, the SSE feed at `basePath/events`, one snapshot at
 * `basePath/health.json` and Prometheus metrics at `basePath/metrics`; anything else is left to
 * the caller. Those routes answer only requests
 * that name the dashboard's own host, come from no other origin, and carry the token if one is set
 * (`access.ts`).
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
  /**
   * Host names the dashboard answers to (e.g. `dash.example.com` behind a proxy), besides
   * `localhost` and IP addresses, which it always answers. Any other `Host` gets 403: that stops a
   * page elsewhere from reading the dashboard by rebinding its own name to this machine (DNS
   * rebinding). Names only, no port.
   */
  allowedHosts?: readonly string[];
  /**
   * A secret every route then asks for (401 without it): `Authorization: Bearer <token>`, or, in a
   * browser, open the page once as `<page>?token=<token>`, which trades it for a cookie. At least 16
   * characters. Default: none.
   */
  token?: string;
}

/** The dashboard's request handler, as `dashboardHandler` returns it. */
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

const hostName = z.string().transform((text, context) => {
  const name = normalizeHostName(text);
  if (name === undefined) context.addIssue({ code: 'custom', message: HOST_NAME_RULE });
  return name ?? z.NEVER;
});

const optionsSchema = z.strictObject({
  basePath: z.string().optional(),
  title: z.string().optional(),
  throttleMs: z.number().int().min(0).optional(),
  // At least 1: a zero interval would write heartbeats in a busy loop.
  heartbeatMs: z.number().int().min(1).optional(),
  allowedHosts: z.array(hostName).optional(),
  // The message never quotes the value: it is a secret.
  token: z.string().regex(TOKEN_PATTERN, TOKEN_RULE).optional(),
});

/**
 * The dashboard of `pool` as a request handler: the page, `events`, `health.json` and `metrics` under
 * `basePath`. Throws a `ValidationError` naming the field for invalid options.
 */
export function dashboardHandler(pool: MetricsSource, options: DashboardOptions = {}): DashboardHandler {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new ValidationError(formatZodError(parsed.error, 'dashboard options'), parsed.error.issues);
  const { basePath, title, throttleMs = 100, heartbeatMs = 15_000, allowedHosts = [], token } = parsed.data;
  const base = normalizeBase(basePath);
  const page = dashboardPage({ ...(title === undefined ? {} : { title }) });
  const failedAttempts = countFailedAttempts(pool);
  const streamOptions = { throttleMs, heartbeatMs, failedAttempts: () => failedAttempts.read() };
  const allow = dashboardAccess({ allowedHosts, token, base });
  const feeds = new Set<() => void>();
  const metrics = new PoolMetrics(pool);

  const handle = (request: IncomingMessage, response: ServerResponse, next?: (error?: unknown) => void): boolean => {
    const method = request.method ?? 'GET';
    const path = new URL(request.url ?? '/', 'http://dashboard.invalid').pathname;
    const ours =
      path === base || path === `${base}/` || path === `${base}/events` || path === `${base}/health.json` || path === `${base}/metrics`;
    if (!ours || (method !== 'GET' && method !== 'HEAD')) {
      next?.();
      return false;
    }
    if (!allow(request, response, path === base || path === `${base}/`)) return true;
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
    if (path.endsWith('/metrics')) {
      response.writeHead(200, {
        'content-type': 'text/plain; version=0.0.4; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      response.end(method === 'HEAD' ? undefined : metrics.render());
      return true;
    }
    const json = path.endsWith('/health.json');
    const body = json ? JSON.stringify(pool.snapshot()) : page;
    response.writeHead(200, {
      'content-type': json ? 'application/json; charset=utf-8' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Inline style and script only; the page loads nothing from anywhere else.
      ...(json
        ? {}
        : {
            'content-security-policy':
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
          }),
    });
    response.end(method === 'HEAD' ? undefined : body);
    return true;
  };

  return Object.defineProperties(handle, {
    close: {
      value: () => {
        for (const teardown of [...feeds]) teardown();
        feeds.clear();
        metrics.close();
        failedAttempts.close();
      },
    },
    connections: { get: () => feeds.size },
  }) as DashboardHandler;
}
