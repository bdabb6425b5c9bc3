/**
 * Configs that can only fail are refused where they are given, with the field named: a header-bound
 * string that no HTTP header can carry, a `baseURL` that is not http(s), a key that is blank or
 * holds whitespace. A key's surrounding whitespace (a key file's newline) is trimmed, and a custom
 * `random` source is clamped to [0, 1) rather than trusted.
 */
import { asyncScheduler, lastValueFrom, of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  BadRequestError,
  ValidationError,
  attemptTimeouts,
  balance,
  circuitBreaker,
  createKeyPool,
  createFetchTransport,
  createOpenRouterTransport,
  fallbackOnModelError,
  fetchKeyInfo,
  type ChatRequest,
  type KeyPool,
  type KeyPoolOptions,
  retryOnRateLimit,
  retryTransient,
  withKeyRotation,
  type Transport,
} from '../src/index.js';
import { resolvePoolConfig } from '../src/pool/config.js';
import { Registry } from '../src/pool/registry.js';
import { createMemoryStore } from '../src/store/state-store.js';
import { fingerprintOf } from '../src/core/fingerprint.js';
import { strategyNames } from '../src/pool/strategies.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const KEY = TEST_KEYS.paddedNewline;
const OTHER = TEST_KEYS.paddedSpace;

/** Answers every attempt at once. */
const answering: Transport = (_key, request) =>
  of({ type: 'completion', completion: { id: 'gen-1', model: request.model ?? 'm/a', content: 'ok', finishReason: 'stop', raw: {} } });

function rejectionOf(create: () => unknown): ValidationError {
  let thrown: unknown;
  try {
    create();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ValidationError);
  const error = thrown as ValidationError;
  expect(leakedKeyLabels(`${error.message} ${JSON.stringify(error.issues)}`), 'key text in a validation error').toEqual([]);
  return error;
}

const pool = (options: Partial<KeyPoolOptions>) => () => createKeyPool({ keys: [{ key: KEY }], ...options });

describe('createKeyPool refuses what is no config at all, at the root', () => {
  it.each([null, undefined, 42, 'a key alone'])('%s', (options) => {
    // It said `keys: expected array, received undefined`, as if a config had forgotten its keys.
    expect(rejectionOf(() => createKeyPool(options as unknown as KeyPoolOptions)).message).toMatch(
      /^Invalid key pool config: \(root\): Invalid input: expected object, received (null|undefined|number|string)$/,
    );
  });
});

describe('createKeyPool refuses header-bound strings no header can carry', () => {
  it.each([
    ['a line break', 'My App\r\nX-Injected: 1'],
    ['a bare newline', 'My App\n'],
    ['text outside Latin-1', 'アプリ'],
    ['a control character', 'My\u0000App'],
  ])('appTitle with %s', (_what, appTitle) => {
    expect(rejectionOf(pool({ appTitle })).message).toMatch(
      /^Invalid key pool config: appTitle: must be Latin-1 text without line breaks or control characters/,
    );
  });

  it('appUrl with a line break or text outside Latin-1', () => {
    expect(rejectionOf(pool({ appUrl: 'https://example.test/\r\nX-Injected: 1' })).message).toMatch(/^Invalid key pool config: appUrl: /);
    expect(rejectionOf(pool({ appUrl: 'https://例え.テスト/' })).message).toMatch(/^Invalid key pool config: appUrl: /);
  });

  it('accepts Latin-1 titles and ordinary URLs', () => {
    expect(() =>
      createKeyPool({ keys: [{ key: KEY }], appTitle: 'Café Überall', appUrl: 'https://example.test/app', transport: answering }).dispose(),
    ).not.toThrow();
  });
});

describe('createKeyPool refuses a baseURL that is not http(s)', () => {
  it.each(['ftp://example.test/api/v1', 'file:///tmp/api', 'mailto:ops@example.test', 'not a url'])('%s', (baseURL) => {
    expect(rejectionOf(pool({ baseURL })).message).toBe('Invalid key pool config: baseURL: must be an http:// or https:// URL');
  });

  it('accepts http and https', () => {
    for (const baseURL of ['http://127.0.0.1:9/api/v1', 'https://openrouter.ai/api/v1']) {
      expect(() => createKeyPool({ keys: [{ key: KEY }], baseURL, transport: answering }).dispose()).not.toThrow();
    }
  });
});

