import { describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  BadRequestError,
  ContentPolicyError,
  ContextLengthError,
  InsufficientCreditsError,
  KeyLimitError,
  MalformedResponseError,
  NotFoundError,
  OpenRouterError,
  PermissionDeniedError,
  RateLimitError,
  StreamError,
  UpstreamError,
  type ErrorScope,
} from '../src/core/errors.js';
import { classifyHttpError } from '../src/wire/classify.js';
import { Breaker, defaultBreakerPolicy } from '../src/health/breaker.js';
import { createPool } from '../src/create-pool.js';
import { POOL_PORT } from '../src/pool/types.js';
import { watchTimers } from './helpers/timer-watch.js';
import { advanceStream, parseCompletionBody, parseStreamChunk, parseUsage, type StreamProgress } from '../src/wire/chunk.js';
import { parseErrorBody } from '../src/wire/error-body.js';
import { toHeaderLookup } from '../src/wire/headers.js';
import { retryAfterMsFrom } from '../src/wire/retry-after.js';
import type { TransportEvent } from '../src/core/types.js';
import { fixtureNames, loadFixture, sseEvents } from './helpers/fixtures.js';

/** 2025-10-10T12:00:00Z: twelve hours before the reset in the free-models-per-day fixture. */
const NOW = Date.UTC(2025, 9, 10, 12);
const context = { nowMs: NOW, model: 'openai/gpt-4o', keyLabel: 'alpha' };
const noHeaders = toHeaderLookup(undefined);

function errorBody(error: Record<string, unknown>): string {
  return JSON.stringify({ error });
}

function classify(status: number, body: unknown, headers: Record<string, string> = {}): OpenRouterError {
  return classifyHttpError({ status, headers, body, nowMs: NOW, model: 'openai/gpt-4o', keyLabel: 'alpha' });
}

function expectError(
  error: OpenRouterError,
  expected: { type: abstract new (...args: never[]) => OpenRouterError; scope: ErrorScope; retryable: boolean; retryAfterMs?: number },
): void {
  expect(error).toBeInstanceOf(expected.type);
  expect(error.scope).toBe(expected.scope);
  expect(error.retryable).toBe(expected.retryable);
  expect(error.retryAfterMs).toBe(expected.retryAfterMs);
}

describe('retryAfterMsFrom', () => {
  const headers = (record: Record<string, string>) => toHeaderLookup(record);

  it('prefers retry-after-ms, in milliseconds', () => {
    expect(retryAfterMsFrom(headers({ 'retry-after-ms': '1500', 'retry-after': '60' }), undefined, NOW)).toBe(1500);
  });

  it('reads Retry-After as seconds, case-insensitively', () => {
    expect(retryAfterMsFrom(headers({ 'Retry-After': '60' }), undefined, NOW)).toBe(60_000);
    expect(retryAfterMsFrom(headers({ 'retry-after': '1.5' }), undefined, NOW)).toBe(1500);
  });

  it('reads Retry-After as an HTTP date, never negative', () => {
    const inThirtySeconds = new Date(NOW + 30_000).toUTCString();
    expect(retryAfterMsFrom(headers({ 'retry-after': inThirtySeconds }), undefined, NOW)).toBe(30_000);
    const past = new Date(NOW - 30_000).toUTCString();
    expect(retryAfterMsFrom(headers({ 'retry-after': past }), undefined, NOW)).toBe(0);
  });

  it('reads X-RateLimit-Reset as epoch milliseconds, floored at 0', () => {
    expect(retryAfterMsFrom(headers({ 'x-ratelimit-reset': String(NOW + 45_000) }), undefined, NOW)).toBe(45_000);
    expect(retryAfterMsFrom(headers({ 'X-RateLimit-Reset': String(NOW - 1) }), undefined, NOW)).toBe(0);
  });

  it('ignores garbage and negative values, falling through to the next source', () => {
    const body = errorBody({ code: 429, message: 'x', metadata: { retry_after_seconds: 7 } });
    expect(retryAfterMsFrom(headers({ 'retry-after-ms': 'soon', 'retry-after': 'later', 'x-ratelimit-reset': '12' }), body, NOW)).toBe(
      7000,
    );
    expect(retryAfterMsFrom(headers({ 'retry-after': '-5' }), undefined, NOW)).toBeUndefined();
    expect(retryAfterMsFrom(noHeaders, errorBody({ message: 'x', metadata: { retry_after_seconds: -3 } }), NOW)).toBeUndefined();
    expect(retryAfterMsFrom(noHeaders, '<html>bad gateway</html>', NOW)).toBeUndefined();
    expect(retryAfterMsFrom(noHeaders, 42, NOW)).toBeUndefined();
  });

  it('reads error.metadata.retry_after_seconds before the copied headers', () => {
    const body = { error: { message: 'x', metadata: { retry_after_seconds: 17, headers: { 'Retry-After': '99' } } } };
    expect(retryAfterMsFrom(noHeaders, body, NOW)).toBe(17_000);
  });

  it('reads Retry-After and X-RateLimit-Reset copied into error.metadata.headers', () => {
    expect(retryAfterMsFrom(noHeaders, errorBody({ message: 'x', metadata: { headers: { 'Retry-After': '17' } } }), NOW)).toBe(17_000);
    const reset = errorBody({ message: 'x', metadata: { headers: { 'X-RateLimit-Reset': String(NOW + 5000) } } });
    expect(retryAfterMsFrom(noHeaders, reset, NOW)).toBe(5000);
  });

  it('reads error.availability.retry_after in seconds, last', () => {
    const body = errorBody({ message: 'x', availability: { code: 'capacity_exhausted', retryable: true, retry_after: 5 } });
    expect(retryAfterMsFrom(noHeaders, body, NOW)).toBe(5000);
    expect(retryAfterMsFrom(headers({ 'retry-after': '2' }), body, NOW)).toBe(2000);
  });

  it('accepts a fetch Headers object through toHeaderLookup', () => {
    expect(retryAfterMsFrom(toHeaderLookup(new Headers({ 'Retry-After': '3' })), undefined, NOW)).toBe(3000);
  });
});

