/**
 * Property tests of the key pool under `balance`, on virtual time: a fake transport (cold
 * observables on a TestScheduler) answers every attempt with an outcome drawn by fast-check, and
 * the invariants below must hold whatever the pool shape, limits, strategy and outcomes:
 *
 * (a) every request gets exactly one terminal event (`completion` or `failed`), none is lost or
 *     duplicated, and the output completes;
 * (b) once everything ended, no key or model has an attempt in flight and the queue is empty;
 * (c) no key, account or model limit is exceeded: attempts per window against its quota, and
 *     attempts at once against its `maxConcurrent`;
 * (d) no attempt goes to a key whose published health is `open`, `disabled` or `exhausted` (a
 *     half-open key takes probes), nor to an `open` model;
 * and: `health$` never repeats a snapshot, unsubscribing from `balance` frees everything, runs
 * leave no timer behind. Outcomes are answered after a drawn delay or synchronously, and the
 * strategy, retries, timeouts, priorities, queue bounds and fallback chains are drawn too.
 *
 * Every run is deterministic (virtual time, seeded random, a fixed fast-check seed); a failure
 * prints its shrunk scenario. PROPERTY_RUNS=2000 runs more cases, PROPERTY_SEED=n other ones.
 */
import fc from 'fast-check';
import { Observable, from, map, mergeMap, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  BadRequestError,
  InsufficientCreditsError,
  KeyLimitError,
  NetworkError,
  RateLimitError,
  UpstreamError,
  balance,
  createMemoryStore,
  createPool,
  type BalanceEvent,
  type BalanceOptions,
  type ChatRequest,
  type KeyPool,
  type KeyPoolInput,
  type OpenRouterError,
  type PoolEvent,
  type Strategy,
  type StrategyName,
  type Transport,
  type TransportEvent,
} from '../src/index.js';
import { TEST_KEYS } from './helpers/test-keys.js';
import { seededRandom } from './helpers/seeded-random.js';

const KEYS = [TEST_KEYS.prop1, TEST_KEYS.prop2, TEST_KEYS.prop3, TEST_KEYS.prop4, TEST_KEYS.prop5, TEST_KEYS.prop6];
const MODELS = ['test/m1', 'test/m2'] as const;
/** Virtual time after which a run counts as stuck (timers still pending). */
const HORIZON_MS = 6 * 3_600_000;
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 100);
const SEED = Number(process.env['PROPERTY_SEED'] ?? 20_241_124);

// ------------------------------------------------------------------------------------------ model

type OutcomeKind =
  | 'success'
  | 'rate-limit-hint'
  | 'rate-limit'
  | 'upstream-500'
  | 'network'
  | 'auth-401'
  | 'credits-402'
  | 'key-limit-403'
  | 'bad-request-400'
  | 'mid-stream-error'
  /** Never answers: only an attempt timeout (or the caller) ends it. */
  | 'silent';

interface Outcome {
  kind: OutcomeKind;
  /** Virtual ms before the transport answers. */
  delayMs: number;
  /** The wait hint of a `rate-limit-hint` 429. */
  retryAfterMs: number;
  /** Which scope a 429 names: the key, its account (free-model bucket) or the model (upstream). */
  rateLimitScope: 'key' | 'account' | 'model';
  /** Answer synchronously, inside the transport's subscribe (as `of(...)`/`throwError` fakes do). */
  sync: boolean;
}

interface Quota {
  requests: number;
  windowMs: number;
}

interface LimitsShape {
  quota: Quota | undefined;
  maxConcurrent: number | undefined;
}

interface KeyShape extends LimitsShape {
  account: number;
}

/** `rogue`: a user Strategy that returns ineligible keys, even indexes out of range (see `rogueStrategy`). */
type StrategyChoice = StrategyName | 'rogue';

interface ModelLimitShape extends LimitsShape {
  pattern: 'test/m1' | 'test/*';
}

interface Scenario {
  keys: KeyShape[];
  accounts: LimitsShape[];
  modelLimit: ModelLimitShape | undefined;
  strategy: StrategyChoice;
  onMidStreamError: 'error' | 'restart';
  queueMaxSize: number | undefined;
  /** Attempt timeouts; undefined keeps balance's defaults (300 s total, 10 s to a stream's first token). */
  timeouts: { totalMs: number; firstTokenMs: number; idleMs: number } | undefined;
  breaker: { consecutiveFailures: number; cooldownMs: number; halfOpenProbes: number };
  rateLimitCooldownMs: number;
  exhaustedRetryMs: number;
  concurrency: number;
  queueTimeoutMs: number | undefined;
  maxAttemptsPerModel: number;
  rateLimitAttempts: number;
  rateLimitMaxWaitMs: number;
  transientAttempts: number;
  requests: Array<{ at: number; model: number; fallback: boolean; stream: boolean; priority: number }>;
  outcomes: Outcome[];
  seed: number;
  /** Virtual time at which the caller unsubscribes from `balance`, if it does. */
  cancelAt: number | undefined;
}

