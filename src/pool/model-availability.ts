import { AbortedError, ModelUnavailableError, NoKeyAvailableError, QueueFullError, QueueTimeoutError } from '../core/errors.js';
import type { AdmissionPlan, StateStore } from '../store/state-store.js';
import type { KeyEntry, ModelEntry } from './entities.js';
import { admissionPlanOf } from './scopes.js';

/** Who hears of a breaker that moved on (open to half-open) while a refusal looked at it: the health publisher. */
export interface BreakerChanges {
  markKey(entry: KeyEntry): void;
  markModel(model: ModelEntry): void;
}

/**
 * Out of service: its breaker open, or half-open with its probes out, or parked by a 429 for
 * longer than `longestQueuedParkMs` (a provider's hint of minutes or hours). A request that waited
 * for it in the admission queue would hold its caller's concurrency slot for the whole wait,
 * which requests for other models could use. A shorter park is a wait like a retry's backoff.
 */
function outOfService(model: ModelEntry, now: number, longestQueuedParkMs: number, changes: BreakerChanges): boolean {
  if (model.parkedUntil - now > longestQueuedParkMs) return true;
  if (model.breaker.state === 'closed') return false;
  if (model.breaker.advance(now)) changes.markModel(model);
  return !model.breaker.admits();
}

/** When an out-of-service model takes requests again: Infinity while its return hangs on a probe. */
function backAt(model: ModelEntry, now: number): number {
  const breakerBack = model.breaker.state === 'open' ? model.breaker.openUntil : model.breaker.admits() ? now : Infinity;
  return Math.max(breakerBack, model.parkedUntil);
}

function stateOf(model: ModelEntry, now: number): string {
  const states: string[] = [];
  if (model.breaker.state === 'open') states.push(`breaker open for another ${Math.ceil((model.breaker.openUntil - now) / 1000)} s`);
  else if (!model.breaker.admits()) states.push('breaker half-open, its probe still out');
  if (model.parkedUntil > now) states.push(`rate-limited for another ${Math.ceil((model.parkedUntil - now) / 1000)} s`);
  return states.join(', ');
}

/**
 * The refusal of a request whose every model is out of service, naming each with how long until
 * it takes requests again and its last error; undefined when any model can still take it.
 * `changes` hears of a breaker that moved on (open to half-open) while being looked at.
 */
export function unavailableModelsError(
  models: readonly ModelEntry[],
  now: number,
  longestQueuedParkMs: number,
  changes: BreakerChanges,
): ModelUnavailableError | undefined {
  if (models.length === 0 || !models.every((model) => outOfService(model, now, longestQueuedParkMs, changes))) return undefined;
  const returnsAt = Math.min(...models.map((model) => backAt(model, now)));
  const described = models.map(
    (model) => `${model.model} (${stateOf(model, now)}${model.lastError === null ? '' : `; last error: ${model.lastError.message}`})`,
  );
  const last = models.find((model) => model.lastError !== null)?.lastError ?? null;
  return new ModelUnavailableError({
    message: `every model of the request is out of service: ${described.join(', ')}`,
    scope: 'model',
    retryable: true,
    ...(Number.isFinite(returnsAt) ? { retryAfterMs: Math.max(0, returnsAt - now) } : {}),
    ...(last?.status === undefined ? {} : { status: last.status }),
    model: models[0]!.model,
  });
}

/**
 * The refusal of a request whose every model is at its adaptive concurrency limit, for a caller who
 * waits for models itself (`balance`): waiting in the queue, it would hold its caller's slot, which
 * requests for other models could use, for as long as the model takes to answer the requests
 * ahead. `balance` waits outside the slot until the model has room (`CapacityWaiters`).
 */
export function atCapacityError(models: readonly ModelEntry[]): ModelUnavailableError | undefined {
  if (models.length === 0 || !models.every((model) => model.atConcurrencyLimit)) return undefined;
  const error = new ModelUnavailableError({
    message: `every model of the request is at its concurrency limit: ${models.map((model) => `${model.model} (${model.inFlight} in flight)`).join(', ')}`,
    scope: 'model',
    retryable: true,
    model: models[0]!.model,
  });
  error.modelsAtCapacity = models.map((model) => model.model);
  return error;
}

/** Keys a refusal names one by one; a pool of hundreds says how many more. */
const KEYS_NAMED = 3;