describe('parseErrorBody', () => {
  it('takes code ?? http_status and metadata.error_type ?? error_type', () => {
    expect(parseErrorBody({ error: { http_status: 503, error_type: 'provider_overloaded', message: 'busy' } })).toMatchObject({
      code: 503,
      errorType: 'provider_overloaded',
      message: 'busy',
    });
    expect(
      parseErrorBody({ error: { code: 400, error_type: 'x', message: 'm', metadata: { error_type: 'context_length_exceeded' } } })
        ?.errorType,
    ).toBe('context_length_exceeded');
  });

  it('unwraps metadata.raw of "Provider returned error" from a string, a JSON string or an object', () => {
    const wrap = (raw: unknown) =>
      parseErrorBody({ error: { code: 502, message: 'Provider returned error', metadata: { provider_name: 'Acme', raw } } })?.message;
    expect(wrap('upstream exploded')).toBe('Provider returned error (Acme): upstream exploded');
    expect(wrap(JSON.stringify({ error: { message: 'model overloaded' } }))).toBe('Provider returned error (Acme): model overloaded');
    expect(wrap({ detail: 'bad field' })).toBe('Provider returned error (Acme): bad field');
    expect(wrap(null)).toBe('Provider returned error');
  });

  it('never throws on garbage', () => {
    for (const body of [undefined, null, '', '   ', 'not json', '{"error":', 7, [], { unrelated: true }, { error: 12 }]) {
      expect(() => parseErrorBody(body)).not.toThrow();
    }
    expect(parseErrorBody('plain text from a proxy')?.message).toBe('plain text from a proxy');
    expect(parseErrorBody({ error: 'just a string' })?.message).toBe('just a string');
  });
});

