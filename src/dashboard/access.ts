import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';

/**
 * Who the dashboard answers. Two checks, then an optional third:
 *
 * - Host: a page on another site can rebind its own name to this machine's address (DNS
 *   rebinding) and then read the dashboard as if it were its own origin; the request still carries
 *   the attacker's name in `Host`. So a request whose Host is not `localhost`, an IP address (no DNS
 *   involved, nothing to rebind) or one of `allowedHosts` gets 403. The port is not checked: a
 *   rebinding attacker uses the dashboard's port anyway, and a port forward changes it legitimately.
 * - Origin: a browser sends `Origin` on cross-origin requests; one that is not the dashboard's own
 *   (the request's Host) gets 403, whatever the Host.
 * - Token, when set: `Authorization: Bearer <token>`, or the cookie a browser gets by opening the
 *   page once as `<page>?token=<token>` (a 303 to the page without it, so the token leaves the
 *   address bar and history; EventSource cannot send headers, cookies it does). The cookie holds a
 *   value derived from the token, never the token. Without either, 401.
 */

export interface AccessOptions {
  /** Normalized host names (`normalizeHostName`) accepted besides `localhost` and IP addresses. */
  allowedHosts: readonly string[];
  token: string | undefined;
  /** The dashboard's base path, `''` for the root: the cookie is scoped to it. */
  base: string;
}

/** What a token must be: long enough not to be guessed, and plain enough for a header. */
export const TOKEN_PATTERN = /^[\x21-\x7e]{16,}$/;
export const TOKEN_RULE = 'must be at least 16 characters, printable ASCII without spaces (e.g. from openssl rand -hex 24)';

export const HOST_NAME_RULE = 'must be a host name such as dash.example.com, without scheme, port or path';

/** `Dash.Example.com.` → `dash.example.com`; `[::1]` and `::1` → `::1`; undefined when it is not a host name. */
export function normalizeHostName(text: string): string | undefined {
  const name = text.trim().toLowerCase().replace(/\.$/, '');
  const unbracketed = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  if (isIP(unbracketed) !== 0) return unbracketed;
  return /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name) ? name : undefined;
}

/** A `Host` header (or an origin's host) as name and port; undefined when malformed. */
function parseAuthority(text: string): { name: string; port: string } | undefined {
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(text.trim());
  const name = match === null ? undefined : normalizeHostName(match[1]!);
  return name === undefined ? undefined : { name, port: match![2] ?? '' };
}

/** Equal or not, in time that does not depend on where they differ (nor on their lengths). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function refuse(response: ServerResponse, status: 401 | 403, text: string, headers: Record<string, string> = {}): false {
  response
    .writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    })
    .end(`${text}\n`);
  return false;
}

/**
 * The checks as one function: true when the request may go on, otherwise it has been answered.
 * `page` says the request is for the page itself, where `?token=` is traded for the cookie.
 */
export function dashboardAccess(options: AccessOptions): (request: IncomingMessage, response: ServerResponse, page: boolean) => boolean {
  const allowed = new Set(['localhost', ...options.allowedHosts]);
  const { token, base } = options;
  const cookieValue = token === undefined ? '' : createHmac('sha256', token).update('openrouter-rx dashboard cookie').digest('base64url');
  // Cookies ignore ports: the port in the name keeps two dashboards on one host from evicting each other.
  const cookieName = (request: IncomingMessage) => `openrouter-rx-dashboard-${request.socket.localPort ?? 0}`;

  const hostAllowed = (name: string) => isIP(name) !== 0 || allowed.has(name);

  const authorized = (request: IncomingMessage, expected: string) => {
    const bearer = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    if (bearer !== undefined) return sameSecret(bearer, expected);
    const name = cookieName(request);
    const cookie = (request.headers.cookie ?? '')
      .split(';')
      .map((part) => part.trim())
      .find((part) => part.startsWith(`${name}=`));
    return cookie !== undefined && sameSecret(cookie.slice(name.length + 1), cookieValue);
  };

  return (request, response, page) => {
    const host = parseAuthority(request.headers.host ?? '');
    if (host === undefined || !hostAllowed(host.name))
      return refuse(response, 403, 'this dashboard answers only to its own host names (see its allowedHosts option)');
    const origin = request.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, host))
      return refuse(response, 403, 'this dashboard does not answer pages of other origins');
    if (token === undefined) return true;
    const offered = page ? new URL(request.url ?? '/', 'http://dashboard.invalid').searchParams.get('token') : null;
    if (offered !== null && sameSecret(offered, token)) {
      response
        .writeHead(303, {
          location: `${base}/`,
          'cache-control': 'no-store',
          'set-cookie': `${cookieName(request)}=${cookieValue}; HttpOnly; SameSite=Lax; Path=${base}/`,
        })
        .end();
      return false;
    }
    if (offered === null && authorized(request, token)) return true;
    return refuse(
      response,
      401,
      `this dashboard asks for its token: open ${base}/?token=<token> once in a browser, or send Authorization: Bearer <token>`,
      {
        'www-authenticate': 'Bearer realm="openrouter-rx dashboard"',
      },
    );
  };
}

function sameOrigin(origin: string, host: { name: string; port: string }): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // `null` (a sandboxed frame, a file) and anything malformed
  }
  const own = parseAuthority(url.host);
  return (url.protocol === 'http:' || url.protocol === 'https:') && own !== undefined && own.name === host.name && own.port === host.port;
}
