import { vi } from 'vitest';

/** Node runs a longer timer after 1 ms, with a `TimeoutOverflowWarning`. */
export const NODE_TIMER_LIMIT_MS = 2 ** 31 - 1;

/**
 * Records every delay handed to Node's `setTimeout` and `setInterval` (RxJS's async scheduler and
 * the SDK use them), and every `TimeoutOverflowWarning`, until `stop()`. The timers still run as
 * usual. Call `vi.restoreAllMocks()` (or `stop()`) after the test.
 */
export function watchTimers(): { delays: number[]; warnings: string[]; stop: () => void } {
  const delays: number[] = [];
  const warnings: string[] = [];
  const realSetInterval = globalThis.setInterval;
  const realSetTimeout = globalThis.setTimeout;
  const intervalSpy = vi.spyOn(globalThis, 'setInterval').mockImplementation(((handler: () => void, delay?: number, ...rest: unknown[]) => {
    delays.push(delay ?? 0);
    return realSetInterval(handler, delay, ...rest);
  }) as typeof setInterval);
  const timeoutSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((handler: () => void, delay?: number, ...rest: unknown[]) => {
    delays.push(delay ?? 0);
    return realSetTimeout(handler, delay, ...rest);
  }) as typeof setTimeout);
  const onWarning = (warning: Error) => {
    if (warning.name === 'TimeoutOverflowWarning') warnings.push(warning.message);
  };
  process.on('warning', onWarning);
  return {
    delays,
    warnings,
    stop: () => {
      intervalSpy.mockRestore();
      timeoutSpy.mockRestore();
      process.off('warning', onWarning);
    },
  };
}
