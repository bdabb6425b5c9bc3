import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Observable, distinctUntilChanged, filter, map, of, type SchedulerLike, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { AuthenticationError, InsufficientCreditsError, RateLimitError, UpstreamError, type RateLimitInfo } from '../src/core/errors.js';
import { classifyHttpError } from '../src/wire/classify.js';
import { createPool, type KeyPool } from '../src/create-pool.js';
import type { KeyInfoSnapshot } from '../src/pool/config.js';
import type { PoolEvent } from '../src/pool/events.js';
import { SendLog } from '../src/pool/send-log.js';
import { AdaptiveLimit } from '../src/health/adaptive-limit.js';
import { Limiter, type LimiterHold } from '../src/health/limiter.js';
import type { QuotaRemaining } from '../src/health/records.js';
import { POOL_PORT, type KeyLease } from '../src/pool/types.js';
import { createMemoryStore } from '../src/store/state-store.js';
import { MODEL, chatRequest, newTestScheduler, predictablePool, scriptedTransport, type PoolOverrides } from './support.js';

/**
 * Limits nobody configured: quotas learned from a platform 429's `X-RateLimit-*`, concurrency
 * found by AIMD from provider 429s, accounts and free-model quotas read from key info. The pool
 * is driven through `acquire` and `record`, as the operators drive it, on virtual time.
 */

const DAY_MS = 86_400_000;

function makePool(scheduler: TestScheduler, overrides: PoolOverrides = {}): KeyPool {
  const { transport } = scriptedTransport(scheduler, {});
  return predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }], {
    strategy: 'roundRobin',
    // Entries count from admission, as a transport that reports its sends would make them.
    store: createMemoryStore({ arrivalMarginMs: 0 }),
    ...overrides,
  });
}

/** A platform 429 reporting its quota, as the classifier builds it from `X-RateLimit-*`. */
function platform429(rateLimit: RateLimitInfo, scope: 'key' | 'account' = 'key'): RateLimitError {
  return new RateLimitError({
    message: `429 Rate limit exceeded: ${rateLimit.bucket ?? 'requests-per-key'}`,
    scope,
    retryable: true,
    status: 429,
    retryAfterMs: rateLimit.resetAfterMs,
    rateLimit: { bucket: 'requests-per-key', ...rateLimit },
  });
}

function provider429(): RateLimitError {
  return new RateLimitError({ message: '429 Provider returned error', scope: 'model', retryable: true, status: 429, providerName: 'Acme' });
}

interface Driver {
  /** Admission times of the requests sent with `send`, in order. */
  readonly admitted: number[];
  /** Asks for a key at `at`; the attempt holds it `holdMs`, then ends as `outcome` says. */
  send(at: number, holdMs: number, outcome?: 'success' | Error | ((lease: KeyLease) => void), model?: string): void;
}

function driver(scheduler: TestScheduler, pool: KeyPool): Driver {
  const port = pool[POOL_PORT];
  const admitted: number[] = [];
  return {
    admitted,
    send(at, holdMs, outcome = 'success', model = MODEL) {
      scheduler.schedule(() => {
        let held: Subscription | undefined = undefined;
        held = port.acquire(chatRequest('hi', { model }), { models: [model] }).subscribe((lease) => {
          admitted.push(port.scheduler.now());
          scheduler.schedule(() => {
            if (outcome === 'success') {
              // The answer's first byte, then its end (withKeyRotation calls them so).
              lease.markResponded();
              port.record({ type: 'success', keyLabel: lease.label, model: lease.model, latencyMs: holdMs });
            } else if (typeof outcome === 'function') {
              outcome(lease);
            } else {
              lease.markResponded(false);
              if (outcome instanceof RateLimitError && outcome.rateLimit !== undefined) lease.refund();
              port.record({
                type: 'failure',
                keyLabel: lease.label,
                model: lease.model,
                error: outcome as RateLimitError,
                sentAt: lease.sentAt,
              });
            }
            held?.unsubscribe();
          }, holdMs);
        });
      }, at);
    },
  };
}

/** A key's info as `GET /api/v1/key` reads, naming its creator. */
const infoOf = (creator: string, extra: Partial<KeyInfoSnapshot> = {}): KeyInfoSnapshot => ({
  limit: null,
  limitRemaining: null,
  usage: 0,
  isFreeTier: false,
  creatorUserId: creator,
  ...extra,
});

function eventsOf<Type extends PoolEvent['type']>(pool: KeyPool, type: Type): Extract<PoolEvent, { type: Type }>[] {
  const seen: Extract<PoolEvent, { type: Type }>[] = [];
  pool.events$
    .pipe(filter((event): event is Extract<PoolEvent, { type: Type }> => event.type === type))
    .subscribe((event) => seen.push(event));
  return seen;
}

describe('learned quotas: learn, enforce, re-probe, replace', () => {
  it("learns L per window from a 429's X-RateLimit-* and its own sends, then spreads requests over the window as the server's opens", () => {
    const scheduler = newTestScheduler();
    let learned: PoolEvent[] = [];
    let drive!: Driver;
    let pool!: KeyPool;
    scheduler.run(() => {
      pool = makePool(scheduler);
      learned = eventsOf(pool, 'limit-learned');
      drive = driver(scheduler, pool);
      // 5 requests in the first 400 ms, all counted by a server that admits 5 per second.
      for (const at of [0, 100, 200, 300, 400]) drive.send(at, 10);
      // The 6th is refused: limit 5, the window has room again at 1000 (when the send at 0 leaves).
      drive.send(500, 10, platform429({ limit: 5, remaining: 0, resetAfterMs: 490 }));
      // Five more wait: they go out one by one as the learned window opens, not all at the reset.
      for (let index = 0; index < 5; index++) drive.send(520, 10);
    });
    expect(learned).toEqual([
      {
        type: 'limit-learned',
        scope: 'key',
        target: 'key:k1',
        quota: { requests: 5, windowMs: 1000, source: 'learned', bucket: 'requests-per-key' },
        cause: 'learned',
        at: 510,
      },
    ]);
    // Each send counts from its answer's first byte (10 ms after it went out), by when the server
    // had surely counted it: the window opens 10 ms after the server's, never before.
    expect(drive.admitted).toEqual([0, 100, 200, 300, 400, 500, 1010, 1110, 1210, 1310, 1410]);
    const quota = pool.snapshot().keys[0]!.quota;
    expect(quota).toEqual([expect.objectContaining({ scope: 'key', unit: 'requests', limit: 5, windowMs: 1000, source: 'learned' })]);
  });

  it('a burst of 429s that teach the same quota says so once', () => {
    const scheduler = newTestScheduler();
    let learned: PoolEvent[] = [];
    scheduler.run(() => {
      const pool = makePool(scheduler);
      learned = eventsOf(pool, 'limit-learned');
      const drive = driver(scheduler, pool);
      for (const at of [0, 100, 200, 300, 400]) drive.send(at, 10);
      // Three sent at once, all refused by the same full window.
      for (let index = 0; index < 3; index++)
        drive.send(500, 10 + index, platform429({ limit: 5, remaining: 0, resetAfterMs: 490 - index }));
    });
    expect(
      learned.map((event) => event.type === 'limit-learned' && `${event.target} ${event.quota.requests}/${event.quota.windowMs}`),
    ).toEqual(['key:k1 5/1000']);
  });

  it('re-probes a learned limit upward after a quiet spell at it, and a 429 naming another limit replaces it', () => {
    const scheduler = newTestScheduler();
    let learned: Extract<PoolEvent, { type: 'limit-learned' }>[] = [];
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, { learning: { reprobeAfterMs: 1_000 } });
      learned = eventsOf(pool, 'limit-learned');
      drive = driver(scheduler, pool);
      for (const at of [0, 100, 200, 300, 400]) drive.send(at, 10);
      drive.send(500, 10, platform429({ limit: 5, remaining: 0, resetAfterMs: 490 }));
      // Demand at the limit from then on: 5 per second, every second, for 12 s (the quiet spell is 10 windows).
      for (let second = 1; second <= 12; second++) for (let index = 0; index < 5; index++) drive.send(second * 1000 + index * 100, 10);
      // The server's limit went down to 4: its next 429 says so.
      drive.send(13_000, 10, platform429({ limit: 4, remaining: 0, resetAfterMs: 600 }));
    });
    expect(learned.map(({ quota, cause, at }) => ({ requests: quota.requests, cause, at }))).toEqual([
      { requests: 5, cause: 'learned', at: 510 },
      // 10 windows after learning (10 510), the first success while the window is full raises it by one.
      { requests: 6, cause: 'reprobe', at: 11_020 },
      { requests: 4, cause: 'learned', at: 13_010 },
    ]);
  });

  it('a send that comes late counts from when it went out: the window does not free on the admission-time guess', () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, {
        keys: [{ key: 'sk-test-1', label: 'k1', limits: { quotas: [{ requests: 1, windowMs: 1000 }] } }],
      });
      drive = driver(scheduler, pool);
      // Admitted at 0, counted from 0 (the store's margin is 0 here); the transport sends it only at 900 (still loading, say).
      drive.send(0, 900, (lease) => lease.markSent());
      drive.send(10, 10);
    });
    // The entry moved to the send plus the pool's send margin (1 s, with no first byte to bring it
    // back): it leaves the window at 2 900. On the guess it would have left at 1 000, while the
    // server, which counted the request when it arrived after 900, still held it.
    expect(drive.admitted).toEqual([0, 2900]);
  });

  it('a learned quota is never looser than a configured one: both hold', () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, { keys: [{ key: 'sk-test-1', label: 'k1', limits: { maxConcurrent: 1 } }] });
      drive = driver(scheduler, pool);
      for (const at of [0, 100, 200, 300, 400]) drive.send(at, 10);
      drive.send(500, 10, platform429({ limit: 5, remaining: 0, resetAfterMs: 490 }));
      // Concurrency 1 (configured) and 5 a second (learned): one at a time, and no sooner than the window allows.
      drive.send(1000, 150);
      drive.send(1000, 10);
    });
    expect(drive.admitted.slice(6)).toEqual([1010, 1160]);
  });
});

