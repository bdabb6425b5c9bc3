/**
 * A model that is out of service must not hold up requests for other models. The pool never queues
 * a request whose every model has its breaker open: it refuses it with `ModelUnavailableError`.
 * `balance` then waits for the model without the request's concurrency slot, up to `modelWaitMs`,
 * and fails it with that error after. A 404 is a request error, never a model failure. Model
 * records stay bounded however many model ids pass.
 */
import { from, map, merge, mergeMap, Observable, of, queueScheduler, Subject, tap, timer } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { ModelUnavailableError, NetworkError, NoKeyAvailableError, type OpenRouterError } from '../src/core/errors.js';
import { withKeyRotation } from '../src/operators/with-key-rotation.js';
import { classifyHttpError } from '../src/wire/classify.js';
import { balance, type BalanceEvent, type FailedEvent } from '../src/operators/balance.js';
import { scheduleAfter, MAX_TIMER_DELAY_MS } from '../src/core/timers.js';
import type { ChatRequest, TransportEvent } from '../src/core/types.js';
import {
  answerEvent,
  eventsOf,
  keyRateLimited,
  modelScriptedPoolFactory,
  providerRateLimited,
  providerUnavailable,
  streamEnd,
  textChunk,
  transientRetries,
} from './model-support.js';
import type { TestScheduler } from 'rxjs/testing';
import { newTestScheduler, predictablePool } from './support.js';
import { POOL_PORT } from '../src/pool/types.js';
import { CapacityWaiters } from '../src/pool/capacity-waiters.js';
import type { ModelEntry } from '../src/pool/entities.js';

const makePool = modelScriptedPoolFactory([{ key: 'k1', label: 'k1' }]);
const makeTwoKeyPool = modelScriptedPoolFactory([
  { key: 'k1', label: 'k1' },
  { key: 'k2', label: 'k2' },
]);
const makeOneSlotPool = modelScriptedPoolFactory([{ key: 'k1', label: 'k1', limits: { maxConcurrent: 1 } }]);

function request(id: string, model: string): ChatRequest {
  return { id, model, messages: [{ role: 'user', content: id }] };
}

/** An answer to `id` on `model`, `frames` ms after its send (inside `scheduler.run`). */
function answerAfter(scheduler: TestScheduler, frames: number, id: string, model: string): Observable<TransportEvent> {
  return scheduler.createColdObservable<TransportEvent>(`${frames}ms (a|)`, { a: answerEvent(id, 'ok', model) });
}

/**
 * At `at`, asks the pool's port for a key for `model` (waiting in the admission queue, as
 * `withKeyRotation`'s requests do by default), logs `"<frame> <id>"` when it gets one, and holds it 100 ms.
 */
function queueAt(
  scheduler: TestScheduler,
  pool: ReturnType<typeof makePool>['pool'],
  leases: string[],
  { id, model, at, priority = 0 }: { id: string; model: string; at: number; priority?: number },
): void {
  scheduler.schedule(() => {
    pool[POOL_PORT].acquire(request(id, model), { models: [model], priority }).subscribe((lease) => {
      leases.push(`${scheduler.now()} ${id}`);
      scheduleAfter(scheduler, 100, () => lease.release());
    });
  }, at);
}

/** Every model is found to serve one request at a time. */
const ONE_AT_A_TIME = { adaptiveConcurrency: { initial: 1, min: 1, max: 1 } };

const modelBreaker = { consecutiveFailures: 2, cooldownMs: 1_000, maxCooldownMs: 1_000 };

/** `"<frame> <id> <completion|failed kind>"` for each terminal event of `balance`; the `failed` events also go to `failures`. */
function terminals(scheduler: { now(): number }, events$: Observable<BalanceEvent>, failures: FailedEvent[] = []): string[] {
  const log: string[] = [];
  events$.subscribe((event) => {
    if (event.type === 'completion') log.push(`${scheduler.now()} ${event.requestId} completion`);
    if (event.type === 'failed') {
      log.push(`${scheduler.now()} ${event.requestId} ${event.error.kind}`);
      failures.push(event);
    }
  });
  return log;
}

describe('a model out of service', () => {
  it('waits for its model without a concurrency slot: requests for a healthy model keep running, and the wait is bounded', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      // The dead model fails each call after 5 frames; the healthy one answers after 10.
      const deadCall = () => cold<TransportEvent>('-----#', undefined, providerUnavailable());
      const okCall = (id: string) => cold<TransportEvent>('----------(a|)', { a: answerEvent(id, 'ok', 'ok') });
      const scripts = {
        dead: Array.from({ length: 20 }, deadCall),
        ok: Array.from({ length: 20 }, (_, index) => okCall(`ok-${index + 1}`)),
      };
      const { pool, calls } = makePool(scheduler, scripts, { modelBreaker });
      const requests = Array.from({ length: 20 }, (_, index) =>
        index % 2 === 0 ? request(`d${index}`, 'dead') : request(`h${index}`, 'ok'),
      );
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 2, transient: false, modelWaitMs: 5_000 })));
      flush();

      // Two calls opened the dead model's breaker; then one probe per cooldown, nothing more.
      expect(calls.filter((call) => call.model === 'dead').length).toBeLessThanOrEqual(2 + 5);
      const deadOutcomes = log.filter((line) => / d\d+ /.test(line));
      expect(deadOutcomes).toHaveLength(10);
      // Each cooldown lets one request probe the dead model (and fail with its 503); the rest
      // waited without their slot and failed with the reason once 5 s could not bring it back.
      const refused = deadOutcomes.filter((line) => line.endsWith('model_unavailable'));
      expect(refused.length).toBeGreaterThanOrEqual(3);
      for (const line of deadOutcomes) expect(Number(line.split(' ')[0])).toBeLessThanOrEqual(5_100);
      // Every healthy request answered, one slot's worth of 10-frame answers after another:
      // no healthy request waited for the dead model's 1,000-frame cooldown.
      const healthy = log.filter((line) => / h\d+ /.test(line));
      expect(healthy).toHaveLength(10);
      expect(healthy.every((line) => line.endsWith('completion'))).toBe(true);
      expect(Math.max(...healthy.map((line) => Number(line.split(' ')[0])))).toBeLessThan(100);
      expect(pool.snapshot().queued).toBe(0);
    });
  });

  it('refuses thousands of requests in a row without growing the stack', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      let calls = 0;
      const transport = () => {
        calls++;
        return cold<TransportEvent>('-#', undefined, providerUnavailable());
      };
      const pool = predictablePool(scheduler, transport, [{ key: 'k1', label: 'k1' }], { modelBreaker });
      let failed = 0;
      from(Array.from({ length: 20_000 }, (_, index) => request(`r${index}`, 'dead')))
        .pipe(balance(pool, { concurrency: 2, transient: false, modelWaitMs: 0 }))
        .subscribe((event) => event.type === 'failed' && failed++);
      flush();
      // The first two calls open the breaker; a third may start between their failures.
      expect(calls).toBeLessThanOrEqual(3);
      expect(failed).toBe(20_000);
    });
  });

  it('says which model is out, until when, and why; nothing is sent and no health is touched', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const scripts = {
        dead: [cold<TransportEvent>('-#', undefined, providerUnavailable()), cold<TransportEvent>('-#', undefined, providerUnavailable())],
      };
      const { pool, calls } = makePool(scheduler, scripts, { modelBreaker });
      const failures: FailedEvent[] = [];
      from([request('r1', 'dead'), request('r2', 'dead'), request('r3', 'dead')])
        .pipe(balance(pool, { concurrency: 1, transient: false, modelWaitMs: 0 }))
        .subscribe((event) => event.type === 'failed' && failures.push(event));
      flush();
      expect(calls).toHaveLength(2);
      const refused = failures[2]!;
      expect(refused.error).toBeInstanceOf(ModelUnavailableError);
      expect(refused.error.message).toMatch(/dead \(breaker open for another 1 s; last error: provider returned 503\)/);
      expect(refused.error.retryAfterMs).toBe(1_000);
      expect(refused.error.status).toBe(503);
      expect(refused.attempts).toEqual([expect.objectContaining({ kind: 'model_unavailable' })]);
      const model = pool.snapshot().models.find((entry) => entry.model === 'dead')!;
      // Its cooldown ran out while the scheduler flushed: the breaker now waits for a probe.
      expect(model.state).toBe('half-open');
      expect(model.lastError?.message).toBe('provider returned 503');
      expect(pool.snapshot().keys[0]!).toMatchObject({ state: 'closed', consecutiveFailures: 0, inFlight: 0 });
    });
  });

  it('refuses requests already queued for keys when their model opens', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const scripts = { dead: Array.from({ length: 5 }, () => cold<TransportEvent>('---#', undefined, providerUnavailable())) };
      const { pool, calls } = makeOneSlotPool(scheduler, scripts, { modelBreaker: { ...modelBreaker, consecutiveFailures: 1 } });
      const log: string[] = [];
      // One slot on the key: r2 and r3 wait in the pool's queue behind r1.
      for (const id of ['r1', 'r2', 'r3']) {
        pool[POOL_PORT].acquire(request(id, 'dead'), { models: ['dead'] }).subscribe({
          next: (lease) => {
            pool[POOL_PORT].transport(lease.credential, request(id, 'dead')).subscribe({
              error: (error: unknown) => {
                pool[POOL_PORT].record({ type: 'failure', keyLabel: lease.label, model: lease.model, error: error as never });
                lease.release();
              },
            });
          },
          error: (error: unknown) => log.push(`${scheduler.now()} ${id} ${(error as ModelUnavailableError).kind}`),
        });
      }
      flush();
      expect(calls).toHaveLength(1);
      expect(log).toEqual(['3 r2 model_unavailable', '3 r3 model_unavailable']);
    });
  });

  it('with modelWaitMs, waits that long for a model to come back and fails after it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const fail = () => cold<TransportEvent>('#', undefined, providerUnavailable());
      const probe = cold<TransportEvent>('-(a|)', { a: answerEvent('probe', 'back', 'dead') });
      const { pool } = makePool(scheduler, { dead: [fail(), fail(), probe] }, { modelBreaker });
      const log: string[] = [];
      const send = (id: string, at: number) =>
        scheduler.schedule(
          () =>
            of(request(id, 'dead'))
              .pipe(balance(pool, { transient: false, modelWaitMs: 400 }))
              .subscribe((event) => {
                if (event.type === 'completion') log.push(`${scheduler.now()} ${id} completion`);
                if (event.type === 'failed') log.push(`${scheduler.now()} ${id} ${event.error.kind}`);
              }),
          at,
        );
      send('r1', 0);
      send('r2', 0);
      // The breaker half-opens at 1,000: within r3's 400 ms wait (from 700), past r4's (from 300),
      // which fails at once since it could not end in time.
      send('r3', 700);
      send('r4', 300);
      flush();
      expect(log).toEqual(['0 r1 upstream', '0 r2 upstream', '300 r4 model_unavailable', '1001 r3 completion']);
    });
  });
});

