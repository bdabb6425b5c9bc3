/**
 * The `logger` option: the pool's events as structured log calls at their level, filtered by
 * `logLevel`, never with key text, and a logger that throws never breaks a request.
 */
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { balance, createKeyPool, type ChatRequest, type LogLevel, type PoolLogger } from '../src/index.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const KEYS = [
  { key: TEST_KEYS.alpha, label: 'log-revoked' },
  { key: TEST_KEYS.beta, label: 'log-healthy' },
];
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Entry {
  level: LogLevel;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger(): { logger: PoolLogger; entries: Entry[] } {
  const entries: Entry[] = [];
  const at = (level: LogLevel) => (fields: Record<string, unknown>, message: string) => entries.push({ level, fields, message });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, entries };
}

async function run(options: { logger: PoolLogger; logLevel?: LogLevel }): Promise<number> {
  const fake: FakeOpenRouter = await startFakeOpenRouter({ keys: [{ ...KEYS[0]!, revoked: true }, KEYS[1]!] });
  cleanups.push(() => fake.close());
  const pool = createKeyPool({ baseURL: fake.baseURL, keys: KEYS, strategy: 'roundRobin', discoverAccounts: false, ...options });
  cleanups.push(() => pool.dispose());
  const requests: ChatRequest[] = Array.from({ length: 4 }, (_, index) => ({
    model: 'test/log',
    messages: [{ role: 'user', content: `q${index}` }],
  }));
  const events = await lastValueFrom(from(requests).pipe(balance(pool, { concurrency: 1 }), toArray()));
  return events.filter((event) => event.type === 'completion').length;
}

describe('the logger option', () => {
  it('logs each event at its level with structured fields: attempts and successes at debug, a revoked key at warn', async () => {
    const { logger, entries } = recordingLogger();
    expect(await run({ logger, logLevel: 'debug' })).toBe(4);
    const of = (event: string) => entries.filter((entry) => entry.fields['event'] === event);
    expect(of('attempt').every((entry) => entry.level === 'debug')).toBe(true);
    expect(of('success')).toHaveLength(4);
    expect(of('success').every((entry) => entry.level === 'debug' && entry.fields['keyLabel'] === 'log-healthy')).toBe(true);
    expect(of('failure')).toEqual([
      expect.objectContaining({
        level: 'warn',
        fields: expect.objectContaining({ keyLabel: 'log-revoked', kind: 'authentication', status: 401 }),
      }),
    ]);
    expect(of('cooldown')).toEqual([
      expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ target: 'log-revoked', reason: 'disabled' }) }),
    ]);
    expect(entries.every((entry) => typeof entry.message === 'string' && entry.message.length > 0)).toBe(true);
    expect(leakedKeyLabels(JSON.stringify(entries))).toEqual([]);
  });

  it('logs nothing below logLevel (info by default)', async () => {
    const { logger, entries } = recordingLogger();
    expect(await run({ logger })).toBe(4);
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.filter((entry) => entry.level === 'debug')).toEqual([]);
    const warnOnly = recordingLogger();
    expect(await run({ logger: warnOnly.logger, logLevel: 'warn' })).toBe(4);
    expect(warnOnly.entries.map((entry) => entry.level).every((level) => level === 'warn' || level === 'error')).toBe(true);
    expect(warnOnly.entries.length).toBeGreaterThan(0);
  });

  it('a logger that throws, or lacks a level, breaks nothing', async () => {
    const throwing: PoolLogger = {
      warn: () => {
        throw new Error('log sink down');
      },
    };
    expect(await run({ logger: throwing, logLevel: 'debug' })).toBe(4);
  });

  it('an async logger whose promise rejects leaves no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      // A logger typed loosely (as JS callers write them): its methods return promises.
      const rejecting = { warn: () => Promise.reject(new Error('async log sink down')) } as unknown as PoolLogger;
      expect(await run({ logger: rejecting, logLevel: 'debug' })).toBe(4);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('refuses a logger that is not an object, naming the field', () => {
    expect(() => createKeyPool({ keys: KEYS, logger: 'console' as never })).toThrow(/logger: expected a logger/);
    expect(() => createKeyPool({ keys: KEYS, logLevel: 'verbose' as never })).toThrow(
      /logLevel: expected one of "debug", "info", "warn", "error"|logLevel: Invalid option/,
    );
  });
});