describe('learning from a 429 that reached the server after a later send', () => {
  it('still learns the quota: the latest sends on record stand in for those before the refused one', () => {
    const scheduler = newTestScheduler();
    let learned: Extract<PoolEvent, { type: 'limit-learned' }>[] = [];
    scheduler.run(() => {
      const pool = makePool(scheduler);
      learned = eventsOf(pool, 'limit-learned');
      const drive = driver(scheduler, pool);
      // A server admitting 3 a second counted the sends of 0, 1 and 3 (the one of 3 arrived
      // first) and refuses the one of 2: only two sends on record precede the refused one.
      drive.send(0, 10);
      drive.send(1, 10);
      drive.send(2, 10, platform429({ limit: 3, remaining: 0, resetAfterMs: 988 }));
      drive.send(3, 5);
    });
    expect(learned.map((event) => `${event.at} ${event.target} ${event.quota.requests}/${event.quota.windowMs}`)).toEqual([
      '12 key:k1 3/1000',
    ]);
  });
});

describe('learning from a 429 to the first sends on record (another sender filled the window)', () => {
  it('learns nothing from sends still in flight: they may be refused too, and would make the window look short', () => {
    const scheduler = newTestScheduler();
    let learned: Extract<PoolEvent, { type: 'limit-learned' }>[] = [];
    scheduler.run(() => {
      // No adaptive limit: all 25 go out before the first answer.
      const pool = makePool(scheduler, { adaptiveConcurrency: false });
      learned = eventsOf(pool, 'limit-learned');
      const drive = driver(scheduler, pool);
      // A process before this one sent 20 at the minute's start; this one's first 25, at 50 s, are
      // all refused until the minute's sends leave it, 10 s later.
      for (let index = 0; index < 25; index++)
        drive.send(50_000 + index, 30, platform429({ limit: 20, remaining: 0, resetAfterMs: 9_970 - index }));
    });
    expect(learned.filter((event) => event.cause === 'learned')).toEqual([]);
  });
});

describe('an assumed quota tested by a sibling', () => {
  it('is not disproved by sends the server counted before the window whose answers came in it', () => {
    const log = new SendLog(64);
    // Sent at 990 (counted by the server then), answered at 1010; sent at 1500, answered at 1520.
    log.record(990);
    log.markCounted(990, 1010);
    log.record(1500);
    log.markCounted(1500, 1520);
    // Within the window (1000, 2000] the server counted one of them, not two.
    expect(log.answeredAfter(1000)).toBe(1);
  });
});

describe('an answered request counts from its send plus how much slower than the fastest answer it was', () => {
  function admissions(holdMs: (index: number) => number, requests: number): number[] {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, {
        keys: [{ key: 'sk-test-1', label: 'k1', limits: { quotas: [{ requests: 2, windowMs: 1000 }] } }],
        // The default margin: an unanswered request counts from admission plus 1 s.
        store: createMemoryStore(),
      });
      drive = driver(scheduler, pool);
      for (let index = 0; index < requests; index++) drive.send(0, holdMs(index));
    });
    return drive.admitted;
  }

  it('long even answers: once 16 are known, an entry counts from its send plus the 10 ms slack, and so do the earlier ones still in the window', () => {
    // Two a second, every answer 300 ms. Answers 1 to 15 count from their first byte (300 ms after
    // admission) at first: a slot comes back 1 300 ms after it was taken. The 16th answer (at
    // 9 400) makes the fastest known, every answer is as fast (no excess), and from then on an
    // entry counts from its send plus 10 ms; so does the 15th, taken with the 16th at 9 100 and
    // counted again: both slots come back at 10 110, and each 1 010 ms after it was taken from then on.
    expect(admissions(() => 300, 22).slice(12)).toEqual([7800, 7800, 9100, 9100, 10110, 10110, 11120, 11120, 12130, 12130]);
  });

  it('an answer slower than the fastest counts from its send plus its excess, by which its trip out may have been longer', () => {
    // As above, but the 17th answer takes 500 ms: 200 ms more than the fastest, so its entry
    // counts from 10 110 + 200 + 10, and its slot (with the 18th, behind it) comes back at 11 320.
    expect(admissions((index) => (index === 16 ? 500 : 300), 20).slice(16)).toEqual([10110, 10110, 11320, 11320]);
  });

  it('short answers keep counting from their first byte: below 100 ms the trip jitter would eat the gain', () => {
    // Every slot comes back 1 050 ms after it was taken, however many answers are known.
    expect(admissions(() => 50, 24).slice(-4)).toEqual([10500, 10500, 11550, 11550]);
  });
});

describe("a key's learned quota assumed for its siblings", () => {
  it('holds the other keys to it plus one: a sibling with the same limit learns its own from one 429, one with a larger limit passes it and drops it', () => {
    const scheduler = newTestScheduler();
    let learned: Extract<PoolEvent, { type: 'limit-learned' }>[] = [];
    const limits: Record<string, number> = { k1: 3, k2: 3, k3: 10 };
    const counted = new Map<string, number[]>();
    const refused: Record<string, number> = { k1: 0, k2: 0, k3: 0 };
    scheduler.run(() => {
      const pool = makePool(scheduler, {
        keys: ['k1', 'k2', 'k3'].map((label, index) => ({ key: `sk-test-${index + 1}`, label })),
      });
      learned = eventsOf(pool, 'limit-learned');
      const port = pool[POOL_PORT];
      const drive = driver(scheduler, pool);
      // A server with a sliding second per key, counting a request when it is sent.
      const serve = (lease: KeyLease) => {
        const now = port.scheduler.now() - 5;
        const window = (counted.get(lease.label) ?? []).filter((at) => at > now - 1000);
        counted.set(lease.label, window);
        if (window.length >= limits[lease.label]!) {
          refused[lease.label]!++;
          lease.markResponded(false);
          lease.refund();
          const resetAfterMs = window[window.length - limits[lease.label]!]! + 1000 - now - 5;
          port.record({
            type: 'failure',
            keyLabel: lease.label,
            model: lease.model,
            error: platform429({ limit: limits[lease.label]!, remaining: 0, resetAfterMs }),
            sentAt: lease.sentAt,
          });
          return;
        }
        window.push(now);
        lease.markResponded();
        port.record({ type: 'success', keyLabel: lease.label, model: lease.model, latencyMs: 5 });
      };
      // A request every 10 ms for 800 ms, taken round robin by the keys that have room.
      for (let at = 0; at < 800; at += 10) drive.send(at, 5, serve);
    });
    expect(learned.map(({ target, quota, cause }) => `${target} ${quota.requests} ${cause}`)).toEqual([
      'key:k1 3 learned',
      'key:k2 4 assumed',
      'key:k3 4 assumed',
      // k2 is refused the one request over its sibling's limit and learns its own.
      'key:k2 3 learned',
      // k3 answers 4 within a second: its limit is not k1's.
      'key:k3 4 disproved',
      'key:k3 10 learned',
    ]);
    expect(refused).toEqual({ k1: 1, k2: 1, k3: 1 });
  });

  it('is dropped at once for a sibling that has passed it already: the sibling serves on, never held a window for it', () => {
    const scheduler = newTestScheduler();
    let learned: Extract<PoolEvent, { type: 'limit-learned' }>[] = [];
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, {
        keys: ['k1', 'k2'].map((label, index) => ({ key: `sk-test-${index + 1}`, label })),
      });
      learned = eventsOf(pool, 'limit-learned');
      drive = driver(scheduler, pool);
      // Round robin: k1, k2, k1, k2, then k1's third is refused (2 a minute), its answer slow...
      for (const at of [0, 10, 20, 30]) drive.send(at, 5);
      drive.send(40, 100, platform429({ limit: 2, remaining: 0, resetAfterMs: 59_960, bucket: 'requests-per-minute' }));
      // ...so that k2 has three sends answered when the 429 comes: it passed 2 + 1 already.
      drive.send(50, 5);
      // Two more, after the 429: k1 is full for the minute, k2 takes them.
      drive.send(200, 5);
      drive.send(210, 5);
    });
    expect(learned.map(({ target, quota, cause }) => `${target} ${quota.requests} ${cause}`)).toEqual([
      'key:k1 2 learned',
      'key:k2 3 assumed',
      'key:k2 3 disproved',
    ]);
    // Held by the assumption, they would wait for k2's first send to leave its window (60 s).
    expect(drive.admitted.slice(-2)).toEqual([200, 210]);
  });
});

describe("the account's free-model bucket", () => {
  it("a 429 of the bucket that teaches its quota holds the account's free models until the reset, not its paid ones", () => {
    const scheduler = newTestScheduler();
    const free = 'acme/model-a:free';
    let drive!: Driver;
    let cooldowns: PoolEvent[] = [];
    scheduler.run(() => {
      const pool = makePool(scheduler, { adaptiveConcurrency: false });
      cooldowns = eventsOf(pool, 'cooldown');
      drive = driver(scheduler, pool);
      for (let index = 0; index < 3; index++) drive.send(0, 10, 'success', free);
      // The fourth free request is refused by the bucket: 3 a minute, room again in 59 s.
      drive.send(5, 5, platform429({ limit: 3, remaining: 0, resetAfterMs: 59_000, bucket: 'free-models-per-min' }, 'account'), free);
      drive.send(20, 10, 'success', 'acme/paid');
      drive.send(20, 10, 'success', free);
    });
    // The paid request goes at once; the free one when the bucket's window has room again.
    expect(drive.admitted.slice(0, 5)).toEqual([0, 0, 0, 5, 20]);
    expect(drive.admitted[5]).toBeGreaterThanOrEqual(59_000);
    // No park of the whole account: the learned window is what holds the free models.
    expect(cooldowns.filter((event) => event.type === 'cooldown' && event.scope === 'account')).toEqual([]);
  });
});