/**
 * The refusal of a request when every key that is not disabled has its breaker open: OpenRouter
 * unreachable (every key's connection fails), or every key failing at once. Waiting in the queue,
 * the request would get a key only as one breaker's probe per cooldown, so a queue of them would
 * fail one by one over minutes. Refused, it fails at once as at any open breaker, or a caller who
 * waits itself (`balance`, up to its `modelWaitMs`) waits outside its slot and tries again.
 * `retryAfterMs` says when the first breaker half-opens. Undefined when some key can take a
 * request, waits for time alone (a park, a quota window), or is half-open: a request waits for its
 * probe's verdict, which refuses the waiting ones if the breaker opens again.
 */
export function brokenKeysError(keys: readonly KeyEntry[], now: number, changes: BreakerChanges): NoKeyAvailableError | undefined {
  let returnsAt = Infinity;
  const broken: KeyEntry[] = [];
  for (const entry of keys) {
    if (entry.disabled) continue;
    const { breaker } = entry;
    if (breaker.state === 'closed') return undefined;
    if (breaker.advance(now)) changes.markKey(entry);
    if (breaker.state !== 'open') return undefined;
    broken.push(entry);
    returnsAt = Math.min(returnsAt, breaker.openUntil);
  }
  if (broken.length === 0) return undefined;
  const described = broken
    .slice(0, KEYS_NAMED)
    .map(
      ({ label, breaker, lastError }) =>
        `${label} (open for another ${Math.ceil((breaker.openUntil - now) / 1000)} s${lastError === null ? '' : `; last error: ${lastError.message}`})`,
    );
  const more = broken.length > KEYS_NAMED ? ` and ${broken.length - KEYS_NAMED} more` : '';
  return new NoKeyAvailableError({
    message: `every key's circuit breaker is open: ${described.join(', ')}${more}`,
    scope: 'key',
    retryable: true,
    retryAfterMs: Math.max(0, returnsAt - now),
    ...sharedStatusOf(broken),
  });
}

/** Every key is disabled: says why each is out (its last error: a lone revoked key says 401), and the status when they all share one. */
export function noKeyAvailableError(keys: readonly KeyEntry[]): NoKeyAvailableError {
  const reasons = keys.map(({ label, lastError }) =>
    lastError === null
      ? label
      : `${label}: ${lastError.status === undefined || lastError.message.startsWith(String(lastError.status)) ? '' : `${lastError.status} `}${lastError.message}`,
  );
  return new NoKeyAvailableError({
    message: `every key of the pool is disabled (${reasons.join('; ')})`,
    scope: 'key',
    retryable: false,
    ...sharedStatusOf(keys),
  });
}

/** The HTTP status of the keys' last errors, when they all share one (a refusal's `status`). */
function sharedStatusOf(keys: readonly KeyEntry[]): { status?: number } {
  const statuses = new Set(keys.map((entry) => entry.lastError?.status));
  const [status] = statuses;
  return statuses.size === 1 && status !== undefined ? { status } : {};
}

/** The failure of a request that found the admission queue at its `maxSize`. */
export function queueFullError(maxSize: number): QueueFullError {
  return new QueueFullError({ message: `admission queue full (${maxSize} waiting)`, scope: 'request', retryable: true });
}

/** The failure of a request that waited `timeoutMs` for a key (the queue timeout). */
export function queueTimeoutError(timeoutMs: number): QueueTimeoutError {
  return new QueueTimeoutError({ message: `no key became available within ${timeoutMs} ms`, scope: 'request', retryable: false });
}

/** The failure of a request the pool was disposed under. */
export function disposedError(): AbortedError {
  return new AbortedError({ message: 'the key pool was disposed', scope: 'request', retryable: false });
}

/**
 * The refusal of a request whose strategy took none of the keys that could serve it while nothing
 * was in flight: no attempt's end can bring it a key it would take, so waiting would never end.
 */
export function strategyDeclinedError(strategy: string): NoKeyAvailableError {
  return new NoKeyAvailableError({
    message: `the strategy '${strategy}' took none of the keys that could serve the request, and no attempt in flight can free another`,
    scope: 'request',
    retryable: false,
  });
}

