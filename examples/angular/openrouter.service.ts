import { DestroyRef, Injectable, inject } from '@angular/core';
import { auditTime, distinctUntilChanged, filter, map, scan, shareReplay, type Observable } from 'rxjs';
import type { ChatRequest, KeyHealth, ModelHealth, PoolHealth } from '../../src/index.js';
import { OPENROUTER_POOL } from './openrouter.providers.js';

/**
 * What components need of the pool: completions as Observables, and health as streams a template
 * can bind to. The health streams are throttled (the pool emits on every change, which can be
 * hundreds a second under load) and shared, so any number of components cost one subscription.
 */
@Injectable({ providedIn: 'root' })
export class OpenRouterService {
  private readonly pool = inject(OPENROUTER_POOL);

  /** Every key and model, at most four times a second. */
  readonly health$: Observable<PoolHealth> = this.pool.health$.pipe(auditTime(250), shareReplay({ bufferSize: 1, refCount: true }));

  readonly keys$: Observable<readonly KeyHealth[]> = this.health$.pipe(map((health) => health.keys));

  readonly models$: Observable<readonly ModelHealth[]> = this.health$.pipe(map((health) => health.models));

  /** Keys that cannot take traffic now (open, disabled or exhausted), for a warning banner. */
  readonly unavailableKeys$: Observable<number> = this.keys$.pipe(
    map((keys) => keys.filter((key) => key.state !== 'closed' && key.state !== 'half-open').length),
    distinctUntilChanged(),
  );

  constructor() {
    // The pool's timers and streams end with the application.
    inject(DestroyRef).onDestroy(() => this.pool.dispose());
  }

  /** One key's health, by label. */
  key$(label: string): Observable<KeyHealth> {
    return this.pool.key(label).health$;
  }

  /** The answer to a prompt, once complete; errors with a typed `OpenRouterError`. */
  complete(prompt: string, model: string, options: Partial<ChatRequest> = {}): Observable<string> {
    return this.pool
      .complete({ ...options, model, messages: [{ role: 'user', content: prompt }] })
      .pipe(map((event) => event.completion.content));
  }

  /**
   * The answer as it is written: each emission is the text so far, so a template shows it with a
   * plain binding. A `restart` (an attempt broke mid-stream and another key took over) clears it.
   */
  stream(prompt: string, model: string, options: Partial<ChatRequest> = {}): Observable<string> {
    return this.pool.stream({ ...options, model, messages: [{ role: 'user', content: prompt }] }, { onMidStreamError: 'restart' }).pipe(
      filter((event) => event.type !== 'completion'),
      scan((text, event) => (event.type === 'chunk' ? text + event.delta : ''), ''),
    );
  }
}