const quotaArb: fc.Arbitrary<Quota | undefined> = fc.option(
  fc.record({ requests: fc.integer({ min: 1, max: 5 }), windowMs: fc.integer({ min: 50, max: 2_000 }) }),
  { nil: undefined, freq: 2 },
);
const maxConcurrentArb = fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined, freq: 2 });

const outcomeArb: fc.Arbitrary<Outcome> = fc.record({
  kind: fc.oneof(
    { weight: 12, arbitrary: fc.constant<OutcomeKind>('success') },
    { weight: 2, arbitrary: fc.constant<OutcomeKind>('rate-limit-hint') },
    { weight: 2, arbitrary: fc.constant<OutcomeKind>('rate-limit') },
    { weight: 2, arbitrary: fc.constant<OutcomeKind>('upstream-500') },
    { weight: 2, arbitrary: fc.constant<OutcomeKind>('network') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('auth-401') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('credits-402') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('key-limit-403') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('bad-request-400') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('mid-stream-error') },
    { weight: 1, arbitrary: fc.constant<OutcomeKind>('silent') },
  ),
  delayMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 50, max: 3_000 })),
  retryAfterMs: fc.integer({ min: 0, max: 5_000 }),
  rateLimitScope: fc.constantFrom<Outcome['rateLimitScope']>('key', 'key', 'account', 'model'),
  // About one answer in four is synchronous.
  sync: fc.integer({ min: 0, max: 3 }).map((value) => value === 0),
});

const STRATEGIES: StrategyName[] = ['roundRobin', 'weighted', 'leastInFlight', 'powerOfTwo', 'latency'];

/**
 * Pool shapes, limits, traffic and outcomes. `rogue` adds the contract-breaking strategy, for the
 * safety properties only: a Strategy that returns an ineligible key instead of undefined can stall
 * a request, which is its own fault (see `rogueStrategy`).
 */
const scenarioArbWith = ({ rogue }: { rogue: boolean }): fc.Arbitrary<Scenario> =>
  fc.integer({ min: 1, max: 6 }).chain((keyCount) =>
    fc.record({
      keys: fc.array(fc.record({ account: fc.integer({ min: 0, max: 2 }), quota: quotaArb, maxConcurrent: maxConcurrentArb }), {
        minLength: keyCount,
        maxLength: keyCount,
      }),
      accounts: fc.array(fc.record({ quota: quotaArb, maxConcurrent: maxConcurrentArb }), { minLength: 3, maxLength: 3 }),
      modelLimit: fc.option(
        fc.record({
          pattern: fc.constantFrom<ModelLimitShape['pattern']>('test/m1', 'test/*'),
          quota: quotaArb,
          maxConcurrent: maxConcurrentArb,
        }),
        { nil: undefined, freq: 3 },
      ),
      strategy: fc.constantFrom<StrategyChoice>(...STRATEGIES, ...(rogue ? (['rogue'] as const) : [])),
      onMidStreamError: fc.constantFrom<Scenario['onMidStreamError']>('error', 'restart'),
      queueMaxSize: fc.option(fc.integer({ min: 1, max: 10 }), { nil: undefined, freq: 4 }),
      timeouts: fc.option(
        fc.record({
          totalMs: fc.integer({ min: 100, max: 5_000 }),
          firstTokenMs: fc.integer({ min: 50, max: 3_000 }),
          idleMs: fc.integer({ min: 50, max: 3_000 }),
        }),
        { nil: undefined, freq: 2 },
      ),
      breaker: fc.record({
        consecutiveFailures: fc.integer({ min: 1, max: 5 }),
        cooldownMs: fc.integer({ min: 10, max: 3_000 }),
        halfOpenProbes: fc.integer({ min: 1, max: 2 }),
      }),
      rateLimitCooldownMs: fc.integer({ min: 0, max: 2_000 }),
      exhaustedRetryMs: fc.integer({ min: 1, max: 20_000 }),
      concurrency: fc.integer({ min: 1, max: 8 }),
      queueTimeoutMs: fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined, freq: 3 }),
      maxAttemptsPerModel: fc.integer({ min: 1, max: 3 }),
      rateLimitAttempts: fc.integer({ min: 1, max: 5 }),
      rateLimitMaxWaitMs: fc.integer({ min: 1, max: 30_000 }),
      transientAttempts: fc.integer({ min: 1, max: 4 }),
      requests: fc.array(
        fc.record({
          at: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3_000 })),
          model: fc.integer({ min: 0, max: 1 }),
          fallback: fc.boolean(),
          stream: fc.boolean(),
          priority: fc.integer({ min: 0, max: 2 }),
        }),
        { minLength: 1, maxLength: 30 },
      ),
      outcomes: fc.array(outcomeArb, { minLength: 1, maxLength: 60 }),
      seed: fc.integer(),
      cancelAt: fc.constant(undefined),
    }),
  );

