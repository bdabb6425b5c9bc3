import { startFakeOpenRouter, type FakeOpenRouter } from '../testing/index.js';
import type { CliKey } from './keys.js';

/**
 * `--fake`: the embedded fake OpenRouter on 127.0.0.1, so a new user can try the CLI with no key
 * and no network. Its keys are made up and only open this fake server. One key has a tight quota
 * and one is revoked, so the health line shows the pool at work: a key parked on 429s, a key
 * disabled on a 401, and every prompt answered all the same.
 */

export const FAKE_MODEL = 'openrouter-rx/fake-model';

export interface FakeSetup {
  fake: FakeOpenRouter;
  keys: CliKey[];
  model: string;
}

/** Made up: they open nothing but this fake server. Exported so output is scrubbed of them too. */
export const FAKE_KEYS: readonly CliKey[] = [
  { label: 'north', key: 'sk-or-v1-cli-fake-north-0001' },
  { label: 'south', key: 'sk-or-v1-cli-fake-south-0002' },
  { label: 'east', key: 'sk-or-v1-cli-fake-east-0003' },
  { label: 'west', key: 'sk-or-v1-cli-fake-west-0004' },
];

export async function startCliFake(latencyMs: number): Promise<FakeSetup> {
  const [north, south, east, west] = FAKE_KEYS as [CliKey, CliKey, CliKey, CliKey];
  const fake = await startFakeOpenRouter({
    keys: [
      Object.assign({}, north, { limit: 10, usage: 1.25 }),
      // The pool is not told this quota: it learns it from the 429s and their reset headers.
      Object.assign({}, south, { quota: { requests: 4, windowMs: 1000 }, limit: 5, usage: 4.5 }),
      Object.assign({}, east, { limit: null, usage: 0.4 }),
      Object.assign({}, west, { revoked: true }),
    ],
    defaultModel: { latencyMs, chunkCount: 5, chunkGapMs: 10 },
  });
  return { fake, keys: FAKE_KEYS.map((key) => ({ ...key })), model: FAKE_MODEL };
}
