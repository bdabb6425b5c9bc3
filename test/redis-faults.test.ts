/**
 * The Redis state store under Redis's own faults (a review found each; each test failed before its
 * fix): a pub/sub subscription that failed or was dropped while Redis was away (D1); pipelined
 * writes whose failures ioredis reports inside `exec()`'s answer (D2); a reservation that timed out
 * and then ran (D3); a reservation ioredis sent again after a connection reset (D4); `dispose()`
 * while a reservation waits on a slow Redis (D5); the stored states on a Redis Cluster (D6). Private
 * Redis servers only (CLIENT PAUSE never blocks the shared 6379).
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, from, isObservable, timeout, type Subscription } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKeyPool, type KeyPool } from '../src/index.js';
import type { AdmissionPlan, ReserveResult, StateChange, StateStore, StoreStatus } from '../src/store/state-store.js';
import { StoreUnavailableError, createRedisStore, type RedisStoreOptions } from '../src/redis/index.js';
import type { RedisClientLike } from '../src/redis/client.js';
import { SlotLeases } from '../src/redis/slot-leases.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { freePort, startPrivateRedis, type PrivateRedis } from './helpers/redis-server.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { POOL_PORT } from '../src/pool/types.js';

const clients: Redis[] = [];
const clusters: Cluster[] = [];
const stores: StateStore[] = [];
const pools: KeyPool[] = [];
const fakes: FakeOpenRouter[] = [];
const subscriptions: Subscription[] = [];
let server: PrivateRedis;
let seq = 0;

beforeAll(async () => {
  server = await startPrivateRedis();
});
afterAll(async () => {
  await server.close();
});
afterEach(async () => {
  for (const s of subscriptions.splice(0)) s.unsubscribe();
  for (const pool of pools.splice(0)) pool.dispose();
  for (const store of stores.splice(0)) store.dispose();
  for (const fake of fakes.splice(0)) await fake.close();
  for (const client of clients.splice(0)) client.disconnect();
  for (const client of clusters.splice(0)) client.disconnect();
  if (!server.running) await server.start();
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function connect(port: number, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => 50, ...options });
  client.on('error', () => undefined);
  clients.push(client);
  await client.connect();
  return client;
}

function store(client: Redis, options: Omit<RedisStoreOptions, 'client'>): StateStore {
  const created = createRedisStore({ client, ...options });
  stores.push(created);
  return created;
}

function prefix(name: string): string {
  return `faults-${name}-${process.pid}-${++seq}`;
}

async function reserveOnce(s: StateStore, plan: AdmissionPlan, tokens = 1): Promise<ReserveResult> {
  const result = s.reserve(plan, tokens, Date.now());
  return isObservable(result) ? firstValueFrom(result) : result;
}

function statusOf(s: StateStore): { current: StoreStatus | undefined } {
  const box: { current: StoreStatus | undefined } = { current: undefined };
  subscriptions.push(s.status$.subscribe((status) => (box.current = status)));
  return box;
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(25);
  }
  return check();
}

function disabled(target: string, origin: string): StateChange {
  return { scope: 'key', target, state: 'disabled', remainingMs: Infinity, origin };
}

/** A TCP proxy in front of the private Redis that can drop one reply and reset the connection. */
async function startProxy(
  port: number,
): Promise<{ port: number; dropNextReplyOn: (index: number) => void; sockets: Socket[]; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  let dropOn: Socket | undefined;
  const proxy: Server = createServer((downstream) => {
    sockets.push(downstream);
    const upstream = createConnection({ host: '127.0.0.1', port });
    downstream.on('data', (data) => upstream.write(data));
    upstream.on('data', (data) => {
      if (dropOn === downstream) {
        // Redis ran the command; its reply is lost with the connection.
        dropOn = undefined;
        downstream.destroy();
        upstream.destroy();
        return;
      }
      downstream.write(data);
    });
    const end = () => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', end);
    upstream.on('error', end);
    downstream.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  if (typeof address !== 'object' || address === null) throw new Error('no proxy port');
  return {
    port: address.port,
    sockets,
    dropNextReplyOn(index: number) {
      dropOn = sockets[index];
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        proxy.close(() => resolve());
      }),
  };
}

/** Whether `listener` hears a disabling of `target` that another process's store publishes on `prefix`. */
async function hearsAnotherProcess(listener: StateStore, prefix: string, target: string): Promise<boolean> {
  const heard: StateChange[] = [];
  subscriptions.push(listener.changes$.subscribe((change) => heard.push(change)));
  const publisher = store(await connect(server.port), { prefix });
  await sleep(300);
  publisher.publish(disabled(target, 'other-process'));
  return waitUntil(() => heard.some((change) => change.target === target && change.origin === 'other-process'), 1_500);
}

describe('the Redis store under Redis faults', () => {
  it.each([
    ['without an offline queue (D1a)', { enableOfflineQueue: false }],
    ['with the default options (control)', {}],
  ])("a store on a client %s hears the fleet's state changes (pub/sub subscribed)", async (_name, options: RedisOptions) => {
    const p = prefix('offline-queue');
    const listener = store(await connect(server.port, options), { prefix: p });
    await sleep(300);
    expect(await hearsAnotherProcess(listener, p, 'k1'), "the listening store heard the other process's disabling").toBe(true);
  });

  it("D1b: Redis down at start (longer than the client's maxRetriesPerRequest): once it is back, the store hears the fleet's state changes", async () => {
    const p = prefix('down-at-start');
    await server.stop();
    const listenerClient = new Redis({ host: '127.0.0.1', port: server.port, retryStrategy: () => 100, maxRetriesPerRequest: 2 });
    listenerClient.on('error', () => undefined);
    clients.push(listenerClient);
    const listener = store(listenerClient, { prefix: p, recoveryIntervalMs: 100, commandTimeoutMs: 200 });
    // ~3 reconnection attempts 100 ms apart: ioredis rejects the queued SUBSCRIBE.
    await sleep(1_000);
    await server.start();
    const status = statusOf(listener);
    await waitUntil(() => status.current?.mode === 'shared', 3_000);
    await sleep(500);
    expect(await hearsAnotherProcess(listener, p, 'k2'), "the listening store heard the other process's disabling").toBe(true);
  });

  it('D2: a state change published when Redis has just died (store still shared) reaches the fleet once Redis answers again', async () => {
    const p = prefix('lost-change');
    const client = await connect(server.port, { enableOfflineQueue: false });
    const s = store(client, { prefix: p, recoveryIntervalMs: 100, commandTimeoutMs: 300 });
    const status = statusOf(s);
    await sleep(200);
    expect(status.current?.mode).toBe('shared');
    await server.stop();
    // A 401 disables a key before any command of the store noticed the outage.
    s.publish(disabled('k3', 'me'));
    await sleep(200);
    const modeAfterFailedWrite = status.current?.mode;
    // An admission notices the outage (its EVAL fails): the store goes local.
    await reserveOnce(s, [{ id: 'key:k3', kind: 'key', limits: { maxConcurrent: 2 } }]);
    expect(await waitUntil(() => status.current?.mode === 'local', 2_000), 'the store noticed the outage').toBe(true);
    await server.start();
    expect(await waitUntil(() => status.current?.mode === 'shared', 3_000), 'the store recovered').toBe(true);
    await sleep(300);
    const admin = await connect(server.port);
    expect(await admin.get(`{${p}}:state:key:k3`), 'the disabling stored for the fleet').not.toBeNull();
    expect(modeAfterFailedWrite, 'the failed SET/PUBLISH pipeline sent the store local').toBe('local');
  });

  it('D2b: a release whose ZREM pipeline fails (connection dropped, no restart) frees the slot in Redis once it answers, or at least reports the failure', async () => {
    const p = prefix('lost-release');
    const client = await connect(server.port, { enableOfflineQueue: false, retryStrategy: () => 400 });
    const s = store(client, { prefix: p, recoveryIntervalMs: 100 });
    const status = statusOf(s);
    const modes: string[] = [];
    subscriptions.push(s.status$.subscribe((st) => modes.push(st.mode)));
    const plan: AdmissionPlan = [{ id: 'key:one', kind: 'key', limits: { maxConcurrent: 1 } }];
    const held = await reserveOnce(s, plan);
    if (!held.ok) throw new Error('the first reservation fits');
    const admin = await connect(server.port);
    // The connection drops (a network blip; Redis keeps its data) ...
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await waitUntil(() => client.status !== 'ready', 1_000);
    // ... while the request ends and releases its slot.
    s.release(held.reservation);
    await waitUntil(() => client.status === 'ready', 3_000);
    await sleep(500);
    const left = await admin.zrange(`{${p}}:slots:key:one`, 0, -1);
    // Another process of the fleet wants the key's one slot, nobody holding it.
    const other = store(await connect(server.port), { prefix: p });
    const next = await reserveOnce(other, plan);
    expect({
      leasesLeftInRedis: left.length,
      otherProcessAdmitted: next.ok,
      modesSeen: modes.join(','),
      now: status.current?.mode,
    }).toEqual({
      leasesLeftInRedis: 0,
      otherProcessAdmitted: true,
      modesSeen: expect.any(String),
      now: 'shared',
    });
  });

  it("D3: onStoreError 'fail': a reservation that timed out (Redis slow) and failed its request takes no room in the fleet's quota once Redis runs it", async () => {
    const p = prefix('fail-slow');
    const s = store(await connect(server.port), { prefix: p, onStoreError: 'fail', commandTimeoutMs: 200 });
    const plan: AdmissionPlan = [{ id: 'key:slow', kind: 'key', limits: { quotas: [{ requests: 2, windowMs: 60_000 }] } }];
    const admin = await connect(server.port);
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    await sleep(50);
    await expect(reserveOnce(s, plan)).rejects.toBeInstanceOf(StoreUnavailableError);
    await sleep(800);
    const window = `{${p}}:window:key:slow:requests:60000`;
    // Refunded: its entry counts nothing (kept at 0, as a refund keeps it, so a late re-timing does not count it again).
    expect(Number(await admin.get(`${window}:sum`)), 'quota counted for requests that failed').toBe(0);
    // Two requests fit a quota of two.
    expect((await reserveOnce(s, plan)).ok).toBe(true);
    expect((await reserveOnce(s, plan)).ok).toBe(true);
  });

  it("D4a: a connection reset after Redis ran a reservation (ioredis resends it) counts it once: the window's :sum matches its entries", async () => {
    const p = prefix('resend');
    const proxy = await startProxy(server.port);
    try {
      const client = await connect(proxy.port);
      const s = store(client, { prefix: p });
      await sleep(300);
      const plan: AdmissionPlan = [{ id: 'key:reset', kind: 'key', limits: { quotas: [{ requests: 10, windowMs: 60_000 }] } }];
      proxy.dropNextReplyOn(0);
      const result = await reserveOnce(s, plan);
      expect(result.ok).toBe(true);
      const admin = await connect(server.port);
      const window = `{${p}}:window:key:reset:requests:60000`;
      const entries = await admin.zcard(window);
      const sum = Number(await admin.get(`${window}:sum`));
      expect(entries).toBe(1);
      expect(sum, 'the :sum counter (what admission reads)').toBe(entries);
    } finally {
      await proxy.close();
    }
  });

  it('D4b: a connection reset after Redis ran a reservation that took the last room: the request is admitted, not refused by its own entry (and no slot leaked)', async () => {
    const p = prefix('resend-last');
    const proxy = await startProxy(server.port);
    try {
      const client = await connect(proxy.port);
      const s = store(client, { prefix: p });
      await sleep(300);
      const plan: AdmissionPlan = [
        { id: 'key:last', kind: 'key', limits: { maxConcurrent: 1, quotas: [{ requests: 1, windowMs: 60_000 }] } },
      ];
      proxy.dropNextReplyOn(0);
      const result = await reserveOnce(s, plan);
      const admin = await connect(server.port);
      const slots = await admin.zrange(`{${p}}:slots:key:last`, 0, -1);
      expect({ ok: result.ok, slotsHeldInRedis: slots.length }).toEqual({ ok: true, slotsHeldInRedis: 1 });
    } finally {
      await proxy.close();
    }
  });

  it('D5: pool.dispose() fails a request whose reservation is waiting on a slow Redis at once, not when Redis answers', async () => {
    const fake = await startFakeOpenRouter({ keys: [{ key: TEST_KEYS.healthy1, label: 'a' }] });
    fakes.push(fake);
    const p = prefix('dispose');
    const s = store(await connect(server.port), { prefix: p, commandTimeoutMs: 5_000 });
    const pool = createKeyPool({
      baseURL: fake.baseURL,
      keys: [{ key: TEST_KEYS.healthy1, label: 'a', limits: { maxConcurrent: 4 } }],
      discoverAccounts: false,
      store: s,
    });
    pools.push(pool);
    await sleep(200);
    const admin = await connect(server.port);
    await admin.call('CLIENT', 'PAUSE', '2000', 'ALL');
    await sleep(50);
    let settledAt: number | undefined;
    let outcome = 'none';
    subscriptions.push(
      pool[POOL_PORT].acquire(
        { id: 'r', model: 'test/model-a', messages: [{ role: 'user', content: 'hi' }] },
        { models: ['test/model-a'] },
      ).subscribe({
        next: () => {
          outcome = 'lease';
          settledAt = Date.now();
        },
        error: (error: Error) => {
          outcome = `error ${error.name}`;
          settledAt = Date.now();
        },
      }),
    );
    await sleep(100);
    const disposedAt = Date.now();
    pool.dispose();
    await waitUntil(() => settledAt !== undefined, 3_000);
    expect(outcome).toContain('error');
    expect((settledAt ?? Infinity) - disposedAt, "ms from dispose() to the request's terminal outcome").toBeLessThan(200);
  });
});

describe('the Redis store on a server that refuses scripts', () => {
  it('a server that refuses EVAL keeps the store local (one change of mode), not flapping shared/local every recovery interval', async () => {
    const p = prefix('noeval');
    const admin = await connect(server.port);
    await admin.call('ACL', 'SETUSER', 'noeval', 'on', '>pw', '~*', '&*', '+@all', '-eval', '-evalsha');
    const client = await connect(server.port, { username: 'noeval', password: 'pw' });
    const s = store(client, { prefix: p, recoveryIntervalMs: 100 });
    const modes: string[] = [];
    subscriptions.push(s.status$.subscribe((st) => modes.push(st.mode)));
    const plan: AdmissionPlan = [{ id: 'key:n', kind: 'key', limits: { quotas: [{ requests: 1_000, windowMs: 60_000 }] } }];
    const results: boolean[] = [];
    for (let index = 0; index < 20; index++) {
      const r = await reserveOnce(s, plan);
      results.push(r.ok);
      if (r.ok) s.release(r.reservation);
      await sleep(50);
    }
    expect(results.every(Boolean), 'every admission served locally').toBe(true);
    expect(modes, 'status$ over 1 s').toEqual(['shared', 'local']);
  });
});

describe('the Redis store on a Redis Cluster', () => {
  const nodes: ChildProcess[] = [];
  const ports: number[] = [];
  beforeAll(async () => {
    for (let index = 0; index < 3; index++) {
      const port = await freePort();
      ports.push(port);
      const dir = mkdtempSync(join(tmpdir(), 'orx-cluster-'));
      nodes.push(
        spawn(
          'redis-server',
          [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, 'nodes.conf'),
            '--save',
            '',
            '--appendonly',
            'no',
            '--dir',
            dir,
          ],
          { stdio: 'ignore' },
        ),
      );
    }
    await sleep(500);
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8' },
    );
    if (created.status !== 0) throw new Error(created.stdout + created.stderr);
    // Wait for the cluster to agree.
    for (let i = 0; i < 100; i++) {
      const info = spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
      if (info.includes('cluster_state:ok')) break;
      await sleep(100);
    }
  }, 30_000);
  afterAll(() => {
    for (const node of nodes) node.kill('SIGKILL');
  });

  it('D6b: a store on a lazily connecting Cluster replays the stored states (it knows no node before a command connects it)', async () => {
    const p = prefix('cluster-lazy');
    const writer = new Cluster([{ host: '127.0.0.1', port: ports[0]! }]);
    writer.on('error', () => undefined);
    clusters.push(writer);
    await writer.set(`{${p}}:state:key:kl`, JSON.stringify(disabled('kl', 'other')));
    const lazy = new Cluster([{ host: '127.0.0.1', port: ports[0]! }], { lazyConnect: true });
    lazy.on('error', () => undefined);
    clusters.push(lazy);
    const later = createRedisStore({ client: lazy, prefix: p });
    stores.push(later);
    const heard: StateChange[] = [];
    subscriptions.push(later.changes$.subscribe((change) => heard.push(change)));
    expect(await waitUntil(() => heard.some((change) => change.target === 'kl' && change.replayed === true), 3_000)).toBe(true);
  }, 20_000);

  it('D6: a store on a Cluster replays the states the fleet stored (a pool started later finds a key disabled)', async () => {
    const p = prefix('cluster');
    const cluster = () => {
      const c = new Cluster([{ host: '127.0.0.1', port: ports[0]! }]);
      c.on('error', () => undefined);
      clusters.push(c);
      return c;
    };
    const first = createRedisStore({ client: cluster(), prefix: p });
    stores.push(first);
    await sleep(500);
    first.publish(disabled('kc', 'first'));
    await sleep(300);
    // Stored on the node that owns the prefix's slot.
    const owner = cluster();
    expect(await owner.get(`{${p}}:state:key:kc`)).not.toBeNull();
    let replayedBy = 0;
    const tries = 8;
    for (let index = 0; index < tries; index++) {
      const later = createRedisStore({ client: cluster(), prefix: p });
      stores.push(later);
      const heard: StateChange[] = [];
      subscriptions.push(later.changes$.subscribe((change) => heard.push(change)));
      if (await waitUntil(() => heard.some((change) => change.target === 'kc' && change.replayed === true), 1_500)) replayedBy++;
    }
    expect(replayedBy, `stores started later that replayed the disabling, of ${tries}`).toBe(tries);
  }, 40_000);
});