describe('the transport factories validate their options too', () => {
  it('createOpenRouterTransport: baseURL, attribution headers and default headers', () => {
    expect(rejectionOf(() => createOpenRouterTransport({ baseURL: 'ftp://example.test' })).message).toBe(
      'Invalid transport options: baseURL: must be an http:// or https:// URL',
    );
    expect(rejectionOf(() => createOpenRouterTransport({ appTitle: 'a\nb' })).message).toMatch(/^Invalid transport options: appTitle: /);
    expect(rejectionOf(() => createOpenRouterTransport({ defaultHeaders: { 'X-Team': 'a\r\nb' } })).message).toMatch(
      /^Invalid transport options: defaultHeaders\.X-Team: /,
    );
    expect(rejectionOf(() => createOpenRouterTransport({ defaultHeaders: { 'Bad Name': 'x' } })).message).toMatch(
      /^Invalid transport options: defaultHeaders\.Bad Name: /,
    );
    expect(rejectionOf(() => createOpenRouterTransport({ timeoutMs: 0 })).message).toMatch(/^Invalid transport options: timeoutMs: /);
  });

  it('fetchKeyInfo', () => {
    const credential = Object.defineProperty({ label: 'k', fingerprint: '#k' }, 'key', { value: KEY }) as never;
    expect(rejectionOf(() => fetchKeyInfo(credential, { baseURL: 'ftp://example.test' })).message).toBe(
      'Invalid transport options: baseURL: must be an http:// or https:// URL',
    );
  });

  it('an unknown option (a misspelt baseURL) is refused, naming it, rather than ignored for the default endpoint', () => {
    const misspelt = { baseUrl: '/api/openrouter' } as never;
    expect(rejectionOf(() => createFetchTransport(misspelt)).message).toBe('Invalid transport options: baseUrl: unrecognized key');
    expect(rejectionOf(() => createOpenRouterTransport(misspelt)).message).toBe('Invalid transport options: baseUrl: unrecognized key');
    const credential = Object.defineProperty({ label: 'k', fingerprint: '#k' }, 'key', { value: KEY }) as never;
    expect(rejectionOf(() => fetchKeyInfo(credential, misspelt)).message).toBe('Invalid transport options: baseUrl: unrecognized key');
    expect(() => createFetchTransport({ baseURL: '/api/openrouter', doneGraceMs: 5 })).not.toThrow();
  });
});

describe('keys are trimmed and checked at the edge', () => {
  it('a key with surrounding whitespace is stored, fingerprinted and sent trimmed', async () => {
    const config = resolvePoolConfig({ keys: [{ key: `${KEY}\n` }, { key: `  ${OTHER} ` }], transport: answering });
    expect(config.keys.map((entry) => entry.key === KEY || entry.key === OTHER)).toEqual([true, true]);
    expect(config.keys[0]!.key.length).toBe(KEY.length);
    expect(config.keys[1]!.key.length).toBe(OTHER.length);

    const seen: string[] = [];
    const recording: Transport = (credential, request, options) => {
      seen.push(credential.key);
      return answering(credential, request, options);
    };
    const padded = createKeyPool({ keys: [{ key: `${KEY}\r\n`, label: 'padded' }], transport: recording });
    await lastValueFrom(padded.complete({ model: 'm/a', messages: [{ role: 'user', content: 'hi' }] }));
    expect(seen.length === 1 && seen[0] === KEY, 'the transport received the trimmed key').toBe(true);
    expect(padded.key('padded').fingerprint).toBe(fingerprintOf(KEY));
    padded.dispose();
  });

  it('a key and its whitespace-padded twin are the same key', () => {
    expect(rejectionOf(() => resolvePoolConfig({ keys: [{ key: KEY }, { key: `${KEY} ` }], transport: answering })).message).toBe(
      'Invalid key pool config: keys[1].key: the same key as keys[0]',
    );
  });

  it.each([
    ['only whitespace', ' \n\t '],
    ['empty', ''],
  ])('refuses a key that is %s', (_what, key) => {
    expect(rejectionOf(() => resolvePoolConfig({ keys: [{ key }], transport: answering })).message).toBe(
      'Invalid key pool config: keys[0].key: must not be empty (or only whitespace)',
    );
  });

  it.each([
    ['inner whitespace', `${KEY.slice(0, 20)} ${KEY.slice(20)}`],
    ['a line break inside', `${KEY.slice(0, 20)}\n${KEY.slice(20)}`],
    ['text outside ASCII', `${KEY}é`],
  ])('refuses a key with %s, without echoing it', (_what, key) => {
    expect(rejectionOf(() => resolvePoolConfig({ keys: [{ key }], transport: answering })).message).toBe(
      'Invalid key pool config: keys[0].key: must be printable ASCII without whitespace (it is sent in the Authorization header)',
    );
  });
});