const scenarioArb = scenarioArbWith({ rogue: false });
const anyStrategyScenarioArb = scenarioArbWith({ rogue: true });

function limitsOf(shape: LimitsShape): Record<string, unknown> | undefined {
  const limits: Record<string, unknown> = {};
  if (shape.quota !== undefined) limits['quotas'] = [{ requests: shape.quota.requests, windowMs: shape.quota.windowMs }];
  if (shape.maxConcurrent !== undefined) limits['maxConcurrent'] = shape.maxConcurrent;
  return Object.keys(limits).length === 0 ? undefined : limits;
}

function errorOf(outcome: Outcome): OpenRouterError {
  switch (outcome.kind) {
    case 'rate-limit-hint':
    case 'rate-limit': {
      const bucket = outcome.rateLimitScope === 'account' ? 'free-models-per-min' : 'requests-per-key';
      return new RateLimitError({
        message: outcome.rateLimitScope === 'model' ? '429 Provider returned error' : `429 Rate limit exceeded: ${bucket}`,
        scope: outcome.rateLimitScope,
        retryable: true,
        status: 429,
        ...(outcome.kind === 'rate-limit-hint' ? { retryAfterMs: outcome.retryAfterMs } : {}),
      });
    }
    case 'upstream-500':
      return new UpstreamError({ message: '500 Internal Server Error', scope: 'model', retryable: true, status: 500 });
    case 'network':
    case 'mid-stream-error':
      return new NetworkError({ message: 'Connection error: other side closed', scope: 'transport', retryable: true });
    case 'auth-401':
      return new AuthenticationError({ message: '401 User not found.', scope: 'key', retryable: true, status: 401 });
    case 'credits-402':
      return new InsufficientCreditsError({
        message: '402 This request requires more credits',
        scope: 'account',
        retryable: true,
        status: 402,
      });
    case 'key-limit-403':
      return new KeyLimitError({ message: '403 Key limit exceeded (total limit)', scope: 'key', retryable: true, status: 403 });
    case 'bad-request-400':
      return new BadRequestError({ message: '400 Invalid request', scope: 'request', retryable: false, status: 400 });
    case 'success':
    case 'silent':
      throw new Error(`${outcome.kind} is not an error`);
  }
}

// ------------------------------------------------------------------------------------------ run

interface Call {
  label: string;
  account: string;
  model: string;
  at: number;
}

interface RunResult {
  scenario: Scenario;
  pool: KeyPool;
  scheduler: TestScheduler;
  labels: string[];
  accountOfLabel: Map<string, string>;
  calls: Call[];
  events: BalanceEvent[];
  poolEvents: PoolEvent[];
  completed: boolean;
  /** Invariants (c: concurrency, d: health at the call) broken while running, as readable lines. */
  concurrencyViolations: string[];
  healthViolations: string[];
  /** Errors of the output stream itself (it must never error). */
  streamErrors: string[];
  /** Scheduler actions left after the horizon. */
  pendingActions: number;
  /** Transport calls not torn down yet, by key. */
  transportInFlight: Map<string, number>;
  /** `health$` emissions equal to the one before (time aside), as `#index (queued n)`. */
  healthRepeats: string[];
  healthEmissions: number;
}

function patternMatches(pattern: ModelLimitShape['pattern'], model: string): boolean {
  return pattern === 'test/*' ? model.startsWith('test/') : model === pattern;
}

/**
 * A user strategy that breaks the contract where it can do so without stalling requests: while
 * some key is eligible it picks one of them at random, and when none is, it returns an ineligible
 * key (or an index out of range) instead of undefined. The pool must admit only what it would.
 */
function rogueStrategy(random: () => number, keyCount: number): Strategy {
  return {
    name: 'rogue',
    pick(context) {
      const eligible = context.candidates.map((_, index) => index).filter((index) => context.isEligible(index));
      if (eligible.length > 0) return eligible[Math.floor(random() * eligible.length)];
      return Math.floor(random() * (keyCount + 2)) - 1;
    },
  };
}