/** Admission times of the free-model requests `script` sends (through `send`) on a pool without adaptive concurrency. */
function freeModelAdmissions(script: (send: (at: number, holdMs: number, outcome?: 'success' | Error) => void) => void): number[] {
  const scheduler = newTestScheduler();
  let drive!: Driver;
  scheduler.run(() => {
    drive = driver(scheduler, makePool(scheduler, { adaptiveConcurrency: false }));
    script((at, holdMs, outcome = 'success') => drive.send(at, holdMs, outcome, 'acme/model-a:free'));
  });
  return drive.admitted;
}

/** The account's free-model bucket refusing a request, as a platform 429 names it. */
function freeBucket429(bucket: string, limit: number, resetAfterMs: number): RateLimitError {
  return platform429({ limit, remaining: 0, resetAfterMs, bucket }, 'account');
}

describe('a window learned while sends are still out', () => {
  it("counts each of them from its send plus twice the refusal's round trip, and none before the server's reset: the waiting requests go when the server's window has room", () => {
    const admitted = freeModelAdmissions((send) => {
      // Five long answers go out at 0–4 ms on new connections: the server counts each up to a trip later.
      for (let index = 0; index < 5; index++) send(index, 300);
      // The sixth, sent at 5, comes back refused 40 ms later: 5 a second, the oldest count leaving at 1030.
      send(5, 40, freeBucket429('free-models-per-second', 5, 985));
      for (let index = 0; index < 5; index++) send(50, 10);
    });
    // No park of the account: the learned window alone holds them, its entries at 80–84 (send + 2 × 40).
    // Counted from their sends, they would leave at 1000–1004, before the server's at 1030.
    expect(admitted.slice(6)).toEqual([1080, 1081, 1082, 1083, 1084]);
  });

  it('an answered send counts from its first byte, and none before the reset the 429 reports', () => {
    const admitted = freeModelAdmissions((send) => {
      for (let index = 0; index < 5; index++) send(index, 10);
      // Refused at 60 with the oldest count leaving at 1050: later than any first byte (10–14) says.
      send(20, 40, freeBucket429('free-models-per-second', 5, 990));
      for (let index = 0; index < 5; index++) send(70, 10);
    });
    expect(admitted.slice(6)).toEqual([1050, 1050, 1050, 1050, 1050]);
  });

  it("a day's quota learned just before midnight with a send still out: today keeps its count, tomorrow starts afresh", () => {
    const admitted = freeModelAdmissions((send) => {
      for (let index = 0; index < 4; index++) send(1_000 + index, 10);
      // Still out when the refusal comes back (its entry counts from after midnight by its trip bound).
      send(DAY_MS - 500, 2_000);
      // Refused at 100 ms to midnight: 50 a day, all spent (other senders' too), the count ending at midnight.
      send(DAY_MS - 400, 300, freeBucket429('free-models-per-day', 50, 100));
      // The next day's first six go at once: the server counts from 0 again.
      for (let index = 0; index < 6; index++) send(DAY_MS + 10_000, 10);
    });
    expect(admitted.slice(6)).toEqual(Array.from({ length: 6 }, () => DAY_MS + 10_000));
  });
});

