import type { SchedulerLike } from 'rxjs';
import * as z from 'zod/mini';
import { clientOptionsSchema, httpUrlSchema, type OpenRouterClientOptions } from './client-options.js';

/** Options of `createOpenRouterTransport` and `createFetchTransport`: how to reach OpenRouter, plus stream end handling. */
export interface OpenRouterTransportOptions extends OpenRouterClientOptions {
  /**
   * How long to wait, once a stream has sent its `finish_reason`, for the usage chunk or the end
   * of the stream, before completing anyway and closing the socket. Default 1000 ms.
   */
  doneGraceMs?: number;
  /** Runs the grace timers (and the fetch transport's `timeoutMs`); default: `asyncScheduler`’s timers, on a clock that never goes back (`steadyScheduler`). */
  scheduler?: SchedulerLike;
}

export const DEFAULT_DONE_GRACE_MS = 1000;

export const transportOptionsSchema = z.extend(clientOptionsSchema, {
  doneGraceMs: z.optional(z.number().check(z.nonnegative())),
  scheduler: z.optional(
    z.custom<SchedulerLike>((value) => typeof value === 'object' && value !== null && typeof value.schedule === 'function', {
      message: 'expected an RxJS scheduler',
    }),
  ),
});

/**
 * `createFetchTransport`'s options: its `baseURL` may also be a path such as `/api/openrouter`,
 * which `fetch` resolves against the page, as a browser app calling its own backend writes it.
 */
export const fetchTransportOptionsSchema = z.extend(transportOptionsSchema, {
  baseURL: z.optional(
    z.string().check(
      z.refine((text) => httpUrlSchema.safeParse(text).success || (text.startsWith('/') && !text.startsWith('//')), {
        error: "must be an http:// or https:// URL, or a path on the page's own origin such as /api/openrouter",
      }),
    ),
  ),
});
