/**
 * openrouter-rx as its README shows it: `createKeyPool` over the keys (with the quotas the user
 * knows, where a scenario tells them; in the issue 12 rows nothing but the keys), and one
 * long-lived `balance(pool, { concurrency })` stream that every request of the scenario goes through. Defaults everywhere else. The code is `src/` built as `dist/` is (see
 * `support/library.ts`).
 */
import { Subject, type Subscription } from 'rxjs';
import type { BalanceEvent, ChatRequest, KeyPool, KeyPoolOptions, PoolEvent, PoolHealth } from '../../src/index.js';
import { loadLibrary, type LibraryModule } from '../support/library.js';
import { failure, type BenchKey, type Outcome, type Peer, type PeerContext, type PeerObservations, type PeerSession } from './types.js';

interface Waiter {
  resolve(outcome: Outcome): void;
  chunks: number;
}

function limitsOf(key: BenchKey): NonNullable<KeyPoolOptions['keys'][number]['limits']> | undefined {
  const known = key.limits;
  if (known === undefined) return undefined;
  return {
    ...(known.rpm === undefined ? {} : { rpm: known.rpm }),
    ...(known.maxConcurrent === undefined ? {} : { maxConcurrent: known.maxConcurrent }),
    ...(known.quota === undefined ? {} : { quotas: [{ requests: known.quota.requests, windowMs: known.quota.windowMs }] }),
  };
}

/** The pool the library peer uses for a context; the scale scenario builds one the same way. */
export function poolFor(library: LibraryModule, context: PeerContext): KeyPool {
  const { createKeyPool, createOpenRouterTransport } = library;
  const keys = context.keys.map((key) => {
    const limits = limitsOf(key);
    return { key: key.key, label: key.label, ...(limits === undefined ? {} : { limits }) };
  });
  return createKeyPool({
    baseURL: context.baseURL,
    keys,
    ...(context.fetch === undefined
      ? {}
      : {
          transport: createOpenRouterTransport({ baseURL: context.baseURL, fetch: context.fetch }),
          // The scale scenario's transport never answers: no answer can ever raise an adaptive
          // limit (it would hold the 10,000 requests it measures in the queue), and its keys'
          // info would be read from an address that does not answer either.
          adaptiveConcurrency: false,
          discoverAccounts: false,
        }),
  });
}

/**
 * One key pick as the scale row times it: admission as an attempt makes it (the strategy's pick,
 * the quota and concurrency checks, the lease) and its release; at once where a key is free
 * (`acquireNow`), else through the queue.
 */
export function pickOnce(port: KeyPool[LibraryModule['POOL_PORT']], probe: ChatRequest, options: { models: string[] }): void {
  const granted = port.acquireNow?.(probe, options);
  if (granted === undefined) port.acquire(probe, options).subscribe().unsubscribe();
  else if (!(granted instanceof Error)) granted.release();
}

/**
 * Counts the pool's events, for `observe`: every type, the cooldowns and retries in detail, and the
 * quotas learnt and concurrency limits the pool reports (read loosely: those events are newer than
 * some trees the bench runs on).
 */
class EventTally {
  readonly types: Record<string, number> = {};
  readonly parks: Record<string, number> = {};
  readonly retries: Record<string, number> = {};
  readonly concurrency: PeerObservations['concurrency'] = {};
  readonly learned: Record<string, number> = {};
  longestParkMs = 0;
  totalParkMs = 0;

  add(event: PoolEvent): void {
    this.types[event.type] = (this.types[event.type] ?? 0) + 1;
    const loose = event as { type: string; limit?: unknown } & Record<string, unknown>;
    const quota = loose['quota'] as { requests?: unknown; windowMs?: unknown } | undefined;
    if (loose.type === 'limit-learned' && typeof quota?.requests === 'number' && typeof quota.windowMs === 'number') {
      const name = `${String(loose['scope'])} ${quota.requests}/${quota.windowMs} ms (${String(loose['cause'])})`;
      this.learned[name] = (this.learned[name] ?? 0) + 1;
    }
    if (loose.type === 'concurrency' && typeof loose.limit === 'number') {
      // Whatever names what the limit is of (`scope` and `target`, or `account` and `model`).
      const name =
        ['scope', 'target', 'account', 'model']
          .map((field) => loose[field])
          .filter((value): value is string => typeof value === 'string')
          .join(' ') || 'pool';
      const seen = this.concurrency[name];
      this.concurrency[name] =
        seen === undefined
          ? { first: loose.limit, last: loose.limit, min: loose.limit, max: loose.limit, changes: 1 }
          : {
              first: seen.first,
              last: loose.limit,
              min: Math.min(seen.min, loose.limit),
              max: Math.max(seen.max, loose.limit),
              changes: seen.changes + 1,
            };
    }
    if (event.type === 'cooldown') {
      const name = `${event.scope} ${event.reason}`;
      this.parks[name] = (this.parks[name] ?? 0) + 1;
      const length = Math.max(0, event.until - event.at);
      this.longestParkMs = Math.max(this.longestParkMs, length);
      this.totalParkMs += length;
    } else if (event.type === 'retry') {
      this.retries[event.reason] = (this.retries[event.reason] ?? 0) + 1;
    }
  }
}