describe('adaptive concurrency (AIMD) per model', () => {
  it('comes down to what was served on a burst of provider 429s (one decrease for the burst), then grows again', () => {
    const scheduler = newTestScheduler();
    let limits: number[] = [];
    let drive!: Driver;
    scheduler.run(() => {
      const pool = makePool(scheduler, { adaptiveConcurrency: { initial: 8, min: 1, max: 64 } });
      limits = [];
      pool
        .model(MODEL)
        .health$.pipe(map((health) => health.concurrencyLimit))
        .subscribe((limit) => {
          if (limits.at(-1) !== limit) limits.push(limit!);
        });
      drive = driver(scheduler, pool);
      // A provider serving 4 at once: 8 go out at 0, 4 are refused at 5.
      for (let index = 0; index < 4; index++) drive.send(0, 100);
      for (let index = 0; index < 4; index++) drive.send(0, 5, provider429());
      // Demand goes on: 100 more wait in the queue instead of drawing 429s.
      for (let index = 0; index < 100; index++) drive.send(10, 100);
    });
    // 8 → 6 (three quarters, once for the burst), then each refusal of the burst caps it below
    // what was in flight when it came: 5 with 6 out, 4 with 5 out (4 were served).
    expect(limits.slice(0, 4)).toEqual([8, 6, 5, 4]);
    // Nothing more is sent while 4 are out; each success then lets one more through.
    expect(drive.admitted.filter((at) => at === 10)).toEqual([]);
    expect(drive.admitted.slice(8, 12)).toEqual([100, 100, 100, 100]);
    // Right below the limit that drew the 429s it grows twenty times slower than one per round
    // trip: about 80 successes later it probes 5 again (one refusal in ~80, not one in a few).
    expect(limits.slice(4)).toEqual([5]);
    expect(drive.admitted.length).toBe(108);
  });

  it('a probe past the level of the last overload that draws one refusal steps back to what was served, not to three quarters', () => {
    const scheduler = newTestScheduler();
    const limits: number[] = [];
    let refusals = 0;
    let servedAtOnce = 0;
    let completedBy3s = 0;
    scheduler.run(() => {
      const pool = makePool(scheduler, { adaptiveConcurrency: { initial: 8, min: 1, max: 64 } });
      pool
        .model(MODEL)
        .health$.pipe(map((health) => health.concurrencyLimit))
        .subscribe((limit) => {
          if (limits.at(-1) !== limit) limits.push(limit!);
        });
      const port = pool[POOL_PORT];
      // A provider serving 4 at once for 100 ms each, refusing the rest (a provider 429 after 5 ms).
      let serving = 0;
      const ask = (): void => {
        let held: Subscription | undefined = undefined;
        held = port.acquire(chatRequest('hi'), { models: [MODEL] }).subscribe((lease) => {
          const served = serving < 4;
          if (served) {
            serving++;
            servedAtOnce = Math.max(servedAtOnce, serving);
          }
          scheduler.schedule(
            () => {
              if (served) {
                serving--;
                if (scheduler.now() <= 3000) completedBy3s++;
                lease.markResponded();
                port.record({ type: 'success', keyLabel: lease.label, model: lease.model, latencyMs: 100 });
              } else {
                refusals++;
                lease.markResponded(false);
                port.record({ type: 'failure', keyLabel: lease.label, model: lease.model, error: provider429(), sentAt: lease.sentAt });
              }
              held?.unsubscribe();
              // A closed loop: each answer brings the next request, as balance's slots do.
              if (scheduler.now() < 3000) ask();
            },
            served ? 100 : 5,
          );
        });
      };
      for (let index = 0; index < 16; index++) ask();
    });
    expect(servedAtOnce).toBe(4);
    // The opening burst brings it down to 4; each later probe to 5 draws one refusal and goes back
    // to 4, the level that was served: never below, so no slot idles after a probe.
    const settled = limits.indexOf(4);
    expect(settled).toBeGreaterThan(0);
    expect(limits.slice(settled).every((limit) => limit === 4 || limit === 5)).toBe(true);
    expect(limits.slice(settled)).toContain(5);
    // 4 slots of 100 ms for 3 s: 120 answers at most, less the opening's first round trip.
    expect(completedBy3s).toBeGreaterThanOrEqual(116);
    expect(refusals).toBeLessThanOrEqual(8);
  });

  it('slow start doubles the limit once per round trip, and no faster than once per 200 ms however short the answers', () => {
    /** Rounds of answers that take `answerMs`, with the limit in full use: one acceptance per slot, spread over each round. */
    const rounds = (limit: AdaptiveLimit, answerMs: number, count: number, from = 0): void => {
      for (let round = from; round < from + count; round++) {
        const slots = limit.limit;
        for (let slot = 1; slot <= slots; slot++) {
          const at = round * answerMs + (answerMs * slot) / slots;
          limit.accept(slots, at, at - answerMs);
        }
      }
    };
    // Answers of 1 s, all sent at once and accepted together a second later: each round trip
    // doubles it (8 → 16 → 32 → 64), as TCP's slow start does.
    const slow = new AdaptiveLimit({ initial: 8, min: 1, max: 1024 });
    for (let round = 1; round <= 3; round++) {
      const slots = slow.limit;
      for (let slot = 0; slot < slots; slot++) slow.accept(slots, round * 1000, (round - 1) * 1000);
    }
    expect(slow.limit).toBe(64);
    // Answers of 20 ms: the first acceptance's slot (9), then one doubling per 0.2 s: 18 at most by
    // 0.2 s and 288 by 1 s, where one per round trip would have reached the max within 0.2 s.
    const fast = new AdaptiveLimit({ initial: 8, min: 1, max: 1024 });
    rounds(fast, 20, 10);
    expect(fast.limit).toBeGreaterThanOrEqual(14);
    expect(fast.limit).toBeLessThanOrEqual(18);
    rounds(fast, 20, 40, 10);
    expect(fast.limit).toBeGreaterThanOrEqual(240);
    expect(fast.limit).toBeLessThanOrEqual(288);
  });

  it('slow start: a slow first byte among quicker ones still grows the limit by one; a clock set back does not hold it', () => {
    // 8 sent at 0, 7 answered at 300 (streams, still out) and 7 more sent then and answered at 600.
    const varied = new AdaptiveLimit({ initial: 8, min: 1, max: 1024 });
    for (let index = 0; index < 7; index++) varied.accept(8 + index, 300, 0);
    for (let index = 0; index < 7; index++) varied.accept(15 + index, 600, 300);
    expect(varied.limit).toBe(22);
    // The 8th of those sent at 0 answers at 1000: one more, as for any acceptance of a round trip
    // past 200 ms (not capped at twice the 8 it was sent at).
    varied.accept(22, 1000, 0);
    expect(varied.limit).toBe(23);

    // Rounds of 300 ms on the wall clock to 64, then the clock goes back 10 minutes (NTP, a VM
    // resumed): the next rounds double it as before, not held at twice the initial limit until
    // the clock is back where it was.
    const stepped = new AdaptiveLimit({ initial: 8, min: 1, max: 1024 });
    let now = 1_700_000_000_000;
    const round = (): void => {
      now += 300;
      const slots = stepped.limit;
      for (let slot = 0; slot < slots; slot++) stepped.accept(slots, now, now - 300);
    };
    for (let count = 0; count < 3; count++) round();
    expect(stepped.limit).toBe(64);
    now -= 600_000;
    round();
    round();
    expect(stepped.limit).toBe(256);
  });

  it('a lone refusal is not capped by a count short of what was served (a slot between requests), a later one of its burst is', () => {
    const limit = new AdaptiveLimit({ initial: 4, min: 1, max: 64 });
    // Slow start to 6, then a refusal with 6 out: 4 (three quarters), the level of the overload is 6.
    limit.accept(4, 0, -10);
    limit.accept(5, 0, -10);
    expect(limit.limit).toBe(6);
    limit.overload(6, 0, 100);
    expect(limit.limit).toBe(4);
    // A refusal of the same burst (sent at 50, before the decrease) with 3 out caps it at 2: they were all it served.
    limit.overload(3, 50, 110);
    expect(limit.limit).toBe(2);
    // Sent at 105, between the decrease and that cap, at a level the cap no longer allows: the same burst.
    limit.overload(2, 105, 120);
    expect(limit.limit).toBe(1);

    const probing = new AdaptiveLimit({ initial: 4, min: 1, max: 64 });
    probing.accept(4, 0, -10);
    probing.overload(5, 0, 100);
    expect(probing.limit).toBe(3);
    // Back at 5 (the level of the last overload), a probe draws one refusal while a served slot's
    // answer came in the same instant and waits a turn to be handed on: 4 out, its own included.
    // The probe steps back to 4, what was served, not to 3.
    for (let index = 0; index < 200 && probing.limit < 5; index++) probing.accept(4, 150, 140);
    expect(probing.limit).toBe(5);
    probing.overload(4, 200, 300);
    expect(probing.limit).toBe(4);
  });

  it("a limit brought low by refusals that were not all the capacity's own grows back by one per round trip once their level is served", () => {
    let now = 110;
    /** Acceptances with the limit in full use (one every 25 ms, of answers that take 100 ms) until it reaches `target` (or 500). */
    const acceptancesTo = (limit: AdaptiveLimit, target: number): number => {
      let count = 0;
      while (limit.limit < target && count < 500) {
        now += 25;
        limit.accept(limit.limit, now, now - 100);
        count++;
      }
      return count;
    };
    // A provider serving 4, and slots still busy there with requests their callers left: 4 out
    // draw a refusal (4 → 3), and the burst's later refusals, with only 1 served, cap it at 1.
    const limit = new AdaptiveLimit({ initial: 4, min: 1, max: 64 });
    limit.overload(4, 0, 100);
    limit.overload(1, 50, 110);
    expect(limit.limit).toBe(1);
    // The step back to 2 (the level those refusals came at) is slow: 30 acceptances. Served there
    // for a round trip (and twice as long as a refusal took), the capacity is past it, and 2 → 4
    // takes one round trip per step: 13 more, where growing twenty times slower all the way took 120.
    expect(acceptancesTo(limit, 2)).toBe(30);
    expect(acceptancesTo(limit, 4)).toBe(13);
    // At its real capacity a probe to 5 is refused: right below that level it is slow again.
    expect(acceptancesTo(limit, 5)).toBe(4);
    now += 25;
    limit.overload(5, now - 100, now);
    expect(limit.limit).toBe(4);
    expect(acceptancesTo(limit, 5)).toBe(90);
    // Back at 5, one request served with 5 out (sent into a slot an answer was leaving) proves
    // nothing: past 5 it still grows twenty times slower.
    limit.accept(5, now + 25, now - 75);
    for (let index = 0; index < 10; index++) limit.accept(4, now + 50, now - 50);
    expect(limit.limit).toBe(5);
  });

  it('times the proof by the refusals that set the level, not by an older one: one long timeout does not slow every later recovery', () => {
    const limit = new AdaptiveLimit({ initial: 8, min: 1, max: 64 });
    // Early on, one request ends in a 60 s timeout: 8 → 6.
    limit.overload(8, 0, 60_000);
    // An hour later a neighbour's burst: refusals that come back in 100 ms bring it down to 1.
    let now = 3_600_000;
    limit.overload(6, now - 100, now);
    limit.overload(1, now - 50, now + 10);
    now += 10;
    expect(limit.limit).toBe(1);
    let acceptances = 0;
    while (limit.limit < 4 && acceptances < 1000) {
      now += 25;
      limit.accept(limit.limit, now, now - 100);
      acceptances++;
    }
    // 30 acceptances back to 2, then 2 → 4 as soon as 2 was served for twice 100 ms: not 120 s.
    expect(acceptances).toBe(43);
  });

  it('remembers a slow refusal across decreases: a provider that refuses the probe by a timeout once and by a fast 429 the next time', () => {
    const limit = new AdaptiveLimit({ initial: 5, min: 1, max: 64 });
    let now = 10_000;
    /** Answers of 2 s, one every 500 ms, with `inFlight` out (the limit when not given), until `until` or the limit reaches `target`. */
    const answer = (until: number, target = Infinity, inFlight?: number): void => {
      while (now < until && limit.limit < target) {
        now += 500;
        limit.accept(inFlight ?? limit.limit, now, now - 2000);
      }
    };
    // A provider serving 4: 5 out, and the fifth ends in a 10 s timeout.
    limit.overload(5, now - 10_000, now);
    expect(limit.limit).toBe(3);
    answer(now + 120_000, 5);
    // Back at 5, the probe draws a 429 in 100 ms this time: 5 → 4.
    limit.overload(5, now - 100, now);
    expect(limit.limit).toBe(4);
    answer(now + 120_000, 5);
    // At 5 again, with the probe's refusal up to 10 s away: the timeout seen a minute or two before
    // still times the proof, so it does not grow past 5 before that refusal can come.
    const probeSentAt = now;
    answer(probeSentAt + 10_000, Infinity, 5);
    expect(limit.limit).toBe(5);
  });

  it('stays slow at the level of its last overload while a refusal could still be out: a provider that refuses by timing out', () => {
    // A provider serving 4 at once, answers that take 2 s, and a request past its capacity ended
    // only by a 10 s timeout: 5 out, and the 5th times out.
    const limit = new AdaptiveLimit({ initial: 5, min: 1, max: 64 });
    limit.overload(5, 0, 10_000);
    expect(limit.limit).toBe(3);
    let now = 10_000;
    for (let count = 0; limit.limit < 5 && count < 1000; count++) {
      now += 500;
      limit.accept(limit.limit, now, now - 2000);
    }
    // The probe goes out at 5. For the 10 s until its timeout, the 4 served slots answer with 5
    // out (the probe counted among them): no proof that 5 are served, so no faster growth.
    const probeSentAt = now;
    for (let index = 0; index < 20; index++) {
      now += 500;
      limit.accept(5, now, now - 2000);
    }
    expect(limit.limit).toBe(5);
    limit.overload(5, probeSentAt, probeSentAt + 10_000);
    expect(limit.limit).toBe(4);
  });

  it("a burst's refusals that come back beside the answers it served cap it at what was served, not at what is left in flight", () => {
    // A provider serving 4 at once, whose refusals take as long as its answers: 8 went out at 0.
    const limit = new AdaptiveLimit({ initial: 8, min: 1, max: 64 });
    limit.overload(8, 0, 200);
    expect(limit.limit).toBe(6);
    // The 4 it served are answered at 200 too; their slots are not refilled above the lowered limit.
    for (let inFlight = 7; inFlight > 3; inFlight--) limit.accept(inFlight, 200, 190);
    // The rest of the burst then finds 3, 2, 1 in flight: the capacity served 4 while they were out.
    for (const inFlight of [3, 2, 1]) limit.overload(inFlight, 0, 201);
    expect(limit.limit).toBe(4);
  });

  it('grows only while the limit is in use, and never past max', () => {
    const scheduler = newTestScheduler();
    let limit: number | null = null;
    scheduler.run(() => {
      const pool = makePool(scheduler, { adaptiveConcurrency: { initial: 4, min: 1, max: 6 } });
      const drive = driver(scheduler, pool);
      // One request at a time for a while: a quarter of the limit in use proves nothing.
      for (let index = 0; index < 20; index++) drive.send(index * 20, 10);
      scheduler.schedule(() => (limit = pool.snapshot().models[0]!.concurrencyLimit), 500);
      // Then 6 at a time, many times over: it grows to its max and stops there.
      for (let round = 0; round < 20; round++) for (let index = 0; index < 8; index++) drive.send(1000 + round * 20, 10);
      scheduler.schedule(() => (limit = limit === 4 ? pool.snapshot().models[0]!.concurrencyLimit : -1), 2_000);
    });
    expect(limit).toBe(6);
  });

  it('a provider 429 without a hint does not park the model while its limit can still come down; a 503 lowers it too', () => {
    const scheduler = newTestScheduler();
    let state: string | undefined;
    let limit: number | null = null;
    scheduler.run(() => {
      const pool = makePool(scheduler, { adaptiveConcurrency: { initial: 8, min: 1, max: 64 } });
      const drive = driver(scheduler, pool);
      for (let index = 0; index < 3; index++) drive.send(0, 50);
      drive.send(0, 5, provider429());
      drive.send(100, 5, new UpstreamError({ message: '503 provider overloaded', scope: 'model', retryable: true, status: 503 }));
      scheduler.schedule(() => {
        state = pool.snapshot().models[0]!.state;
        limit = pool.snapshot().models[0]!.concurrencyLimit;
      }, 200);
    });
    expect(state).toBe('closed');
    expect(limit).toBeLessThan(8);
  });
});