describe('a 404 or a 400', () => {
  it('is a request error: it excludes the model from the request, never opens its breaker', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      // The error as the wire classifier makes it from OpenRouter's answer to a misspelt model.
      const notFound = () =>
        cold<TransportEvent>(
          '-#',
          undefined,
          classifyHttpError({ status: 404, body: { error: { code: 404, message: 'No endpoints found for misspelt/model.' } }, nowMs: 0 }),
        );
      const { pool, calls } = makePool(scheduler, { 'misspelt/model': Array.from({ length: 8 }, notFound) }, { modelBreaker });
      const kinds: string[] = [];
      from(Array.from({ length: 8 }, (_, index) => request(`r${index}`, 'misspelt/model')))
        .pipe(balance(pool, { concurrency: 2 }))
        .subscribe((event) => event.type === 'failed' && kinds.push(event.error.kind));
      flush();
      expect(kinds).toEqual(Array(8).fill('not_found'));
      expect(calls).toHaveLength(8);
      const model = pool.snapshot().models.find((entry) => entry.model === 'misspelt/model')!;
      expect(model.state).toBe('closed');
      expect(model.consecutiveFailures).toBe(0);
    });
  });

  it('settles a half-open probe: a model probed by a request it refuses closes again', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const fail = () => cold<TransportEvent>('-#', undefined, providerUnavailable());
      const refusal = cold<TransportEvent>(
        '-#',
        undefined,
        classifyHttpError({ status: 400, body: { error: { code: 400, message: 'Invalid prompt' } }, nowMs: 0 }),
      );
      const { pool, calls } = makePool(
        scheduler,
        { m: [fail(), fail(), refusal, cold<TransportEvent>('-(a|)', { a: answerEvent('r4', 'ok', 'm') })] },
        { modelBreaker },
      );
      const kinds: string[] = [];
      const send = (id: string, at: number) =>
        scheduler.schedule(
          () =>
            of(request(id, 'm'))
              .pipe(balance(pool, { transient: false, modelWaitMs: 0 }))
              .subscribe(
                (event) =>
                  (event.type === 'failed' || event.type === 'completion') &&
                  kinds.push(`${scheduler.now()} ${id} ${event.type === 'failed' ? event.error.kind : 'completion'}`),
              ),
          at,
        );
      send('r1', 0);
      send('r2', 0);
      // The breaker opened at 1 for 1,000: r3 is its probe, refused with a 400; r4 finds it closed.
      send('r3', 1_001);
      let stateAfterProbe = '';
      scheduler.schedule(() => (stateAfterProbe = pool.snapshot().models.find((entry) => entry.model === 'm')!.state), 1_003);
      send('r4', 1_005);
      flush();
      expect(stateAfterProbe).toBe('closed');
      expect(kinds).toEqual(['1 r1 upstream', '1 r2 upstream', '1002 r3 bad_request', '1006 r4 completion']);
      expect(calls).toHaveLength(4);
    });
  });
});

describe('model health records', () => {
  it('stay bounded: idle, healthy records go first, least recently used; failing ones stay', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const transport = (_key: unknown, req: ChatRequest) =>
        req.model === 'flaky'
          ? cold<TransportEvent>('-#', undefined, providerUnavailable())
          : cold<TransportEvent>('-(a|)', { a: answerEvent(String(req.id), 'ok', req.model) });
      const pool = predictablePool(scheduler, transport, [{ key: 'k1', label: 'k1' }], {
        maxModelRecords: 20,
        modelBreaker: { consecutiveFailures: 100 },
      });
      const ids = ['flaky', ...Array.from({ length: 200 }, (_, index) => `vendor/model-${index}`)];
      from(ids.map((model, index) => request(`r${index}`, model)))
        .pipe(balance(pool, { concurrency: 4, transient: false }))
        .subscribe();
      flush();
      const models = pool.snapshot().models.map((entry) => entry.model);
      expect(models.length).toBeLessThanOrEqual(20);
      expect(models).toContain('flaky');
      expect(models).toContain('vendor/model-199');
      expect(models).not.toContain('vendor/model-0');
    });
  });
});

describe('scheduleAfter', () => {
  it('fires a 35-day delay exactly on time, sleeping in steps no timer can overflow', () => {
    const scheduler = newTestScheduler();
    const thirtyFiveDays = 35 * 86_400_000;
    expect(thirtyFiveDays).toBeGreaterThan(MAX_TIMER_DELAY_MS);
    scheduler.run(({ flush }) => {
      const fired: number[] = [];
      scheduleAfter(scheduler, thirtyFiveDays, () => fired.push(scheduler.now()));
      const cancelled = scheduleAfter(scheduler, thirtyFiveDays, () => fired.push(-1));
      scheduler.schedule(() => cancelled.unsubscribe(), MAX_TIMER_DELAY_MS + 5);
      expect(scheduleAfter(scheduler, Infinity, () => fired.push(-2)).closed).toBe(true);
      flush();
      expect(fired).toEqual([thirtyFiveDays]);
    });
  });
});

describe('a model parked by a provider 429 for longer than the hint-less backoff cap (an hour here: its Retry-After)', () => {
  const parkedForAnHour = () => providerRateLimited(3_600_000);

  it('does not hold up a request for another model while a retry waits for it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, parkedForAnHour())],
        b: [cold('-(c|)', { c: answerEvent('gen-b', 'ok', 'b') })],
      });
      const log = terminals(
        scheduler,
        from([request('r1', 'a'), request('r2', 'b')]).pipe(balance(pool, { concurrency: 1, transient: false })),
      );
      flush();
      // r1 waits for a (or fails: an hour is past modelWaitMs) without its slot: r2 runs at once.
      expect(log).toContain('2 r2 completion');
    });
  });

  it('does not hold up a request for another model while a fresh request would wait out the park', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, parkedForAnHour()), cold('-(c|)', { c: answerEvent('gen-a', 'ok', 'a') })],
        b: [cold('-(c|)', { c: answerEvent('gen-b', 'ok', 'b') })],
      });
      terminals(scheduler, of(request('r0', 'a')).pipe(balance(pool, { rateLimit: false, transient: false })));
      let log: string[] = [];
      scheduler.schedule(() => {
        log = terminals(
          scheduler,
          from([request('r1', 'a'), request('r2', 'b')]).pipe(balance(pool, { concurrency: 1, transient: false })),
        );
      }, 100);
      flush();
      // a is parked for an hour, past modelWaitMs (60 s): r1 fails at once, saying why; r2 runs.
      expect(log).toEqual(['100 r1 model_unavailable', '101 r2 completion']);
    });
  });
});