describe('classifyHttpError: fixtures', () => {
  const fromFixture = (name: string): OpenRouterError => {
    const { response } = loadFixture(name);
    return classify(response.status, response.body, response.headers);
  };

  it('401 No auth credentials / User not found → AuthenticationError, key scope', () => {
    for (const name of ['error-401-no-auth-credentials', 'error-401-user-not-found']) {
      const error = fromFixture(name);
      expectError(error, { type: AuthenticationError, scope: 'key', retryable: true });
      expect(error.status).toBe(401);
      expect(error.code).toBe(401);
      expect(error.keyLabel).toBe('alpha');
    }
    expect(fromFixture('error-401-user-not-found').message).toBe('401 User not found.');
  });

  it('402 credits → InsufficientCreditsError, account scope', () => {
    const error = fromFixture('error-402-insufficient-credits');
    expectError(error, { type: InsufficientCreditsError, scope: 'account', retryable: true });
    expect(error.message).toMatch(/can only afford 10114/);
  });

  it('404 no endpoints → NotFoundError, request scope: a configuration error, not a sick model', () => {
    const error = fromFixture('error-404-no-endpoints');
    expectError(error, { type: NotFoundError, scope: 'request', retryable: false });
    expect(error.model).toBe('openai/gpt-4o');
  });

  it('429 documented example → RateLimitError on the key with Retry-After 60', () => {
    const error = fromFixture('error-429-docs-example');
    expectError(error, { type: RateLimitError, scope: 'key', retryable: true, retryAfterMs: 60_000 });
    expect(error.errorType).toBe('rate_limit_exceeded');
  });

  it('429 free-models-per-day → account scope, waits until X-RateLimit-Reset (epoch ms)', () => {
    const error = fromFixture('error-429-free-models-per-day');
    expectError(error, { type: RateLimitError, scope: 'account', retryable: true, retryAfterMs: 1760140800000 - NOW });
    // The same hint survives when only the copy in error.metadata.headers is there.
    const { response } = loadFixture('error-429-free-models-per-day');
    expect(classify(429, response.body).retryAfterMs).toBe(1760140800000 - NOW);
  });

  it('429 upstream with retry hints → model scope, provider named, raw unwrapped', () => {
    const error = fromFixture('error-429-provider-retry-after');
    expectError(error, { type: RateLimitError, scope: 'model', retryable: true, retryAfterMs: 17_000 });
    expect(error.providerName).toBe('Venice');
    expect(error.message).toMatch(
      /^429 Provider returned error \(Venice\): meta-llama\/llama-3.3-70b-instruct:free is temporarily rate-limited/,
    );
    // Without the header, metadata.retry_after_seconds gives the same hint.
    expect(classify(429, loadFixture('error-429-provider-retry-after').response.body).retryAfterMs).toBe(17_000);
  });

  it('429 upstream without hints → model scope, no retryAfterMs', () => {
    const error = fromFixture('error-429-provider-upstream');
    expectError(error, { type: RateLimitError, scope: 'model', retryable: true });
    expect(error.providerName).toBe('Google');
    expect(error.message).toContain('temporarily rate-limited upstream');
  });

  it('covers every error fixture', () => {
    const errorFixtures = fixtureNames().filter((name) => name.startsWith('error-'));
    expect(errorFixtures.length).toBeGreaterThanOrEqual(8);
    for (const name of errorFixtures) expect(fromFixture(name)).toBeInstanceOf(OpenRouterError);
  });
});