describe('accounts and free-model quotas from key info', () => {
  const keys = [
    { key: 'sk-test-1', label: 'a1' },
    { key: 'sk-test-2', label: 'a2' },
    { key: 'sk-test-3', label: 'b1' },
    { key: 'sk-test-4', label: 'pinned', account: 'mine' },
  ];

  it('groups keys by creator_user_id at start, without holding up traffic; a configured account stays', () => {
    const scheduler = newTestScheduler();
    let accountsAtStart: string[] = [];
    let accountsLater: string[] = [];
    let admittedAt: number[] = [];
    scheduler.run(({ cold }) => {
      const creators: Record<string, string> = { a1: 'user_a', a2: 'user_a', b1: 'user_b', pinned: 'user_b' };
      const pool = makePool(scheduler, {
        keys,
        // Key info answers after 50 ms; b1's fails.
        keyInfo: (key) =>
          key.label === 'b1' ? cold('--#', undefined, new Error('boom')) : cold('50ms (i|)', { i: infoOf(creators[key.label]!) }),
      });
      accountsAtStart = pool.snapshot().keys.map((key) => key.account);
      const drive = driver(scheduler, pool);
      drive.send(0, 10);
      admittedAt = drive.admitted;
      scheduler.schedule(() => (accountsLater = pool.snapshot().keys.map((key) => key.account)), 100);
    });
    expect(admittedAt).toEqual([0]);
    expect(accountsAtStart).toEqual(['key:a1', 'key:a2', 'key:b1', 'mine']);
    expect(accountsLater).toEqual(['user_a', 'user_a', 'key:b1', 'mine']);
  });

  const FREE = 'acme/model-a:free';
  /** Two keys whose info names one account, read as `info` answers. */
  const accountOfTwo = (scheduler: TestScheduler, info: Observable<KeyInfoSnapshot>) =>
    makePool(scheduler, {
      keys: keys.slice(0, 2),
      keyInfo: () => info,
      // The model's concurrency is not what this is about.
      adaptiveConcurrency: false,
      // The pool's own store: the assumption is made only on a store no other pool shares.
      store: undefined,
    });

  it("assumes OpenRouter's 20 free-model requests a minute (one looser) for an account key info names, counting the sends its keys made before, and drops it once passed", () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    let learned: PoolEvent[] = [];
    scheduler.run(({ cold }) => {
      const pool = accountOfTwo(scheduler, cold('50ms (i|)', { i: infoOf('user_a') }));
      learned = eventsOf(pool, 'limit-learned');
      drive = driver(scheduler, pool);
      // Three sends before key info names the account, each under its key's own account.
      for (let index = 0; index < 3; index++) drive.send(0, 20, 'success', FREE);
      // A burst: 18 more make the 21 assumed; the rest wait until those are answered without a 429.
      for (let index = 0; index < 25; index++) drive.send(100, 10, 'success', FREE);
      // A paid model is not held by the free-model bucket.
      drive.send(105, 10, 'success', 'acme/paid');
    });
    expect(drive.admitted).toEqual([0, 0, 0, ...Array<number>(18).fill(100), 105, ...Array<number>(7).fill(110)]);
    const assumed = learned.filter((event) => event.type === 'limit-learned' && event.quota.bucket === 'free-models-per-min');
    expect(
      assumed.map(
        (event) => event.type === 'limit-learned' && `${event.target} ${event.quota.requests}/${event.quota.windowMs} ${event.cause}`,
      ),
    ).toEqual([
      // Made again when the second key joins, with its sends: the same quota, so no second event.
      'model:user_a:*:free 21/60000 assumed',
      'model:user_a:*:free 21/60000 disproved',
    ]);
  });

  /** Two keys of user_a whose info answers after `infoMs`, with '*:free' limited to 2 an hour per account; what is admitted and refused of two requests asked at 0 and two at `laterAt`. */
  function freeHourOfTwoKeys(infoMs: number, laterAt: number): { admitted: number[]; refused: number[] } {
    const scheduler = newTestScheduler();
    const admitted: number[] = [];
    const refused: number[] = [];
    scheduler.run(({ cold }) => {
      const pool = makePool(scheduler, {
        keys: keys.slice(0, 2),
        keyInfo: () => cold(`${infoMs}ms (i|)`, { i: infoOf('user_a') }),
        models: { '*:free': { quotas: [{ requests: 2, windowMs: 3_600_000 }] } },
        adaptiveConcurrency: false,
        store: undefined,
      });
      const port = pool[POOL_PORT];
      const ask = (at: number) =>
        scheduler.schedule(() => {
          port.acquire(chatRequest('hi', { model: FREE }), { models: [FREE] }).subscribe({
            next: (lease) => {
              admitted.push(scheduler.now());
              lease.markResponded();
              lease.release();
            },
            error: () => refused.push(scheduler.now()),
          });
        }, at);
      ask(0);
      ask(0);
      ask(laterAt);
      ask(laterAt);
    });
    return { admitted, refused };
  }

  it('with limits per account configured, keys wait for key info to name their account before they serve', () => {
    // Admitted once user_a is known (50 ms), both in its 2 an hour; the next two are refused.
    expect(freeHourOfTwoKeys(50, 100)).toEqual({ admitted: [50, 50], refused: [100, 100] });
  });

  /** When the first request asked at 0 gets a key, with key info naming user_a at 2 s. */
  function firstAdmission(overrides: PoolOverrides): number | undefined {
    const scheduler = newTestScheduler();
    let admittedAt: number | undefined;
    scheduler.run(({ cold }) => {
      const pool = makePool(scheduler, { keys: keys.slice(0, 2), keyInfo: () => cold('2s (i|)', { i: infoOf('user_a') }), ...overrides });
      pool[POOL_PORT].acquire(chatRequest('hi', { model: FREE }), { models: [FREE] }).subscribe({
        next: (lease) => {
          admittedAt ??= scheduler.now();
          lease.release();
        },
        error: () => undefined,
      });
    });
    return admittedAt;
  }

  it('keys wait for their account only for limits that bound something, and no longer than half the queue timeout', () => {
    const limited = { models: { '*:free': { rpm: 10 } } };
    expect(firstAdmission(limited)).toBe(2_000);
    // A context length is no limit per account.
    expect(firstAdmission({ models: { '*:free': { contextLength: 8_000 } } })).toBe(0);
    // Requests that would time out in the queue are served as the keys' own accounts first.
    expect(firstAdmission({ ...limited, queue: { timeoutMs: 1_000 } })).toBe(500);
  });

  it('a key that served as an account of its own (its info came after 5 s) brings what it sent into the account it joins', () => {
    // At 5 s the keys serve as accounts of their own, one request each; at 6 s user_a takes both in.
    expect(freeHourOfTwoKeys(6_000, 6_100)).toEqual({ admitted: [5_000, 5_000], refused: [6_100, 6_100] });
  });

  it("checks a key that joined an account against the account's limits, not those it was checked against before (a lease at once too)", () => {
    const scheduler = newTestScheduler();
    const granted: boolean[] = [];
    scheduler.run(({ cold }) => {
      const pool = makePool(scheduler, {
        keys: keys.slice(0, 2),
        keyInfo: () => cold('6s (i|)', { i: infoOf('user_a') }),
        models: { '*:free': { quotas: [{ requests: 2, windowMs: 3_600_000 }] } },
        adaptiveConcurrency: false,
        store: undefined,
      });
      const port = pool[POOL_PORT];
      // At 5 s each key serves as an account of its own, one of its own two an hour; at 6 s user_a
      // takes both in, with both sends: its two an hour are spent.
      for (let index = 0; index < 2; index++)
        port.acquire(chatRequest('hi', { model: FREE }), { models: [FREE] }).subscribe((lease) => lease.release());
      scheduler.schedule(() => {
        for (let index = 0; index < 2; index++) {
          const lease = port.acquireNow?.(chatRequest('hi', { model: FREE }), { models: [FREE] });
          granted.push(lease !== undefined && !(lease instanceof Error));
        }
      }, 6_100);
    });
    expect(granted).toEqual([false, false]);
  });

  it('so a burst of free-model requests draws one 429 from an account that counts 20 a minute, which then teaches the limit', () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    scheduler.run(({ cold }) => {
      const pool = accountOfTwo(scheduler, cold('(i|)', { i: infoOf('user_a') }));
      drive = driver(scheduler, pool);
      for (let index = 0; index < 20; index++) drive.send(10, 10, 'success', FREE);
      // The 21st is the test: the server refuses it, naming the minute's bucket.
      const refusal = platform429({ limit: 20, remaining: 0, resetAfterMs: 59_990, bucket: 'free-models-per-min' }, 'account');
      drive.send(10, 10, refusal, FREE);
      // Nothing more goes out until the minute's first sends leave it: the learned window counts
      // them from their first byte (at 20), when the server had counted them at the latest.
      for (let index = 0; index < 4; index++) drive.send(10, 10, 'success', FREE);
    });
    expect(drive.admitted).toEqual([...Array<number>(21).fill(10), ...Array<number>(4).fill(60_020)]);
  });

  it('a key info read that fails after dispose touches no key', () => {
    const scheduler = newTestScheduler();
    let state: string | undefined;
    scheduler.run(({ cold }) => {
      const revoked = new AuthenticationError({ message: '401 User not found', scope: 'key', retryable: false, status: 401 });
      const pool = makePool(scheduler, { keyInfo: () => cold('50ms #', undefined, revoked) });
      // A refresh still subscribed when the pool is disposed; its read fails at 50.
      pool.refreshKeyInfo().subscribe({ error: () => undefined });
      scheduler.schedule(() => pool.dispose(), 10);
      scheduler.schedule(() => (state = pool.snapshot().keys[0]!.state), 60);
    });
    expect(state).not.toBe('disabled');
  });

  it("takes free_model_daily_requests as the account's free-model quota, which ends at 00:00 UTC", () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    const start = Date.UTC(2026, 11, 3, 23, 59, 0);
    scheduler.run(({ cold }) => {
      // The pool's clock is the test scheduler's, a minute before 00:00 UTC.
      const clock: SchedulerLike = { now: () => start + scheduler.now(), schedule: scheduler.schedule.bind(scheduler) };
      const pool = createPool({
        keys: [{ key: 'sk-test-1', label: 'k1' }],
        random: () => 0.5,
        store: createMemoryStore({ arrivalMarginMs: 0 }),
        scheduler: clock,
        transport: scriptedTransport(scheduler, {}).transport,
        keyInfo: () => cold('(i|)', { i: infoOf('user_a', { freeModelDailyRequests: { used: 48, limit: 50, remaining: 2 } }) }),
      });
      drive = driver(scheduler, pool);
      // 5 free-model requests at 10 s: 2 fit today, the rest wait for 00:00 UTC (50 s later).
      for (let index = 0; index < 5; index++) drive.send(10_000, 10, 'success', 'acme/model-a:free');
      // A paid model is not held up by the free-model bucket.
      drive.send(20_000, 10, 'success', 'acme/paid');
    });
    const relative = drive.admitted.map((at) => at - start);
    expect(relative).toEqual([10_000, 10_000, 20_000, 60_000, 60_000, 60_000]);
    expect((start + 60_000) % DAY_MS).toBe(0);
  });
});