describe("a model whose own quota is spent (a per-model quota, the account's free-model bucket)", () => {
  it('does not hold up requests for other models: balance waits for its room outside the slot, as long as the queue would', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const answer = (id: string) => cold<TransportEvent>('-(c|)', { c: answerEvent(id, 'ok', id) });
      const { pool, calls } = makePool(
        scheduler,
        {
          limited: Array.from({ length: 3 }, (_, index) => answer(`l${index}`)),
          ok: Array.from({ length: 4 }, (_, index) => answer(`o${index}`)),
        },
        // One request a minute for the limited model (its own quota, not the key's).
        { models: { limited: { rpm: 1 } } },
      );
      const requests = [request('l1', 'limited'), request('l2', 'limited'), request('l3', 'limited')];
      for (let index = 1; index <= 4; index++) requests.push(request(`o${index}`, 'ok'));
      // The default modelWaitMs (60 s): the third request's room is two minutes away, which the
      // queue would have waited for; it waits as long outside its slot.
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 2, transient: false })));
      flush();
      // The requests for the other model are answered at once, not after the limited model's minute.
      const others = log.filter((line) => / o\d /.test(line));
      expect(others).toHaveLength(4);
      expect(Math.max(...others.map((line) => Number(line.split(' ')[0])))).toBeLessThan(100);
      // The limited model's requests go out a minute apart (its quota counts from the send plus
      // the 1 s arrival margin), each one answered.
      const limited = calls.filter((call) => call.model === 'limited').map((call) => call.at);
      expect(limited).toHaveLength(3);
      expect(limited[1]! - limited[0]!).toBeGreaterThanOrEqual(60_000);
      expect(limited[2]! - limited[1]!).toBeGreaterThanOrEqual(60_000);
      expect(log.filter((line) => / l\d /.test(line)).every((line) => line.endsWith('completion'))).toBe(true);
      expect(pool.snapshot().queued).toBe(0);
    });
  });

  it('gives the room a window brings to the requests in line first, not to those that happen to look first', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const limited = 'limited';
      const answer = (id: string, frames: number) => cold<TransportEvent>(`${frames}ms (c|)`, { c: answerEvent(id, 'ok', limited) });
      const { pool } = makePool(
        scheduler,
        {
          // l0's first try fails at once: its retry finds the minute's room spent 70 ms before
          // l2 to l6 do, and so looks again each second 70 ms before them.
          [limited]: [
            cold<TransportEvent>('30ms #', undefined, providerUnavailable()),
            answer('l1', 100),
            ...Array.from({ length: 6 }, (_, index) => answer(`a${index}`, 10)),
          ],
        },
        { models: { [limited]: { rpm: 2 } } },
      );
      const requests = ['l0', 'l1', 'l2', 'l3', 'l4', 'l5', 'l6'].map((id) => request(id, limited));
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 2, transient: transientRetries })));
      flush();
      // Each minute's two sends go to the first two in line. Each waiter looking on its own, l0
      // found the room still a second away just before the others found it nearer and took it,
      // minute after minute: it was answered in the fourth minute, after l5.
      expect(log.every((line) => line.endsWith('completion'))).toBe(true);
      expect(log.map((line) => `${line.split(' ')[1]} ${Math.floor(Number(line.split(' ')[0]) / 60_000)}`)).toEqual([
        'l1 0',
        'l0 1',
        'l2 1',
        'l3 2',
        'l4 2',
        'l5 3',
        'l6 3',
      ]);
    });
  });

  it('leaves the slots to requests for other models until its room is a moment away', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const answer = (id: string, model: string) => cold<TransportEvent>('10ms (c|)', { c: answerEvent(id, 'ok', model) });
      const { pool } = makePool(
        scheduler,
        {
          limited: Array.from({ length: 6 }, (_, index) => answer(`l${index}`, 'limited')),
          ok: [answer('o1', 'ok')],
        },
        { models: { limited: { rpm: 2 } } },
      );
      const limited = Array.from({ length: 6 }, (_, index) => request(`l${index}`, 'limited'));
      // The minute's room spent, l2 to l5 (coming 30 ms later) look again each second at x.030, a
      // second before the next window at 60.020 being 59.030. A request for another model comes
      // half a second before that window.
      const requests$ = merge(
        from(limited.slice(0, 2)),
        timer(30).pipe(mergeMap(() => from(limited.slice(2)))),
        timer(59_500).pipe(map(() => request('o1', 'ok'))),
      );
      const log = terminals(scheduler, requests$.pipe(balance(pool, { concurrency: 2, transient: false })));
      flush();
      // Waiting in the queue for the window from a second before it, l2 and l3 held both slots,
      // and o1 waited for the window too (answered at 60,030).
      expect(log).toContain('59510 o1 completion');
      expect(log.filter((line) => line.endsWith('completion'))).toHaveLength(7);
    });
  });

  it('wakes its line as far as the first request that finds no room, not the whole line each second', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const limited = 'limited';
      const { pool } = makePool(
        scheduler,
        {
          [limited]: Array.from({ length: 4 }, (_, index) =>
            cold<TransportEvent>('10ms (c|)', { c: answerEvent(`a${index}`, 'ok', limited) }),
          ),
        },
        { models: { [limited]: { rpm: 2 } } },
      );
      const port = pool[POOL_PORT];
      let asked = 0;
      const acquireNow = port.acquireNow!.bind(port);
      port.acquireNow = (request, options) => {
        asked++;
        return acquireNow(request, options);
      };
      const requests = Array.from({ length: 200 }, (_, index) => request(`l${index}`, limited));
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 200, transient: false })));
      scheduler.schedule(() => log.push(`asked ${asked}`), 59_000);
      flush();
      expect(log.slice(0, 2).map((line) => line.split(' ')[1])).toEqual(['l0', 'l1']);
      // 200 asked on arrival, then one a second for 59 s (258 asks in all): woken whole each
      // second, the line of 198 asked 11,684 times, an event-loop stall a second with thousands.
      const askedBy59s = Number(log.find((line) => line.startsWith('asked'))!.split(' ')[1]);
      expect(askedBy59s).toBeLessThan(200 + 2 * 60);
      pool.dispose();
    });
  });

  it('looks again each second: the room an assumed quota withholds comes back when the answers in flight disprove it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const free = 'x/y:free';
      const answers = Array.from({ length: 30 }, (_, index) =>
        cold<TransportEvent>('----------(c|)', { c: answerEvent(`a${index}`, 'ok', free) }),
      );
      // Key info names the account: OpenRouter's 20 free-model requests a minute are assumed (21).
      const keyInfo = () => of({ limit: null, limitRemaining: null, usage: 0, isFreeTier: false, creatorUserId: 'user_a' });
      const { pool } = makePool(scheduler, { [free]: answers }, { keyInfo, adaptiveConcurrency: false, store: undefined });
      const requests = Array.from({ length: 30 }, (_, index) => request(`f${index}`, free));
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 30, transient: false })));
      flush();
      // 21 go out at once and the rest wait outside their slots for a minute's room; the 21
      // answers disprove the assumption at frame 10, and the rest go out at the next look.
      expect(log).toHaveLength(30);
      expect(log.every((line) => line.endsWith('completion'))).toBe(true);
      expect(Math.max(...log.map((line) => Number(line.split(' ')[0])))).toBeLessThan(1_100);
    });
  });
});

describe('a model parked by a provider 429 for a hint-less backoff (seconds, within the cap)', () => {
  it('does not hold up a request for another model: balance waits for the model outside its slot', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool, calls } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, providerRateLimited()), cold('-(c|)', { c: answerEvent('gen-a', 'ok', 'a') })],
        b: [cold('-(c|)', { c: answerEvent('gen-b', 'ok', 'b') })],
      });
      const log = terminals(
        scheduler,
        from([request('r1', 'a'), request('r2', 'b')]).pipe(balance(pool, { concurrency: 1, transient: false })),
      );
      flush();
      // The 429 at frame 1 parks a for 750 frames (1 s backoff, half of it jittered at 0.5). r2
      // takes the one slot at once; r1 takes it back when a is due and is answered then.
      expect(log).toEqual(['2 r2 completion', '752 r1 completion']);
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 a', '1 b', '751 a']);
      expect(pool.snapshot().queued).toBe(0);
    });
  });

  it('keeps the retries the request has left across its waits: refused every time, it fails after rateLimit.maxAttempts', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool, calls } = makePool(scheduler, {
        a: Array.from({ length: 6 }, () => cold<TransportEvent>('-#', undefined, providerRateLimited())),
        b: [cold('-(c|)', { c: answerEvent('gen-b', 'ok', 'b') })],
      });
      const failures: FailedEvent[] = [];
      const log = terminals(
        scheduler,
        from([request('r1', 'a'), request('r2', 'b')]).pipe(balance(pool, { concurrency: 1, transient: false })),
        failures,
      );
      flush();
      expect(calls.filter((call) => call.model === 'a')).toHaveLength(4);
      expect(log[0]).toBe('2 r2 completion');
      expect(log[1]).toMatch(/ r1 attempts_exhausted$/);
      expect(failures[0]!.attempts.map((attempt) => attempt.attempt)).toEqual([1, 2, 3, 4]);
    });
  });

  it('keeps rateLimit.maxWaitMs across the wait: a retry that then waits for a parked key gives up on time', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const keyParkedFor4Min = keyRateLimited(240_000);
      const { pool } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, providerRateLimited()), cold('-(c|)', { c: answerEvent('gen-a', 'ok', 'a') })],
        b: [cold<TransportEvent>('500ms #', undefined, keyParkedFor4Min)],
      });
      const log = terminals(
        scheduler,
        from([request('r1', 'a'), request('r0', 'b')]).pipe(
          balance(pool, { concurrency: 2, transient: false, rateLimit: { maxWaitMs: 2_000 } }),
        ),
      );
      flush();
      // r1's retry was due at 1; after its wait for a (to 751) it waits for the key, parked at
      // 500 for 4 min (short enough to wait in the queue), until its 2 s are spent.
      expect(log).toEqual(['2001 r1 attempts_exhausted', '2500 r0 attempts_exhausted']);
    });
  });

  it('gives each wait its own modelWaitMs: a wait late in a request is not charged with the time its attempts took', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, {
        a: [
          cold<TransportEvent>('-#', undefined, providerRateLimited()),
          cold<TransportEvent>('2000ms #', undefined, providerRateLimited()),
          cold('-(c|)', { c: answerEvent('gen-a', 'ok', 'a') }),
        ],
      });
      const log = terminals(scheduler, of(request('r1', 'a')).pipe(balance(pool, { transient: false, modelWaitMs: 2_000 })));
      flush();
      // Parked at 1 for 750; the second attempt (751) is refused at 2751 and a parked for 1,500
      // (the backoff doubled): within a fresh 2 s, so r1 waits again and is answered.
      expect(log).toEqual(['4252 r1 completion']);
    });
  });

  it('with modelWaitMs 0, fails the request at once, saying when the model is back', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const parkedFor20s = providerRateLimited(20_000);
      const { pool } = makePool(scheduler, {
        a: [cold<TransportEvent>('-#', undefined, parkedFor20s)],
        b: [cold('-(c|)', { c: answerEvent('gen-b', 'ok', 'b') })],
      });
      const failures: FailedEvent[] = [];
      const log = terminals(
        scheduler,
        from([request('r1', 'a'), request('r2', 'b')]).pipe(balance(pool, { concurrency: 1, transient: false, modelWaitMs: 0 })),
        failures,
      );
      flush();
      expect(log).toEqual(['1 r1 model_unavailable', '2 r2 completion']);
      expect(failures[0]!.error.retryAfterMs).toBe(20_000);
    });
  });

  it('is waited out in the queue by an acquisition that does not ask otherwise', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, { a: [cold<TransportEvent>('-#', undefined, providerRateLimited())] });
      terminals(scheduler, of(request('r0', 'a')).pipe(balance(pool, { rateLimit: false, transient: false })));
      const outcomes: string[] = [];
      const acquire = (id: string, options: { maxQueuedModelParkMs?: number }) =>
        pool[POOL_PORT].acquire(request(id, 'a'), Object.assign({ models: ['a'] }, options)).subscribe({
          next: (lease) => {
            outcomes.push(`${scheduler.now()} ${id} lease`);
            lease.release();
          },
          error: (error: ModelUnavailableError) => outcomes.push(`${scheduler.now()} ${id} ${error.kind} ${error.retryAfterMs}`),
        });
      scheduler.schedule(() => {
        acquire('queued', {});
        acquire('refused', { maxQueuedModelParkMs: 0 });
      }, 100);
      flush();
      expect(outcomes).toEqual(['100 refused model_unavailable 651', '751 queued lease']);
    });
  });
});

