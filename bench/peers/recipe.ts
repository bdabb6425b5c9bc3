/**
 * The algorithm of the original OpenRouter load-balancing recipe, ported faithfully:
 * - round robin over the keys;
 * - a key is unhealthy after 3 errors, and healthy again 60 s after its last error; a success
 *   resets its count; when every key is unhealthy, any key is used;
 * - on a 429 the key is marked and the call recurses at once with the next key. The original
 *   recursion is unbounded; here it stops after `MAX_RECURSION` attempts (a bench must end);
 * - the SDK's default `maxRetries` (2) stays on, as the original never set it. No model fallback.
 */
import type OpenAI from 'openai';
import { sdkCall, sdkClient } from './bare-sdk.js';
import {
  Cancellation,
  failure,
  statusOf,
  type BenchRequest,
  type Outcome,
  type Peer,
  type PeerContext,
  type PeerSession,
} from './types.js';

const ERROR_THRESHOLD = 3;
const HEALTHY_AGAIN_MS = 60_000;
/** The cap on the recursion (our addition: unbounded in the original). */
export const MAX_RECURSION = 10;

interface KeyState {
  client: OpenAI;
  label: string;
  errors: number;
  lastErrorAt: number;
}

export const recipePeer: Peer = {
  id: 'recipe',
  name: 'original recipe',
  description: `round robin; unhealthy after ${ERROR_THRESHOLD} errors, healthy 60 s after the last; immediate recursion to the next key on 429 (capped at ${MAX_RECURSION} attempts, unbounded in the original); SDK maxRetries 2`,
  async start(context: PeerContext): Promise<PeerSession> {
    const keys: KeyState[] = context.keys.map((key) => ({
      client: sdkClient(context, key.key),
      label: key.label,
      errors: 0,
      lastErrorAt: 0,
    }));
    const cancellation = new Cancellation();
    let cursor = 0;

    const healthy = (key: KeyState, now: number) => key.errors < ERROR_THRESHOLD || now - key.lastErrorAt >= HEALTHY_AGAIN_MS;

    const nextKey = (): KeyState => {
      const now = Date.now();
      for (let step = 0; step < keys.length; step++) {
        const index = (cursor + step) % keys.length;
        if (healthy(keys[index]!, now)) {
          cursor = (index + 1) % keys.length;
          return keys[index]!;
        }
      }
      // Every key is unhealthy: use any.
      const key = keys[cursor]!;
      cursor = (cursor + 1) % keys.length;
      return key;
    };

    const call = async (request: BenchRequest, depth: number): Promise<Outcome> => {
      const key = nextKey();
      try {
        const chunks = await cancellation.with((signal) => sdkCall(key.client, context.model, request, signal));
        key.errors = 0;
        return { ok: true, chunks, keyLabel: key.label };
      } catch (error) {
        if (cancellation.aborted) return failure(error);
        key.errors++;
        key.lastErrorAt = Date.now();
        if (statusOf(error) === 429 && depth + 1 < MAX_RECURSION) return call(request, depth + 1);
        return failure(error);
      }
    };

    return {
      run: (request) => call(request, 0),
      pick() {
        nextKey();
      },
      async close() {
        cancellation.abortAll();
      },
    };
  },
};