describe('a day quota at midnight', () => {
  /** A pool whose clock starts at `start`, with the store's default arrival margin (1 s), and its driver. */
  function poolAt(scheduler: TestScheduler, start: number, cold: TestScheduler['createColdObservable'], remaining?: number): Driver {
    const clock: SchedulerLike = { now: () => start + scheduler.now(), schedule: scheduler.schedule.bind(scheduler) };
    const pool = createPool({
      keys: [{ key: 'sk-test-1', label: 'k1' }],
      random: () => 0.5,
      adaptiveConcurrency: false,
      store: createMemoryStore(),
      scheduler: clock,
      transport: scriptedTransport(scheduler, {}).transport,
      keyInfo: () =>
        cold('(i|)', {
          i: infoOf('user_a', remaining === undefined ? {} : { freeModelDailyRequests: { used: 50 - remaining, limit: 50, remaining } }),
        }),
    });
    return driver(scheduler, pool);
  }

  it("a request admitted in the day's last second counts on that day and the next: today's room is not given twice", () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    const start = Date.UTC(2026, 11, 3, 23, 59, 59);
    scheduler.run(({ cold }) => {
      drive = poolAt(scheduler, start, cold, 2);
      // Five at 23:59:59.100: counted from after midnight (the arrival margin), but they may reach the server before it.
      for (let index = 0; index < 5; index++) drive.send(100, 10, 'success', 'acme/model-a:free');
    });
    // Two fit today; the other three go at midnight, on a day that already counts the first two.
    expect(drive.admitted.map((at) => at - start)).toEqual([100, 100, 1_000, 1_000, 1_000]);
  });

  it("a day's 429 whose count ends just after our midnight (the server's clock behind ours) does not fill our new day", () => {
    const scheduler = newTestScheduler();
    let drive!: Driver;
    const start = Date.UTC(2026, 11, 4);
    scheduler.run(({ cold }) => {
      drive = poolAt(scheduler, start, cold);
      drive.send(10, 10, 'success', 'acme/model-a:free');
      // Refused as yesterday's last: 50 a day, none left, the count ending now.
      drive.send(20, 10, freeBucket429('free-models-per-day', 50, 0), 'acme/model-a:free');
      for (let index = 0; index < 3; index++) drive.send(1_000, 10, 'success', 'acme/model-a:free');
    });
    // Today counts our two sends, not yesterday's fifty: the three go at once.
    expect(drive.admitted.map((at) => at - start)).toEqual([10, 20, 1_000, 1_000, 1_000]);
  });
});

describe('odd rate-limit hints, cooldowns and key info (found in an audit)', () => {
  const pastResetError = (extra: Record<string, string>) => {
    const now = Date.UTC(2025, 9, 10, 12);
    return classifyHttpError({
      status: 429,
      headers: { 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now - 2_000), ...extra },
      body: JSON.stringify({ error: { code: 429, message: 'Rate limit exceeded: requests-per-key' } }),
      nowMs: now,
    });
  };

  it('a platform 429 whose X-RateLimit-Reset is already past (the server clock behind) still honours its Retry-After', () => {
    const scheduler = newTestScheduler();
    scheduler.run(() => {
      const { transport } = scriptedTransport(scheduler, {});
      const pool = predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }]);
      const error = pastResetError({ 'retry-after': '30' });
      expect(error.retryAfterMs).toBe(30_000);
      scheduler.schedule(() => pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error }), 10);
      scheduler.schedule(() => {
        const key = pool.snapshot().keys[0]!;
        expect({ state: key.state, openReason: key.openReason }).toEqual({ state: 'open', openReason: 'rate-limit' });
        expect(key.cooldownUntil).toBeGreaterThanOrEqual(10 + 30_000);
      }, 11);
    });
  });

  it('a platform 429 whose X-RateLimit-Reset is already past, with no other hint, still parks the key', () => {
    const scheduler = newTestScheduler();
    scheduler.run(() => {
      const { transport } = scriptedTransport(scheduler, {});
      const pool = predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }]);
      const error = pastResetError({});
      scheduler.schedule(() => pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error }), 10);
      scheduler.schedule(() => expect(pool.snapshot().keys[0]!.state).toBe('open'), 11);
    });
  });

  it('rateLimitCooldownMs 0: a long run of 429s never makes the park NaN, and a later hint still parks', () => {
    const scheduler = newTestScheduler();
    const cooldowns: PoolEvent[] = [];
    scheduler.run(() => {
      const { transport } = scriptedTransport(scheduler, {});
      const pool = predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }], { rateLimitCooldownMs: 0 });
      pool.events$.subscribe((event) => {
        if (event.type === 'cooldown') cooldowns.push(event);
      });
      const error = new RateLimitError({ message: '429 rate limited', scope: 'key', retryable: true, status: 429 });
      for (let at = 0; at < 1_100; at++)
        scheduler.schedule(() => pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error, sentAt: at }), at);
      const hinted = new RateLimitError({ message: '429 rate limited', scope: 'key', retryable: true, status: 429, retryAfterMs: 5_000 });
      scheduler.schedule(
        () => pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: MODEL, error: hinted, sentAt: 1_200 }),
        1_200,
      );
      scheduler.schedule(() => expect(pool.snapshot().keys[0]!.cooldownUntil).toBe(6_200), 1_201);
    });
    expect(cooldowns.length).toBeGreaterThan(0);
    expect(cooldowns.filter((event) => event.type === 'cooldown' && Number.isNaN(event.until))).toEqual([]);
  });

  const ownedBy = (creatorUserId: string): KeyInfoSnapshot => ({
    limit: null,
    limitRemaining: null,
    usage: 0,
    isFreeTier: false,
    creatorUserId,
  });

  /** Keys k1 and k2 on a transport that answers nothing (the tests drive the leases). */
  const twoKeys = (scheduler: TestScheduler, overrides: PoolOverrides): KeyPool =>
    predictablePool(
      scheduler,
      scriptedTransport(scheduler, {}).transport,
      [
        { key: 'sk-test-1', label: 'k1' },
        { key: 'sk-test-2', label: 'k2' },
      ],
      overrides,
    );

  it('a key that moves accounts while it has an attempt in flight leaves no phantom in-flight request in its old account', () => {
    const scheduler = newTestScheduler();
    const owners: Record<string, string> = { k1: 'u1', k2: 'u1' };
    let admittedK2At: number | undefined;
    scheduler.run(() => {
      const pool = twoKeys(scheduler, { keyInfo: (key) => of(ownedBy(owners[key.label]!)) });
      const port = pool[POOL_PORT];
      let lease: KeyLease | undefined;
      scheduler.schedule(() => {
        port.acquire(chatRequest('a'), { models: [MODEL] }).subscribe((granted) => (lease = granted));
      }, 10);
      // An in-flight budget 402 on u1 with one request out: u1's adaptive limit drops to 1.
      scheduler.schedule(() => {
        const error = new InsufficientCreditsError({
          message: '402 in-flight budget',
          scope: 'account',
          retryable: true,
          status: 402,
          retryAfterMs: 100,
        });
        port.record({ type: 'failure', keyLabel: 'k2', model: MODEL, error, sentAt: 15 });
      }, 20);
      // Key info now says k1 belongs to u2: it moves while its attempt is still out.
      scheduler.schedule(() => {
        owners['k1'] = 'u2';
        pool.refreshKeyInfo().subscribe();
      }, 30);
      scheduler.schedule(() => {
        lease!.markResponded();
        port.record({ type: 'success', keyLabel: 'k1', model: MODEL, latencyMs: 5 });
        lease!.release();
      }, 40);
      // Only k2 (account u1) may serve: u1's park ended at 120 and nothing of u1 is in flight.
      scheduler.schedule(() => {
        pool.disable('k1');
        port.acquire(chatRequest('b'), { models: [MODEL] }).subscribe((granted) => {
          admittedK2At = scheduler.now();
          granted.release();
        });
      }, 200);
    });
    expect(admittedK2At).toBe(200);
  });

  it("refreshKeyInfo() ends a 401's disabling but not the user's own: a key taken out with disable() waits for enable()", () => {
    const scheduler = newTestScheduler();
    let states: string[] = [];
    scheduler.run(() => {
      const pool = twoKeys(scheduler, { discoverAccounts: false, keyInfo: () => of(ownedBy('u1')) });
      scheduler.schedule(() => {
        pool.disable('k1');
        pool[POOL_PORT].record({
          type: 'failure',
          keyLabel: 'k2',
          model: MODEL,
          error: new AuthenticationError({ message: '401 User not found', scope: 'key', retryable: false, status: 401 }),
          sentAt: 10,
        });
        pool.refreshKeyInfo().subscribe();
        states = pool.snapshot().keys.map((key) => `${key.label} ${key.state}`);
      }, 10);
    });
    expect(states).toEqual(['k1 disabled', 'k2 closed']);
  });

  it('dispose() ends a refreshKeyInfo() read still in flight, and tears it down', () => {
    const scheduler = newTestScheduler();
    let torn = false;
    let ended = false;
    scheduler.run(() => {
      const { transport } = scriptedTransport(scheduler, {});
      const pool = predictablePool(scheduler, transport, [{ key: 'sk-test-1', label: 'k1' }], {
        discoverAccounts: false,
        keyInfo: () => new Observable<KeyInfoSnapshot>(() => () => (torn = true)),
      });
      scheduler.schedule(() => {
        pool.refreshKeyInfo().subscribe({ complete: () => (ended = true), error: () => (ended = true) });
      }, 10);
      scheduler.schedule(() => pool.dispose(), 20);
    });
    expect({ torn, ended }).toEqual({ torn: true, ended: true });
  });
});

