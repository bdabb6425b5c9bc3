import { redactKeyShaped } from '../core/redact.js';
import type { SchedulerLike } from 'rxjs';
import { fingerprintOf } from '../core/fingerprint.js';
import type { KeyCredential } from '../core/types.js';
import { Breaker } from '../health/breaker.js';
import { limitsAnything } from '../health/limits.js';
import type { ScopeDefinition, StateStore } from '../store/state-store.js';
import type { ResolvedPoolConfig } from './config.js';
import { AccountEntry, DisabledKeyCount, KeyEntry, ModelEntry } from './entities.js';
import { keyHealthOf, modelHealthOf } from './record-builders.js';

/** Whether a `models` limit pattern (exact, or with `*` wildcards) names `model`. */
export function patternMatches(pattern: string, model: string): boolean {
  if (!pattern.includes('*')) return pattern === model;
  const parts = pattern.split('*');
  let position = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i === 0) {
      if (!model.startsWith(part)) return false;
      position = part.length;
    } else if (i === parts.length - 1) {
      return model.length - part.length >= position && model.endsWith(part);
    } else {
      const found = model.indexOf(part, position);
      if (found < 0) return false;
      position = found + part.length;
    }
  }
  return true;
}

/**
 * Every key, account and model entry of one pool: built from the config at start, models added
 * as requests name them and dropped again when idle past `maxModelRecords`.
 */
export class Registry {
  readonly keys: KeyEntry[] = [];
  readonly accounts = new Map<string, AccountEntry>();
  readonly models = new Map<string, ModelEntry>();
  private readonly byLabel = new Map<string, KeyEntry>();
  private readonly disabledKeys = new DisabledKeyCount();
  /** A model record was added or dropped since `takeModelSetChange` was last asked. */
  private modelSetChange = false;

  constructor(
    private readonly config: ResolvedPoolConfig,
    private readonly store: StateStore,
    private readonly scheduler: SchedulerLike,
  ) {
    for (const keyConfig of config.keys) {
      const account = this.accountOf(keyConfig.account);
      const credential = Object.defineProperty({ label: keyConfig.label, fingerprint: fingerprintOf(keyConfig.key) }, 'key', {
        value: keyConfig.key,
        enumerable: false,
      }) as KeyCredential;
      const entry = new KeyEntry(
        credential,
        keyConfig.weight,
        account,
        { id: `key:${keyConfig.label}`, kind: 'key', limits: keyConfig.limits },
        new Breaker(config.breaker),
        (self) => keyHealthOf(self, this.store, this.scheduler.now()),
        keyConfig.accountConfigured,
        this.disabledKeys,
      );
      account.keys.push(entry);
      this.keys.push(entry);
      this.byLabel.set(entry.label, entry);
      store.define(entry.scope);
    }
    for (const account of this.accounts.values()) store.define(account.scope);
  }

  /** Whether a model record was added or dropped since the last call (the publisher announces it). */
  takeModelSetChange(): boolean {
    const changed = this.modelSetChange;
    this.modelSetChange = false;
    return changed;
  }

  /** Whether a model record was added or dropped since the last `takeModelSetChange`, without taking it. */
  get modelSetChanged(): boolean {
    return this.modelSetChange;
  }

  /** Whether no key can serve at all until one is put back into service. */
  get everyKeyDisabled(): boolean {
    return this.disabledKeys.value === this.keys.length;
  }

  key(label: string): KeyEntry | undefined {
    return this.byLabel.get(label);
  }

  requireKey(label: string): KeyEntry {
    const entry = this.byLabel.get(label);
    if (entry === undefined) {
      // A key passed where its label goes is never quoted back.
      const shown = this.keys.some((key) => key.credential.key === label.trim()) ? '[a key of this pool]' : redactKeyShaped(label);
      throw new RangeError(`no key labelled "${shown}" in this pool (a key goes by its label)`);
    }
    return entry;
  }

  private accountOf(id: string): AccountEntry {
    let account = this.accounts.get(id);
    if (account === undefined) {
      account = new AccountEntry(
        id,
        { id: `account:${id}`, kind: 'account', limits: this.config.accounts[id] ?? {} },
        this.config.models,
        this.config.adaptiveConcurrency,
      );
      this.accounts.set(id, account);
    }
    return account;
  }