describe('the Redis store after a long outage', () => {
  it('keeps the releases Redis missed small (id and slot sets, none older than a lease) and makes them up in batches', async () => {
    const state = { up: false, pipelines: [] as number[] };
    const down = (): Promise<never> => Promise.reject(new Error('Connection is closed.'));
    const client: RedisClientLike = {
      eval: () => (state.up ? Promise.resolve([1, Date.now()]) : down()),
      get: () => Promise.resolve(null),
      pttl: () => Promise.resolve(-2),
      scan: () => (state.up ? Promise.resolve(['0', []] as [string, string[]]) : down()),
      ping: () => (state.up ? Promise.resolve('PONG') : down()),
      pipeline() {
        let commands = 0;
        const pipeline = {
          zrem: () => (commands++, pipeline),
          del: () => (commands++, pipeline),
          set: () => (commands++, pipeline),
          publish: () => (commands++, pipeline),
          exec: (): Promise<unknown> => {
            if (!state.up) return down();
            state.pipelines.push(commands);
            // 25 µs a command: one pipeline of every release would outlast the command timeout.
            return new Promise((resolve) => setTimeout(() => resolve([]), commands * 0.025));
          },
        };
        return pipeline;
      },
      duplicate: () => ({ on: () => undefined, subscribe: () => new Promise(() => undefined), disconnect: () => undefined }),
    };
    const s = createRedisStore({ client, prefix: prefix('outage'), recoveryIntervalMs: 100, leaseMs: 1_000, commandTimeoutMs: 300 });
    stores.push(s);
    const status = statusOf(s);
    const plan: AdmissionPlan = [{ id: 'key:a', kind: 'key', limits: { maxConcurrent: 10 } }];
    for (let index = 0; index < 20_000; index++) {
      const result = await reserveOnce(s, plan);
      if (!result.ok) throw new Error('refused');
      s.release(result.reservation);
    }
    const unreleased = (s as unknown as { leases: { unreleased: Set<object> } }).leases.unreleased;
    await waitUntil(() => unreleased.size === 20_000, 1_000);
    expect(Object.keys([...unreleased][0]!).sort()).toEqual(['at', 'id', 'slots']);
    state.up = true;
    expect(await waitUntil(() => status.current?.mode === 'shared', 5_000), 'recovered').toBe(true);
    expect(unreleased.size).toBe(0);
    expect(Math.max(...state.pipelines)).toBeLessThanOrEqual(500);
  }, 30_000);

  it('keeps the releases a make-up round had not sent when a newer round cuts it short (a second reconnect)', async () => {
    let failing = true;
    const removed = new Set<string>();
    const answers: Array<() => void> = [];
    const client = {
      pipeline() {
        const ids: string[] = [];
        const pipeline = {
          zrem: (_key: string, id: string) => (ids.push(id), pipeline),
          exec: (): Promise<unknown> =>
            failing
              ? Promise.reject(new Error('down'))
              : new Promise((resolve) =>
                  answers.push(() => {
                    for (const id of ids) removed.add(id);
                    resolve([]);
                  }),
                ),
        };
        return pipeline;
      },
      eval: () => Promise.resolve(0),
    };
    const leases = new SlotLeases(client as unknown as RedisClientLike, 60_000, (run) =>
      from(Promise.resolve().then(run)).pipe(timeout({ first: 5_000 })),
    );
    for (let index = 0; index < 1_200; index++) await leases.release({ id: `r${index}`, slots: ['s'] }, 1_000).catch(() => undefined);
    failing = false;
    const first = leases.putBack(() => [], 2_000).subscribe({ error: () => undefined });
    await sleep(10);
    answers.shift()!(); // the first batch of 500 is freed
    await sleep(10);
    first.unsubscribe(); // the second batch in flight, the third never sent
    const second = new Promise<void>((resolve, reject) => leases.putBack(() => [], 2_000).subscribe({ complete: resolve, error: reject }));
    for (let round = 0; round < 10; round++) {
      await sleep(10);
      for (const answer of answers.splice(0)) answer();
    }
    await second;
    expect(removed.size).toBe(1_200);
  });
});