describe('a config error never quotes a key, wherever the config put it', () => {
  const echoed = TEST_KEYS.echoedPrefix;
  const leaksOf = (error: ValidationError) => leakedKeyLabels(`${error.message} ${JSON.stringify(error.issues)}`);

  it('a key where a field name goes (an account named by it, `{ [key]: label }`) is not quoted back', () => {
    const byAccount = rejectionOf(() =>
      resolvePoolConfig({
        keys: [{ key: echoed, label: 'team-a' }],
        accounts: { [echoed]: { rpm: 60 } },
        discoverAccounts: false,
        transport: answering,
      }),
    );
    expect(byAccount.message).toMatch(/^Invalid key pool config: accounts\.\[key keys\[0\] #[0-9a-f]{6}\]: no key is in account/);
    expect(leaksOf(byAccount)).toEqual([]);
    const asField = rejectionOf(() => resolvePoolConfig({ keys: [{ [echoed]: 'team-a' }], transport: answering }));
    expect(asField.message).toContain('[key-shaped text]');
    expect(leaksOf(asField)).toEqual([]);
  });

  it('a label that is a key (key and label swapped, or a whole key) is refused, unquoted: it would be shown everywhere', () => {
    const swapped = rejectionOf(() =>
      resolvePoolConfig({
        keys: [
          { key: KEY, label: OTHER.trim() },
          { key: OTHER, label: 'b' },
        ],
        transport: answering,
      }),
    );
    expect(swapped.message).toBe(
      'Invalid key pool config: keys[0].label: is an API key (labels are shown in health, events and logs): the key goes in `key`, a name of your own in `label`',
    );
    const whole = rejectionOf(() => resolvePoolConfig({ keys: [{ key: 'team-a-secret', label: echoed }], transport: answering }));
    expect(whole.message).toBe(
      'Invalid key pool config: keys[0].label: is an API key (labels are shown in health, events and logs): the key goes in `key`, a name of your own in `label`',
    );
    expect(leaksOf(whole)).toEqual([]);
    // The masked name OpenRouter shows for a key is a fine label.
    expect(resolvePoolConfig({ keys: [{ key: echoed, label: 'sk-or-v1-ab1...890' }], transport: answering }).keys[0]?.label).toBe(
      'sk-or-v1-ab1...890',
    );
  });
});

describe('a custom random source is clamped to [0, 1)', () => {
  const request = { model: 'm/a', messages: [{ role: 'user' as const, content: 'hi' }] };

  for (const strategy of strategyNames) {
    it.each([
      ['1', () => 1],
      ['more than 1', () => 1.5],
      ['a negative number', () => -0.25],
      ['NaN', () => Number.NaN],
    ])(`${strategy}: a random that returns %s still routes every request`, async (_what, random) => {
      const keys = [
        { key: KEY, label: 'a' },
        { key: OTHER, label: 'b' },
        { key: TEST_KEYS.echoedPrefix, label: 'c' },
      ];
      const clamped = createKeyPool({ keys, strategy, random, transport: answering });
      for (let round = 0; round < 3; round++) {
        await expect(lastValueFrom(clamped.complete(request, { rateLimit: false, transient: false }))).resolves.toMatchObject({
          type: 'completion',
        });
      }
      clamped.dispose();
    });
  }

  it('values already in [0, 1) pass unchanged', () => {
    const values = [0, 0.25, 0.999999];
    const config = resolvePoolConfig({ keys: [{ key: KEY }], transport: answering, random: () => values.shift()! });
    expect([config.random(), config.random(), config.random()]).toEqual([0, 0.25, 0.999999]);
  });
});

describe('the operators refuse a pool argument that is no pool, naming it', () => {
  it.each([undefined, null, {}, 'pool'])('%s', (notAPool) => {
    for (const [name, make] of [
      ['balance', () => balance(notAPool as KeyPool)],
      ['withKeyRotation', () => withKeyRotation(notAPool as KeyPool)],
    ] as const) {
      expect(rejectionOf(make).message).toBe(`Invalid ${name} arguments: pool: expected a key pool made by createKeyPool`);
    }
  });
});

describe("balance checks its retry operators' settings too", () => {
  const answeringPool = () => createKeyPool({ keys: [{ key: KEY }], transport: answering, discoverAccounts: false });

  it('a typo in a nested setting is refused, naming it', () => {
    const target = answeringPool();
    const error = rejectionOf(() => balance(target, { transient: { maxAtempts: 5 } as never }));
    expect(error.message).toContain('transient');
    expect(error.message).toContain('maxAtempts');
    target.dispose();
  });

  it('bounds that can only give up at once, or retry without a pause, are refused, naming the field', () => {
    const target = answeringPool();
    expect(rejectionOf(() => balance(target, { rateLimit: { maxWaitMs: -1 } })).message).toContain('rateLimit.maxWaitMs');
    expect(rejectionOf(() => balance(target, { fallback: { maxAttempts: 0 } })).message).toContain('fallback.maxAttempts');
    expect(rejectionOf(() => balance(target, { transient: { baseDelayMs: Number.NaN } })).message).toContain('transient.baseDelayMs');
    expect(rejectionOf(() => balance(target, { transient: { budget: { ratio: 2 } } })).message).toContain('transient.budget');
    // What is right passes.
    expect(() =>
      balance(target, { rateLimit: { maxAttempts: 2, maxWaitMs: 0 }, transient: { budget: false }, fallback: false }),
    ).not.toThrow();
    target.dispose();
  });

  it('a strategy that is no name, Strategy or function is refused by balance and withKeyRotation, naming the field', () => {
    const target = answeringPool();
    for (const strategy of ['nope', 42, { name: 'no pick' }]) {
      for (const [owner, build] of [
        ['balance options', () => balance(target, { strategy: strategy as never })],
        ['withKeyRotation options', () => withKeyRotation(target, { strategy: strategy as never })],
      ] as const) {
        const error = rejectionOf(build);
        expect(error.name).toBe('ValidationError');
        expect(error.message).toMatch(new RegExp(`^Invalid ${owner}: strategy: `));
      }
    }
    expect(() => balance(target, { strategy: 'leastInFlight' })).not.toThrow();
    expect(() => withKeyRotation(target, { strategy: (eligible) => eligible[0] })).not.toThrow();
    target.dispose();
  });

  it('each operator composed by hand checks its own options as balance does: NaN, a bound that can only fail, a typo, a wrong type', () => {
    const target = answeringPool();
    const refusals: ReadonlyArray<readonly [string, string, () => unknown]> = [
      ['retryTransient options', 'maxAttempts', () => retryTransient({ maxAttempts: Number.NaN })],
      ['retryTransient options', 'maxAtempts', () => retryTransient({ maxAtempts: 3 } as never)],
      ['retryTransient options', 'budget.ratio', () => retryTransient({ budget: { ratio: 2 } })],
      ['retryOnRateLimit options', 'maxAttempts', () => retryOnRateLimit({ maxAttempts: -1 })],
      ['retryOnRateLimit options', 'onMidStreamError', () => retryOnRateLimit({ onMidStreamError: 'retry' as never })],
      ['fallbackOnModelError options', 'maxAttempts', () => fallbackOnModelError({ maxAttempts: 0 })],
      ['attemptTimeouts options', 'totalMs', () => attemptTimeouts({ totalMs: 0 })],
      ['attemptTimeouts options', 'firstTokenMs', () => attemptTimeouts({ firstTokenMs: Number.NaN })],
      ['attemptTimeouts options', 'total', () => attemptTimeouts({ total: 5 } as never)],
      ['attemptTimeouts options', 'scheduler', () => attemptTimeouts({ scheduler: {} as never })],
      ['withKeyRotation options', 'queueTimeoutMs', () => withKeyRotation(target, { queueTimeoutMs: Number.NaN })],
      ['withKeyRotation options', 'serverFallbacks', () => withKeyRotation(target, { serverFallbacks: 5 as never })],
      ['withKeyRotation options', 'priority', () => withKeyRotation(target, { priority: 'hi' as never })],
      ['withKeyRotation options', 'timeouts.totalMs', () => withKeyRotation(target, { timeouts: { totalMs: -1 } })],
      ['circuitBreaker options', 'shouldRecord', () => circuitBreaker(target, { shouldRecord: 5 as never })],
    ];
    for (const [owner, field, build] of refusals) {
      const error = rejectionOf(build);
      expect(error.name).toBe('ValidationError');
      expect(error.message).toMatch(new RegExp(`^Invalid ${owner}: ${field.replace('.', '\\.')}: `));
    }
    // What is right passes, a scheduler and the mid-stream mode included.
    expect(() =>
      retryTransient({ maxAttempts: 3, baseDelayMs: 0, budget: false, onMidStreamError: 'restart', scheduler: asyncScheduler }),
    ).not.toThrow();
    expect(() => retryOnRateLimit({ maxAttempts: 2, maxWaitMs: 0 })).not.toThrow();
    expect(() => attemptTimeouts({ totalMs: 1_000, scheduler: asyncScheduler })).not.toThrow();
    expect(() => withKeyRotation(target, { priority: () => 1, serverFallbacks: 2, timeouts: { firstTokenMs: 500 } })).not.toThrow();
    expect(() => circuitBreaker(target, { shouldRecord: () => true })).not.toThrow();
    target.dispose();
  });
});

describe('settings that contradict each other, or a request that is not one', () => {
  it('a cap on the hint-less 429 park below its first step is refused, naming the field', () => {
    expect(rejectionOf(pool({ maxRateLimitCooldownMs: 500 })).message).toMatch(
      /maxRateLimitCooldownMs: 500 must not be below rateLimitCooldownMs \(1000\)/,
    );
    expect(() =>
      pool({ rateLimitCooldownMs: 500, maxRateLimitCooldownMs: 500, transport: answering, discoverAccounts: false })().dispose(),
    ).not.toThrow();
  });

  it('an option that may be Infinity says so when it is wrong (not "null", as JSON spells Infinity)', () => {
    const target = pool({ transport: answering, discoverAccounts: false })();
    try {
      expect(() => balance(target, { concurrency: 1.5 })).toThrow(/concurrency: .*expected one of Infinity/);
    } finally {
      target.dispose();
    }
  });

  it("a breaker's cooldown above its cap is refused, naming the field, rather than quietly capped", () => {
    expect(rejectionOf(pool({ breaker: { cooldownMs: 60_000, maxCooldownMs: 1_000 } })).message).toMatch(
      /breaker\.maxCooldownMs: 1000 must not be below cooldownMs \(60000\)/,
    );
    expect(rejectionOf(pool({ modelBreaker: { cooldownMs: 60_000 } })).message).toMatch(
      /modelBreaker\.maxCooldownMs: its default \(30000\) must not be below cooldownMs \(60000\)/,
    );
    expect(() =>
      pool({ breaker: { cooldownMs: 60_000, maxCooldownMs: 60_000 }, transport: answering, discoverAccounts: false })().dispose(),
    ).not.toThrow();
  });

  it('limits for an account no key is in, with no key info to name accounts, are refused as the typo they are', () => {
    const keys = [{ key: KEY, account: 'team-a' }];
    expect(rejectionOf(pool({ keys, accounts: { 'team-b': { rpm: 10 } }, discoverAccounts: false })).message).toContain(
      'accounts.team-b: no key is in account "team-b"',
    );
    // With key info, accounts it names are known only later: they pass.
    expect(() => pool({ keys, accounts: { user_x: { rpm: 10 } }, transport: answering })().dispose()).not.toThrow();
  });

  it('pool.model() given a string that is no model slug throws a RangeError, without echoing it, and makes no record', () => {
    const target = pool({ transport: answering, discoverAccounts: false })();
    try {
      for (const junk of ['', 'bad model id', `${KEY} pasted`]) {
        expect(() => target.model(junk)).toThrow(RangeError);
      }
      let message = '';
      try {
        target.model(`${KEY} pasted`);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/^pool\.model: expected a model slug/);
      expect(message).not.toContain(KEY);
      expect(target.snapshot().models).toEqual([]);
      expect(() => target.model('openai/gpt-4o:nitro')).not.toThrow();
    } finally {
      target.dispose();
    }
  });

  it('pool.complete() and stream() given no request fail with the BadRequestError balance gives, not a TypeError', async () => {
    const target = createKeyPool({ keys: [{ key: KEY }], transport: answering, discoverAccounts: false });
    const error = await lastValueFrom(target.complete(undefined as never)).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(BadRequestError);
    const streamed = await lastValueFrom(target.stream(null as never)).catch((thrown: unknown) => thrown);
    expect(streamed).toBeInstanceOf(BadRequestError);
    target.dispose();
  });

  it('a chain composed by hand fails a request that is not one with the BadRequestError balance gives, naming the field, once, and sends nothing', async () => {
    let sent = 0;
    const counting: Transport = (key, request, options) => {
      sent++;
      return answering(key, request, options);
    };
    const target = createKeyPool({ keys: [{ key: KEY }], transport: counting, discoverAccounts: false });
    const rotation = withKeyRotation(target);
    const transient = retryTransient({ baseDelayMs: 0 });
    const limited = retryOnRateLimit();
    const outcomeOf = (request: unknown) =>
      lastValueFrom(of(request as ChatRequest).pipe(rotation, limited, transient)).catch((thrown: unknown) => thrown);
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [{ model: 'm/a' }, 'messages'],
      [{ model: 'm/a', messages: [{ role: 'user', content: 'hi' }], temperature: 99 }, 'temperature'],
      [{ model: 'm/a', messages: [{ role: 'user', content: 'hi' }], max_tokens: -1 }, 'max_tokens'],
      [null, '(root)'],
    ];
    for (const [request, field] of cases) {
      const error = await outcomeOf(request);
      expect(error).toBeInstanceOf(BadRequestError);
      expect(error).toMatchObject({ scope: 'request', retryable: false });
      expect((error as BadRequestError).message).toMatch(new RegExp(`^Invalid request: .*${field.replace(/[()]/g, '\\$&')}`));
    }
    expect(sent).toBe(0);
    expect(target.snapshot().keys[0]).toMatchObject({ state: 'closed', failures: 0 });
    // A request that is one goes through, an empty chain included (`{ ...request, model, models }` with no fallback).
    expect(await outcomeOf({ model: 'm/a', messages: [{ role: 'user', content: 'hi' }] })).toMatchObject({ type: 'completion' });
    expect(await outcomeOf({ model: 'm/a', models: [], messages: [{ role: 'user', content: 'hi' }] })).toMatchObject({
      type: 'completion',
    });
    target.dispose();
  });
});

describe('account ids that hold a colon', () => {
  it("a model scope's id names its own account, not one whose id begins the same way (`a` and `a:b`)", () => {
    const config = resolvePoolConfig({
      keys: [
        { key: KEY, account: 'a' },
        { key: OTHER, account: 'a:b' },
      ],
      transport: answering,
    });
    const registry = new Registry(config, createMemoryStore(), asyncScheduler);
    const [inA, inAB] = ['a', 'a:b'].map((id) => registry.keys.find((entry) => entry.account.id === id)!.account);
    // Another pool on the store names `a:b`'s free-model scope: it is `a:b`'s, made on first mention ...
    expect(registry.scopeById('model:a:b:*:free')).toBe(inAB!.modelScope('*:free'));
    // ... and `a`'s own scope of a pattern that holds a colon is found as `a`'s once it exists.
    const ofA = inA!.modelScope('b:x');
    expect(registry.scopeById('model:a:b:x')).toBe(ofA);
    expect(inAB!.modelScopeEntries.has('x')).toBe(false);
  });
});
