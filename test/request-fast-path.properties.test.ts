/**
 * Differential property: the request pre-check (`requestFastPath`) never accepts what the zod
 * schema refuses, for the wire request (at most 3 `models`) and for `balance`'s request (any chain
 * length). Requests are drawn from every schema field with valid and invalid values, plus unknown
 * fields; the test also shows the pre-check is not vacuous: it takes the common requests.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chatRequestSchema, MAX_FALLBACK_MODELS } from '../src/core/request.js';
import { requestFastPath } from '../src/core/request-fast-path.js';
import { safeParseEnglish } from '../src/core/validation.js';
import { balancedRequestSchema } from '../src/routing/balanced-request.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 3_000);
const SEED = Number(process.env['PROPERTY_SEED'] ?? 20_261_204);

const oddValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(0, 0.5, 1, 1.5, 2, 2.5, -0.1, Number.NaN, Infinity, 2 ** 60, 12.5),
  fc.constantFrom('', ' ', 'openai/gpt-4o', 'a b', 'x\ty', 'anthropic/claude:free'),
  fc.constant([]),
  fc.constant({}),
  fc.constant(['openai/gpt-4o']),
);

const slug = fc.oneof(
  { arbitrary: fc.constantFrom('openai/gpt-4o', 'anthropic/claude-3.5-sonnet:beta', 'meta/llama:free'), weight: 6 },
  { arbitrary: fc.constantFrom('', 'has space', 'tab\tbed'), weight: 1 },
);
const models = fc.array(slug, { minLength: 0, maxLength: 5 });

/** Mostly absent, sometimes present: a field the pre-check leaves to the schema. */
const rarely = <T>(value: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, { arbitrary: value, weight: 1 });

const message = fc.record(
  {
    role: fc.oneof(
      { arbitrary: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool'), weight: 6 },
      { arbitrary: fc.constantFrom('robot', undefined), weight: 1 },
    ),
    content: fc.oneof(
      { arbitrary: fc.string(), weight: 6 },
      { arbitrary: fc.constantFrom(null, undefined, 3, [{ type: 'text', text: 'hi' }]), weight: 1 },
    ),
    name: fc.oneof({ arbitrary: fc.string(), weight: 6 }, { arbitrary: fc.integer(), weight: 1 }),
    tool_call_id: fc.oneof({ arbitrary: fc.string(), weight: 6 }, { arbitrary: fc.constant(7), weight: 1 }),
    tool_calls: rarely(fc.constant([{ id: 'call_1' }])),
    extra: fc.string(),
  },
  { requiredKeys: ['role', 'content'] },
);

/** Mostly a valid value, sometimes anything: both sides of every check get drawn. */
const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: oddValue, weight: 1 });

const request = fc.record(
  {
    id: mostly(fc.string()),
    model: mostly(slug),
    models: mostly(models),
    messages: mostly(fc.array(message, { minLength: 1, maxLength: 3 })),
    stream: mostly(fc.boolean()),
    max_tokens: mostly(fc.integer({ min: 1, max: 10_000 })),
    max_completion_tokens: mostly(fc.integer({ min: 1, max: 10_000 })),
    temperature: mostly(fc.double({ min: 0, max: 2, noNaN: true })),
    top_p: mostly(fc.double({ min: 0, max: 1, noNaN: true })),
    top_k: rarely(oddValue),
    seed: mostly(fc.integer()),
    user: mostly(fc.string()),
    session_id: mostly(fc.string()),
    provider: rarely(fc.oneof(fc.constant({ sort: 'price' }), fc.constant({ sortt: 'price' }), oddValue)),
    tools: rarely(oddValue),
    unknown_field: oddValue,
  },
  { requiredKeys: ['messages', 'model'] },
);

const common = fc.record({
  model: fc.constantFrom('openai/gpt-4o', 'meta/llama:free'),
  messages: fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'assistant'), content: fc.string() }), {
    minLength: 1,
    maxLength: 4,
  }),
  max_tokens: fc.integer({ min: 1, max: 4096 }),
  temperature: fc.double({ min: 0, max: 2, noNaN: true }),
  stream: fc.boolean(),
});

const cases = [
  { name: 'the wire request', schema: chatRequestSchema, maxModels: MAX_FALLBACK_MODELS },
  { name: "balance's request", schema: balancedRequestSchema, maxModels: Infinity },
] as const;

describe.each(cases)('request pre-check, $name', ({ schema, maxModels }) => {
  const certainlyValid = requestFastPath(Object.keys(schema.def.shape), maxModels);

  it('never accepts a request the schema refuses', () => {
    let accepted = 0;
    fc.assert(
      fc.property(request, (candidate) => {
        if (!certainlyValid(candidate)) return true;
        accepted++;
        const parsed = safeParseEnglish(schema, candidate);
        return parsed.success;
      }),
      { numRuns: RUNS, seed: SEED },
    );
    // The property is not vacuous: a fair share of the drawn requests took the fast path.
    expect(accepted).toBeGreaterThan(RUNS / 50);
  });

  it('takes the common requests (plain messages, the usual sampling fields) without the schema', () => {
    fc.assert(
      fc.property(common, (candidate) => certainlyValid(candidate) && safeParseEnglish(schema, candidate).success),
      { numRuns: 500, seed: SEED },
    );
  });

  it('leaves to the schema what it does not check for sure', () => {
    const base = { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
    expect(certainlyValid(base)).toBe(true);
    expect(certainlyValid({ ...base, provider: { sort: 'price' } })).toBe(false);
    expect(certainlyValid({ ...base, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] })).toBe(false);
    expect(certainlyValid({ ...base, temperature: 3 })).toBe(false);
    // A chain with holes: `every` would skip them, zod reads them as undefined and refuses.
    const holes = { ...base, models: new Array<string>(2) };
    expect(certainlyValid(holes)).toBe(false);
    expect(safeParseEnglish(schema, holes).success).toBe(false);
    const hidden = { ...base };
    Object.defineProperty(hidden, 'top_k', { value: -1, enumerable: false });
    expect(certainlyValid(hidden), 'a non-enumerable schema field is read as zod reads it').toBe(false);
    expect(safeParseEnglish(schema, hidden).success).toBe(false);
  });
});