describe('classifyHttpError: the SCOPE table', () => {
  it('403 key limit, by message or limit_source → KeyLimitError on the key', () => {
    expectError(classify(403, errorBody({ code: 403, message: 'Key limit exceeded (daily limit)' })), {
      type: KeyLimitError,
      scope: 'key',
      retryable: true,
    });
    expectError(classify(403, errorBody({ code: 403, message: 'Forbidden', metadata: { limit_source: 'openrouter_key_limit' } })), {
      type: KeyLimitError,
      scope: 'key',
      retryable: true,
    });
  });

  it('403 moderation → ContentPolicyError for the request, carrying metadata.reasons', () => {
    const error = classify(
      403,
      errorBody({
        code: 403,
        message: 'openai/gpt-4o requires moderation on OpenAI. Your input was flagged for "violence".',
        metadata: { reasons: ['violence'], flagged_input: '…' },
      }),
    );
    expectError(error, { type: ContentPolicyError, scope: 'request', retryable: false });
    expect(error.metadata?.['reasons']).toEqual(['violence']);
  });

  it('other 403 (guardrail, region, management route) → PermissionDeniedError on the account', () => {
    expectError(classify(403, errorBody({ code: 403, message: 'Only management keys can perform this operation' })), {
      type: PermissionDeniedError,
      scope: 'account',
      retryable: true,
    });
    expectError(
      classify(
        403,
        errorBody({ http_status: 403, message: 'Region blocked', availability: { code: 'region_restricted', retryable: false } }),
      ),
      {
        type: PermissionDeniedError,
        scope: 'account',
        retryable: true,
      },
    );
  });

  it('402 in_flight_budget_exhausted → retryable on the account, honouring Retry-After', () => {
    const error = classify(
      402,
      errorBody({ code: 402, message: 'In-flight budget exhausted', metadata: { error_type: 'in_flight_budget_exhausted' } }),
      {
        'retry-after': '2',
      },
    );
    expectError(error, { type: InsufficientCreditsError, scope: 'account', retryable: true, retryAfterMs: 2000 });
  });

  it('402 weight_exceeds_budget → request scope, not retryable (lower max_tokens)', () => {
    expectError(classify(402, errorBody({ code: 402, message: 'Request weight exceeds budget', error_type: 'weight_exceeds_budget' })), {
      type: InsufficientCreditsError,
      scope: 'request',
      retryable: false,
    });
  });

  it('429 capacity_exhausted → model scope with availability.retry_after', () => {
    const error = classify(
      429,
      errorBody({
        http_status: 429,
        message: 'No capacity',
        availability: { code: 'capacity_exhausted', retryable: true, retry_after: 5 },
      }),
    );
    expectError(error, { type: RateLimitError, scope: 'model', retryable: true, retryAfterMs: 5000 });
    expect(error.code).toBe(429);
  });

  it('429 free-models-per-min with X-RateLimit headers → account scope', () => {
    const error = classify(429, errorBody({ code: 429, message: 'Rate limit exceeded: free-models-per-min. ' }), {
      'X-RateLimit-Limit': '20',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': String(NOW + 20_000),
    });
    expectError(error, { type: RateLimitError, scope: 'account', retryable: true, retryAfterMs: 20_000 });
  });

  it("429 of a bucket named for the account → account scope; one named for the key, or none, stays the key's", () => {
    const headers = { 'X-RateLimit-Limit': '20', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(NOW + 20_000) };
    const refusal = (bucket: string) => classify(429, errorBody({ code: 429, message: `Rate limit exceeded: ${bucket}` }), headers);
    for (const bucket of ['requests-per-account', 'account-rpm', 'per-user-requests', 'organization-requests', 'workspace-per-min'])
      expect(refusal(bucket).scope).toBe('account');
    for (const bucket of ['requests-per-key', 'rpm', '']) expect(refusal(bucket).scope).toBe('key');
  });

  it('400 context or token limit → ContextLengthError for the request', () => {
    for (const body of [
      errorBody({ code: 400, message: 'too long', metadata: { error_type: 'context_length_exceeded' } }),
      errorBody({ code: 400, message: 'too many', error_type: 'max_tokens_exceeded' }),
      errorBody({ code: 400, message: 'x', metadata: { error_type: 'token_limit_exceeded' } }),
      errorBody({ code: 400, message: "This endpoint's maximum context length is 8192 tokens. However, you requested about 9000 tokens." }),
    ]) {
      const error = classify(400, body);
      expectError(error, { type: ContextLengthError, scope: 'request', retryable: false });
      expect(error.kind).toBe('context_length');
    }
  });

  it('400 content_policy_violation / refusal → ContentPolicyError', () => {
    for (const errorType of ['content_policy_violation', 'refusal']) {
      expectError(classify(400, errorBody({ code: 400, message: 'no', metadata: { error_type: errorType } })), {
        type: ContentPolicyError,
        scope: 'request',
        retryable: false,
      });
    }
  });

  it('other 400, 413, 422 → BadRequestError for the request', () => {
    const error = classify(400, errorBody({ code: 400, message: "'models' array must have 3 items or fewer." }));
    expectError(error, { type: BadRequestError, scope: 'request', retryable: false });
    expect(error.kind).toBe('bad_request');
    expectError(classify(413, errorBody({ code: 413, message: 'Payload too large' })), {
      type: BadRequestError,
      scope: 'request',
      retryable: false,
    });
    expectError(classify(422, errorBody({ code: 422, message: 'Unprocessable' })), {
      type: BadRequestError,
      scope: 'request',
      retryable: false,
    });
  });

  it('408 → transient, retryable, transport scope', () => {
    expectError(classify(408, errorBody({ code: 408, message: 'Request timed out' })), {
      type: UpstreamError,
      scope: 'transport',
      retryable: true,
    });
  });

  it('500, 502, 503, 504, 524, 529 → UpstreamError on the model, retryable', () => {
    for (const status of [500, 502, 503, 504, 524, 529]) {
      expectError(classify(status, errorBody({ code: status, message: 'upstream trouble' })), {
        type: UpstreamError,
        scope: 'model',
        retryable: true,
      });
    }
    const unavailable = classify(
      503,
      errorBody({
        http_status: 503,
        message: 'Temporarily unavailable',
        availability: { code: 'temporarily_unavailable', retryable: true, retry_after: 3 },
      }),
      { 'Retry-After': '4' },
    );
    expectError(unavailable, { type: UpstreamError, scope: 'model', retryable: true, retryAfterMs: 4000 });
  });

  it('reads the body whether it is a string, an object or garbage, and never throws', () => {
    expect(classify(401, { error: { code: 401, message: 'User not found.' } }).message).toBe('401 User not found.');
    expectError(classify(502, '<html><body>502 Bad Gateway</body></html>'), { type: UpstreamError, scope: 'model', retryable: true });
    expect(classify(502, '<html>…</html>').message).toBe('502 <html>…</html>');
    expect(classify(500, undefined).message).toBe('500 status code (no body)');
    for (const body of [null, 12, [], '{"error":', { error: null }, { error: [] }]) {
      expect(() => classify(500, body)).not.toThrow();
    }
    expect(() => classifyHttpError({ status: 429, headers: { 'retry-after': 'banana' }, body: '{', nowMs: NOW })).not.toThrow();
  });

  it('maps unexpected statuses sensibly', () => {
    expectError(classify(409, errorBody({ code: 409, message: 'Conflict' })), {
      type: BadRequestError,
      scope: 'request',
      retryable: false,
    });
    expectError(classify(599, 'odd'), { type: UpstreamError, scope: 'model', retryable: true });
  });
});

