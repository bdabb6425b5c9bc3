import { describe, expect, it } from 'vitest';
import {
  fromFunction,
  latency,
  leastInFlight,
  powerOfTwo,
  roundRobin,
  sticky,
  toStrategy,
  weighted,
  type KeyCandidate,
  type PickContext,
  type Strategy,
} from '../src/pool/strategies.js';
import type { KeyHealth } from '../src/health/records.js';
import type { ChatRequest } from '../src/core/types.js';
import { createPool } from '../src/create-pool.js';
import { MODEL, chatRequest, newTestScheduler, randomSequence, scriptedTransport } from './support.js';
import { seededRandom } from '../test/helpers/seeded-random.js';
import { POOL_PORT } from '../src/pool/types.js';

interface CandidateSpec {
  label: string;
  weight?: number;
  inFlight?: number;
  latencyMs?: number | null;
}

function candidate(spec: CandidateSpec): KeyCandidate {
  const health = { label: spec.label, inFlight: spec.inFlight ?? 0, latencyMs: spec.latencyMs ?? null } as KeyHealth;
  return { label: spec.label, weight: spec.weight ?? 1, inFlight: spec.inFlight ?? 0, latencyMs: spec.latencyMs ?? null, health };
}

function context(
  specs: CandidateSpec[],
  options: { eligible?: (label: string) => boolean; random?: () => number; request?: ChatRequest } = {},
): PickContext {
  const candidates = specs.map(candidate);
  return {
    candidates,
    isEligible: (index) => options.eligible?.(candidates[index]!.label) ?? true,
    request: options.request ?? chatRequest(),
    model: MODEL,
    random: options.random ?? (() => 0.5),
  };
}

const labelOf = (ctx: PickContext, index: number | undefined) => (index === undefined ? undefined : ctx.candidates[index]!.label);
const picks = (strategy: Strategy, ctx: PickContext, count: number) =>
  Array.from({ length: count }, () => labelOf(ctx, strategy.pick(ctx)));