describe('a model no key can take for long (its quota spent for an hour)', () => {
  it('fails its requests at once, saying when, instead of holding their slots from requests for other models', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const answers = (model: string) =>
        Array.from({ length: 4 }, (_, index) => cold('-(c|)', { c: answerEvent(`${model}-${index}`, 'ok', model) }));
      const { pool, calls } = makePool(
        scheduler,
        { 'x/y:free': answers('x/y:free'), 'x/paid': answers('x/paid') },
        { models: { '*:free': { quotas: [{ requests: 2, windowMs: 3_600_000 }] } } },
      );
      const failures: FailedEvent[] = [];
      const log = terminals(
        scheduler,
        from([...['f1', 'f2', 'f3', 'f4'].map((id) => request(id, 'x/y:free')), request('p1', 'x/paid'), request('p2', 'x/paid')]).pipe(
          balance(pool, { concurrency: 2, transient: false }),
        ),
        failures,
      );
      flush();
      // The hour's two free requests are answered; the next two fail at once (the quota has
      // room again in an hour, past modelWaitMs), and the paid ones run in the slots.
      expect(log).toEqual([
        '1 f1 completion',
        '1 f3 model_unavailable',
        '1 f4 model_unavailable',
        '1 f2 completion',
        '2 p1 completion',
        '2 p2 completion',
      ]);
      expect(failures[0]!.error.retryAfterMs).toBe(3_600_000);
      expect(failures[0]!.error.message).toMatch(/no key can take x\/y:free for another 60 min/);
      expect(calls.filter((call) => call.model === 'x/y:free')).toHaveLength(2);
    });
  });
});

describe('a key parked for an hour while requests wait in the queue for it', () => {
  it('fails them within a second of the park, not at its end', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const parkedForAnHour = keyRateLimited(3_600_000);
      const { pool } = makeOneSlotPool(scheduler, { 'x/m': [cold('500ms #', undefined, parkedForAnHour)] });
      // r2 and r3 wait for the one slot r1 holds; the 429 that parks the key for an hour lands
      // half a second after they last looked for room.
      const log = terminals(
        scheduler,
        from(['r1', 'r2', 'r3'].map((id) => request(id, 'x/m'))).pipe(balance(pool, { concurrency: 3, transient: false })),
      );
      flush();
      expect(log).toHaveLength(3);
      for (const line of log) {
        expect(line).toMatch(/ model_unavailable$/);
        expect(Number(line.split(' ')[0])).toBeLessThanOrEqual(1_000);
      }
    });
  });
});

describe('disposing the pool', () => {
  it('fails a request waiting for a model at once, leaving no timer', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const fail = () => cold<TransportEvent>('-#', undefined, providerUnavailable());
      const breaker = { consecutiveFailures: 2, cooldownMs: 100_000, maxCooldownMs: 100_000 };
      const { pool } = makePool(scheduler, { dead: [fail(), fail()] }, { modelBreaker: breaker });
      const route = balance(pool, { transient: false, modelWaitMs: 500_000 });
      const first = terminals(scheduler, from([request('d1', 'dead'), request('d2', 'dead')]).pipe(route));
      let late: string[] = [];
      scheduler.schedule(() => (late = terminals(scheduler, of(request('d3', 'dead')).pipe(route))), 5);
      scheduler.schedule(() => pool.dispose(), 10);
      flush();
      expect(first).toEqual(['1 d1 upstream', '1 d2 upstream']);
      expect(late).toEqual(['10 d3 aborted']);
    });
  });

  it('fails a request in a transient backoff at once', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(scheduler, { a: [cold<TransportEvent>('-#', undefined, providerUnavailable())] });
      const log = terminals(
        scheduler,
        of(request('r1', 'a')).pipe(balance(pool, { transient: { baseDelayMs: 1000, random: () => 0.5, budget: false } })),
      );
      scheduler.schedule(() => pool.dispose(), 100);
      flush();
      expect(log).toEqual(['100 r1 aborted']);
    });
  });
});

describe("every key's breaker open (OpenRouter unreachable)", () => {
  const makeTwoKeyPool = modelScriptedPoolFactory([
    { key: 'sk-or-v1-first-key-0000', label: 'k1', limits: { maxConcurrent: 1 } },
    { key: 'sk-or-v1-second-key-000', label: 'k2', limits: { maxConcurrent: 1 } },
  ]);
  const keyBreaker = { consecutiveFailures: 1, cooldownMs: 1_000, maxCooldownMs: 1_000 };
  const unreachable = () => new NetworkError({ message: 'Connection error: connect ECONNREFUSED', scope: 'transport', retryable: true });

  it('refuses a waiting request when the last key opens, and a new one at once, naming the keys and the first half-open', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const fails = (frames: string) => cold<TransportEvent>(frames, undefined, unreachable());
      const { pool, calls } = makeTwoKeyPool(scheduler, { a: [fails('-----#'), fails('----------#')] }, { breaker: keyBreaker });
      const log: string[] = [];
      const errors: OpenRouterError[] = [];
      const send = (id: string, at: number) =>
        scheduler.schedule(
          () =>
            of(request(id, 'a'))
              .pipe(withKeyRotation(pool))
              .subscribe({
                error: (error: OpenRouterError) => {
                  log.push(`${scheduler.now()} ${id} ${error.kind}`);
                  errors.push(error);
                },
              }),
          at,
        );
      // r1 and r2 take both keys' only slots; r3 waits for one.
      send('r1', 0);
      send('r2', 0);
      send('r3', 1);
      send('r4', 20);
      flush();
      // k1 opens at 5 (r3 goes on waiting: k2 may answer), k2 at 10: r3 is refused then, r4 on arrival.
      expect(log).toEqual(['5 r1 network', '10 r3 no_key_available', '10 r2 network', '20 r4 no_key_available']);
      expect(calls).toHaveLength(2);
      const refusal = errors[1];
      expect(refusal).toBeInstanceOf(NoKeyAvailableError);
      expect(refusal!.retryable).toBe(true);
      // k1 half-opens at 1,005.
      expect(refusal!.retryAfterMs).toBe(995);
      expect(refusal!.message).toBe(
        "every key's circuit breaker is open: k1 (open for another 1 s; last error: Connection error: connect ECONNREFUSED), k2 (open for another 1 s; last error: Connection error: connect ECONNREFUSED)",
      );
      expect(JSON.stringify(errors.map((error) => [error.message, error.toJSON()]))).not.toMatch(/sk-or-v1/);
    });
  });

  it('balance waits out a short outage without its slot, and fails each request after modelWaitMs of a long one', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const fail = () => cold<TransportEvent>('-#', undefined, unreachable());
      const answer = (id: string) => cold<TransportEvent>('-(a|)', { a: answerEvent(id, 'ok', 'a') });
      // Short: both keys fail once, then answer after their cooldown. Long: they never answer.
      const short = makeTwoKeyPool(scheduler, { a: [fail(), fail(), answer('p1'), answer('p2'), answer('p3')] }, { breaker: keyBreaker });
      const long = makeTwoKeyPool(scheduler, { a: Array.from({ length: 400 }, fail) }, { breaker: keyBreaker });
      const requests = (prefix: string, count: number) =>
        Array.from({ length: count }, (_, index) => request(`${prefix}${index + 1}`, 'a'));
      const shortLog = terminals(
        scheduler,
        from(requests('s', 5)).pipe(balance(short.pool, { concurrency: 1, transient: false, modelWaitMs: 3_000 })),
      );
      const longLog = terminals(
        scheduler,
        from(requests('l', 40)).pipe(balance(long.pool, { concurrency: 4, transient: transientRetries, modelWaitMs: 3_000 })),
      );
      flush();
      // s1 and s2 opened both breakers; s3 waited outside the one slot for k1 to half-open at
      // 1,001, was its probe and closed it, and s4 and s5 followed.
      expect(shortLog).toEqual(['1 s1 network', '2 s2 network', '1002 s3 completion', '1003 s4 completion', '1004 s5 completion']);
      // A long outage: each of the 40 requests fails once, all within two of its waits (a probe it
      // was gives it a new one), after 14 calls. Queued for keys, they failed one by one as the
      // breakers' probes, the last at 59 s, after 120 calls.
      expect(new Set(longLog.map((line) => line.split(' ')[1])).size).toBe(40);
      expect(longLog).toHaveLength(40);
      expect(Math.max(...longLog.map((line) => Number(line.split(' ')[0])))).toBeLessThan(2 * 3_000 + 1_000 + 10);
      expect(long.calls.length).toBeLessThan(20);
    });
  });
});