function run(scenario: Scenario): RunResult {
  const scheduler = new TestScheduler(() => undefined);
  scheduler.maxFrames = HORIZON_MS;
  const random = seededRandom(scenario.seed);
  const labels = scenario.keys.map((_, index) => `k${index + 1}`);
  const accountId = (index: number) => `acct-${index}`;
  const accountOfLabel = new Map(scenario.keys.map((key, index) => [labels[index]!, accountId(key.account)] as const));
  const usedAccounts = [...new Set(scenario.keys.map((key) => key.account))];
  const modelLimit = scenario.modelLimit;

  const calls: Call[] = [];
  const concurrencyViolations: string[] = [];
  const healthViolations: string[] = [];
  const streamErrors: string[] = [];
  const active = new Set<Call>();
  const transportInFlight = new Map<string, number>(labels.map((label) => [label, 0]));
  let outcomeIndex = 0;
  let pool: KeyPool | undefined;

  const checkConcurrency = (call: Call) => {
    const now = call.at;
    const onKey = [...active].filter((other) => other.label === call.label).length;
    const keyCap = scenario.keys[labels.indexOf(call.label)]!.maxConcurrent;
    if (keyCap !== undefined && onKey > keyCap)
      concurrencyViolations.push(`t=${now}: ${onKey} attempts in flight on ${call.label} (maxConcurrent ${keyCap})`);
    const onAccount = [...active].filter((other) => other.account === call.account).length;
    const accountCap = scenario.accounts[Number(call.account.slice('acct-'.length))]!.maxConcurrent;
    if (accountCap !== undefined && onAccount > accountCap) {
      concurrencyViolations.push(`t=${now}: ${onAccount} attempts in flight on account ${call.account} (maxConcurrent ${accountCap})`);
    }
    if (modelLimit?.maxConcurrent !== undefined && patternMatches(modelLimit.pattern, call.model)) {
      const onModel = [...active].filter(
        (other) => other.account === call.account && patternMatches(modelLimit.pattern, other.model),
      ).length;
      if (onModel > modelLimit.maxConcurrent) {
        concurrencyViolations.push(
          `t=${now}: ${onModel} attempts in flight on ${modelLimit.pattern} in ${call.account} (maxConcurrent ${modelLimit.maxConcurrent})`,
        );
      }
    }
  };

  const checkHealth = (call: Call) => {
    const health = pool!.snapshot();
    const keyHealth = health.keys.find((key) => key.label === call.label);
    if (keyHealth === undefined) healthViolations.push(`call on unknown key ${call.label}`);
    else if (keyHealth.state === 'open' || keyHealth.state === 'disabled' || keyHealth.state === 'exhausted') {
      healthViolations.push(
        `t=${call.at}: attempt on ${call.label} while its health is ${keyHealth.state}${keyHealth.openReason ? ` (${keyHealth.openReason})` : ''}`,
      );
    }
    const modelHealth = health.models.find((entry) => entry.model === call.model);
    if (modelHealth?.state === 'open')
      healthViolations.push(`t=${call.at}: attempt on model ${call.model} while it is open (${modelHealth.openReason})`);
  };

  const transport: Transport = (credential, request) =>
    new Observable<TransportEvent>((subscriber) => {
      const model = request.model ?? '';
      const call: Call = { label: credential.label, account: accountOfLabel.get(credential.label)!, model, at: scheduler.now() };
      calls.push(call);
      checkHealth(call);
      active.add(call);
      transportInFlight.set(call.label, transportInFlight.get(call.label)! + 1);
      checkConcurrency(call);

      const outcome = scenario.outcomes[outcomeIndex++ % scenario.outcomes.length]!;
      // The call ends on the server once its last event is out, even if the teardown comes later
      // (it does for a synchronous answer: the consumer reacts to the last event first).
      const end = () => {
        if (active.delete(call)) transportInFlight.set(call.label, transportInFlight.get(call.label)! - 1);
      };
      const answer = () => {
        if (outcome.kind === 'success') {
          const usage = { promptTokens: 5, completionTokens: 3, totalTokens: 8 };
          if (request.stream === true) {
            subscriber.next({ type: 'chunk', delta: '', model });
            subscriber.next({ type: 'chunk', delta: 'hello', model });
            end();
            subscriber.next({ type: 'end', id: `gen-${calls.length}`, model, finishReason: 'stop', usage });
          } else {
            end();
            subscriber.next({
              type: 'completion',
              completion: { id: `gen-${calls.length}`, model, content: 'hello', finishReason: 'stop', usage, raw: null },
            });
          }
          subscriber.complete();
        } else if (outcome.kind === 'mid-stream-error' && request.stream === true) {
          subscriber.next({ type: 'chunk', delta: 'partial', model });
          end();
          subscriber.error(errorOf(outcome));
        } else {
          end();
          subscriber.error(errorOf(outcome));
        }
      };
      if (outcome.kind === 'silent') return end;
      const pending = outcome.sync ? undefined : scheduler.schedule(answer, outcome.delayMs);
      if (outcome.sync) answer();
      return () => {
        pending?.unsubscribe();
        end();
      };
    });

  const accounts: Record<string, Record<string, unknown>> = {};
  for (const account of usedAccounts) {
    const limits = limitsOf(scenario.accounts[account]!);
    if (limits !== undefined) accounts[accountId(account)] = limits;
  }
  const models: Record<string, Record<string, unknown>> = {};
  if (modelLimit !== undefined) {
    const limits = limitsOf(modelLimit);
    if (limits !== undefined) models[modelLimit.pattern] = limits;
  }
  const config = {
    keys: scenario.keys.map((key, index) => {
      const limits = limitsOf(key);
      return {
        key: KEYS[index]!,
        label: labels[index]!,
        account: accountId(key.account),
        ...(limits === undefined ? {} : { limits }),
      };
    }),
    accounts,
    models,
    breaker: { ...scenario.breaker, minimumCalls: 4, windowMs: 10_000, maxCooldownMs: 10_000 },
    modelBreaker: { ...scenario.breaker, minimumCalls: 4, windowMs: 10_000, maxCooldownMs: 10_000 },
    rateLimitCooldownMs: scenario.rateLimitCooldownMs,
    maxRateLimitCooldownMs: 10_000,
    exhaustedRetryMs: scenario.exhaustedRetryMs,
    strategy: scenario.strategy === 'rogue' ? rogueStrategy(random, scenario.keys.length) : scenario.strategy,
    ...(scenario.queueMaxSize === undefined ? {} : { queue: { maxSize: scenario.queueMaxSize } }),
    scheduler,
    random,
    transport,
  } as KeyPoolInput;
  pool = createPool(config);

  const priorities = new Map<string, number>(scenario.requests.map((shape, index) => [`r${index}`, shape.priority]));
  const options: BalanceOptions = {
    concurrency: scenario.concurrency,
    maxAttemptsPerModel: scenario.maxAttemptsPerModel,
    priority: (request) => priorities.get(request.id ?? '') ?? 0,
    onMidStreamError: scenario.onMidStreamError,
    rateLimit: { maxAttempts: scenario.rateLimitAttempts, maxWaitMs: scenario.rateLimitMaxWaitMs },
    transient: { maxAttempts: scenario.transientAttempts, baseDelayMs: 50, maxDelayMs: 1_000, random },
    ...(scenario.queueTimeoutMs === undefined ? {} : { queueTimeoutMs: scenario.queueTimeoutMs }),
    ...(scenario.timeouts === undefined ? {} : { timeouts: scenario.timeouts }),
  };

  const requests: ChatRequest[] = scenario.requests.map((shape, index) => ({
    id: `r${index}`,
    model: MODELS[shape.model]!,
    ...(shape.fallback ? { models: [MODELS[1 - shape.model]!] } : {}),
    ...(shape.stream ? { stream: true } : {}),
    messages: [{ role: 'user', content: `question ${index}` }],
  }));

  const events: BalanceEvent[] = [];
  const poolEvents: PoolEvent[] = [];
  let completed = false;
  pool.events$.subscribe((event) => poolEvents.push(event));
  const healthRepeats: string[] = [];
  let healthEmissions = 0;
  let previousHealth: string | undefined;
  pool.health$.subscribe((snapshot) => {
    const content = JSON.stringify({ ...snapshot, at: undefined });
    if (content === previousHealth) healthRepeats.push(`#${healthEmissions} (queued ${snapshot.queued}, t=${snapshot.at})`);
    previousHealth = content;
    healthEmissions++;
  });
  const subscription = from(requests.map((request, index) => [request, scenario.requests[index]!.at] as const))
    .pipe(
      mergeMap(([request, at]) => timer(at, scheduler).pipe(map(() => request))),
      balance(pool, options),
    )
    .subscribe({
      next: (event) => events.push(event),
      error: (error: unknown) => streamErrors.push(String(error)),
      complete: () => {
        completed = true;
      },
    });
  if (scenario.cancelAt !== undefined) scheduler.schedule(() => subscription.unsubscribe(), scenario.cancelAt);
  scheduler.flush();
  const pendingActions = (scheduler as unknown as { actions: unknown[] }).actions.length;
  return {
    scenario,
    pool,
    scheduler,
    labels,
    accountOfLabel,
    calls,
    events,
    poolEvents,
    completed,
    concurrencyViolations,
    healthViolations,
    streamErrors,
    pendingActions,
    transportInFlight,
    healthRepeats,
    healthEmissions,
  };
}

