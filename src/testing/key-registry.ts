/**
 * The keys and accounts a fake server knows, with their quota windows. Keys without an `account`
 * each get an account of their own, so credit state and account quotas are always per account.
 */
import type { FreeModelDailyView, KeyView, QuotaRejection } from './replies.js';
import type {
  FakeAccountConfig,
  FakeAccountPatch,
  FakeDailyQuota,
  FakeFreeModelDailyRequests,
  FakeKeyConfig,
  FakeKeyPatch,
  FakeQuota,
} from './types.js';

const DEFAULT_KEY_BUCKET = 'requests-per-key';
const DEFAULT_ACCOUNT_BUCKET = 'free-models-per-min';
const DEFAULT_DAILY_BUCKET = 'free-models-per-day';
const DAY_MS = 24 * 60 * 60 * 1000;
/** The suffix OpenRouter puts on `free-models-per-day` 429s (fixture error-429-free-models-per-day). */
const FREE_DAILY_HINT = '. Add 10 credits to unlock 1000 free model requests per day';

/** A sliding-window log of admission times. */
export class SlidingWindowLog {
  private admissions: number[] = [];

  /** When the window has room again, or undefined if it has room now. */
  fullUntil(quota: FakeQuota, now: number): number | undefined {
    this.admissions = this.admissions.filter((admittedAt) => admittedAt > now - quota.windowMs);
    if (this.admissions.length < quota.requests) return undefined;
    // Room returns once enough of the oldest admissions leave that fewer than `requests` remain.
    const mustLeave = this.admissions[this.admissions.length - quota.requests];
    return (mustLeave ?? now) + quota.windowMs;
  }

  admit(now: number): void {
    this.admissions.push(now);
  }
}

/** Admissions counted per UTC day; the count starts again at 00:00 UTC. */
export class UtcDayCounter {
  private day = -1;
  private count = 0;

  /** Admissions so far on the UTC day of `now`. */
  used(now: number): number {
    return Math.floor(now / DAY_MS) === this.day ? this.count : 0;
  }

  /** The next 00:00 UTC if the day's quota is spent, or undefined if it has room now. */
  fullUntil(quota: FakeDailyQuota, now: number): number | undefined {
    if (this.used(now) < quota.requests) return undefined;
    return (Math.floor(now / DAY_MS) + 1) * DAY_MS;
  }

  admit(now: number): void {
    const today = Math.floor(now / DAY_MS);
    if (today !== this.day) {
      this.day = today;
      this.count = 0;
    }
    this.count += 1;
  }
}

export interface KeyState {
  readonly config: FakeKeyConfig;
  label: string;
  readonly window: SlidingWindowLog;
}

export interface AccountState {
  readonly config: FakeAccountConfig;
  readonly window: SlidingWindowLog;
  readonly daily: UtcDayCounter;
}

export class KeyRegistry {
  private readonly keys = new Map<string, KeyState>();
  private readonly accounts = new Map<string, AccountState>();

  constructor(keys: readonly FakeKeyConfig[], accounts: readonly FakeAccountConfig[]) {
    for (const account of accounts) this.accounts.set(account.id, newAccount({ ...account }));
    for (const key of keys) this.addKey({ ...key });
  }

  find(key: string): KeyState | undefined {
    return this.keys.get(key);
  }

  accountOf(key: KeyState): AccountState {
    const id = key.config.account ?? `account-of-${key.label}`;
    const existing = this.accounts.get(id);
    if (existing !== undefined) return existing;
    const created = newAccount({ id });
    this.accounts.set(id, created);
    return created;
  }

  /** A stable, fake OpenRouter user id for error bodies. */
  userIdOf(key: KeyState): string {
    return `user_fake_${this.accountOf(key).config.id}`;
  }

  setKey(key: string, patch: FakeKeyPatch): void {
    const existing = this.keys.get(key);
    if (existing === undefined) {
      this.addKey(Object.assign({}, patch, { key }));
      return;
    }
    Object.assign(existing.config, patch);
    if (patch.label !== undefined) existing.label = patch.label;
  }

  setAccount(id: string, patch: FakeAccountPatch): void {
    const existing = this.accounts.get(id);
    if (existing === undefined) this.accounts.set(id, newAccount(Object.assign({}, patch, { id })));
    else Object.assign(existing.config, patch);
  }

