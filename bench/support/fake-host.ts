/**
 * The parent's side of `fake-child.ts`: one child process that hosts every fake OpenRouter server
 * of the run (each scenario and peer gets a fresh one, so quota windows and counters never leak
 * from one peer to the next).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildReply, ChildRequest, FakeStartOptions, ServerStats } from './fake-protocol.js';

export interface FakeServerHandle {
  readonly baseURL: string;
  stats(): Promise<ServerStats>;
  reset(): Promise<void>;
  close(): Promise<void>;
}

export interface FakeHost {
  readonly pid: number;
  start(options: FakeStartOptions): Promise<FakeServerHandle>;
  /** The child's own CPU time (every fake server's), in µs. */
  cpuMicros(): Promise<number>;
  close(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./fake-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export async function startFakeHost(): Promise<FakeHost> {
  // `--import tsx` alone: a `--cpu-prof` of the parent is not inherited, so a profile is the client's.
  const child: ChildProcess = fork(CHILD, [], {
    cwd: REPO_ROOT,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let seq = 0;
  let exited = false;

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the fake server child did not start within 20 s')), 20_000);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the fake server child exited with code ${code}`));
    });
  });
  await ready;

  child.on('message', (reply: ChildReply) => {
    const waiter = pending.get(reply.seq);
    if (waiter === undefined) return;
    pending.delete(reply.seq);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new Error(reply.error));
  });
  child.on('exit', () => {
    exited = true;
    for (const waiter of pending.values()) waiter.reject(new Error('the fake server child exited'));
    pending.clear();
  });

  const call = <T>(request: ChildRequest): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (exited) {
        reject(new Error('the fake server child exited'));
        return;
      }
      const id = ++seq;
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      child.send({ ...request, seq: id });
    });

  return {
    pid: child.pid ?? -1,
    async start(options) {
      const { id, baseURL } = await call<{ id: number; baseURL: string }>({ op: 'start', options });
      return {
        baseURL,
        stats: () => call<ServerStats>({ op: 'stats', id }),
        reset: () => call<void>({ op: 'reset', id }),
        close: () => call<void>({ op: 'close', id }),
      };
    },
    async cpuMicros() {
      const usage = await call<NodeJS.CpuUsage>({ op: 'cpu' });
      return usage.user + usage.system;
    },
    async close() {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
