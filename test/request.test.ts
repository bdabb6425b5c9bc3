import { describe, expect, it } from 'vitest';
import { chatRequestSchema, validateChatRequest } from '../src/core/request.js';
import { providerRouting, splitVariant, withVariant, withoutVariant } from '../src/routing/provider.js';
import type { ChatRequest } from '../src/core/types.js';
import { ValidationError } from '../src/core/validation.js';

const messages: ChatRequest['messages'] = [{ role: 'user', content: 'Hello' }];

function rejection(request: unknown): ValidationError {
  try {
    validateChatRequest(request);
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('expected the request to be rejected');
}

describe('validateChatRequest', () => {
  it('returns the same request object when it is valid', () => {
    const request: ChatRequest = {
      id: 'req-1',
      model: 'openai/gpt-4o',
      models: ['anthropic/claude-3.5-sonnet', 'google/gemini-2.5-flash:free'],
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', content: '42', tool_call_id: 'call_1' },
      ],
      stream: true,
      temperature: 0.7,
      max_tokens: 256,
      top_k: 40,
      repetition_penalty: 1.1,
      provider: {
        order: ['openai', 'azure'],
        allow_fallbacks: false,
        require_parameters: true,
        data_collection: 'deny',
        zdr: true,
        only: ['openai'],
        ignore: ['deepinfra'],
        quantizations: ['fp8'],
        sort: { by: 'throughput', partition: 'none' },
        preferred_min_throughput: { p90: 50 },
        preferred_max_latency: 2,
        max_price: { prompt: 1, completion: 2 },
      },
      reasoning: { effort: 'low' },
      transforms: ['middle-out'],
    };
    expect(validateChatRequest(request)).toBe(request);
  });

  it('accepts every model variant suffix, aliases and routers', () => {
    for (const model of [
      'openai/gpt-4o:nitro',
      'openai/gpt-4o:floor',
      'meta-llama/llama-3.3-70b-instruct:free',
      'moonshotai/kimi-k2:exacto',
      'anthropic/claude-3.7-sonnet:thinking',
      'openai/gpt-4o:extended',
      'openai/gpt-4o:online',
      '~anthropic/claude-sonnet-latest',
      'openrouter/auto',
    ]) {
      expect(() => validateChatRequest({ model, messages })).not.toThrow();
    }
  });

  it('lets unknown top-level fields through (the OpenAI schema keeps growing)', () => {
    const request = { model: 'openai/gpt-4o', messages, logprobs: true, modalities: ['text'], verbosity: 'low' };
    expect(validateChatRequest(request)).toBe(request);
  });

  it('rejects more than 3 fallback models, naming the field and the limit', () => {
    const error = rejection({ models: ['a/1', 'a/2', 'a/3', 'a/4'], messages });
    expect(error.message).toBe("Invalid request: models: at most 3 entries (OpenRouter's limit)");
    expect(error.issues[0]?.path).toEqual(['models']);
  });

  it('rejects an unknown provider key, naming provider.<key>', () => {
    expect(rejection({ model: 'openai/gpt-4o', messages, provider: { sortt: 'price' } }).message).toBe(
      'Invalid request: provider.sortt: unrecognized key',
    );
    expect(rejection({ model: 'openai/gpt-4o', messages, provider: { foo: 1, bar: 2 } }).message).toBe(
      'Invalid request: provider.foo: unrecognized key; provider.bar: unrecognized key',
    );
    expect(rejection({ messages, provider: { max_price: { prompt: 1, tokens: 2 } } }).message).toBe(
      'Invalid request: provider.max_price.tokens: unrecognized key',
    );
  });

  it('range-checks the sampling numbers', () => {
    expect(rejection({ messages, temperature: 3 }).message).toBe('Invalid request: temperature: must be between 0 and 2');
    expect(rejection({ messages, temperature: -0.1 }).message).toBe('Invalid request: temperature: must be between 0 and 2');
    expect(rejection({ messages, top_p: 1.5 }).message).toBe('Invalid request: top_p: must be between 0 and 1');
    expect(rejection({ messages, max_tokens: 0 }).message).toBe('Invalid request: max_tokens: must be a positive integer');
    expect(rejection({ messages, max_tokens: 10.5 }).message).toBe('Invalid request: max_tokens: must be a positive integer');
    expect(rejection({ messages, frequency_penalty: 2.5 }).message).toBe('Invalid request: frequency_penalty: must be between -2 and 2');
    expect(rejection({ messages, repetition_penalty: 0 }).message).toBe(
      'Invalid request: repetition_penalty: must be greater than 0 and at most 2',
    );
  });

  it('requires at least one message with a valid role', () => {
    expect(rejection({ model: 'openai/gpt-4o', messages: [] }).message).toBe('Invalid request: messages: must hold at least one message');
    expect(rejection({ model: 'openai/gpt-4o' }).message).toMatch(/^Invalid request: messages: /);
    expect(rejection({ messages: [{ role: 'wizard', content: 'hi' }] }).message).toMatch(/^Invalid request: messages\[0\]\.role: /);
  });

  it('rejects a model with whitespace, and lists every failing field', () => {
    const error = rejection({ model: 'openai/gpt 4o', messages: [], temperature: 9 });
    expect(error.message).toMatch(/^Invalid request: model: must be a model slug/);
    expect(error.message).toContain('; messages: must hold at least one message');
    expect(error.message).toContain('; temperature: must be between 0 and 2');
    expect(error.issues).toHaveLength(3);
  });

  it('rejects a provider sort that is not documented', () => {
    expect(rejection({ messages, provider: { sort: 'cheapest' } }).message).toMatch(/^Invalid request: provider\.sort: /);
  });

  it('rejects what is not an object at all', () => {
    expect(rejection(null).message).toMatch(/^Invalid request: \(root\): /);
    expect(rejection('hello').message).toMatch(/^Invalid request: \(root\): /);
  });

  it('exposes the schema for composition', () => {
    expect(chatRequestSchema.safeParse({ messages }).success).toBe(true);
  });
});

describe('routing helpers', () => {
  it('withVariant adds or replaces a variant suffix, keeping other suffixes', () => {
    expect(withVariant('openai/gpt-4o', 'nitro')).toBe('openai/gpt-4o:nitro');
    expect(withVariant('openai/gpt-4o:free', 'floor')).toBe('openai/gpt-4o:floor');
    expect(withVariant('anthropic/claude-3.5-sonnet:beta', 'nitro')).toBe('anthropic/claude-3.5-sonnet:beta:nitro');
  });

  it('splitVariant / withoutVariant read the suffix', () => {
    expect(splitVariant('meta-llama/llama-3.3-70b-instruct:free')).toEqual({ base: 'meta-llama/llama-3.3-70b-instruct', variant: 'free' });
    expect(splitVariant('anthropic/claude-3.5-sonnet:beta')).toEqual({ base: 'anthropic/claude-3.5-sonnet:beta' });
    expect(withoutVariant('openai/gpt-4o:exacto')).toBe('openai/gpt-4o');
  });

  it('providerRouting checks preferences as OpenRouter does', () => {
    const preferences = { sort: 'price' as const, allow_fallbacks: false };
    expect(providerRouting(preferences)).toBe(preferences);
    expect(() => providerRouting({ sortt: 'price' } as never)).toThrow('Invalid provider preferences: sortt: unrecognized key');
  });
});