  /**
   * Admits a request into the key's and the account's quotas, or says which full quota rejects it
   * (the one that frees up last, since all must have room). A rejected request enters no quota; a
   * quota with `freeModelsOnly` ignores requests for other models.
   */
  admit(key: KeyState, model: string, now: number): QuotaRejection | undefined {
    const account = this.accountOf(key);
    const isFree = model.endsWith(':free');
    const applying = <Quota extends FakeQuota | FakeDailyQuota>(quota: Quota | undefined): Quota | undefined =>
      quota !== undefined && (quota.freeModelsOnly !== true || isFree) ? quota : undefined;
    const keyQuota = applying(key.config.quota);
    const accountQuota = applying(account.config.quota);
    const dailyQuota = applying(account.config.dailyQuota);
    const rejections = [
      windowRejection(key.window, keyQuota, DEFAULT_KEY_BUCKET, now),
      windowRejection(account.window, accountQuota, DEFAULT_ACCOUNT_BUCKET, now),
      dailyRejection(account.daily, dailyQuota, now),
    ].filter((rejection): rejection is QuotaRejection => rejection !== undefined);
    if (rejections.length > 0) return rejections.reduce((latest, next) => (next.resetAt > latest.resetAt ? next : latest));
    if (keyQuota !== undefined) key.window.admit(now);
    if (accountQuota !== undefined) account.window.admit(now);
    if (dailyQuota !== undefined) account.daily.admit(now);
    return undefined;
  }

  viewOf(key: KeyState, now: number): KeyView {
    const account = this.accountOf(key);
    return {
      label: key.label,
      limit: key.config.limit ?? null,
      limitReset: key.config.limitReset ?? null,
      usage: key.config.usage ?? 0,
      isFreeTier: key.config.isFreeTier ?? false,
      creatorUserId: key.config.creatorUserId === undefined ? this.userIdOf(key) : key.config.creatorUserId,
      freeModelDaily: freeModelDailyOf(key.config.freeModelDailyRequests, account, now),
    };
  }

  private addKey(config: FakeKeyConfig): void {
    const label = config.label ?? `key-${this.keys.size + 1}`;
    this.keys.set(config.key, { config, label, window: new SlidingWindowLog() });
  }
}

function newAccount(config: FakeAccountConfig): AccountState {
  return { config, window: new SlidingWindowLog(), daily: new UtcDayCounter() };
}

function windowRejection(
  window: SlidingWindowLog,
  quota: FakeQuota | undefined,
  defaultBucket: string,
  now: number,
): QuotaRejection | undefined {
  if (quota === undefined) return undefined;
  const resetAt = window.fullUntil(quota, now);
  if (resetAt === undefined) return undefined;
  return { bucket: quota.bucket ?? defaultBucket, limit: quota.requests, resetAt };
}

function dailyRejection(counter: UtcDayCounter, quota: FakeDailyQuota | undefined, now: number): QuotaRejection | undefined {
  if (quota === undefined) return undefined;
  const resetAt = counter.fullUntil(quota, now);
  if (resetAt === undefined) return undefined;
  const bucket = quota.bucket ?? DEFAULT_DAILY_BUCKET;
  return { bucket, limit: quota.requests, resetAt, ...(bucket === DEFAULT_DAILY_BUCKET ? { hint: FREE_DAILY_HINT } : {}) };
}

/** The key's own setting, else the account's, else the account's daily quota; `null`: leave the field out. */
function freeModelDailyOf(
  keySetting: FakeFreeModelDailyRequests | null | undefined,
  account: AccountState,
  now: number,
): FreeModelDailyView | null {
  const configured = keySetting === undefined ? account.config.freeModelDailyRequests : keySetting;
  if (configured === null) return null;
  if (configured !== undefined) {
    return {
      used: configured.used,
      limit: configured.limit,
      remaining: configured.remaining ?? Math.max(0, configured.limit - configured.used),
    };
  }
  const quota = account.config.dailyQuota;
  if (quota === undefined) return null;
  const used = account.daily.used(now);
  return { used, limit: quota.requests, remaining: Math.max(0, quota.requests - used) };
}
