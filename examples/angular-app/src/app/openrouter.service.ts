import { DestroyRef, Injectable, inject } from '@angular/core';
import { auditTime, catchError, distinctUntilChanged, map, of, scan, shareReplay, startWith, type Observable } from 'rxjs';
import type { ChatRequest, KeyHealth, PoolHealth } from 'openrouter-rx';
import { OPENROUTER_POOL } from './openrouter.providers';

/** What a template shows of one answer: the text so far, and where it stands. */
export interface Reply {
  status: 'idle' | 'streaming' | 'done' | 'failed';
  text: string;
  /** The key that served it (the last attempt's). */
  keyLabel?: string;
  /** Attempts it took, once done. */
  attempts?: number;
  /** Why it failed. */
  error?: string;
}

export const IDLE_REPLY: Reply = { status: 'idle', text: '' };

/**
 * What components need of the pool: answers as Observables, and health as streams a template
 * can bind to. The health streams are throttled (the pool emits on every change, which can be
 * hundreds a second under load) and shared, so any number of components cost one subscription.
 */
@Injectable({ providedIn: 'root' })
export class OpenRouterService {
  private readonly pool = inject(OPENROUTER_POOL);

  /** The pool's health, at most four times a second. */
  readonly health$: Observable<PoolHealth> = this.pool.health$.pipe(auditTime(250), shareReplay({ bufferSize: 1, refCount: true }));

  readonly keys$: Observable<readonly KeyHealth[]> = this.health$.pipe(map((health) => health.keys));

  /** Keys that cannot take traffic now (open, disabled or exhausted), for a warning banner. */
  readonly unavailableKeys$: Observable<number> = this.keys$.pipe(
    map((keys) => keys.filter((key) => key.state !== 'closed' && key.state !== 'half-open').length),
    distinctUntilChanged(),
  );

  constructor() {
    // The pool's timers and streams end with the application.
    inject(DestroyRef).onDestroy(() => this.pool.dispose());
  }

  /**
   * The answer as it is written: each emission is the reply so far, so a template shows it with
   * plain bindings. A `restart` (an attempt broke mid-stream and another key took over) clears the
   * text; a failure becomes a `failed` reply, so the stream feeding a signal never errors.
   */
  stream(prompt: string, model: string, options: Partial<ChatRequest> = {}): Observable<Reply> {
    const streaming: Reply = { status: 'streaming', text: '' };
    return this.pool.stream({ ...options, model, messages: [{ role: 'user', content: prompt }] }, { onMidStreamError: 'restart' }).pipe(
      scan((reply: Reply, event): Reply => {
        switch (event.type) {
          case 'chunk':
            return { ...reply, text: reply.text + event.delta, keyLabel: event.keyLabel };
          case 'restart':
            return { ...reply, text: '' };
          case 'completion':
            return { status: 'done', text: event.completion.content, keyLabel: event.keyLabel, attempts: event.attempts };
        }
      }, streaming),
      startWith(streaming),
      catchError((error: unknown) =>
        of<Reply>({ status: 'failed', text: '', error: error instanceof Error ? error.message : String(error) }),
      ),
    );
  }
}