describe('a model at its concurrency limit', () => {
  it('a model back in service after one brief park: the requests that saw the park wait for its room as long as it takes', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    scheduler.run(({ cold, flush }) => {
      // One provider 429 (a 250 ms park), then every call answers, 1 s each, one at a time.
      const refusedOnce = cold<TransportEvent>('20ms #', undefined, providerRateLimited());
      const ok = (n: number) => cold<TransportEvent>('1000ms (a|)', { a: answerEvent(`x${n}`, 'ok', 'busy') });
      const { pool } = makePool(
        scheduler,
        { busy: [refusedOnce, ...Array.from({ length: 40 }, (_, n) => ok(n))] },
        { rateLimitCooldownMs: 250, maxRateLimitCooldownMs: 2_000, ...ONE_AT_A_TIME },
      );
      const requests = Array.from({ length: 8 }, (_, index) => request(`b${index + 1}`, 'busy'));
      log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 8, transient: false, modelWaitMs: 3_000 })));
      flush();
    });
    // The model answers from 270 on: the park is over, and the line moves one answer a second,
    // past the 3 s of `modelWaitMs` (the outage those requests found ended with its first answer).
    expect(log).toHaveLength(8);
    expect(log.filter((line) => !line.endsWith('completion'))).toEqual([]);
  });

  it('a model that answers every probe of its limit with a provider 429: its waits for room count in the outage, and no request waits past modelWaitMs since its last attempt', () => {
    const scheduler = newTestScheduler();
    let log: string[] = [];
    const failures: FailedEvent[] = [];
    scheduler.run(({ cold, flush }) => {
      // Every call draws a provider 429 (no hint) 20 ms after it goes out: the model parks, and
      // its adaptive limit comes down to 1, so a request woken from the park finds the model at its
      // limit (another request's probe is out), then out again once that probe is refused.
      const refused = () => cold<TransportEvent>('20ms #', undefined, providerRateLimited());
      const { pool } = makePool(
        scheduler,
        { busy: Array.from({ length: 400 }, refused) },
        { rateLimitCooldownMs: 250, maxRateLimitCooldownMs: 2_000 },
      );
      const requests = Array.from({ length: 20 }, (_, index) => request(`b${index + 1}`, 'busy'));
      log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 4, transient: false, modelWaitMs: 3_000 })), failures);
      flush();
    });
    expect(log).toHaveLength(20);
    expect(failures).toHaveLength(20);
    // Since its last attempt (or its start), each waited 3 s at most, however its waits for the
    // model's room cut the outage up: it ended at the deadline, or at once when the model was due
    // back past it. Counted afresh at each wait for room, the last ended after 107 s.
    const endedAt = new Map(log.map((line) => [line.split(' ')[1]!, Number(line.split(' ')[0])]));
    for (const failure of failures) {
      const attempted = failure.attempts.filter((record) => record.attempt > 0);
      const lastAttemptAt = attempted.length === 0 ? 0 : attempted[attempted.length - 1]!.at;
      expect(endedAt.get(failure.requestId)! - lastAttemptAt).toBeLessThanOrEqual(3_000);
    }
    expect(Math.max(...endedAt.values())).toBeLessThan(10_000);
  });

  it('holds no balance slot: requests for other models keep every slot, and its own all complete, in order, past modelWaitMs', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const slow = (id: string) => cold<TransportEvent>('100ms (a|)', { a: answerEvent(id, 'slow', 'cap') });
      const quick = (id: string) => cold<TransportEvent>('5ms (a|)', { a: answerEvent(id, 'quick', 'ok') });
      const { pool, calls } = makePool(
        scheduler,
        {
          cap: Array.from({ length: 4 }, (_, index) => slow(`c${index + 1}`)),
          ok: Array.from({ length: 6 }, (_, index) => quick(`o${index + 1}`)),
        },
        // The provider of `cap` is found to serve one request at a time.
        ONE_AT_A_TIME,
      );
      const requests = [1, 2, 3, 4].flatMap((n) => [
        request(`c${n}`, 'cap'),
        ...(n <= 3 ? [request(`o${2 * n - 1}`, 'ok'), request(`o${2 * n}`, 'ok')] : []),
      ]);
      const log = terminals(scheduler, from(requests).pipe(balance(pool, { concurrency: 2, transient: false, modelWaitMs: 50 })));
      flush();
      // c1 holds one slot while it is answered; the six quick requests take the other in turn (the
      // waiting `cap` requests left it): done by 30 ms, not behind `cap`'s 100 ms answers. The four `cap` requests answer one after another, each
      // taking the room the one before freed (at 100, 200, 300, 400), however long past the
      // 50 ms `modelWaitMs` they waited: the model is in service, only busy.
      expect(log.filter((line) => line.split(' ')[1]!.startsWith('o')).map((line) => Number(line.split(' ')[0]))).toEqual([
        5, 10, 15, 20, 25, 30,
      ]);
      expect(log.filter((line) => line.split(' ')[1]!.startsWith('c'))).toEqual([
        '100 c1 completion',
        '200 c2 completion',
        '300 c3 completion',
        '400 c4 completion',
      ]);
      expect(calls.filter((call) => call.model === 'cap').map((call) => call.at)).toEqual([0, 100, 200, 300]);
      expect(pool.snapshot().queued).toBe(0);
    });
  });

  it.each([
    { set: "balance's", balanceTimeout: { queueTimeoutMs: 150 }, poolTimeout: {} },
    { set: "the pool's", balanceTimeout: {}, poolTimeout: { queue: { timeoutMs: 150 } } },
  ])(
    'waits for its room no longer than the queue timeout ($set), as in the queue: then it fails with QueueTimeoutError',
    ({ balanceTimeout, poolTimeout }) => {
      const scheduler = newTestScheduler();
      scheduler.run(({ flush }) => {
        const { pool, calls } = makePool(
          scheduler,
          { cap: [answerAfter(scheduler, 100, 'c1', 'cap'), answerAfter(scheduler, 100, 'c2', 'cap')] },
          { ...ONE_AT_A_TIME, ...poolTimeout },
        );
        const failures: string[] = [];
        const log = terminals(
          scheduler,
          from(['c1', 'c2', 'c3', 'c4'].map((id) => request(id, 'cap'))).pipe(
            balance(pool, { concurrency: 4, transient: false, ...balanceTimeout }),
            tap((event) => {
              if (event.type === 'failed') failures.push(`${event.error.name}: ${event.error.message}`);
            }),
          ),
        );
        flush();
        // c2 gets the room c1 frees at 100, within its 150 ms; c3 and c4, still waiting at 150, fail then.
        expect(log).toEqual(['100 c1 completion', '150 c3 queue_timeout', '150 c4 queue_timeout', '200 c2 completion']);
        expect(failures).toEqual([
          'QueueTimeoutError: no key became available within 150 ms',
          'QueueTimeoutError: no key became available within 150 ms',
        ]);
        expect(calls.map((call) => call.at)).toEqual([0, 100]);
        expect(pool.snapshot().queued).toBe(0);
      });
    },
  );

  it('serves a batch in arrival order, each queue timeout counting from its turn among the requests aside, not from the start of the batch', () => {
    // Each request refused at the limit steps out of its slot, which starts the next input, refused
    // in turn: the whole batch waits aside at once. It waited in the order the refusals came (the
    // first requests last), every queue timeout running from the start of the batch.
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const ids = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
      const { pool, calls } = makePool(scheduler, { cap: ids.map((id) => answerAfter(scheduler, 100, id, 'cap')) }, ONE_AT_A_TIME);
      const log = terminals(
        scheduler,
        from(ids.map((id) => request(id, 'cap'))).pipe(balance(pool, { concurrency: 2, transient: false, queueTimeoutMs: 250 })),
      );
      flush();
      // c1 is answered; the others wait aside, in the order they came; the first two (as many as
      // the slots) count their waits from the start, c4 once c2 has left the line (at 100), c5 once
      // c3 has (at 200): none counts more than two answers, within its 250 ms.
      expect(log).toEqual([
        '100 c1 completion',
        '200 c2 completion',
        '300 c3 completion',
        '400 c4 completion',
        '500 c5 completion',
        '600 c6 completion',
      ]);
      expect(calls.map((call) => call.at)).toEqual([0, 100, 200, 300, 400, 500]);
      expect(pool.snapshot().queued).toBe(0);
    });
  });

  it('gives the room an answer frees to the request that waited for it, not to one sent as that answer is handled', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        { cap: Array.from({ length: 5 }, (_, index) => answerAfter(scheduler, 100, `r${index + 1}`, 'cap')) },
        ONE_AT_A_TIME,
      );
      // A closed loop, as a client with a fixed number of requests in flight drives it: two at first,
      // then one more as each answer comes.
      const input = new Subject<ChatRequest>();
      let sent = 0;
      const send = () => input.next(request(`r${++sent}`, 'cap'));
      const log = terminals(
        scheduler,
        input.pipe(
          balance(pool, { concurrency: 4, transient: false }),
          tap((event) => {
            if (event.type === 'completion' && sent < 5) send();
          }),
        ),
      );
      send();
      send();
      flush();
      // r2 waits for r1's room and gets it at 100, ahead of r3, sent at that moment: first come,
      // first served. Were the room handed on a turn later, each new request would take it and r2
      // would wait for all of them.
      expect(log).toEqual(['100 r1 completion', '200 r2 completion', '300 r3 completion', '400 r4 completion', '500 r5 completion']);
      expect(calls.map((call) => call.at)).toEqual([0, 100, 200, 300, 400]);
    });
  });

  it("passes the room on when the oldest waiter cannot take it: its own balance's slots are all busy", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        {
          cap: [
            answerAfter(scheduler, 100, 'b0', 'cap'),
            answerAfter(scheduler, 100, 'b1', 'cap'),
            answerAfter(scheduler, 100, 'a1', 'cap'),
          ],
          other: [answerAfter(scheduler, 500, 'a2', 'other')],
        },
        ONE_AT_A_TIME,
      );
      const second = terminals(
        scheduler,
        cold('1ms (xy)', { x: request('a1', 'cap'), y: request('a2', 'other') }).pipe(balance(pool, { concurrency: 1, transient: false })),
      );
      const first = terminals(
        scheduler,
        cold('b 9ms c', { b: request('b0', 'cap'), c: request('b1', 'cap') }).pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // a1 waits for `cap` from 1, b1 from 10. At 100 b0's answer frees the room: a1 is woken first,
      // but a2 holds its balance's only slot until 501, so the room goes on to b1 at once; a1 takes
      // `cap` when its slot frees.
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 cap', '1 other', '100 cap', '501 cap']);
      expect(first).toEqual(['100 b0 completion', '200 b1 completion']);
      expect(second).toEqual(['501 a2 completion', '601 a1 completion']);
    });
  });

  it('keeps the place in line of a request whose attempt failed: its retry waits where it waited before', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool, calls } = makeTwoKeyPool(
        scheduler,
        {
          cap: [
            answerAfter(scheduler, 100, 'r1', 'cap'),
            cold<TransportEvent>('10ms #', undefined, keyRateLimited(60_000)),
            answerAfter(scheduler, 100, 'r3', 'cap'),
            answerAfter(scheduler, 100, 'r2', 'cap'),
            answerAfter(scheduler, 100, 'r4', 'cap'),
          ],
        },
        ONE_AT_A_TIME,
      );
      const log = terminals(
        scheduler,
        cold('(abc) 46ms d', { a: request('r1', 'cap'), b: request('r2', 'cap'), c: request('r3', 'cap'), d: request('r4', 'cap') }).pipe(
          balance(pool, { concurrency: 4, transient: false }),
        ),
      );
      flush();
      // r2 and r3 wait from 0, r4 from 50. r2 takes the room at 100 and draws its key's 429 at 110;
      // r3 takes the room it leaves (on the other key); r2's retry waits again from its first place,
      // ahead of r4.
      expect(calls.map((call) => `${call.at} ${call.key}`)).toEqual(['0 k1', '100 k1', '110 k2', '210 k2', '310 k2']);
      expect(log).toEqual(['100 r1 completion', '210 r3 completion', '310 r2 completion', '410 r4 completion']);
    });
  });

  it("serves balance's waiters and the admission queue's requests in the order they came: a steady queue never starves a waiter", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        { cap: [answerAfter(scheduler, 100, 'b1', 'cap'), answerAfter(scheduler, 100, 'b2', 'cap')] },
        ONE_AT_A_TIME,
      );
      const leases: string[] = [];
      // A new request every 100 ms from 10, waiting in the admission queue (as `withKeyRotation`'s do by default).
      for (const at of [10, 110, 210, 310]) queueAt(scheduler, pool, leases, { id: `q${at}`, model: 'cap', at });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('(ab)', { a: request('b1', 'cap'), b: request('b2', 'cap') })
          .pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // b2 waits outside its slot from 0, q10 in the queue from 10: b2 takes the room b1 frees at
      // 100, and q10 the room b2 frees at 200. Were the queue always served first, b2 would wait
      // for every request the queue holds when a slot frees, here until 500.
      expect(log).toEqual(['100 b1 completion', '200 b2 completion']);
      expect(leases).toEqual(['200 q10', '300 q110', '400 q210', '500 q310']);
      expect(calls.map((call) => call.at)).toEqual([0, 100]);
    });
  });

  it('serves a request queued for another model in its turn when the two share the key: a waiter takes no room out of turn', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // One slot on the only key, and `a` served one request at a time.
      const { pool } = makeOneSlotPool(
        scheduler,
        { a: [answerAfter(scheduler, 100, 'b1', 'a'), answerAfter(scheduler, 100, 'b2', 'a'), answerAfter(scheduler, 100, 'b3', 'a')] },
        ONE_AT_A_TIME,
      );
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'b', at: 10 });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('(ab) 46ms c', { a: request('b1', 'a'), b: request('b2', 'a'), c: request('b3', 'a') })
          .pipe(balance(pool, { concurrency: 3, transient: false })),
      );
      flush();
      // b2 waits for `a` from 0, q for the key from 10, b3 for `a` from 50: each takes the slot in turn.
      expect(log).toEqual(['100 b1 completion', '200 b2 completion', '400 b3 completion']);
      expect(leases).toEqual(['200 q']);
    });
  });

  it('does not refuse a woken request as queue-full: it was in line before the requests queued after it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // One slot on the only key, `a` served one request at a time, and room for one request in the queue.
      const { pool } = makeOneSlotPool(
        scheduler,
        { a: [answerAfter(scheduler, 100, 'b1', 'a'), answerAfter(scheduler, 100, 'b2', 'a')] },
        { ...ONE_AT_A_TIME, queue: { maxSize: 1 } },
      );
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'b', at: 10 });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('(ab)', { a: request('b1', 'a'), b: request('b2', 'a') })
          .pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // b2 waits for `a` from 0; q fills the queue at 10. Woken at 100, b2 goes ahead of q.
      expect(log).toEqual(['100 b1 completion', '200 b2 completion']);
      expect(leases).toEqual(['200 q']);
    });
  });

  it('holds the room a turn for a waiter woken while its balance slot is still held by the answer that made the room', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // `a` and `b` are served one request at a time.
      const { pool, calls } = makePool(
        scheduler,
        {
          a: [answerAfter(scheduler, 100, 'b1', 'a'), answerAfter(scheduler, 100, 'b2', 'a')],
          b: [answerAfter(scheduler, 300, 'o1', 'b')],
        },
        ONE_AT_A_TIME,
      );
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'a', at: 10 });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('(ab) 1ms c', { a: request('b1', 'a'), b: request('b2', 'a'), c: request('o1', 'b') })
          .pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // b2 waits for `a` from 0 outside its slot, which o1 takes at 5; q waits in the queue from 10.
      // b1's answer at 100 frees `a` and wakes b2, whose balance gets b1's slot once that answer
      // is delivered: b2 takes `a` then, at 100, before q.
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 a', '5 b', '100 a']);
      expect(leases).toEqual(['200 q']);
      expect(log).toEqual(['100 b1 completion', '200 b2 completion', '305 o1 completion']);
    });
  });

  it("keeps a woken request's place in the queue when it asks for a key later: its balance's slots were busy when woken", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // One slot on the only key, and `a` served one request at a time.
      const { pool, calls } = makeOneSlotPool(
        scheduler,
        {
          a: [answerAfter(scheduler, 100, 'b1', 'a'), answerAfter(scheduler, 100, 'b2', 'a')],
          b: [answerAfter(scheduler, 100, 'o1', 'b')],
          c: [answerAfter(scheduler, 100, 'o2', 'c')],
        },
        ONE_AT_A_TIME,
      );
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'd', at: 10 });
      const first = terminals(
        scheduler,
        scheduler.createColdObservable('a', { a: request('b1', 'a') }).pipe(balance(pool, { concurrency: 1, transient: false })),
      );
      const second = terminals(
        scheduler,
        scheduler
          .createColdObservable('-b-c-d', { b: request('b2', 'a'), c: request('o1', 'b'), d: request('o2', 'c') })
          .pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // b2 waits for `a` from 1 outside its slot; o1 and o2 take both slots and wait for the key
      // from 3 and 5, q from 10. b1's answer at 100 wakes b2 while o1 and o2 hold its balance's
      // slots, and o1 takes the key. o1's answer at 200 gives the key to o2 and o1's slot to b2,
      // which then asks for the key in its place from 1: ahead of q, at 300.
      expect(first).toEqual(['100 b1 completion']);
      expect(second).toEqual(['200 o1 completion', '300 o2 completion', '400 b2 completion']);
      expect(leases).toEqual(['400 q']);
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 a', '100 b', '200 c', '300 a']);
    });
  });

  it('serves the room a torn-down request frees in line too: the waiter before the queued request takes it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(scheduler, { cap: [answerAfter(scheduler, 100, 'b1', 'cap')] }, ONE_AT_A_TIME);
      // `cap`'s only slot, held from 0 by an acquisition its caller leaves at 100 (its teardown frees the slot).
      const held = pool[POOL_PORT].acquire(request('h', 'cap'), { models: ['cap'] }).subscribe();
      scheduler.schedule(() => held.unsubscribe(), 100);
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'cap', at: 10 });
      const log = terminals(
        scheduler,
        scheduler.createColdObservable('5ms a', { a: request('b1', 'cap') }).pipe(balance(pool, { concurrency: 1, transient: false })),
      );
      flush();
      // b1 waits outside its slot from 5, q in the queue from 10: the room h leaves goes to b1.
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['100 cap']);
      expect(log).toEqual(['200 b1 completion']);
      expect(leases).toEqual(['200 q']);
    });
  });

  it("serves the room a model's limit grows by in line: the waiter before the queued request takes it", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      // `cap` starts at one request at a time, and may grow to two.
      const { pool, calls } = makePool(
        scheduler,
        {
          cap: [
            cold<TransportEvent>('50ms a 249ms (b|)', { a: textChunk('x', 'cap'), b: streamEnd('b0', 'cap') }),
            answerAfter(scheduler, 100, 'b1', 'cap'),
          ],
        },
        { adaptiveConcurrency: { initial: 1, min: 1, max: 2 } },
      );
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'cap', at: 10 });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('a 4ms b', { a: { ...request('b0', 'cap'), stream: true }, b: request('b1', 'cap') })
          .pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // b1 waits outside its slot from 5, q in the queue from 10. b0's first byte at 50 grows the
      // limit to two: b1 takes that room; q takes the room b1 leaves at 150.
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 cap', '50 cap']);
      expect(log).toEqual(['150 b1 completion', '300 b0 completion']);
      expect(leases).toEqual(['150 q']);
    });
  });

  it('takes a place in line (AcquireOptions.since) after now, or not a finite number, as now: a new arrival, bound by queue.maxSize', () => {
    const scheduler = newTestScheduler();
    const log: string[] = [];
    scheduler.run(({ flush }) => {
      // One slot on the only key, and room for one request in the queue.
      const { pool } = makeOneSlotPool(scheduler, {}, { ...ONE_AT_A_TIME, queue: { maxSize: 1 } });
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'h', model: 'a', at: 0 });
      queueAt(scheduler, pool, leases, { id: 'q', model: 'a', at: 10 });
      for (const [id, since] of [
        ['later', 1e12],
        ['nan', NaN],
        ['-infinity', -Infinity],
      ] as const) {
        scheduler.schedule(() => {
          pool[POOL_PORT].acquire(request(id, 'a'), { models: ['a'], since }).subscribe({
            error: (error: OpenRouterError) => log.push(`${id} ${error.kind}`),
          });
        }, 20);
      }
      flush();
      expect(leases).toEqual(['0 h', '100 q']);
    });
    expect(log).toEqual(['later queue_full', 'nan queue_full', '-infinity queue_full']);
  });

  it('keeps the queue timeout of a wait for room once the request is woken and queued behind requests that came before it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // One slot on the only key, and `a` served one request at a time.
      const { pool, calls } = makeOneSlotPool(scheduler, { a: [answerAfter(scheduler, 100, 'b1', 'a')] }, ONE_AT_A_TIME);
      const leases: string[] = [];
      queueAt(scheduler, pool, leases, { id: 'q', model: 'b', at: 10 });
      const log = terminals(
        scheduler,
        scheduler
          .createColdObservable('a 19ms b', { a: request('b1', 'a'), b: request('b2', 'a') })
          .pipe(balance(pool, { concurrency: 2, transient: false, queueTimeoutMs: 150 })),
      );
      flush();
      // b2 waits for `a` from 20. At 100 b1's answer frees `a` and the key: b2 is woken and queued
      // behind q (there from 10), which takes the key until 200. b2's 150 ms run out at 170 in the
      // queue, not 150 ms after it was woken, nor at its turn.
      expect(leases).toEqual(['100 q']);
      expect(log).toEqual(['100 b1 completion', '170 b2 queue_timeout']);
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 a']);
    });
  });

  it.each([
    { first: 'the queued request', balanceAt: '4ms', queuedPriority: 5, balancePriority: 0, leases: ['100 q'], b2: '300 b2 completion' },
    { first: "balance's waiter", balanceAt: '19ms', queuedPriority: 0, balancePriority: 5, leases: ['200 q'], b2: '200 b2 completion' },
  ])(
    'puts the higher priority first across the two lines, whoever came first: here $first',
    ({ balanceAt, queuedPriority, balancePriority, leases, b2 }) => {
      const scheduler = newTestScheduler();
      scheduler.run(({ flush }) => {
        const { pool } = makePool(
          scheduler,
          { cap: [answerAfter(scheduler, 100, 'b1', 'cap'), answerAfter(scheduler, 100, 'b2', 'cap')] },
          ONE_AT_A_TIME,
        );
        const granted: string[] = [];
        queueAt(scheduler, pool, granted, { id: 'q', model: 'cap', at: 10, priority: queuedPriority });
        const log = terminals(
          scheduler,
          scheduler
            .createColdObservable(`a ${balanceAt} b`, { a: request('b1', 'cap'), b: request('b2', 'cap') })
            .pipe(balance(pool, { concurrency: 2, transient: false, priority: balancePriority })),
        );
        flush();
        // b2 waits outside its slot from 5 (or 20), q in the queue from 10: the room b1 frees at 100
        // goes to the higher priority of the two.
        expect(granted).toEqual(leases);
        expect(log).toEqual(['100 b1 completion', b2]);
      });
    },
  );

  it("times out where it waits, also while balance's slots are all busy: not once a slot frees", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        {
          cap: [answerAfter(scheduler, 500, 'c1', 'cap')],
          other: [answerAfter(scheduler, 300, 'o1', 'other'), answerAfter(scheduler, 300, 'o2', 'other')],
        },
        ONE_AT_A_TIME,
      );
      const log = terminals(
        scheduler,
        from([request('c1', 'cap'), request('c2', 'cap'), request('o1', 'other'), request('o2', 'other')]).pipe(
          balance(pool, { concurrency: 2, transient: false, queueTimeoutMs: 100 }),
        ),
      );
      flush();
      // c2 waits for room at `cap` without its slot, which o1 takes; o1, then o2, keep both slots busy
      // past c2's 100 ms: it fails then, not when c1's answer frees room at 500 and a slot after that.
      expect(log).toEqual(['100 c2 queue_timeout', '300 o1 completion', '500 c1 completion', '600 o2 completion']);
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 cap', '0 other', '300 other']);
      expect(pool.snapshot().queued).toBe(0);
    });
  });
});

