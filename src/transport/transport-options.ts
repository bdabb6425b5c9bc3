import type { SchedulerLike } from 'rxjs';
import * as z from 'zod';
import { clientOptionsSchema, type OpenRouterClientOptions } from './client-options.js';

/** Options of `createOpenRouterTransport` and `createFetchTransport`: how to reach OpenRouter, plus stream end handling. */
export interface OpenRouterTransportOptions extends OpenRouterClientOptions {
  /**
   * How long to wait, once a stream has sent its `finish_reason`, for the usage chunk or the end
   * of the stream, before completing anyway and closing the socket. Default 1000 ms.
   */
  doneGraceMs?: number;
  /** Runs the grace timers (and the fetch transport's `timeoutMs`); default `asyncScheduler`. */
  scheduler?: SchedulerLike;
}

export const DEFAULT_DONE_GRACE_MS = 1000;

export const transportOptionsSchema = clientOptionsSchema.extend({
  doneGraceMs: z.number().nonnegative().optional(),
  scheduler: z
    .custom<SchedulerLike>(
      (value) => typeof value === 'object' && value !== null && typeof (value as SchedulerLike).schedule === 'function',
      {
        message: 'expected an RxJS scheduler',
      },
    )
    .optional(),
});