/** Folds a stream's events the way the transport does. */
function foldStream(events: readonly unknown[]): { events: TransportEvent[]; progress: StreamProgress; error?: OpenRouterError } {
  const out: TransportEvent[] = [];
  let progress: StreamProgress = {};
  for (const event of events) {
    const result = parseStreamChunk(event, context);
    if (result.kind === 'error') return { events: out, progress, error: result.error };
    progress = advanceStream(progress, result);
    if (result.hasChoices) {
      out.push({
        type: 'chunk',
        delta: result.delta,
        model: result.model ?? '',
        ...(result.reasoning === undefined ? {} : { reasoning: result.reasoning }),
        ...(result.toolCalls === undefined ? {} : { toolCalls: result.toolCalls }),
      });
    }
  }
  return { events: out, progress };
}

function text(events: readonly TransportEvent[]): string {
  return events.map((event) => (event.type === 'chunk' ? event.delta : '')).join('');
}

describe('parseStreamChunk: stream fixtures', () => {
  it('chat-stream-usage-done: content, finish stop, usage on a chunk with non-empty choices', () => {
    const { events, progress, error } = foldStream(sseEvents(loadFixture('chat-stream-usage-done').response.body));
    expect(error).toBeUndefined();
    expect(text(events)).toBe('Pebbles and Skipper.');
    expect(progress).toEqual({
      id: 'gen-1754441342-hIkMo7SMi0ZecQw3oR4d',
      model: 'openai/gpt-4o',
      provider: 'OpenAI',
      finishReason: 'stop',
      usage: { promptTokens: 17, completionTokens: 6, totalTokens: 23, cost: 0.0001025, cachedTokens: 0, reasoningTokens: 0 },
    });
  });

  it('chat-stream-keepalives-fallback: fallback model and provider, cached and reasoning tokens', () => {
    const { events, progress, error } = foldStream(sseEvents(loadFixture('chat-stream-keepalives-fallback').response.body));
    expect(error).toBeUndefined();
    expect(text(events)).toMatch(/^I'm Grok, an AI built by xAI\./);
    expect(progress.model).toBe('x-ai/grok-4');
    expect(progress.provider).toBe('xAI');
    expect(progress.finishReason).toBe('stop');
    expect(progress.usage).toEqual({
      promptTokens: 687,
      completionTokens: 187,
      totalTokens: 874,
      cost: 0.00333825,
      cachedTokens: 679,
      reasoningTokens: 118,
    });
  });

  it('chat-stream-tool-call: tool-call deltas, finish tool_calls', () => {
    const { events, progress } = foldStream(sseEvents(loadFixture('chat-stream-tool-call').response.body));
    const toolCalls = events.flatMap((event) => (event.type === 'chunk' ? (event.toolCalls ?? []) : []));
    expect(toolCalls).toEqual([
      { index: 0, id: 'call_o4OCgtJrNoZTmoCRvmlfoHfj', type: 'function', function: { name: 'llm_version', arguments: '' } },
      { index: 0, function: { arguments: '{}' }, type: 'function' },
    ]);
    expect(text(events)).toBe('');
    expect(progress.finishReason).toBe('tool_calls');
    expect(progress.usage?.totalTokens).toBe(59);
  });

  it('chat-stream-midstream-error: an error after finish "length" is still a failed attempt', () => {
    const { events, progress, error } = foldStream(sseEvents(loadFixture('chat-stream-midstream-error').response.body));
    expect(events.map((event) => (event.type === 'chunk' ? event.reasoning : undefined))).toEqual([
      'We need',
      ' to respond to a greeting. The user',
      undefined,
    ]);
    expect(progress.finishReason).toBe('length');
    expect(error).toBeInstanceOf(StreamError);
    expect(error).toMatchObject({ scope: 'request', retryable: false, code: 400, truncated: false, model: 'minimax/minimax-m2:free' });
    expect(error?.message).toBe('stream error: 400 Token limit reached');
    expect(error?.cause).toBeInstanceOf(ContextLengthError);
  });

  it('chat-stream-midstream-error-docs-example: in-band 429 is the model provider’s', () => {
    const { events, error } = foldStream(sseEvents(loadFixture('chat-stream-midstream-error-docs-example').response.body));
    expect(events).toEqual([]);
    expect(error).toBeInstanceOf(StreamError);
    expect(error).toMatchObject({ scope: 'model', retryable: true, code: 429, errorType: 'rate_limit_exceeded' });
    expect(error?.cause).toBeInstanceOf(RateLimitError);
  });

  it('every stream fixture parses without a malformed chunk', () => {
    for (const name of fixtureNames().filter((entry) => entry.startsWith('chat-stream-'))) {
      const { error } = foldStream(sseEvents(loadFixture(name).response.body));
      expect(error, name).not.toBeInstanceOf(MalformedResponseError);
    }
  });
});

describe('parseStreamChunk: hand-written shapes', () => {
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    id: 'gen-1',
    model: 'openai/gpt-4o',
    provider: 'OpenAI',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: '' }, finish_reason: null, native_finish_reason: null, ...choice }],
    ...extra,
  });

  it('reads a role-only chunk as an empty delta', () => {
    expect(parseStreamChunk(chunk({ delta: { role: 'assistant' } }), context)).toEqual({
      kind: 'content',
      id: 'gen-1',
      model: 'openai/gpt-4o',
      provider: 'OpenAI',
      hasChoices: true,
      delta: '',
    });
  });

  it('tolerates usage: null and reads usage on choices: []', () => {
    const withNull = parseStreamChunk(chunk({ delta: { content: 'hi' } }, { usage: null }), context);
    expect(withNull).toMatchObject({ kind: 'content', delta: 'hi' });
    expect(withNull).not.toHaveProperty('usage');
    const usageOnly = parseStreamChunk(
      { id: 'gen-1', choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, cost: 0.5 } },
      context,
    );
    expect(usageOnly).toMatchObject({
      kind: 'content',
      hasChoices: false,
      usage: { promptTokens: 3, completionTokens: 4, totalTokens: 7, cost: 0.5 },
    });
  });

  it('a delta whose content is neither text, nor null, nor text parts → MalformedResponseError, never an empty delta', () => {
    for (const content of [42, { a: 1 }, ['part']]) {
      const result = parseStreamChunk(chunk({ delta: { content }, finish_reason: 'stop' }), context);
      expect(result.kind === 'error' && result.error, JSON.stringify(content)).toBeInstanceOf(MalformedResponseError);
    }
    expect(parseStreamChunk(chunk({ delta: { content: null } }), context)).toMatchObject({ kind: 'content', delta: '' });
    expect(parseStreamChunk(chunk({ delta: { content: [{ type: 'text', text: 'hi' }] } }), context)).toMatchObject({
      kind: 'content',
      delta: 'hi',
    });
  });

  it('a delta that is not an object (a bare string, a number, an array) → MalformedResponseError, never an empty delta', () => {
    // A string delta was read as no content: the stream completed as an empty success.
    for (const delta of ['Hello there', 42, ['Hello']]) {
      const result = parseStreamChunk(chunk({ delta, finish_reason: 'stop' }), context);
      expect(result.kind === 'error' && result.error, JSON.stringify(delta)).toBeInstanceOf(MalformedResponseError);
    }
    expect(parseStreamChunk(chunk({ delta: null, finish_reason: 'stop' }), context)).toMatchObject({ kind: 'content', delta: '' });
    expect(parseStreamChunk(chunk({ finish_reason: 'stop' }), context)).toMatchObject({ kind: 'content', delta: '' });
  });

  it('finish_reason "error" without an error object → StreamError on the model', () => {
    const result = parseStreamChunk(chunk({ finish_reason: 'error' }), context);
    expect(result.kind).toBe('error');
    if (result.kind === 'error') expect(result.error).toMatchObject({ kind: 'stream', scope: 'model', retryable: true });
  });

  it('native_finish_reason "network_error" → StreamError on the model (OpenRouter lost its provider)', () => {
    const result = parseStreamChunk(chunk({ finish_reason: null, native_finish_reason: 'network_error' }), context);
    expect(result.kind === 'error' && result.error).toMatchObject({ kind: 'stream', scope: 'model', retryable: true });
  });

  it('an error event with choices: [] or with a string code', () => {
    const empty = parseStreamChunk({ error: { code: 502, message: 'Provider disconnected' }, choices: [] }, context);
    expect(empty.kind === 'error' && empty.error).toMatchObject({ kind: 'stream', scope: 'model', retryable: true, code: 502 });
    const stringCode = parseStreamChunk(
      chunk({ finish_reason: 'error' }, { error: { code: 'server_error', message: 'Internal' } }),
      context,
    );
    expect(stringCode.kind === 'error' && stringCode.error).toMatchObject({
      kind: 'stream',
      scope: 'model',
      retryable: true,
      code: 'server_error',
    });
  });

  it('an OpenAI-style error event with no choices → StreamError', () => {
    for (const event of [
      { message: 'The server had an error', type: 'server_error', param: null, code: null },
      { error: { message: 'The server had an error', type: 'server_error', param: null, code: null } },
    ]) {
      const result = parseStreamChunk(event, context);
      expect(result.kind === 'error' && result.error).toMatchObject({
        kind: 'stream',
        scope: 'model',
        retryable: true,
        errorType: 'server_error',
      });
    }
  });

  it('an in-band context-length error is request-scoped', () => {
    const result = parseStreamChunk(
      { error: { code: 400, message: 'x', metadata: { error_type: 'context_length_exceeded' } }, choices: [] },
      context,
    );
    expect(result.kind === 'error' && result.error).toMatchObject({ kind: 'stream', scope: 'request', retryable: false });
  });

  it('anything that is not a chunk → MalformedResponseError (model scope, retryable)', () => {
    for (const event of ['text', 3, null, [], { id: 'gen-1' }, { choices: 'nope' }, { choices: ['nope'] }]) {
      const result = parseStreamChunk(event, context);
      expect(result.kind).toBe('error');
      if (result.kind === 'error') {
        expect(result.error).toBeInstanceOf(MalformedResponseError);
        expect(result.error).toMatchObject({ scope: 'model', retryable: true, keyLabel: 'alpha' });
      }
    }
  });

  it('advanceStream keeps the first finish_reason and the last non-null usage', () => {
    const steps = [
      chunk({ delta: { content: 'a' } }),
      chunk({ finish_reason: 'stop' }, { usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }),
      chunk({}, { usage: null }),
      chunk({}, { usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }),
    ];
    let progress: StreamProgress = {};
    for (const step of steps) {
      const result = parseStreamChunk(step, context);
      if (result.kind === 'content') progress = advanceStream(progress, result);
    }
    expect(progress.finishReason).toBe('stop');
    expect(progress.usage?.totalTokens).toBe(3);
  });
});