/** What `quotaBlockedError` and `modelRoomBlockedError` read of the pool. */
export interface RoomLookup {
  readonly registry: { readonly keys: readonly KeyEntry[] };
  readonly store: Pick<StateStore, 'nextFitAt'>;
  planOf(entry: KeyEntry, model: ModelEntry): AdmissionPlan;
  /** The model scopes of `planOf` alone: the model's own limits (a `models` quota, the account's free-model bucket). */
  modelPlanOf(entry: KeyEntry, model: ModelEntry): AdmissionPlan;
}

/** The pool's `RoomLookup`, each plan's model scopes picked out once. */
export function roomLookupOf(registry: RoomLookup['registry'], store: Pick<StateStore, 'nextFitAt' | 'define'>): RoomLookup {
  const modelPlans = new WeakMap<AdmissionPlan, AdmissionPlan>();
  const planOf = (entry: KeyEntry, model: ModelEntry) => admissionPlanOf(entry, model, store);
  return {
    registry,
    store,
    planOf,
    modelPlanOf(entry, model) {
      const plan = planOf(entry, model);
      let modelPlan = modelPlans.get(plan);
      if (modelPlan === undefined) {
        modelPlan = plan.filter((scope) => scope.kind === 'model');
        modelPlans.set(plan, modelPlan);
      }
      return modelPlan;
    },
  };
}

/**
 * How long a request whose models' own quotas are spent waits in the queue, holding its caller's
 * slot, when the caller waits for models itself (`maxQueuedModelParkMs: 0`, as `balance`): a
 * window's next send a moment away is waited for; a longer wait is the caller's, outside its slot
 * (its refusal says when the room comes, and the caller looks again then). A second held the
 * caller's slots that long before each window, every one of them with enough requests waiting,
 * from requests for other models.
 */
export const MODEL_ROOM_QUEUE_WAIT_MS = 50;

/**
 * The refusal of a request that no key can take on any model of its chain for at least
 * `MODEL_ROOM_QUEUE_WAIT_MS` because of the models' own quotas (a per-model quota, the account's
 * free-model bucket), not the keys': the same keys serve other models meanwhile, and a request
 * waiting in the queue would hold its caller's slot, which a request for another model could use.
 * Its `retryAfterMs` says when the first model has room. Undefined when one has room sooner.
 */
export function modelRoomBlockedError(
  pool: RoomLookup,
  models: readonly ModelEntry[],
  tokens: number,
  now: number,
): ModelUnavailableError | undefined {
  let roomAt = Infinity;
  for (const model of models) {
    for (const entry of pool.registry.keys) {
      if (entry.disabled) continue;
      const modelPlan = pool.modelPlanOf(entry, model);
      roomAt = Math.min(roomAt, modelPlan.length === 0 ? now : pool.store.nextFitAt(modelPlan, tokens, now));
      if (roomAt - now < MODEL_ROOM_QUEUE_WAIT_MS) return undefined;
    }
  }
  if (!Number.isFinite(roomAt)) return undefined;
  const error = new ModelUnavailableError({
    message: `the quotas of ${models.map((model) => model.model).join(', ')} are spent for another ${Math.ceil((roomAt - now) / 1000)} s`,
    scope: 'model',
    retryable: true,
    retryAfterMs: roomAt - now,
    model: models[0]!.model,
  });
  error.quotaSpent = true;
  return error;
}

/**
 * When a key could next take a request of `tokens` on `model`, as far as waits that only time
 * ends go (a park, an exhaustion, an open breaker, a quota window); `now` when one could but for
 * room an answer frees (a slot). Stops at the first key due back by `enough`.
 */
function roomAt(pool: RoomLookup, model: ModelEntry, tokens: number, now: number, enough: number): number {
  let earliest = Infinity;
  const modelAt = Math.max(now, model.parkedUntil, model.breaker.state === 'open' ? model.breaker.openUntil : now);
  for (const entry of pool.registry.keys) {
    if (entry.disabled) continue;
    const at = Math.max(
      modelAt,
      entry.restsUntil(),
      entry.fullUntil,
      entry.breaker.state === 'open' ? entry.breaker.openUntil : now,
      pool.store.nextFitAt(pool.planOf(entry, model), tokens, now),
    );
    if (at <= enough) return at;
    earliest = Math.min(earliest, at);
  }
  return earliest;
}

/**
 * The longest a request waits in the queue for room that only time brings, at least: a minute's
 * quota spent is waited out, an hour's or a day's is not.
 */