// ------------------------------------------------------------------------------------------ checks

/** The first window of `windowMs` holding more than `limit` of `times`, or undefined. */
function overfullWindow(times: readonly number[], limit: number, windowMs: number): string | undefined {
  const sorted = [...times].sort((a, b) => a - b);
  for (let i = 0; i + limit < sorted.length; i++) {
    // limit + 1 attempts within less than windowMs: some window of windowMs held them all.
    if (sorted[i + limit]! - sorted[i]! < windowMs) {
      return `${limit + 1} attempts within ${sorted[i + limit]! - sorted[i]!} ms (t=${sorted[i]}..${sorted[i + limit]}), quota ${limit}/${windowMs} ms`;
    }
  }
  return undefined;
}

function quotaProblems(result: RunResult): string[] {
  const { scenario, calls, labels } = result;
  const problems: string[] = [];
  scenario.keys.forEach((key, index) => {
    if (key.quota === undefined) return;
    const label = labels[index]!;
    const overfull = overfullWindow(
      calls.filter((call) => call.label === label).map((call) => call.at),
      key.quota.requests,
      key.quota.windowMs,
    );
    if (overfull !== undefined) problems.push(`key ${label}: ${overfull}`);
  });
  for (const account of new Set(result.accountOfLabel.values())) {
    const onAccount = calls.filter((call) => call.account === account);
    const quota = scenario.accounts[Number(account.slice('acct-'.length))]!.quota;
    if (quota !== undefined) {
      const overfull = overfullWindow(
        onAccount.map((call) => call.at),
        quota.requests,
        quota.windowMs,
      );
      if (overfull !== undefined) problems.push(`account ${account}: ${overfull}`);
    }
    const modelLimit = scenario.modelLimit;
    if (modelLimit?.quota !== undefined) {
      const times = onAccount.filter((call) => patternMatches(modelLimit.pattern, call.model)).map((call) => call.at);
      const overfull = overfullWindow(times, modelLimit.quota.requests, modelLimit.quota.windowMs);
      if (overfull !== undefined) problems.push(`model ${modelLimit.pattern} in ${account}: ${overfull}`);
    }
  }
  return problems;
}

