import { filter, map, of, type Observable, type OperatorFunction } from 'rxjs';
import type { ChatRequest } from './core/types.js';
import { withFields } from './core/objects.js';
import { resolvePoolConfig, type KeyPoolInput } from './pool/config.js';
import { Pool } from './pool/key-pool.js';
import type { PoolCore } from './pool/types.js';
import {
  balance,
  type BalanceEvent,
  type BalanceOptions,
  type ChunkEvent,
  type CompletionEvent,
  type RestartEvent,
} from './operators/balance.js';

/** A key pool with its one-call shortcuts, which run through `balance` like any request. */
export interface KeyPool extends PoolCore {
  /** One request, not streamed: emits its `completion` event, or errors with its typed error. */
  complete(request: ChatRequest, options?: BalanceOptions): Observable<CompletionEvent>;
  /** One streamed request: emits `chunk` (and `restart`) events, then its `completion`; errors on failure. */
  stream(request: ChatRequest, options?: BalanceOptions): Observable<ChunkEvent | RestartEvent | CompletionEvent>;
}

/**
 * The pool and the shortcuts, assembled here so that the pool never imports the operators built
 * on it.
 */
class BalancedPool extends Pool implements KeyPool {
  /** One shared `balance` for calls without options, so its retry budget spans them all. */
  private defaultBalance: OperatorFunction<ChatRequest, BalanceEvent> | undefined;

  complete(request: ChatRequest, options?: BalanceOptions): Observable<CompletionEvent> {
    return this.single(streaming(request, false), options).pipe(filter((event): event is CompletionEvent => event.type === 'completion'));
  }

  stream(request: ChatRequest, options?: BalanceOptions): Observable<ChunkEvent | RestartEvent | CompletionEvent> {
    return this.single(streaming(request, true), options);
  }

  private single(request: ChatRequest, options: BalanceOptions | undefined): Observable<ChunkEvent | RestartEvent | CompletionEvent> {
    const route = options === undefined ? (this.defaultBalance ??= balance(this)) : balance(this, options);
    return of(request).pipe(
      route,
      map((event: BalanceEvent) => {
        if (event.type === 'failed') throw event.error;
        return event;
      }),
    );
  }
}

/** Creates a key pool. Validates `config` with zod and throws a `ValidationError` naming the field. */
export function createPool(config: KeyPoolInput): KeyPool {
  return new BalancedPool(resolvePoolConfig(config));
}

/** The request with `stream` set; anything else as it is, for `balance` to refuse with the field it lacks. */
function streaming(request: ChatRequest, stream: boolean): ChatRequest {
  return typeof request === 'object' && request !== null ? withFields(request, { stream }) : request;
}
