import type { ChatRequest } from '../core/types.js';
import type { KeyHealth } from '../health/records.js';

/**
 * Key-selection strategies. A strategy sees every key of the pool with a cheap eligibility test,
 * so the common ones pick in O(1) at a thousand keys instead of building a list per request.
 * Eligibility (breaker, cooldown, quotas, concurrency) is the pool's business, never the
 * strategy's: a strategy only chooses among keys the pool would admit.
 */
export interface KeyCandidate {
  /** The key's label. */
  readonly label: string;
  /** The key's `weight` from the pool config (default 1). */
  readonly weight: number;
  /** Attempts holding a slot on the key now. */
  readonly inFlight: number;
  /** Moving average of the key's latency in ms; null before the first sample. */
  readonly latencyMs: number | null;
  /** The key's current health record. */
  readonly health: KeyHealth;
}

/**
 * What a strategy picks from, for one attempt. Valid during `pick` only: the pool sets the same
 * object up again for the next placement, so a strategy copies what it wants to keep.
 */
export interface PickContext {
  /** Every key of the pool, in configuration order. */
  readonly candidates: readonly KeyCandidate[];
  /** Whether the key at `index` may take this attempt now. Needs no `this`: a wrapping strategy may pass it on. */
  isEligible(this: void, index: number): boolean;
  /** The request the attempt is for. */
  readonly request: ChatRequest;
  /** The model the attempt will use. */
  readonly model: string;
  /** The pool's random source, in [0, 1). Needs no `this`. */
  random(this: void): number;
}

/** Chooses which eligible key an attempt uses. */
export interface Strategy {
  /** Identifies the strategy (`'roundRobin'`, `'sticky'`, `'custom'` for a function...). */
  readonly name: string;
  /** The index of the chosen key, or undefined when none is eligible. */
  pick(context: PickContext): number | undefined;
}

/** A user strategy: any function of the eligible keys' health, returning one of them or its label. */
export type StrategyFunction = (eligible: readonly KeyHealth[], request: ChatRequest) => KeyHealth | string | undefined;

/** The built-in strategies that can be given by name; `powerOfTwo` is the pool's default. */
export type StrategyName = 'roundRobin' | 'weighted' | 'leastInFlight' | 'powerOfTwo' | 'latency';
/** Anything a `strategy` option takes: a `Strategy`, a `StrategyFunction` or a `StrategyName`. */
export type StrategyLike = Strategy | StrategyFunction | StrategyName;

function eligibleIndexes(context: PickContext): number[] {
  const indexes: number[] = [];
  for (let i = 0; i < context.candidates.length; i++) if (context.isEligible(i)) indexes.push(i);
  return indexes;
}

/** Picks the eligible key with the lowest `score`, starting the scan at a random offset so that
 * ties do not always go to the first key (the flood LiteLLM's least-busy is known for). */
function lowestScore(context: PickContext, score: (candidate: KeyCandidate) => number): number | undefined {
  const count = context.candidates.length;
  const offset = Math.floor(context.random() * count);
  let best: number | undefined;
  let bestScore = Infinity;
  for (let step = 0; step < count; step++) {
    const index = (offset + step) % count;
    if (!context.isEligible(index)) continue;
    const value = score(context.candidates[index]!);
    if (value < bestScore) {
      best = index;
      bestScore = value;
    }
  }
  return best;
}

/** Each key in turn, skipping those not eligible. */
export function roundRobin(): Strategy {
  let cursor = 0;
  return {
    name: 'roundRobin',
    pick(context) {
      const count = context.candidates.length;
      for (let step = 0; step < count; step++) {
        const index = (cursor + step) % count;
        if (context.isEligible(index)) {
          cursor = index + 1;
          return index;
        }
      }
      return undefined;
    },
  };
}

/** Random, in proportion to each key's `weight` (LiteLLM's simple-shuffle). */
export function weighted(): Strategy {
  return {
    name: 'weighted',
    pick(context) {
      const indexes = eligibleIndexes(context);
      let total = 0;
      for (const index of indexes) total += context.candidates[index]!.weight;
      // Weights near the largest number add up past it: divided by the largest, they keep their shares.
      const scale = total === Infinity ? indexes.reduce((largest, index) => Math.max(largest, context.candidates[index]!.weight), 0) : 1;
      if (scale !== 1) total = indexes.reduce((sum, index) => sum + context.candidates[index]!.weight / scale, 0);
      let target = context.random() * total;
      for (const index of indexes) {
        target -= context.candidates[index]!.weight / scale;
        if (target < 0) return index;
      }
      return indexes[indexes.length - 1];
    },
  };
}