function terminalCounts(result: RunResult): Map<string, number> {
  const counts = new Map<string, number>();
  for (const event of result.events) {
    if (event.type === 'completion' || event.type === 'failed') counts.set(event.requestId, (counts.get(event.requestId) ?? 0) + 1);
  }
  return counts;
}

function leftInFlight(result: RunResult) {
  const snapshot = result.pool.snapshot();
  return {
    keys: snapshot.keys.filter((key) => key.inFlight !== 0).map((key) => `${key.label}:${key.inFlight}`),
    models: snapshot.models.filter((model) => model.inFlight !== 0).map((model) => `${model.model}:${model.inFlight}`),
    transport: [...result.transportInFlight].filter(([, count]) => count !== 0).map(([label, count]) => `${label}:${count}`),
    queued: snapshot.queued,
  };
}

const nothingInFlight = { keys: [], models: [], transport: [], queued: 0 };

function describeRun(result: RunResult): string {
  const failures = result.events.flatMap((event) => (event.type === 'failed' ? [event.error.kind] : []));
  return `calls=${result.calls.length} events=${result.events.length} failures=${JSON.stringify(failures)} pending=${result.pendingActions} at t=${result.scheduler.now()}`;
}

type ScenarioPlugin = NonNullable<fc.Parameters<[Scenario]>['plugins']>[number];

/**
 * A fixed seed: the same scenarios on every run (PROPERTY_SEED explores others). Shrinking a
 * failure is bounded in time, so a failing property still ends within seconds (a passing one
 * takes about a second for 100 runs, far below the limit).
 */
const assertOptions: fc.Parameters<[Scenario]> = {
  numRuns: RUNS,
  seed: SEED,
  plugins: [fc.interruptAfterTimeLimit(5_000) as ScenarioPlugin],
};