/** How the pool's health groups the keys, what quotas it shows, and what its events said. */
function observationsOf(health: PoolHealth, tally: EventTally): PeerObservations {
  const accountOfKey: Record<string, string> = {};
  const quotas = new Map<string, PeerObservations['quotas'][number]>();
  for (const key of health.keys) {
    accountOfKey[key.label] = key.account;
    for (const quota of key.quota) {
      // `source` (told, learnt, key info) where the tree has it.
      const source = (quota as { source?: unknown }).source;
      const entry = {
        scope: quota.scope,
        unit: quota.unit,
        limit: quota.limit,
        windowMs: quota.windowMs,
        ...(typeof source === 'string' ? { source } : {}),
      };
      quotas.set(`${entry.scope}/${entry.unit}/${entry.limit}/${entry.windowMs}/${entry.source ?? ''}`, entry);
    }
  }
  return {
    accounts: new Set(Object.values(accountOfKey)).size,
    accountOfKey,
    quotas: [...quotas.values()],
    parks: { ...tally.parks },
    longestParkMs: Math.round(tally.longestParkMs),
    totalParkMs: Math.round(tally.totalParkMs),
    retries: { ...tally.retries },
    concurrency: { ...tally.concurrency },
    learned: { ...tally.learned },
    events: { ...tally.types },
  };
}

export const libraryPeer: Peer = {
  id: 'library',
  name: 'openrouter-rx',
  description:
    'createKeyPool (with the key quotas where a scenario tells them; in the untold rows keys only: no limits, no account) + one balance(pool, { concurrency }) stream; every other option at its default',
  async start(context: PeerContext): Promise<PeerSession> {
    const library = await loadLibrary();
    const { balance } = library;
    const pool = poolFor(library, context);
    const port = pool[library.POOL_PORT];
    // Only when asked: a subscriber on `events$` would cost the overhead scenario CPU per attempt.
    const tally = new EventTally();
    const events = context.observe === true ? pool.events$.subscribe((event) => tally.add(event)) : undefined;
    const input = new Subject<ChatRequest>();
    const waiters = new Map<string, Waiter>();
    const subscription: Subscription = input.pipe(balance(pool, { concurrency: context.concurrency })).subscribe((event: BalanceEvent) => {
      const waiter = waiters.get(event.requestId);
      if (waiter === undefined) return;
      switch (event.type) {
        case 'chunk':
          waiter.chunks++;
          return;
        case 'restart':
          waiter.chunks = 0;
          return;
        case 'completion':
          waiters.delete(event.requestId);
          waiter.resolve({ ok: true, chunks: waiter.chunks, keyLabel: event.keyLabel });
          return;
        case 'failed':
          waiters.delete(event.requestId);
          waiter.resolve(failure(event.error));
          return;
      }
    });
    const probe: ChatRequest = { model: context.model, messages: [{ role: 'user', content: 'pick' }], max_tokens: 16 };
    const probeOptions = { models: [context.model] };
    return {
      run(request) {
        return new Promise<Outcome>((resolve) => {
          waiters.set(request.id, { resolve, chunks: 0 });
          input.next({
            id: request.id,
            model: context.model,
            messages: request.messages,
            max_tokens: request.max_tokens,
            stream: request.stream,
          });
        });
      },
      pick: () => pickOnce(port, probe, probeOptions),
      ...(context.observe === true ? { observe: () => observationsOf(pool.snapshot(), tally) } : {}),
      async close() {
        subscription.unsubscribe();
        events?.unsubscribe();
        for (const waiter of waiters.values()) waiter.resolve({ ok: false, error: 'aborted by the bench' });
        waiters.clear();
        pool.dispose();
      },
    };
  },
};