describe('the line of requests waiting for room (CapacityWaiters)', () => {
  it('keeps the place of a request that waits again, ahead of those that came after it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const waiters = new CapacityWaiters(scheduler, [], () => undefined);
      const model = { model: 'a', atConcurrencyLimit: false } as ModelEntry;
      const woken: string[] = [];
      const first = waiters.wait(['a']).subscribe(() => woken.push('first'));
      scheduler.schedule(() => {
        waiters.wait(['a']).subscribe(() => woken.push('second'));
        // The first was woken, found the room taken, and waits again with the time it first waited.
        first.unsubscribe();
        waiters.wait(['a'], 0).subscribe(() => woken.push('first again'));
        waiters.serve(model);
        waiters.serveSoon(model);
      }, 10);
      flush();
      expect(woken).toEqual(['first again', 'second']);
    });
  });

  it('serves every room on a scheduler that runs a task at once (queueScheduler), not only the first', () => {
    const waiters = new CapacityWaiters(queueScheduler, [], () => undefined);
    const model = { model: 'a', atConcurrencyLimit: false } as ModelEntry;
    const woken: string[] = [];
    waiters.wait(['a'], 0).subscribe(() => woken.push('w1'));
    waiters.serveSoon(model);
    waiters.wait(['a'], 1).subscribe(() => woken.push('w2'));
    waiters.serveSoon(model);
    expect(woken).toEqual(['w1', 'w2']);
  });

  it('puts a higher priority first, then the earlier arrival', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const waiters = new CapacityWaiters(scheduler, [], () => undefined);
      const woken: string[] = [];
      waiters.wait(['a'], 0).subscribe(() => woken.push('0 at 0'));
      waiters.wait(['a'], 5, 1).subscribe(() => woken.push('1 at 5'));
      waiters.wait(['a'], 3).subscribe(() => woken.push('0 at 3'));
      waiters.wait(['a'], 7, 1).subscribe(() => woken.push('1 at 7'));
      waiters.serve({ model: 'a', atConcurrencyLimit: false } as ModelEntry);
      flush();
      expect(woken).toEqual(['1 at 5', '1 at 7', '0 at 0', '0 at 3']);
    });
  });
});