describe('parseUsage', () => {
  it('camel-cases usage and reads the token details', () => {
    expect(
      parseUsage({
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        cost: 0.25,
        prompt_tokens_details: { cached_tokens: 4 },
        completion_tokens_details: { reasoning_tokens: 2 },
      }),
    ).toEqual({ promptTokens: 10, completionTokens: 5, totalTokens: 15, cost: 0.25, cachedTokens: 4, reasoningTokens: 2 });
  });

  it('fills a missing total and rejects what has no token counts', () => {
    expect(parseUsage({ prompt_tokens: 2, completion_tokens: 3 })).toEqual({ promptTokens: 2, completionTokens: 3, totalTokens: 5 });
    expect(parseUsage(null)).toBeUndefined();
    expect(parseUsage({ cost: 1 })).toBeUndefined();
    expect(parseUsage('usage')).toBeUndefined();
  });

  it('is unknown when a token count is negative, fractional or past the safe integers; a bad detail or cost is left out', () => {
    // Billed tokens correct the token quota windows: a negative count would open them, an
    // overflowing sum (Infinity) close them for good. The estimate stands instead.
    expect(parseUsage({ prompt_tokens: -1_000_000, completion_tokens: 1, total_tokens: -999_999 })).toBeUndefined();
    expect(parseUsage({ prompt_tokens: 1e308, completion_tokens: 1e308 })).toBeUndefined();
    expect(parseUsage({ prompt_tokens: 2.5, completion_tokens: 3 })).toBeUndefined();
    expect(parseUsage({ prompt_tokens: 2, completion_tokens: '3', total_tokens: 'many' })).toBeUndefined();
    expect(
      parseUsage({ prompt_tokens: 2, completion_tokens: 3, total_tokens: null, cost: -2, prompt_tokens_details: { cached_tokens: -1 } }),
    ).toEqual({
      promptTokens: 2,
      completionTokens: 3,
      totalTokens: 5,
    });
  });
});

