/**
 * A private `redis-server` for the tests that stop and restart Redis mid-run: it listens on a free
 * port of 127.0.0.1, keeps nothing on disk (`--save "" --appendonly no`), and runs in the
 * foreground (`--daemonize no`), so it is a child process of the test and dies with it.
 *
 * `stop()` kills it (SIGKILL by default: a crash, not a shutdown); `start()` brings it back on the
 * same port, empty. `close()` stops it for good; call it in `afterAll`/`afterEach`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

export interface PrivateRedis {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Whether the server process is running now. */
  readonly running: boolean;
  /** Starts the server (again) on the same port and resolves once it answers PING. */
  start(): Promise<void>;
  /** Stops the server and resolves once its process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server for good. Idempotent. */
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 5_000;

/** Whether a `redis-server` binary can be run on this machine; the reason when not. */
export function redisServerBinary(): { available: true } | { available: false; reason: string } {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (probe.error !== undefined) return { available: false, reason: probe.error.message };
  if (probe.status !== 0) return { available: false, reason: `redis-server --version exited with ${probe.status}` };
  return { available: true };
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Sends one inline `PING` and resolves whether `+PONG` came back within `timeoutMs`. */
export function pingRedis(port: number, host = '127.0.0.1', timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    let reply = '';
    const done = (answer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString('utf8');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class PrivateRedisServer implements PrivateRedis {
  readonly host = '127.0.0.1' as const;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private output = '';
  private closed = false;

  constructor(readonly port: number) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.closed) throw new Error('this Redis server was closed');
    if (this.child !== undefined) return;
    this.output = '';
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', this.host, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const keep = (data: Buffer) => {
      this.output = (this.output + data.toString('utf8')).slice(-4_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let exitedEarly = false;
    this.exited = new Promise<void>((resolve) => {
      const finish = () => {
        exitedEarly = true;
        if (this.child === child) this.child = undefined;
        resolve();
      };
      child.once('exit', finish);
      child.once('error', finish);
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exitedEarly) throw new Error(`redis-server on port ${this.port} exited at start:\n${this.output}`);
      if (await pingRedis(this.port, this.host)) return;
      await delay(20);
    }
    await this.stop('SIGKILL');
    throw new Error(`redis-server on port ${this.port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${this.output}`);
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = this.exited;
    child.kill(signal);
    // A server that ignores SIGTERM for long is killed outright.
    const hard = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(hard);
    this.child = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop('SIGKILL');
    this.closed = true;
  }
}

/** Starts a private, empty `redis-server` on a free port of 127.0.0.1. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  let lastError: unknown;
  // A port found free can be taken by someone else before redis-server binds it: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = new PrivateRedisServer(await freePort());
    try {
      await server.start();
      return server;
    } catch (error) {
      lastError = error;
      await server.close();
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}