describe('a timeout of an attempt whose answer was already streaming', () => {
  it("leaves the model's adaptive limit as it is (the model was serving it), where a first-token timeout lowers it", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool } = makePool(
        scheduler,
        {
          // Content at 10, then nothing: the 500 ms total timeout ends it.
          streaming: [cold<TransportEvent>('10ms a', { a: textChunk('x', 'streaming') })],
          // Nothing at all: the 300 ms first-token timeout ends it.
          silent: [cold<TransportEvent>('-')],
        },
        { adaptiveConcurrency: { initial: 8, min: 1, max: 64 } },
      );
      const log = terminals(
        scheduler,
        from([
          { ...request('s1', 'streaming'), stream: true },
          { ...request('m1', 'silent'), stream: true },
        ]).pipe(balance(pool, { concurrency: 2, transient: false, fallback: false, timeouts: { totalMs: 500, firstTokenMs: 300 } })),
      );
      flush();
      expect(log).toEqual(['300 m1 timeout', '500 s1 timeout']);
      expect(pool.snapshot().models.map((model) => `${model.model} ${model.concurrencyLimit}`)).toEqual(['streaming 8', 'silent 6']);
    });
  });
});

describe('a model that answers streams but never ends its whole answers', () => {
  it('is found to stall, not to be over its capacity, by a whole answer that ran out its time alone: its limit comes back, and the streams in its line go several at a time', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      // First in line, four whole answers that never end; then eight streams, answered 100 ms after their send.
      const ids = Array.from({ length: 12 }, (_, index) => `r${index}`);
      const scripts = ids.map((id, index) => (index < 4 ? cold<TransportEvent>('-') : answerAfter(scheduler, 100, id, 'half')));
      const { pool, calls } = makePool(
        scheduler,
        { half: scripts },
        { adaptiveConcurrency: { initial: 2, min: 1, max: 64 }, modelBreaker: { consecutiveFailures: 100 } },
      );
      const limits: string[] = [];
      eventsOf(pool, 'concurrency').subscribe((event) => limits.push(`${event.at} ${event.limit}`));
      const requests = ids.map((id, index) => ({ ...request(id, 'half'), stream: index >= 4 }));
      const log = terminals(
        scheduler,
        from(requests).pipe(balance(pool, { concurrency: 12, transient: false, timeouts: { totalMs: 500 } })),
      );
      flush();
      // r0 and r1 run out their time together at 500, which may be a provider queueing past its
      // capacity: the limit goes to one. r2, sent alone, runs out its time too: the model stalls at
      // any load, and the limit is back at two at 1000, then grows with the streams' answers. Taken
      // as overload, every such timeout would have held the line at one: the streams one at a time
      // from 1500 to 2300.
      expect(limits.slice(0, 2)).toEqual(['500 1', '1000 2']);
      expect(calls.map((call) => call.at)).toEqual([0, 0, 500, 1000, 1000, 1100, 1100, 1200, 1200, 1200, 1300, 1300]);
      expect(log.filter((line) => line.endsWith('timeout'))).toEqual([
        '500 r0 timeout',
        '500 r1 timeout',
        '1000 r2 timeout',
        '1500 r3 timeout',
      ]);
      expect(log.filter((line) => line.endsWith('completion'))).toHaveLength(8);
      expect(Math.max(...log.map((line) => Number(line.split(' ')[0])))).toBe(1500);
    });
  });
});

/**
 * A provider that serves four at a time, 200 ms each, in order; a request beyond them waits in its
 * queue (no 429) until served or aborted. Whole answers, so only the 500 ms total timeout tells.
 * With `loneFirst`, a request that never ends goes alone first (a generation too long for the
 * timeout), and the 100 follow at 600. Retries wait a fixed jitter. Returns every terminal and
 * the provider's sends.
 */