export const QUEUED_ROOM_WAIT_FLOOR_MS = 5 * 60_000;

/** How long a request may wait in the queue for room that only time brings (see `quotaBlockedError`). */
export function longestQueuedRoomWaitMs(backoffCapMs: number): number {
  return Math.max(backoffCapMs, QUEUED_ROOM_WAIT_FLOOR_MS);
}

/**
 * The refusal of a request that no key can take on any model of its chain for longer than five
 * minutes, or the hint-less backoff's cap `backoffCapMs` if longer (a day's free-model quota
 * spent, every key parked for an hour): waiting in the queue, it would hold its caller's
 * concurrency slot that long, which requests for other models could use. Undefined when some key
 * is due back sooner. Its `retryAfterMs` says when the first is. For a caller who waits for models
 * itself (`callerWaits`), the models' own quotas spent for more than a moment
 * (`MODEL_ROOM_QUEUE_WAIT_MS`) refuse it too, sooner (`modelRoomBlockedError`).
 */
export function quotaBlockedError(
  pool: RoomLookup,
  models: readonly ModelEntry[],
  tokens: number,
  now: number,
  backoffCapMs: number,
  callerWaits = false,
): ModelUnavailableError | undefined {
  if (models.length === 0) return undefined;
  const enough = now + longestQueuedRoomWaitMs(backoffCapMs);
  let backAt = Infinity;
  for (const model of models) {
    backAt = Math.min(backAt, roomAt(pool, model, tokens, now, enough));
    if (backAt <= enough) return callerWaits ? modelRoomBlockedError(pool, models, tokens, now) : undefined;
  }
  const when = Number.isFinite(backAt)
    ? `for another ${Math.ceil((backAt - now) / 60_000)} min`
    : 'at all (no quota of theirs can hold it)';
  return new ModelUnavailableError({
    message: `no key can take ${models.map((model) => model.model).join(', ')} ${when} (quotas spent, keys parked or out of credit)`,
    scope: 'model',
    retryable: true,
    ...(Number.isFinite(backAt) ? { retryAfterMs: backAt - now } : {}),
    model: models[0]!.model,
  });
}

/** What `routeRefusal` reads of a waiting request. */
export interface RoutedTicket {
  readonly options: { readonly models: readonly string[]; readonly maxQueuedModelParkMs?: number; readonly refuseAtModelLimit?: boolean };
  readonly tokens: number;
  /** Whether its keys' room may be looked for now: a pass over the keys, once a second per waiting request. */
  roomCheckDue(now: number): boolean;
}

/** What `routeRefusal` reads of the pool, besides its `RoomLookup`. */
export interface RoutePool {
  readonly registry: { readonly keys: readonly KeyEntry[]; model(id: string): ModelEntry };
  readonly publisher: BreakerChanges;
  readonly config: { readonly maxRateLimitCooldownMs: number };
}

/**
 * The refusal of a request that could not be placed because every model of its chain is out of
 * service, every key's breaker is open, no key can take a model for longer than the hint-less
 * backoff's cap (a day's quota spent), or, for a caller who waits for models itself, the models'
 * own quotas are spent for a while; undefined when it waits for a key instead. Waiting, it would
 * hold its caller's slot (a `balance` slot) that other requests could use, or wait out a probe per
 * cooldown: the caller decides whether to wait (`balance` waits without its slot, up to its `modelWaitMs`).
 */
export function routeRefusal(
  rooms: RoomLookup,
  { registry, publisher, config }: RoutePool,
  ticket: RoutedTicket,
  now: number,
): ModelUnavailableError | NoKeyAvailableError | undefined {
  const models = ticket.options.models.map((id) => registry.model(id));
  // A shorter park is waited out in the queue, like a backoff, unless the caller waits itself.
  const longestParkMs = ticket.options.maxQueuedModelParkMs ?? config.maxRateLimitCooldownMs;
  const callerWaits = ticket.options.maxQueuedModelParkMs === 0;
  const out =
    unavailableModelsError(models, now, longestParkMs, publisher) ??
    brokenKeysError(registry.keys, now, publisher) ??
    (ticket.options.refuseAtModelLimit === true ? atCapacityError(models) : undefined);
  if (out !== undefined || !ticket.roomCheckDue(now)) return out;
  return quotaBlockedError(rooms, models, ticket.tokens, now, config.maxRateLimitCooldownMs, callerWaits);
}