describe("a quota's room in health", () => {
  /**
   * Key k1 with 2 requests per 3 s, sent at 0 and 500 (entries count from admission: they leave at
   * 3000 and 3500); from `watchFrom` on, a watcher of k1's health$ (a dashboard, an Angular signal)
   * notes each room it sees as `describe` puts it.
   */
  function watchRoom(watchFrom: number, describe: (quota: QuotaRemaining) => string): string[] {
    const scheduler = newTestScheduler();
    const seen: string[] = [];
    scheduler.run(() => {
      const pool = makePool(scheduler, {
        keys: [{ key: 'sk-test-1', label: 'k1', limits: { quotas: [{ requests: 2, windowMs: 3_000 }] } }],
      });
      const requests = driver(scheduler, pool);
      const watch = () =>
        pool
          .key('k1')
          .health$.pipe(
            map(({ quota }) => describe(quota[0]!)),
            distinctUntilChanged(),
          )
          .subscribe((room) => seen.push(`${scheduler.now()}: ${room}`));
      if (watchFrom === 0) watch();
      else scheduler.schedule(watch, watchFrom);
      requests.send(0, 10);
      requests.send(500, 10);
      scheduler.schedule(() => pool.dispose(), 10_000);
    });
    return seen;
  }

  it('health$ shows a window freeing room when it does, with no request to set it off, and says when in freesAt', () => {
    // Republished at most once a second per key: the second entry's leaving shows at 4000.
    expect(watchRoom(0, ({ remaining, freesAt }) => `${remaining} left, frees at ${freesAt}`)).toEqual([
      '0: 2 left, frees at null',
      '0: 1 left, frees at 3000',
      '500: 0 left, frees at 3000',
      '3000: 1 left, frees at 3500',
      '4000: 2 left, frees at null',
    ]);
  });

  it('a watcher that starts after the sends (nobody watched them: the record was only marked stale) sees the window free room too', () => {
    expect(watchRoom(1_000, ({ remaining }) => `${remaining} left`)).toEqual(['1000: 0 left', '3000: 1 left', '4000: 2 left']);
  });
});

describe("a key's disabling shared by other pools", () => {
  const info: KeyInfoSnapshot = { limit: null, limitRemaining: null, usage: 0, isFreeTier: false, creatorUserId: 'user_a' };
  /** A pool on `store` whose key info for k1 reads fine at 50 ms. */
  function poolOn(scheduler: TestScheduler, store: ReturnType<typeof createMemoryStore>): KeyPool {
    return makePool(scheduler, {
      store,
      keyInfo: () =>
        new Observable<KeyInfoSnapshot>((subscriber) => scheduler.schedule(() => (subscriber.next(info), subscriber.complete()), 50)),
    });
  }
  const stateOf = (pool: KeyPool) => pool.snapshot().keys[0]!.state;

  it("a 401's disabling the store replays is dropped when key info read fine after it, and kept when it came after the read", () => {
    const scheduler = newTestScheduler();
    const seen: string[] = [];
    scheduler.run(() => {
      const store = createMemoryStore({ arrivalMarginMs: 0 });
      const pool = poolOn(scheduler, store);
      const published: string[] = [];
      store.changes$.subscribe((change) => published.push(`${change.state}${change.replayed === true ? ' (replayed)' : ''}`));
      const replay = (at?: number) =>
        store.publish({
          scope: 'key',
          target: 'k1',
          state: 'disabled',
          remainingMs: Infinity,
          origin: 'another pool',
          replayed: true,
          ...(at === undefined ? {} : { at }),
        });
      // Stored at 10, before the read at 50: stale, and cleared from the store.
      scheduler.schedule(() => replay(10), 60);
      scheduler.schedule(() => seen.push(`60: ${stateOf(pool)}; store got ${published.sort().join(', ')}`), 60);
      // Stored by an older version, with no time: any good read is later.
      scheduler.schedule(() => replay(), 65);
      scheduler.schedule(() => seen.push(`65: ${stateOf(pool)}`), 65);
      // Stored at 70, after the read: the key was revoked since; it holds.
      scheduler.schedule(() => replay(70), 80);
      scheduler.schedule(() => seen.push(`80: ${stateOf(pool)}`), 80);
      scheduler.schedule(() => pool.dispose(), 100);
    });
    expect(seen).toEqual(['60: closed; store got disabled (replayed), enabled', '65: closed', '80: disabled']);
  });

  it("a user's disabling in one pool holds in another whose key info reads fine, until a user enables the key", () => {
    const scheduler = newTestScheduler();
    const seen: string[] = [];
    scheduler.run(() => {
      const store = createMemoryStore({ arrivalMarginMs: 0 });
      const first = poolOn(scheduler, store);
      const second = poolOn(scheduler, store);
      scheduler.schedule(() => first.disable('k1'), 10);
      // Both read k1's info fine at 50; then `refreshKeyInfo` in the second at 60.
      scheduler.schedule(() => second.refreshKeyInfo().subscribe(), 60);
      scheduler.schedule(() => seen.push(`200: ${stateOf(first)} / ${stateOf(second)}`), 200);
      scheduler.schedule(() => second.enable('k1'), 210);
      scheduler.schedule(() => seen.push(`210: ${stateOf(first)} / ${stateOf(second)}`), 210);
      scheduler.schedule(() => (first.dispose(), second.dispose()), 300);
    });
    expect(seen).toEqual(['200: disabled / disabled', '210: closed / closed']);
  });
});

describe('a strategy that waits for key info', () => {
  it('is served once the info is in, not refused while it is being read', () => {
    const scheduler = newTestScheduler();
    const outcomes: string[] = [];
    scheduler.run(({ cold }) => {
      const info: KeyInfoSnapshot = { limit: 10, limitRemaining: 5, usage: 0, isFreeTier: false, creatorUserId: 'user_a' };
      const pool = makePool(scheduler, {
        keyInfo: () => cold('50ms (i|)', { i: info }),
        // Only a key whose credit is known will do.
        strategy: (eligible) => eligible.find((key) => key.credit !== null),
      });
      const port = pool[POOL_PORT];
      port.acquire(chatRequest('hello'), { models: [MODEL] }).subscribe({
        next: (lease) => {
          outcomes.push(`${scheduler.now()} ${lease.label}`);
          lease.release();
        },
        error: (error: Error) => outcomes.push(`${scheduler.now()} ${error.name}`),
      });
      scheduler.schedule(() => pool.dispose(), 100);
    });
    expect(outcomes).toEqual(['50 k1']);
  });
});