/** The key with the fewest attempts in flight, relative to its weight. */
export function leastInFlight(): Strategy {
  return {
    name: 'leastInFlight',
    pick: (context) => lowestScore(context, (candidate) => candidate.inFlight / candidate.weight),
  };
}

const SAMPLE_TRIES = 8;

/**
 * Power of two choices (Envoy's least-request): two random eligible keys, the less loaded wins,
 * load being `(inFlight + 1) / weight`. Spreads load almost as well as least-in-flight without its
 * herding, and samples instead of scanning, so it stays O(1) at any pool size.
 */
export function powerOfTwo(): Strategy {
  const load = (candidate: KeyCandidate) => (candidate.inFlight + 1) / candidate.weight;
  return {
    name: 'powerOfTwo',
    pick(context) {
      const count = context.candidates.length;
      let first: number | undefined;
      let second: number | undefined;
      for (let tries = 0; tries < SAMPLE_TRIES && second === undefined; tries++) {
        const index = Math.floor(context.random() * count);
        if (index === first || !context.isEligible(index)) continue;
        if (first === undefined) first = index;
        else second = index;
      }
      if (second === undefined) {
        // Most keys are ineligible: sample among the eligible ones exactly.
        const indexes = eligibleIndexes(context);
        if (indexes.length < 2) return indexes[0];
        const a = Math.floor(context.random() * indexes.length);
        const b = (a + 1 + Math.floor(context.random() * (indexes.length - 1))) % indexes.length;
        first = indexes[a]!;
        second = indexes[b]!;
      }
      return load(context.candidates[second]!) < load(context.candidates[first!]!) ? second : first;
    },
  };
}

/**
 * The key with the lowest expected wait: its latency moving average times `inFlight + 1`. Keys
 * with no sample yet count as fastest, so every key gets measured.
 */
export function latency(): Strategy {
  return {
    name: 'latency',
    pick: (context) => lowestScore(context, (candidate) => (candidate.latencyMs ?? 0) * (candidate.inFlight + 1)),
  };
}

/** Options of `sticky`. */
export interface StickyOptions {
  /** Picks a key for a conversation seen for the first time, or whose key is not eligible. */
  fallback?: StrategyLike;
  /** Conversations remembered at most; the least recently used is forgotten first. */
  maxConversations?: number;
}

/**
 * Keeps a conversation on one key, so the provider's prompt cache keeps working across turns
 * (key rotation defeats it). `keyOf` names the conversation (e.g. `request.session_id`); requests
 * without one, and conversations whose key is not eligible now, go to `fallback` and stick there.
 */
export function sticky(keyOf: (request: ChatRequest) => string | undefined, options: StickyOptions = {}): Strategy {
  const fallback = toStrategy(options.fallback ?? powerOfTwo());
  const maxConversations = options.maxConversations ?? 10_000;
  const keyByConversation = new Map<string, string>();
  return {
    name: 'sticky',
    pick(context) {
      const conversation = keyOf(context.request);
      if (conversation === undefined) return fallback.pick(context);
      const label = keyByConversation.get(conversation);
      if (label !== undefined) {
        const index = context.candidates.findIndex((candidate) => candidate.label === label);
        if (index >= 0 && context.isEligible(index)) {
          keyByConversation.delete(conversation);
          keyByConversation.set(conversation, label);
          return index;
        }
      }
      const chosen = fallback.pick(context);
      if (chosen === undefined) return undefined;
      keyByConversation.delete(conversation);
      keyByConversation.set(conversation, context.candidates[chosen]!.label);
      if (keyByConversation.size > maxConversations) {
        keyByConversation.delete(keyByConversation.keys().next().value as string);
      }
      return chosen;
    },
  };
}

/** Adapts a user function of the eligible keys' health to a `Strategy`. */
export function fromFunction(choose: StrategyFunction, name = 'custom'): Strategy {
  return {
    name,
    pick(context) {
      const indexes = eligibleIndexes(context);
      if (indexes.length === 0) return undefined;
      const chosen = choose(
        indexes.map((index) => context.candidates[index]!.health),
        context.request,
      );
      if (chosen === undefined) return undefined;
      const label = typeof chosen === 'string' ? chosen : chosen.label;
      return indexes.find((index) => context.candidates[index]!.label === label);
    },
  };
}

const strategyFactories: Record<StrategyName, () => Strategy> = {
  roundRobin,
  weighted,
  leastInFlight,
  powerOfTwo,
  latency,
};

export const strategyNames = Object.keys(strategyFactories) as StrategyName[];

export function toStrategy(strategy: StrategyLike): Strategy {
  if (typeof strategy === 'string') return strategyFactories[strategy]();
  if (typeof strategy === 'function') return fromFunction(strategy);
  return strategy;
}