describe('pool properties (virtual time, fake transport)', () => {
  it('(a) every request gets exactly one terminal event, and the output completes without error', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const result = run(scenario);
        const counts = terminalCounts(result);
        const ids = scenario.requests.map((_, index) => `r${index}`);
        expect(
          {
            missing: ids.filter((id) => (counts.get(id) ?? 0) === 0),
            duplicated: ids.filter((id) => (counts.get(id) ?? 0) > 1),
            unknown: [...counts.keys()].filter((id) => !ids.includes(id)),
            completed: result.completed,
            streamErrors: result.streamErrors,
          },
          describeRun(result),
        ).toEqual({ missing: [], duplicated: [], unknown: [], completed: true, streamErrors: [] });
        // Nothing for a request after its terminal event.
        const settled = new Set<string>();
        for (const event of result.events) {
          expect(settled.has(event.requestId), `${event.type} after ${event.requestId} settled`).toBe(false);
          if (event.type === 'completion' || event.type === 'failed') settled.add(event.requestId);
        }
      }),
      assertOptions,
    );
  });

  it('(b) in-flight counts return to 0 on every key and model, and the queue empties', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const result = run(scenario);
        expect(leftInFlight(result), describeRun(result)).toEqual(nothingInFlight);
        // The per-key health streams agree with the snapshot.
        for (const label of result.labels) {
          let latest: number | undefined;
          result.pool
            .key(label)
            .health$.subscribe((health) => (latest = health.inFlight))
            .unsubscribe();
          expect(latest, label).toBe(0);
        }
      }),
      assertOptions,
    );
  });

  it('(c) no key, account or model limit is exceeded: quota in any window, maxConcurrent at any time', () => {
    fc.assert(
      fc.property(anyStrategyScenarioArb, (scenario) => {
        const result = run(scenario);
        expect([...result.concurrencyViolations, ...quotaProblems(result)], describeRun(result)).toEqual([]);
      }),
      assertOptions,
    );
  });

  it('(d) no attempt goes to an open, disabled or exhausted key (half-open probes allowed), nor to an open model', () => {
    fc.assert(
      fc.property(anyStrategyScenarioArb, (scenario) => {
        const result = run(scenario);
        expect(result.healthViolations, describeRun(result)).toEqual([]);
        // The pool's own `attempt` events match the transport's calls one to one.
        const attempts = result.poolEvents.flatMap((event) => (event.type === 'attempt' ? [`${event.keyLabel}@${event.at}`] : []));
        expect(attempts).toEqual(result.calls.map((call) => `${call.label}@${call.at}`));
      }),
      assertOptions,
    );
  });

  it('health$ never emits a snapshot equal to the one before it', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const result = run(scenario);
        expect(
          result.healthRepeats.slice(0, 5),
          `${result.healthRepeats.length} of ${result.healthEmissions} repeat; ${describeRun(result)}`,
        ).toEqual([]);
      }),
      assertOptions,
    );
  });

  // Known failure (reported): two equal failures on one key at the same instant (two 403s here;
  // two 429s or 401s do the same) publish a new `lastError` object equal to the last one. Health
  // records compare it by reference, so health$ emits a snapshot equal to the one before.
  it('health$ does not repeat a snapshot when two attempts on one key fail alike at the same instant', () => {
    const scheduler = new TestScheduler(() => undefined);
    scheduler.maxFrames = 10_000;
    const transport: Transport = () =>
      new Observable<TransportEvent>((subscriber) => {
        const answer = scheduler.schedule(
          () =>
            subscriber.error(
              new KeyLimitError({ message: '403 Key limit exceeded (total limit)', scope: 'key', retryable: true, status: 403 }),
            ),
          50,
        );
        return () => answer.unsubscribe();
      });
    const pool = createPool({ keys: [{ key: KEYS[0]!, label: 'k1' }], scheduler, transport });
    const snapshots: string[] = [];
    pool.health$.subscribe((snapshot) => snapshots.push(JSON.stringify({ ...snapshot, at: undefined })));
    const events: BalanceEvent[] = [];
    from([0, 1].map((index): ChatRequest => ({ id: `r${index}`, model: MODELS[0], messages: [{ role: 'user', content: 'hi' }] })))
      .pipe(balance(pool, { concurrency: 2, rateLimit: false }))
      .subscribe((event) => events.push(event));
    scheduler.flush();

    expect(events.map((event) => (event.type === 'failed' ? event.error.kind : event.type))).toEqual(['key_limit', 'key_limit']);
    const repeats = snapshots.flatMap((snapshot, index) => (index > 0 && snapshot === snapshots[index - 1] ? [`#${index}`] : []));
    expect(repeats, `of ${snapshots.length} snapshots`).toEqual([]);
  });

  it('unsubscribing from balance at any time frees every slot and stops every attempt', () => {
    const cancelled = anyStrategyScenarioArb.chain((scenario) =>
      fc.integer({ min: 0, max: 5_000 }).map((cancelAt): Scenario => ({ ...scenario, cancelAt })),
    );
    fc.assert(
      fc.property(cancelled, (scenario) => {
        const result = run(scenario);
        expect(leftInFlight(result), describeRun(result)).toEqual(nothingInFlight);
        const late = result.calls.filter((call) => call.at > scenario.cancelAt!);
        expect(late, 'attempts after the caller unsubscribed').toEqual([]);
        expect([...result.concurrencyViolations, ...quotaProblems(result), ...result.healthViolations]).toEqual([]);
      }),
      { ...assertOptions, numRuns: Math.max(1, Math.floor(RUNS / 2)) },
    );
  });

  it('runs settle: no timer is left pending past the horizon', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const result = run(scenario);
        expect(result.pendingActions, describeRun(result)).toBe(0);
      }),
      { ...assertOptions, numRuns: Math.max(1, Math.floor(RUNS / 2)) },
    );
  });

  // The server counts a request when it arrives, after its admission. Quota entries count from
  // admission plus the store's arrival margin (or the first response, if sooner), so a request that
  // takes up to the margin to arrive never lands in the server's window with the next one.
  function arrivalsWithDelays(networkDelays: number[], arrivalMarginMs: number | undefined) {
    const scheduler = new TestScheduler(() => undefined);
    scheduler.maxFrames = 10_000;
    const quota = { requests: 1, windowMs: 100 };
    const admissions: number[] = [];
    const arrivals: number[] = [];
    const transport: Transport = (_credential, request) =>
      new Observable<TransportEvent>((subscriber) => {
        const delay = networkDelays[admissions.length] ?? 0;
        admissions.push(scheduler.now());
        const arrival = scheduler.schedule(() => {
          arrivals.push(scheduler.now());
          // The server answers 5 ms after the request arrived.
          scheduler.schedule(() => {
            subscriber.next({
              type: 'completion',
              completion: { id: 'gen', model: request.model ?? '', content: 'ok', finishReason: 'stop', raw: null },
            });
            subscriber.complete();
          }, 5);
        }, delay);
        return () => arrival.unsubscribe();
      });
    const pool = createPool({
      keys: [{ key: KEYS[0]!, label: 'k1', limits: { quotas: [quota] } }],
      scheduler,
      transport,
      ...(arrivalMarginMs === undefined ? {} : { store: createMemoryStore({ arrivalMarginMs }) }),
    });
    const events: BalanceEvent[] = [];
    from([0, 1].map((index): ChatRequest => ({ id: `r${index}`, model: MODELS[0], messages: [{ role: 'user', content: 'hi' }] })))
      .pipe(balance(pool, { concurrency: 2 }))
      .subscribe((event) => events.push(event));
    scheduler.flush();
    expect(events.filter((event) => event.type === 'completion')).toHaveLength(2);
    return { admissions, arrivals, quota };
  }

  it('quotas hold at the server too when an attempt takes up to the arrival margin to arrive', () => {
    // The first request takes 45 ms to arrive (within the default 50 ms margin), the second none.
    const { admissions, arrivals, quota } = arrivalsWithDelays([45, 0], undefined);
    expect(
      overfullWindow(arrivals, quota.requests, quota.windowMs),
      `admitted at ${admissions.join(',')}, arrived at ${arrivals.join(',')}`,
    ).toBeUndefined();
  });

  it('a slower network needs a larger arrival margin, and then holds too', () => {
    // Counting from admission alone (margin 0), a request that arrives 150 ms late shares the
    // server's window with the next one; a 150 ms margin keeps them apart.
    const unguarded = arrivalsWithDelays([150, 10], 0);
    expect(overfullWindow(unguarded.arrivals, unguarded.quota.requests, unguarded.quota.windowMs)).toBeDefined();
    const guarded = arrivalsWithDelays([150, 10], 150);
    expect(
      overfullWindow(guarded.arrivals, guarded.quota.requests, guarded.quota.windowMs),
      `admitted at ${guarded.admissions.join(',')}, arrived at ${guarded.arrivals.join(',')}`,
    ).toBeUndefined();
  });

  it('the window check itself catches an overfull window', () => {
    expect(overfullWindow([0, 10, 20], 2, 100)).toBeDefined();
    expect(overfullWindow([0, 10, 100], 2, 100)).toBeUndefined();
    expect(overfullWindow([99, 0, 50], 2, 100)).toBeDefined();
    expect(overfullWindow([100, 0, 99], 2, 100)).toBeUndefined();
    expect(overfullWindow([5, 5], 1, 1)).toBeDefined();
  });
});
