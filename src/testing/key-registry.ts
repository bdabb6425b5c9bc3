/**
 * The keys and accounts a fake server knows, with their quota windows. Keys without an `account`
 * each get an account of their own, so credit state and account quotas are always per account.
 */
import type { KeyView, QuotaRejection } from './replies.js';
import type { FakeAccountConfig, FakeAccountPatch, FakeKeyConfig, FakeKeyPatch, FakeQuota } from './types.js';

const DEFAULT_KEY_BUCKET = 'requests-per-key';
const DEFAULT_ACCOUNT_BUCKET = 'free-models-per-min';

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

export interface KeyState {
  readonly config: FakeKeyConfig;
  label: string;
  readonly window: SlidingWindowLog;
}

export interface AccountState {
  readonly config: FakeAccountConfig;
  readonly window: SlidingWindowLog;
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
      this.addKey({ ...patch, key });
      return;
    }
    Object.assign(existing.config, patch);
    if (patch.label !== undefined) existing.label = patch.label;
  }

  setAccount(id: string, patch: FakeAccountPatch): void {
    const existing = this.accounts.get(id);
    if (existing === undefined) this.accounts.set(id, newAccount({ ...patch, id }));
    else Object.assign(existing.config, patch);
  }

  /**
   * Admits a request into the key's and the account's windows, or says which full window rejects it
   * (the one that frees up last, since both must have room). A rejected request enters no window.
   */
  admit(key: KeyState, now: number): QuotaRejection | undefined {
    const account = this.accountOf(key);
    const rejections = [
      rejectionOf(key.window, key.config.quota, DEFAULT_KEY_BUCKET, now),
      rejectionOf(account.window, account.config.quota, DEFAULT_ACCOUNT_BUCKET, now),
    ].filter((rejection): rejection is QuotaRejection => rejection !== undefined);
    if (rejections.length > 0) return rejections.reduce((latest, next) => (next.resetAt > latest.resetAt ? next : latest));
    if (key.config.quota !== undefined) key.window.admit(now);
    if (account.config.quota !== undefined) account.window.admit(now);
    return undefined;
  }

  viewOf(key: KeyState): KeyView {
    return {
      label: key.label,
      limit: key.config.limit ?? null,
      limitReset: key.config.limitReset ?? null,
      usage: key.config.usage ?? 0,
      isFreeTier: key.config.isFreeTier ?? false,
    };
  }

  private addKey(config: FakeKeyConfig): void {
    const label = config.label ?? `key-${this.keys.size + 1}`;
    this.keys.set(config.key, { config, label, window: new SlidingWindowLog() });
  }
}

function newAccount(config: FakeAccountConfig): AccountState {
  return { config, window: new SlidingWindowLog() };
}

function rejectionOf(
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
