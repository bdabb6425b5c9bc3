import { createServer, type Server } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { dashboardHandler, type DashboardOptions } from './handler.js';
import type { MetricsSource } from './metrics.js';

/**
 * A ready-made server for the dashboard. It listens on 127.0.0.1 unless told otherwise: without a
 * `token` anyone who reaches it can read it, and although it never shows key text, labels, errors
 * and spend are nobody else's business. It answers to the name it listens on, besides `localhost`,
 * IP addresses and `allowedHosts`.
 */

export interface DashboardServerOptions extends Omit<DashboardOptions, 'basePath'> {
  /** The pool whose health the dashboard shows. */
  pool: MetricsSource;
  /** Default 0: a free port (read it from `url`). */
  port?: number;
  /** Default `127.0.0.1`. */
  host?: string;
}

/** A running dashboard server, as `createDashboardServer` resolves it. */
export interface DashboardServer {
  /** `http://127.0.0.1:PORT/`. */
  readonly url: string;
  /** The port it listens on (the one picked, for port 0). */
  readonly port: number;
  /** The underlying `node:http` server. */
  readonly server: Server;
  /** Ends every feed and stops listening. */
  close(): Promise<void>;
}

/** Starts a `node:http` server for the dashboard; resolves once it listens. */
export async function createDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  const { pool, port = 0, host = '127.0.0.1', ...rest } = options;
  // IP addresses are answered anyway; a name (`myhost.lan`) is what a browser puts in Host.
  const handler = dashboardHandler(
    pool,
    isIP(host) === 0 ? Object.assign({}, rest, { allowedHosts: [...(rest.allowedHosts ?? []), host] }) : rest,
  );
  const server = createServer((request, response) => {
    if (!handler(request, response)) response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${bound}/`,
    port: bound,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