  /**
   * Moves a key to the account key info names (keys with one `creator_user_id` share the
   * account's limits and balance). Its admission plans go, to be built again with the account's
   * scopes; an account left without keys goes too. Returns whether the key moved.
   */
  moveToAccount(entry: KeyEntry, id: string): boolean {
    if (entry.account.id === id) return false;
    const previous = entry.account;
    previous.keys.splice(previous.keys.indexOf(entry), 1);
    if (previous.keys.length === 0) this.accounts.delete(previous.id);
    const account = this.accountOf(id);
    this.store.define(account.scope);
    account.keys.push(entry);
    // Its attempts in flight end in the account it belongs to then: they count there from now.
    previous.inFlight -= entry.inFlight;
    account.inFlight += entry.inFlight;
    entry.account = account;
    entry.dropPlans();
    // What the key sent under its old account was counted by the server in this one: it counts in
    // this one's quotas too (and, if the old account had other keys, their sends as well: on the
    // side of caution, for one window at most).
    const now = this.scheduler.now();
    this.store.absorb?.(previous.scope, account.scope, now);
    for (const [pattern, scope] of previous.modelScopeEntries) this.store.absorb?.(scope, account.modelScope(pattern), now);
    return true;
  }

  /** A key, account or account-model scope by its id (`key:<label>`, `account:<id>`, `model:<account>:<pattern>`). */
  scopeById(id: string): ScopeDefinition | undefined {
    if (id.startsWith('key:')) return this.byLabel.get(id.slice('key:'.length))?.scope;
    if (id.startsWith('account:')) return this.accounts.get(id.slice('account:'.length))?.scope;
    // Account ids and patterns may both hold ':' (`a` and `a:b`; `*:free`): the account that
    // already has the pattern's scope, else the longest id that fits, not the first that does.
    let best: { account: AccountEntry; pattern: string } | undefined;
    for (const account of this.accounts.values()) {
      const prefix = `model:${account.id}:`;
      if (!id.startsWith(prefix)) continue;
      const pattern = id.slice(prefix.length);
      if (account.modelScopeEntries.has(pattern)) return account.modelScope(pattern);
      if (best === undefined || account.id.length > best.account.id.length) best = { account, pattern };
    }
    return best?.account.modelScope(best.pattern);
  }

  /** The model's entry, created on first mention; `now` when the caller has the time already. */
  model(model: string, now = this.scheduler.now()): ModelEntry {
    let entry = this.models.get(model);
    if (entry !== undefined) {
      entry.lastUsedAt = now;
      return entry;
    }
    if (this.models.size >= this.config.maxModelRecords) this.evictIdleModels(now);
    const patterns = Object.keys(this.config.models).filter((pattern) => {
      const limits = this.config.models[pattern]!;
      return patternMatches(pattern, model) && limitsAnything(limits);
    });
    entry = new ModelEntry(
      model,
      new Breaker(this.config.modelBreaker),
      patterns,
      (self) => modelHealthOf(self, this.scheduler.now()),
      now,
      this.config.adaptiveConcurrency,
    );
    this.models.set(model, entry);
    this.modelSetChange = true;
    return entry;
  }

  /** The context window configured for a model (the smallest of the patterns it matches). */
  contextLengthOf(model: string): number | undefined {
    let contextLength: number | undefined;
    for (const [pattern, limits] of Object.entries(this.config.models)) {
      if (limits.contextLength !== undefined && patternMatches(pattern, model)) {
        contextLength = Math.min(contextLength ?? Infinity, limits.contextLength);
      }
    }
    return contextLength;
  }

  /**
   * Keeps the model records bounded (a pool sent 20,000 model ids must not carry 20,000 records):
   * drops idle, healthy records, least recently used first, down to 90 % of `maxModelRecords`, so
   * the scan runs once per many new models. Records with something to remember stay, so the
   * count may exceed the cap while that many models are failing, busy or watched.
   */
  private evictIdleModels(now: number): void {
    const target = Math.floor(this.config.maxModelRecords * 0.9);
    const idle = [...this.models.values()].filter((entry) => entry.isIdleAndHealthy(now)).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const entry of idle.slice(0, Math.max(0, this.models.size - target))) {
      this.models.delete(entry.model);
      for (const key of this.keys) key.dropPlans(entry.model);
      entry.close();
    }
    this.modelSetChange = true;
  }
}
