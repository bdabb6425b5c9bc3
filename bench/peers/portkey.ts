/**
 * The Portkey AI gateway (`@portkey-ai/gateway` from npm), run as peers.md says: its own Node
 * process (`start-server.js --port=PORT --headless`), ready when `GET /` answers 200, called with
 * the `openai` SDK at `http://127.0.0.1:PORT/v1` (`maxRetries: 0`), the routing config as JSON in
 * `x-portkey-config`: `fallback` over the model chain, each level `loadbalance` over the keys,
 * `retry` 3 on 429/5xx with `use_retry_after_header`, and a `request_timeout`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { processCpuMicros, sleep } from '../support/measure.js';
import { sdkCall, sdkClient } from './bare-sdk.js';
import { Cancellation, failure, type BenchKey, type Outcome, type Peer, type PeerContext, type PeerSession } from './types.js';

const GATEWAY = fileURLToPath(new URL('../../node_modules/@portkey-ai/gateway/build/start-server.js', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REQUEST_TIMEOUT_MS = 60_000;

export interface Gateway {
  readonly url: string;
  readonly pid: number;
  cpuMicros(): number | undefined;
  stop(): Promise<void>;
}

let running: Promise<Gateway> | undefined;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function launch(): Promise<Gateway> {
  const port = await freePort();
  // A 1,000-key config travels in one header: let the gateway's Node accept it.
  const child: ChildProcess = spawn(process.execPath, ['--max-http-header-size=1048576', GATEWAY, `--port=${port}`, '--headless'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (data: Buffer) => {
    tail = (tail + data.toString('utf8')).slice(-2000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`the gateway exited (code ${exitCode}): ${tail.replace(/\s+/g, ' ').slice(-300)}`);
    try {
      const response = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the gateway did not answer GET / with 200 within 20 s: ${tail.replace(/\s+/g, ' ').slice(-300)}`);
    }
    await sleep(100);
  }
  const pid = child.pid ?? -1;
  return {
    url,
    pid,
    cpuMicros: () => processCpuMicros(pid),
    async stop() {
      if (exitCode !== undefined) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** The gateway of this run, started on first use. */
export function gateway(): Promise<Gateway> {
  running ??= launch();
  return running;
}

export async function stopGateway(): Promise<void> {
  if (running === undefined) return;
  const started = running;
  running = undefined;
  try {
    await (await started).stop();
  } catch {
    // It never started: nothing to stop.
  }
}

/** The config peers.md prescribes for this job. */
export function portkeyConfig(baseURL: string, keys: readonly BenchKey[], models: readonly string[]): Record<string, unknown> {
  return {
    strategy: { mode: 'fallback' },
    targets: models.map((model) => ({
      strategy: { mode: 'loadbalance' },
      targets: keys.map((key) => ({ provider: 'openai', custom_host: baseURL, api_key: key.key, override_params: { model } })),
    })),
    retry: { attempts: 3, on_status_codes: [429, 500, 502, 503, 504], use_retry_after_header: true },
    request_timeout: REQUEST_TIMEOUT_MS,
  };
}

export const portkeyPeer: Peer = {
  id: 'portkey',
  name: 'Portkey gateway',
  description: `@portkey-ai/gateway (npm) in its own Node process (--max-http-header-size raised to 1 MiB so a 1,000-key config fits in its header), called on 127.0.0.1; fallback over the model chain of loadbalance over the keys; retry 3 on 429/5xx with use_retry_after_header; request_timeout ${REQUEST_TIMEOUT_MS / 1000} s; SDK maxRetries 0`,
  async start(context: PeerContext): Promise<PeerSession> {
    const gw = await gateway();
    const client = sdkClient(context, 'portkey-gateway', {
      baseURL: `${gw.url}/v1`,
      maxRetries: 0,
      defaultHeaders: { 'x-portkey-config': JSON.stringify(portkeyConfig(context.baseURL, context.keys, [context.model])) },
    });
    const cancellation = new Cancellation();
    return {
      async run(request): Promise<Outcome> {
        try {
          const chunks = await cancellation.with((signal) => sdkCall(client, context.model, request, signal));
          return { ok: true, chunks };
        } catch (error) {
          return failure(error);
        }
      },
      helperCpuMicros: () => gw.cpuMicros(),
      async close() {
        cancellation.abortAll();
      },
    };
  },
};
