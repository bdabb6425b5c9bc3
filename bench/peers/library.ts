/**
 * openrouter-rx as its README shows it: `createKeyPool` over the keys (with the quotas the user
 * knows), and one long-lived `balance(pool, { concurrency })` stream that every request of the
 * scenario goes through. Defaults everywhere else. The code is `src/` built as `dist/` is (see
 * `support/library.ts`).
 */
import { Subject, type Subscription } from 'rxjs';
import type { BalanceEvent, ChatRequest, KeyPool, KeyPoolOptions } from '../../src/index.js';
import { loadLibrary, type LibraryModule } from '../support/library.js';
import { failure, type BenchKey, type Outcome, type Peer, type PeerContext, type PeerSession } from './types.js';

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
    ...(context.fetch === undefined ? {} : { transport: createOpenRouterTransport({ baseURL: context.baseURL, fetch: context.fetch }) }),
  });
}

export const libraryPeer: Peer = {
  id: 'library',
  name: 'openrouter-rx',
  description:
    'createKeyPool (key quotas as the user knows them) + one balance(pool, { concurrency }) stream; every other option at its default',
  async start(context: PeerContext): Promise<PeerSession> {
    const library = await loadLibrary();
    const { balance } = library;
    const pool = poolFor(library, context);
    const port = pool[library.POOL_PORT];
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
      pick() {
        // Admission as an attempt sees it: the strategy's pick, the quota and concurrency checks,
        // the lease, and its release.
        port.acquire(probe, probeOptions).subscribe().unsubscribe();
      },
      async close() {
        subscription.unsubscribe();
        for (const waiter of waiters.values()) waiter.resolve({ ok: false, error: 'aborted by the bench' });
        waiters.clear();
        pool.dispose();
      },
    };
  },
};