describe('roundRobin', () => {
  it('takes each key in turn', () => {
    const ctx = context([{ label: 'a' }, { label: 'b' }, { label: 'c' }]);
    expect(picks(roundRobin(), ctx, 7)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('skips keys that are not eligible and keeps its place', () => {
    const ctx = context([{ label: 'a' }, { label: 'b' }, { label: 'c' }], { eligible: (label) => label !== 'b' });
    expect(picks(roundRobin(), ctx, 4)).toEqual(['a', 'c', 'a', 'c']);
  });

  it('returns undefined when no key is eligible', () => {
    expect(roundRobin().pick(context([{ label: 'a' }], { eligible: () => false }))).toBeUndefined();
  });
});

describe('weighted', () => {
  it('maps the random draw onto the cumulative weights', () => {
    // Weights 1 and 3 (total 4): a draw below 0.25 picks a, anything else b.
    const ctx = context(
      [
        { label: 'a', weight: 1 },
        { label: 'b', weight: 3 },
      ],
      { random: randomSequence(0.1, 0.24, 0.26, 0.9) },
    );
    expect(picks(weighted(), ctx, 4)).toEqual(['a', 'a', 'b', 'b']);
  });

  it('picks in proportion to weight over many draws (seeded)', () => {
    const ctx = context(
      [
        { label: 'a', weight: 1 },
        { label: 'b', weight: 2 },
        { label: 'c', weight: 5 },
      ],
      { random: seededRandom(42) },
    );
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (const label of picks(weighted(), ctx, 8_000)) counts[label!]! += 1;
    expect(counts['a']! / 8_000).toBeCloseTo(1 / 8, 1);
    expect(counts['b']! / 8_000).toBeCloseTo(2 / 8, 1);
    expect(counts['c']! / 8_000).toBeCloseTo(5 / 8, 1);
    expect(Math.abs(counts['c']! / 8_000 - 5 / 8)).toBeLessThan(0.02);
  });

  it('keeps the shares of weights whose sum is past the largest number', () => {
    const ctx = context(
      [
        { label: 'a', weight: 1e308 },
        { label: 'b', weight: 1e308 },
      ],
      { random: randomSequence(0.1, 0.4, 0.6, 0.9) },
    );
    expect(picks(weighted(), ctx, 4)).toEqual(['a', 'a', 'b', 'b']);
  });

  it('never picks an ineligible key, whatever its weight', () => {
    const ctx = context(
      [
        { label: 'a', weight: 100 },
        { label: 'b', weight: 1 },
      ],
      { eligible: (label) => label === 'b', random: seededRandom(7) },
    );
    expect(new Set(picks(weighted(), ctx, 100))).toEqual(new Set(['b']));
  });
});

describe('leastInFlight', () => {
  it('picks the key with the fewest attempts in flight', () => {
    const ctx = context([
      { label: 'a', inFlight: 3 },
      { label: 'b', inFlight: 1 },
      { label: 'c', inFlight: 2 },
    ]);
    expect(labelOf(ctx, leastInFlight().pick(ctx))).toBe('b');
  });

  it('weighs in-flight counts by key weight', () => {
    // a: 2 / 1 = 2; b: 3 / 3 = 1.
    const ctx = context([
      { label: 'a', inFlight: 2, weight: 1 },
      { label: 'b', inFlight: 3, weight: 3 },
    ]);
    expect(labelOf(ctx, leastInFlight().pick(ctx))).toBe('b');
  });

  it('breaks ties from a random offset rather than always the first key', () => {
    const specs = [{ label: 'a' }, { label: 'b' }, { label: 'c' }, { label: 'd' }];
    expect(labelOf(context(specs, { random: () => 0 }), leastInFlight().pick(context(specs, { random: () => 0 })))).toBe('a');
    const ctx = context(specs, { random: () => 0.6 }); // offset floor(0.6 · 4) = 2
    expect(labelOf(ctx, leastInFlight().pick(ctx))).toBe('c');
  });

  it('skips ineligible keys even when idle', () => {
    const ctx = context(
      [
        { label: 'a', inFlight: 0 },
        { label: 'b', inFlight: 5 },
      ],
      { eligible: (label) => label === 'b' },
    );
    expect(labelOf(ctx, leastInFlight().pick(ctx))).toBe('b');
  });
});

describe('powerOfTwo', () => {
  it('samples two keys and takes the less loaded of the two, not the global minimum', () => {
    // Draws 0 and 0.5 over 4 keys sample a (index 0) and c (index 2); d is idler but unsampled.
    const ctx = context(
      [
        { label: 'a', inFlight: 5 },
        { label: 'b', inFlight: 9 },
        { label: 'c', inFlight: 3 },
        { label: 'd', inFlight: 0 },
      ],
      { random: randomSequence(0, 0.5) },
    );
    expect(labelOf(ctx, powerOfTwo().pick(ctx))).toBe('c');
  });

  it('keeps the first sample on a tie', () => {
    const ctx = context(
      [
        { label: 'a', inFlight: 1 },
        { label: 'b', inFlight: 1 },
      ],
      { random: randomSequence(0.9, 0.1) },
    );
    expect(labelOf(ctx, powerOfTwo().pick(ctx))).toBe('b');
  });

  it('compares load relative to weight', () => {
    // a: (1 + 1) / 1 = 2; b: (2 + 1) / 3 = 1.
    const ctx = context(
      [
        { label: 'a', inFlight: 1, weight: 1 },
        { label: 'b', inFlight: 2, weight: 3 },
      ],
      { random: randomSequence(0, 0.5) },
    );
    expect(labelOf(ctx, powerOfTwo().pick(ctx))).toBe('b');
  });

  it('with one eligible key, picks it; with none, undefined', () => {
    const specs = [{ label: 'a' }, { label: 'b' }, { label: 'c' }];
    const one = context(specs, { eligible: (label) => label === 'c', random: seededRandom(3) });
    expect(labelOf(one, powerOfTwo().pick(one))).toBe('c');
    expect(powerOfTwo().pick(context(specs, { eligible: () => false }))).toBeUndefined();
  });

  it('never returns an ineligible key when sampling keeps hitting ineligible ones', () => {
    const specs = Array.from({ length: 10 }, (_, index) => ({ label: `k${index}`, inFlight: index }));
    const ctx = context(specs, { eligible: (label) => label === 'k8' || label === 'k9', random: seededRandom(11) });
    for (let i = 0; i < 50; i++) expect(['k8', 'k9']).toContain(labelOf(ctx, powerOfTwo().pick(ctx)));
    // Of the two eligible ones, the less loaded.
    expect(labelOf(ctx, powerOfTwo().pick(ctx))).toBe('k8');
  });
});

describe('latency', () => {
  it('picks the lowest latency × (inFlight + 1)', () => {
    // Scores: a 100, b 50 · 3 = 150, c 80.
    const ctx = context([
      { label: 'a', latencyMs: 100 },
      { label: 'b', latencyMs: 50, inFlight: 2 },
      { label: 'c', latencyMs: 80 },
    ]);
    expect(labelOf(ctx, latency().pick(ctx))).toBe('c');
  });

  it('counts a key without a sample as fastest, so it gets measured', () => {
    const ctx = context(
      [
        { label: 'a', latencyMs: 10 },
        { label: 'b', latencyMs: null },
      ],
      { random: () => 0 },
    );
    expect(labelOf(ctx, latency().pick(ctx))).toBe('b');
  });
});

describe('sticky', () => {
  const byConversation = (request: ChatRequest) => request.session_id;
  const session = (id: string) => chatRequest('hi', { session_id: id });

  it('keeps a conversation on its first key while that key is eligible', () => {
    const strategy = sticky(byConversation, { fallback: roundRobin() });
    const specs = [{ label: 'a' }, { label: 'b' }, { label: 'c' }];
    const first = context(specs, { request: session('s1') });
    expect(labelOf(first, strategy.pick(first))).toBe('a');
    // Another conversation moves the round-robin on; s1 stays on a.
    const other = context(specs, { request: session('s2') });
    expect(labelOf(other, strategy.pick(other))).toBe('b');
    for (let i = 0; i < 3; i++) expect(labelOf(first, strategy.pick(first))).toBe('a');
  });

  it('falls back when its key is not eligible, and sticks to the new key', () => {
    const strategy = sticky(byConversation, { fallback: roundRobin() });
    const specs = [{ label: 'a' }, { label: 'b' }, { label: 'c' }];
    expect(labelOf(context(specs, { request: session('s1') }), strategy.pick(context(specs, { request: session('s1') })))).toBe('a');
    const aDown = context(specs, { request: session('s1'), eligible: (label) => label !== 'a' });
    expect(labelOf(aDown, strategy.pick(aDown))).toBe('b');
    // a is back, but the conversation now lives on b.
    const allUp = context(specs, { request: session('s1') });
    expect(labelOf(allUp, strategy.pick(allUp))).toBe('b');
  });

  it('requests without a conversation go to the fallback every time', () => {
    const strategy = sticky(byConversation, { fallback: roundRobin() });
    const ctx = context([{ label: 'a' }, { label: 'b' }]);
    expect(picks(strategy, ctx, 4)).toEqual(['a', 'b', 'a', 'b']);
  });

  it('forgets the least recently used conversation beyond maxConversations', () => {
    const strategy = sticky(byConversation, { fallback: roundRobin(), maxConversations: 1 });
    const specs = [{ label: 'a' }, { label: 'b' }, { label: 'c' }];
    const s1 = context(specs, { request: session('s1') });
    const s2 = context(specs, { request: session('s2') });
    expect(labelOf(s1, strategy.pick(s1))).toBe('a');
    expect(labelOf(s2, strategy.pick(s2))).toBe('b');
    // s1 was forgotten: it goes through the fallback again (c).
    expect(labelOf(s1, strategy.pick(s1))).toBe('c');
  });
});

describe('user function strategy', () => {
  it('chooses among the eligible keys only, by health record or by label', () => {
    const seenLabels: string[][] = [];
    const byRecord = fromFunction((eligible) => {
      seenLabels.push(eligible.map((health) => health.label));
      return eligible[eligible.length - 1];
    });
    const ctx = context([{ label: 'a' }, { label: 'b' }, { label: 'c' }], { eligible: (label) => label !== 'c' });
    expect(labelOf(ctx, byRecord.pick(ctx))).toBe('b');
    expect(seenLabels).toEqual([['a', 'b']]);
    const byLabel = toStrategy(() => 'a');
    expect(labelOf(ctx, byLabel.pick(ctx))).toBe('a');
  });

  it('an answer that is not an eligible key picks nothing', () => {
    const ctx = context([{ label: 'a' }, { label: 'b' }], { eligible: (label) => label === 'a' });
    expect(fromFunction(() => 'b').pick(ctx)).toBeUndefined();
    expect(fromFunction(() => 'nope').pick(ctx)).toBeUndefined();
    expect(fromFunction(() => undefined).pick(ctx)).toBeUndefined();
  });

  it('is consulted by the pool, which leases the key it names', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const { transport } = scriptedTransport(scheduler, {});
      const pool = createPool({
        keys: [
          { key: 'sk-test-1', label: 'k1' },
          { key: 'sk-test-2', label: 'k2' },
          { key: 'sk-test-3', label: 'k3' },
        ],
        strategy: (eligible) => eligible.find((health) => health.label === 'k3'),
        scheduler,
        transport,
      });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }), '^ 5ms !').toBe('a', {
        a: expect.objectContaining({ label: 'k3' }),
      });
    });
  });
});