describe('parseCompletionBody', () => {
  it('chat-nonstream-usage: content, provider and full usage', () => {
    const result = parseCompletionBody(loadFixture('chat-nonstream-usage').response.body, context);
    expect(result.kind).toBe('completion');
    if (result.kind !== 'completion') return;
    expect(result.completion).toMatchObject({
      id: 'gen-1779495970-M9voyAGpwmt8qwVUWJeX',
      model: 'z-ai/glm-4.6',
      provider: 'AtlasCloud',
      content: '\nok',
      finishReason: 'stop',
      usage: { promptTokens: 16, completionTokens: 2, totalTokens: 18, cost: 1.4e-5, cachedTokens: 0, reasoningTokens: 0 },
    });
    expect(result.completion).not.toHaveProperty('reasoning');
  });

  it('chat-nonstream-model-fallback: the model that answered, not the one requested', () => {
    const result = parseCompletionBody(loadFixture('chat-nonstream-model-fallback').response.body, context);
    expect(result.kind === 'completion' && result.completion).toMatchObject({
      model: 'x-ai/grok-4',
      provider: 'xAI',
      usage: { promptTokens: 687, completionTokens: 240, totalTokens: 927, cachedTokens: 682, reasoningTokens: 165 },
    });
  });

  it('a 200 body that is only {error} → the typed error of its code', () => {
    const result = parseCompletionBody(
      errorBody({ code: 502, message: 'Provider returned error', metadata: { provider_name: 'Acme', raw: 'boom' } }),
      context,
    );
    expect(result.kind === 'error' && result.error).toBeInstanceOf(UpstreamError);
    expect(result.kind === 'error' && result.error.message).toBe('502 Provider returned error (Acme): boom');
    const rateLimited = parseCompletionBody({ error: { code: 429, message: 'Rate limit exceeded' } }, context);
    expect(rateLimited.kind === 'error' && rateLimited.error).toMatchObject({ kind: 'rate_limit', scope: 'model' });
  });

  it('choices[0].finish_reason "error" with choices[0].error → typed error', () => {
    const body = {
      id: 'gen-2',
      model: 'm',
      choices: [{ finish_reason: 'error', error: { code: 503, message: 'overloaded' }, message: { content: '' } }],
    };
    const result = parseCompletionBody(body, context);
    expect(result.kind === 'error' && result.error).toMatchObject({ kind: 'upstream', scope: 'model', retryable: true, code: 503 });
  });

  it('content that is neither text, nor null, nor text parts → MalformedResponseError, never an empty success', () => {
    for (const content of [42, { a: 1 }, ['part'], true]) {
      const result = parseCompletionBody({ id: 'gen-3', choices: [{ finish_reason: 'stop', message: { content } }] }, context);
      expect(result.kind === 'error' && result.error, JSON.stringify(content)).toBeInstanceOf(MalformedResponseError);
    }
    const toolCallsOnly = parseCompletionBody(
      { id: 'gen-3', choices: [{ finish_reason: 'tool_calls', message: { content: null, tool_calls: [{ id: 't1' }] } }] },
      context,
    );
    expect(toolCallsOnly).toMatchObject({ kind: 'completion', completion: { content: '', toolCalls: [{ id: 't1' }] } });
    const parts = [
      { type: 'text', text: 'Hello, ' },
      { type: 'image_url', image_url: { url: 'data:' } },
      { type: 'text', text: 'world' },
    ];
    const fromParts = parseCompletionBody({ id: 'gen-3', choices: [{ finish_reason: 'stop', message: { content: parts } }] }, context);
    expect(fromParts).toMatchObject({ kind: 'completion', completion: { content: 'Hello, world' } });
  });

  it('garbage → MalformedResponseError', () => {
    for (const body of ['not json', '[]', '{"choices": []}', { choices: [{ finish_reason: 'stop' }] }, 5, null]) {
      const result = parseCompletionBody(body, context);
      expect(result.kind === 'error' && result.error, JSON.stringify(body)).toBeInstanceOf(MalformedResponseError);
    }
  });
});