describe("a limiter's sure room (how `fits` answers without reading its windows)", () => {
  type Step =
    | { kind: 'take'; tokens: number }
    | { kind: 'release' }
    | { kind: 'retime'; hold: number; delayMs: number }
    | { kind: 'reconcile'; hold: number; tokens: number }
    | { kind: 'refund'; hold: number }
    | { kind: 'learn'; requests: number; day: boolean }
    | { kind: 'unlearn' }
    | { kind: 'wait'; ms: number };
  const holdIndex = fc.nat(40);
  const stepArb: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant('take' as const), tokens: fc.integer({ min: 0, max: 400 }) }),
    fc.record({ kind: fc.constant('release' as const) }),
    fc.record({ kind: fc.constant('retime' as const), hold: holdIndex, delayMs: fc.integer({ min: -500, max: 70_000 }) }),
    fc.record({ kind: fc.constant('reconcile' as const), hold: holdIndex, tokens: fc.integer({ min: 0, max: 900 }) }),
    fc.record({ kind: fc.constant('refund' as const), hold: holdIndex }),
    fc.record({ kind: fc.constant('learn' as const), requests: fc.integer({ min: 1, max: 8 }), day: fc.boolean() }),
    fc.record({ kind: fc.constant('unlearn' as const) }),
    fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 40_000 }) }),
  );

  it('answers as its windows would, whatever was taken, moved, resized, refunded, learned or waited out before', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 80 }), fc.integer({ min: 0, max: 1_000 }), (steps, asked) => {
        const limiter = new Limiter({ rpm: 6, tpm: 1_000, maxConcurrent: 4 }, 'key');
        const holds: LimiterHold[] = [];
        let now = 1_000_000;
        for (const step of steps) {
          const hold = holds.length === 0 ? undefined : holds[('hold' in step ? step.hold : 0) % holds.length]!;
          if (step.kind === 'take') holds.push(limiter.take(now, step.tokens));
          else if (step.kind === 'release') limiter.release();
          else if (step.kind === 'retime' && hold !== undefined) limiter.retime(hold, now + step.delayMs);
          else if (step.kind === 'reconcile' && hold !== undefined) limiter.reconcileTokens(hold, step.tokens);
          else if (step.kind === 'refund' && hold !== undefined) limiter.refund(hold);
          else if (step.kind === 'learn') {
            const window = step.day ? { windowMs: 86_400_000, calendar: 'utc-day' as const } : { windowMs: 10_000 };
            limiter.learn({ requests: step.requests, ...window, source: 'learned', bucket: 'b' }, now);
          } else if (step.kind === 'unlearn') limiter.unlearn('b');
          else if (step.kind === 'wait') now += step.ms;
          // Asked first: the reference below prunes the windows, which would only make the quick answer easier.
          const answer = limiter.fits(now, asked);
          // Every window's own answer: it admits now what it would admit at the earliest.
          expect(answer).toBe(limiter.hasConcurrencyRoom && limiter.nextFitAt(now, asked) === now);
        }
      }),
      {
        numRuns: 2000,
        // An entry pruned on the guess, then counted again by its send (the case random runs find least often).
        examples: [
          [
            [
              { kind: 'learn', requests: 1, day: false },
              { kind: 'take', tokens: 0 },
              { kind: 'wait', ms: 10_000 },
              { kind: 'retime', hold: 0, delayMs: 0 },
            ],
            0,
          ],
        ],
      },
    );
  });

  it('takes nothing to fit in a window whose log wants pruning, not even 0 tokens into a window billed past its limit', () => {
    const limiter = new Limiter({ tpm: 1_000 }, 'key');
    const holds = Array.from({ length: 1_100 }, () => limiter.take(0, 0));
    limiter.reconcileTokens(holds[0]!, 1_500);
    expect(limiter.fits(10, 0)).toBe(false);
    expect(limiter.fits(60_001, 0)).toBe(true);
  });

  it('answers exactly for rooms beyond the small integers it keeps: two billion tokens a minute take a request of 1.5 billion, and then no second one', () => {
    const limiter = new Limiter({ tpm: 2_000_000_000 }, 'key');
    expect(limiter.fits(0, 1_500_000_000)).toBe(true);
    limiter.take(0, 1_500_000_000);
    expect(limiter.fits(0, 500_000_000)).toBe(true);
    expect(limiter.fits(0, 500_000_001)).toBe(false);
    expect(limiter.fits(60_000, 1_500_000_000)).toBe(true);
  });
});

describe("a window's entries that attempts hold (through an absorb, a pruning, a late send)", () => {
  const tokensLeft = (limiter: Limiter, now: number) => limiter.remaining(now).find((quota) => quota.unit === 'tokens')!.remaining;

  it('keeps the holds taken before an absorb: their reconcile and refund find their entries among the copies', () => {
    const account = new Limiter({ tpm: 1_000 }, 'account');
    const hold = account.take(30, 100);
    const before = new Limiter({ tpm: 1_000 }, 'account');
    before.take(10, 300);
    account.absorb(before, 40);
    expect(tokensLeft(account, 40)).toBe(600);
    account.reconcileTokens(hold, 50);
    expect(tokensLeft(account, 40)).toBe(650);
    account.refund(hold);
    expect(tokensLeft(account, 40)).toBe(700);
    // The copy counted from 10 leaves first, as pruning from the oldest has it.
    expect(tokensLeft(account, 60_010)).toBe(1_000);
  });

  it('keeps a hold through two absorbs', () => {
    const account = new Limiter({ tpm: 1_000 }, 'account');
    const hold = account.take(0, 100);
    for (const at of [5, 6]) {
      const other = new Limiter({ tpm: 1_000 }, 'account');
      other.take(at, 10);
      account.absorb(other, 7);
    }
    account.reconcileTokens(hold, 400);
    expect(tokensLeft(account, 7)).toBe(580);
  });

  it('keeps the entries still counted, and the holds on them, when it drops the pruned ones from its log', () => {
    const limiter = new Limiter({ tpm: 100_000 }, 'key');
    const holds = Array.from({ length: 200 }, (_, at) => limiter.take(at, 10));
    // 151 entries leave (those counted from 0 to 150), more than half the log: it is copied without them.
    expect(tokensLeft(limiter, 60_150)).toBe(100_000 - 490);
    limiter.reconcileTokens(holds[199]!, 110);
    limiter.reconcileTokens(holds[0]!, 1_000);
    expect(tokensLeft(limiter, 60_150)).toBe(100_000 - 590);
  });

  it('keeps an entry per quota of a limiter of several: each is reconciled, retimed and refunded in its own window', () => {
    const DAY = 86_400_000;
    // A minute's requests, a minute's tokens, an hour's tokens and a UTC day's requests (a learned free-model bucket).
    const limiter = new Limiter({ rpm: 10, tpm: 1_000, quotas: [{ tokens: 5_000, windowMs: 3_600_000 }] }, 'account');
    limiter.learn({ bucket: 'free-models-per-day', requests: 50, windowMs: DAY, calendar: 'utc-day', source: 'key-info' }, 0);
    const left = (now: number) => limiter.remaining(now).map((quota) => quota.remaining);
    const hold = limiter.take(0, 100);
    expect(left(0)).toEqual([9, 900, 4_900, 49]);
    limiter.reconcileTokens(hold, 300);
    expect(left(0)).toEqual([9, 700, 4_700, 49]);
    // The minute's entries leave; the request goes out only now: it counts again in the minute's
    // windows, with the 300 tokens its hold counts, and stays where it was in the hour's and the day's.
    expect(left(60_001)).toEqual([10, 1_000, 4_700, 49]);
    limiter.retime(hold, 60_001);
    expect(left(60_001)).toEqual([9, 700, 4_700, 49]);
    limiter.refund(hold);
    expect(left(60_001)).toEqual([10, 1_000, 5_000, 50]);
  });

  it("keeps a day's entry until midnight only: a refund after it gives back nothing of the new day's count", () => {
    const DAY = 86_400_000;
    const limiter = new Limiter({ quotas: [{ tokens: 1_000, windowMs: 3_600_000 }] }, 'account');
    limiter.learn({ bucket: 'free-models-per-day', requests: 50, windowMs: DAY, calendar: 'utc-day', source: 'key-info' }, DAY - 10_000);
    const left = (now: number) => limiter.remaining(now).map((quota) => quota.remaining);
    const yesterday = limiter.take(DAY - 5_000, 100);
    const today = limiter.take(DAY + 1_000, 10);
    expect(left(DAY + 1_000)).toEqual([890, 49]);
    // Its tokens leave the hour's window; its request counted on a day that has ended.
    limiter.refund(yesterday);
    expect(left(DAY + 1_000)).toEqual([990, 49]);
    limiter.refund(today);
    expect(left(DAY + 1_000)).toEqual([1_000, 50]);
  });

  it('takes the copies an absorb brought and its own entries in the order they leave, for when the next request fits', () => {
    const account = new Limiter({ rpm: 3 }, 'account');
    account.take(20_000, 0);
    account.take(40_000, 0);
    const before = new Limiter({ rpm: 3 }, 'account');
    before.take(10_000, 0);
    account.absorb(before, 41_000);
    expect(account.fits(41_000, 0)).toBe(false);
    // The copy counted from 10 s leaves first, then its own entry of 20 s.
    expect(account.nextFitAt(41_000, 0)).toBe(70_000);
    expect(account.remaining(70_000)[0]!.freesAt).toBe(80_000);
    expect(account.remaining(80_000)[0]!.remaining).toBe(2);
    expect(account.remaining(100_000)[0]).toMatchObject({ remaining: 3, freesAt: null });
  });

  it('absorbs a window of 200,000 entries (more than a call takes arguments)', () => {
    const before = new Limiter({ tpm: 10_000_000 }, 'account');
    for (let at = 0; at < 200_000; at++) before.take(at / 10, 1);
    const account = new Limiter({ tpm: 10_000_000 }, 'account');
    account.absorb(before, 20_000);
    expect(tokensLeft(account, 20_000)).toBe(10_000_000 - 200_000);
    // The copies leave as they came, a tenth of a millisecond apart.
    expect(tokensLeft(account, 69_999.95)).toBe(10_000_000 - 100_000);
  });

  it('counts an entry that left its window before its request went out again, at what its hold counts now', () => {
    const limiter = new Limiter({ tpm: 1_000 }, 'key');
    const hold = limiter.take(0, 100);
    limiter.reconcileTokens(hold, 40);
    expect(tokensLeft(limiter, 60_001)).toBe(1_000);
    limiter.retime(hold, 60_001);
    expect(tokensLeft(limiter, 60_001)).toBe(960);
    limiter.refund(hold);
    expect(tokensLeft(limiter, 60_001)).toBe(1_000);
  });
});