describe('the context a strategy gets from the pool', () => {
  it('survives being spread into a narrower context or destructured, as a wrapping strategy does', () => {
    const scheduler = newTestScheduler();
    scheduler.run(({ expectObservable }) => {
      const { transport } = scriptedTransport(scheduler, {});
      const inner = powerOfTwo();
      const seen: boolean[] = [];
      const pool = createPool({
        keys: [
          { key: 'sk-test-1', label: 'k1' },
          { key: 'sk-test-2', label: 'k2' },
          { key: 'sk-test-3', label: 'k3' },
        ],
        strategy: {
          name: 'wrapping',
          pick(context) {
            const { isEligible, random } = context;
            seen.push(isEligible(0), random() >= 0);
            // Only the last two keys, through a spread copy of the pool's context.
            const index = inner.pick({ ...context, candidates: context.candidates.slice(1), isEligible: (at) => isEligible(at + 1) });
            return index === undefined ? undefined : index + 1;
          },
        },
        scheduler,
        transport,
      });
      expectObservable(pool[POOL_PORT].acquire(chatRequest(), { models: [MODEL] }), '^ 5ms !').toBe('a', {
        a: expect.objectContaining({ label: expect.stringMatching(/^k[23]$/) }),
      });
      scheduler.flush();
      expect(seen).toEqual([true, true]);
    });
  });
});
