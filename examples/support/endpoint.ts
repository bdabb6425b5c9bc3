import { startFakeOpenRouter, type FakeModelConfig, type FakeOpenRouter } from 'openrouter-rx/testing';
import { keysFromEnvironment } from './env-keys.js';

/**
 * Where the examples send their requests: OpenRouter with your keys when `OPENROUTER_API_KEYS` is
 * set (comma-separated, each optionally `label=key`, as the CLI reads it), else the embedded fake OpenRouter on 127.0.0.1, so every example runs
 * with no key and no network (that is how the test suite runs them). In your app, build the pool
 * from your own keys and leave this file out.
 */

export interface ExampleEndpoint {
  keys: Array<{ key: string; label: string }>;
  /** Only for the fake server; OpenRouter is the pool's default. */
  baseURL?: string;
  /** A model for the examples' requests. */
  model: string;
  /** The fake server, when there is one. */
  fake?: FakeOpenRouter;
  close(): Promise<void>;
}

export interface FakeEndpointOptions {
  /** Per-model behaviour of the fake server. */
  models?: Record<string, FakeModelConfig>;
  defaultModel?: FakeModelConfig;
  /** The fake server's answer text. */
  respond?: (request: { model: string; messages: ReadonlyArray<{ role: string; content: unknown }> }) => string;
}

export async function exampleEndpoint(options: FakeEndpointOptions = {}): Promise<ExampleEndpoint> {
  const real = keysFromEnvironment();
  if (real.length > 0) {
    return {
      keys: real,
      model: process.env.OPENROUTER_MODEL ?? 'openai/gpt-4o-mini',
      close: async () => undefined,
    };
  }
  // Made-up keys: they open nothing but this fake server.
  const keys = [
    { key: 'sk-or-v1-example-key-one', label: 'one' },
    { key: 'sk-or-v1-example-key-two', label: 'two' },
  ];
  const fake = await startFakeOpenRouter({
    keys,
    defaultModel: options.defaultModel ?? { latencyMs: 20, chunkCount: 6, chunkGapMs: 15 },
    ...(options.models === undefined ? {} : { models: options.models }),
    ...(options.respond === undefined ? {} : { respond: options.respond }),
  });
  return { keys, baseURL: fake.baseURL, model: 'example/model', fake, close: () => fake.close() };
}
