/**
 * Shared accounts (issue 12): six keys made by two accounts, and the quota belongs to the account,
 * as OpenRouter's `free-models-per-min` does (20 requests a minute per account on `:free` models,
 * whatever the number of keys). Here the minute is scaled down to a second so that the bench runs in
 * seconds, and the bucket is named for it, `free-models-per-second`: a client may read the window off
 * the name (`free-models-per-min` with a 1 s window would tell it a minute, wrongly), and the
 * `free-models-per-` prefix still says the bucket is the account's. The keys have no quota of their own. Nobody is told any of it: the library gets six keys with
 * neither `limits` nor `account`. What there is to learn from: `GET /api/v1/key`, whose
 * `creator_user_id` is the same for keys of one account (`user_fake_<account>`), and the 429s,
 * whose message names the bucket and whose `X-RateLimit-*` headers give its limit and reset.
 *
 * Figures as in saturation (`saturation.ts`), against Σ account quota, plus, for the library, how
 * many accounts its pool's health shows the keys in (`KeyHealth.account`).
 */
import { runQuotaRow, type QuotaRowSpec } from './saturation.js';
import type { Scenario } from './types.js';

const spec: QuotaRowSpec = {
  id: 'shared-accounts',
  title: 'Shared accounts, quotas untold',
  latencyMs: 20,
  keys: 6,
  keysPerAccount: 3,
  quota: { requests: 20, windowMs: 1000, bucket: 'free-models-per-second', freeModelsOnly: true },
  model: 'bench/shared-accounts:free',
  told: false,
  goodput: { min: 0.97, text: 'goodput ≥ 97% of Σ account quota, untold' },
  max429Share: 0.02,
  // Issue 12 sets no ahead-of-peers target here: the peers' figures are in the ratio columns.
  ahead: false,
  accountsTarget: true,
  notes: [
    'The quota is the account’s free-model bucket (OpenRouter’s `free-models-per-min`, 20 a minute, scaled to 20 a second and named `free-models-per-second` to match), on a `:free` model; the keys have none of their own, so rotating keys of one account does not help. Nobody is told any of it, nor which key belongs to which account; `GET /api/v1/key` gives each key’s `creator_user_id` (`user_fake_acct-a` or `user_fake_acct-b`).',
    'The accounts figure is `new Set(pool.snapshot().keys.map((key) => key.account)).size` at the end of the run: a key the pool was not told the account of is an account of its own (`key:<label>`).',
  ],
};

export const sharedAccounts: Scenario = { id: spec.id, title: spec.title, run: (env) => runQuotaRow(spec, env) };