describe('odd cooldowns and quota headers (found in an audit)', () => {
  it('cooldownMs 0: a long run of failed probes never makes the breaker NaN', () => {
    const breaker = new Breaker({
      ...defaultBreakerPolicy,
      consecutiveFailures: 1,
      cooldownMs: 0,
      cooldownMultiplier: 2,
      maxCooldownMs: 1000,
    });
    let now = 0;
    for (let index = 0; index < 1_100; index++) {
      breaker.fail(now);
      expect(Number.isNaN(breaker.openUntil)).toBe(false);
      now += 1;
      breaker.advance(now);
    }
    expect(breaker.state).toBe('half-open');
  });

  it('a model breaker whose cooldown would overflow does not spin the health refresh timer', async () => {
    const pool = createPool({
      keys: [{ key: 'sk-test-1', label: 'k1' }],
      transport: () => {
        throw new Error('unused');
      },
      modelBreaker: { consecutiveFailures: 1, cooldownMs: 0, cooldownMultiplier: 1e200, maxCooldownMs: 1_000 },
    });
    const error = new UpstreamError({ message: '503 down', scope: 'model', retryable: true, status: 503 });
    for (let index = 0; index < 3; index++) {
      pool[POOL_PORT].record({ type: 'failure', keyLabel: 'k1', model: 'm', error });
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const watch = watchTimers();
    await new Promise((resolve) => setTimeout(resolve, 50));
    watch.stop();
    const model = pool.snapshot().models[0]!;
    pool.dispose();
    expect(Number.isNaN(model.cooldownUntil)).toBe(false);
    expect(watch.delays.length).toBeLessThan(10);
  });

  it('X-RateLimit-Remaining stays finite and within the limit', () => {
    const remainingOf = (value: string) =>
      classifyHttpError({
        status: 429,
        headers: { 'x-ratelimit-limit': '10', 'x-ratelimit-reset': String(NOW + 1000), 'x-ratelimit-remaining': value },
        body: '',
        nowMs: NOW,
      }).rateLimit?.remaining;
    // A number past what a double holds is no count at all; one above the limit is the limit.
    expect(remainingOf('9'.repeat(400))).toBeUndefined();
    expect(remainingOf('15')).toBe(10);
    expect(remainingOf('3')).toBe(3);
  });
});