function queueingProvider(loneFirst: boolean): { log: string[]; sends: number } {
  const scheduler = newTestScheduler();
  const CAPACITY = 4;
  let sends = 0;
  let log: string[] = [];
  scheduler.run(({ flush }) => {
    let inService = 0;
    const waiting: (() => void)[] = [];
    const serveNext = (): void => {
      while (inService < CAPACITY && waiting.length > 0) waiting.shift()!();
    };
    const transport = (_key: unknown, request: ChatRequest): Observable<TransportEvent> =>
      new Observable<TransportEvent>((subscriber) => {
        sends++;
        if (request.messages[0]!.content === 'lone') return;
        let answer: { unsubscribe(): void } | undefined;
        const serve = (): void => {
          inService++;
          answer = scheduler.schedule(() => {
            answer = undefined;
            inService--;
            subscriber.next(answerEvent('answer', 'ok', 'queued'));
            subscriber.complete();
            serveNext();
          }, 200);
        };
        if (inService < CAPACITY) serve();
        else waiting.push(serve);
        return () => {
          const place = waiting.indexOf(serve);
          if (place >= 0) waiting.splice(place, 1);
          if (answer === undefined) return;
          answer.unsubscribe();
          inService--;
          serveNext();
        };
      });
    const pool = predictablePool(scheduler, transport, [{ key: 'k1', label: 'k1' }], {
      adaptiveConcurrency: { initial: 8, min: 1, max: 64 },
    });
    const batch = Array.from({ length: 100 }, (_, index) => request(`r${index}`, 'queued'));
    const input = loneFirst ? merge(of(request('lone', 'queued')), timer(600).pipe(mergeMap(() => from(batch)))) : from(batch);
    log = terminals(
      scheduler,
      input.pipe(balance(pool, { concurrency: 200, transient: { random: () => 0.5 }, timeouts: { totalMs: 500 } })),
    );
    flush();
  });
  return { log, sends };
}

describe('a provider that queues whole answers silently past its capacity', () => {
  // A limit that no total timeout lowered would climb with every answer (to 56 in a review's run
  // of this case), and only the breaker would hold the bursts back: 75 of the 100 answered, in
  // 24 s, after 224 sends.
  it('is found by the total timeouts of the answers it queued too long: the limit comes down to what it serves, and all but one request at most are answered', () => {
    const { log, sends } = queueingProvider(false);
    expect(log.filter((line) => line.endsWith('completion')).length).toBeGreaterThanOrEqual(99);
    expect(Math.max(...log.map((line) => Number(line.split(' ')[0])))).toBeLessThan(6_000);
    expect(sends).toBeLessThan(150);
  });

  it('is found so after a lone request ran out its time too: that stall undoes no cut it did not follow, and changes nothing after', () => {
    const { log, sends } = queueingProvider(true);
    const batch = log.filter((line) => !line.includes(' lone '));
    expect(batch.filter((line) => line.endsWith('completion')).length).toBeGreaterThanOrEqual(99);
    expect(Math.max(...batch.map((line) => Number(line.split(' ')[0])))).toBeLessThan(6_600);
    expect(sends).toBeLessThan(160);
  });
});

describe('a chain whose every model is at its concurrency limit', () => {
  it('is woken by room in any of its models, the first to free one', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        { a: [answerAfter(scheduler, 100, 'r1', 'a')], b: [answerAfter(scheduler, 50, 'r2', 'b'), answerAfter(scheduler, 50, 'r3', 'b')] },
        ONE_AT_A_TIME,
      );
      const chain = (id: string): ChatRequest => ({ ...request(id, 'a'), models: ['b'] });
      const log = terminals(
        scheduler,
        from([chain('r1'), chain('r2'), chain('r3')]).pipe(balance(pool, { concurrency: 3, transient: false })),
      );
      flush();
      // r1 takes a, r2 b; r3 waits for either and takes b as r2's answer frees it at 50 (not a's at 100).
      expect(calls.map((call) => `${call.at} ${call.model}`)).toEqual(['0 a', '0 b', '50 b']);
      expect(log).toEqual(['50 r2 completion', '100 r1 completion', '100 r3 completion']);
    });
  });
});

/**
 * Requests at a model's limit hold back no other input (a review of a design that held back the
 * inputs of a batch for a busy model, which stalled free slots, ignored priorities and scanned
 * tens of thousands of inputs per start): each stays in line for its model's room outside its slot.
 */
describe("a batch at a model's limit holds nothing else back", () => {
  it('an input held back for a model at its limit starts when that model makes room, not when another model does', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        {
          // x1 is a long answer; the model x serves one at a time.
          x: [answerAfter(scheduler, 1_000, 'x1', 'x'), answerAfter(scheduler, 100, 'x2', 'x'), answerAfter(scheduler, 100, 'x3', 'x')],
          y: [answerAfter(scheduler, 100, 'y0', 'y'), answerAfter(scheduler, 100, 'y1', 'y')],
        },
        ONE_AT_A_TIME,
      );
      // Another balance() on the same pool holds y's one slot until 100.
      const other = terminals(scheduler, from([request('y0', 'y')]).pipe(balance(pool, { concurrency: 1, transient: false })));
      const log = terminals(
        scheduler,
        from([request('x1', 'x'), request('x2', 'x'), request('x3', 'x'), request('y1', 'y')]).pipe(
          balance(pool, { concurrency: 2, transient: false }),
        ),
      );
      flush();
      expect(other).toEqual(['100 y0 completion']);
      // y has room from 100 and this balance has a free slot all along (x1 holds one, x2 and x3
      // wait aside): y1 should be sent at 100 and answered at 200.
      expect(calls.filter((call) => call.model === 'y').map((call) => call.at)).toEqual([0, 100]);
      expect(log.find((line) => line.includes('y1'))).toBe('200 y1 completion');
    });
  });

  it('one balance: an input held back for a model at its limit starts when a request of its own moves off that model', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ cold, flush }) => {
      const { pool, calls } = makePool(
        scheduler,
        {
          x: ['x1', 'x2', 'x3', 'x4'].map((id, index) => answerAfter(scheduler, index === 0 ? 1_000 : 100, id, 'x')),
          // r's call to y fails at 50 with a 503: r moves on to z (a long answer), and y has room.
          y: [cold<TransportEvent>('50ms #', undefined, providerUnavailable()), answerAfter(scheduler, 100, 'y2', 'y')],
          z: [answerAfter(scheduler, 1_000, 'r', 'z')],
        },
        ONE_AT_A_TIME,
      );
      const log = terminals(
        scheduler,
        from([
          request('x1', 'x'),
          { ...request('r', 'y'), models: ['z'] },
          request('x2', 'x'),
          request('x3', 'x'),
          request('x4', 'x'),
          request('y2', 'y'),
        ]).pipe(balance(pool, { concurrency: 3, transient: transientRetries })),
      );
      flush();
      // x1 and r hold two slots, x2-x4 wait aside; y2 is held back while y serves r. From 50, y
      // has room and a slot is free: y2 should be sent then, not when x1's answer comes at 1,000.
      expect(calls.filter((call) => call.model === 'y').map((call) => call.at)).toEqual([0, 50]);
      expect(log.find((line) => line.includes('y2'))).toBe('150 y2 completion');
    });
  });

  it('a high-priority input for a model at its limit gets the next room, ahead of lower-priority requests waiting for it', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const ids = ['x1', 'x2', 'x3', 'x4', 'x5', 'hi'];
      const { pool } = makePool(scheduler, { x: ids.map((id) => answerAfter(scheduler, 100, `answer${id}`, 'x')) }, ONE_AT_A_TIME);
      const log = terminals(
        scheduler,
        from(ids.map((id) => request(id, 'x'))).pipe(
          balance(pool, { concurrency: 2, transient: false, priority: (req) => (req.id === 'hi' ? 10 : 0) }),
        ),
      );
      flush();
      // x1 is answered at 100; the room it frees should go to 'hi' (priority 10), answered at 200.
      expect(log.slice(0, 2)).toEqual(['100 x1 completion', '200 hi completion']);
    });
  });

  it("an input for another model 65 places behind a busy model's batch still takes a free slot", () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      const xs = Array.from({ length: 70 }, (_, index) => `x${index + 1}`);
      const { pool, calls } = makePool(
        scheduler,
        { x: xs.map((id) => answerAfter(scheduler, 1_000, id, 'x')), y: [answerAfter(scheduler, 100, 'y1', 'y')] },
        ONE_AT_A_TIME,
      );
      terminals(
        scheduler,
        from([...xs.map((id) => request(id, 'x')), request('y1', 'y')]).pipe(balance(pool, { concurrency: 2, transient: false })),
      );
      flush();
      // x1 holds one slot, x2 and x3 wait aside; the other slot is free from 0 and y is idle.
      expect(calls.filter((call) => call.model === 'y').map((call) => call.at)).toEqual([0]);
    });
  });
});

describe('turns among the requests aside: whose waits count against the queue timeout', () => {
  it('a request with its turn that looks again (a poll) keeps it: no turn goes further back than concurrency (a review found c4 timed out at 35 000)', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ flush }) => {
      // c1 holds the model's one place far past every timeout (a stuck model).
      const { pool } = makePool(scheduler, { cap: [answerAfter(scheduler, 1_000_000, 'c1', 'cap')] }, ONE_AT_A_TIME);
      const log = terminals(
        scheduler,
        from(['c1', 'c2', 'c3', 'c4', 'c5'].map((id) => request(id, 'cap'))).pipe(
          balance(pool, { concurrency: 2, transient: false, queueTimeoutMs: 30_000 }),
        ),
      );
      flush();
      // c2..c5 wait aside; c2 and c3 (the first `concurrency` aside) count from 0 and time out at
      // 30 000; c4 and c5 get their turns then, and time out at 60 000 (README: a wait counts only
      // once the request is among the first `concurrency` waiting, as in the queue).
      expect(log.slice(0, 4)).toEqual([
        '30000 c2 queue_timeout',
        '30000 c3 queue_timeout',
        '60000 c4 queue_timeout',
        '60000 c5 queue_timeout',
      ]);
    });
  });
});
