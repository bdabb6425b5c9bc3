/**
 * Dead keys: a pool of five keys where one is revoked (401 `User not found.`) and one is
 * rate-limited for a long time (every request answered 429 with `Retry-After: 600`). No peer is
 * told which: each must find out. Wasted attempts = attempts the fake server saw on those two keys.
 * Each peer gets a fresh fake server.
 */
import type { BenchKey } from '../peers/types.js';
import { benchRequest, drive } from '../support/driver.js';
import { quantile, round } from '../support/measure.js';
import { fmt, forEachPeer, ratio, type Scenario, type TargetCheck } from './types.js';

const LIMITED_WINDOW_MS = 600_000;

export const deadKeys: Scenario = {
  id: 'dead-keys',
  title: 'Dead keys',
  async run(env) {
    const settings = {
      healthyKeys: 3,
      requests: env.quick ? 40 : 200,
      concurrency: 16,
      latencyMs: 10,
      limitedRetryAfterSeconds: LIMITED_WINDOW_MS / 1000,
      deadlineMs: env.quick ? 20_000 : 60_000,
      /** Requests with no outcome this long after the last one are counted lost (see `drive`). */
      stallMs: 8_000,
    };
    const keys: BenchKey[] = [
      ...Array.from({ length: settings.healthyKeys }, (_, index) => ({
        key: `sk-or-v1-bench-dead-ok-${index + 1}`,
        label: `ok-${index + 1}`,
      })),
      { key: 'sk-or-v1-bench-dead-revoked', label: 'revoked' },
      { key: 'sk-or-v1-bench-dead-limited', label: 'limited' },
    ];
    // Interleave the dead keys with the healthy ones, as a real key list would.
    const ordered = [keys[0]!, keys[3]!, keys[1]!, keys[4]!, keys[2]!];
    const wastedBy = new Map<string, number>();
    // The figures are counts, not CPU or latency: the quick run measures the peers side by side.
    const parallel = env.quick;

    const results = await forEachPeer(env, parallel, async (peer) => {
      const fake = await env.host.start({
        keys: ordered.map((key) => ({
          key: key.key,
          label: key.label,
          ...(key.label === 'revoked' ? { revoked: true } : {}),
          // A quota of 0: every request is refused, with Retry-After = the window.
          ...(key.label === 'limited' ? { quota: { requests: 0, windowMs: LIMITED_WINDOW_MS } } : {}),
        })),
        defaultModel: { latencyMs: settings.latencyMs },
      });
      try {
        const session = await peer.start({
          baseURL: fake.baseURL,
          keys: ordered,
          model: 'bench/dead-keys',
          concurrency: settings.concurrency,
        });
        let record;
        try {
          record = await drive(session, {
            concurrency: settings.concurrency,
            total: settings.requests,
            deadlineMs: settings.deadlineMs,
            stallMs: settings.stallMs,
            makeRequest: () => benchRequest(false),
          });
        } finally {
          await session.close();
        }
        const stats = await fake.stats();
        // The fake server cannot name a revoked key (it answers `User not found.`): its attempts are the unknown ones.
        const onRevoked = Object.values(stats.byKey['(unknown)'] ?? {}).reduce((sum, count) => sum + count, 0);
        const onLimited = Object.values(stats.byKey['limited'] ?? {}).reduce((sum, count) => sum + count, 0);
        const wasted = onRevoked + onLimited;
        wastedBy.set(peer.id, wasted);
        const p99 = quantile(record.latenciesMs, 0.99);
        return {
          peer: peer.id,
          name: peer.name,
          figures: {
            wastedAttempts: wasted,
            attemptsOnRevoked: onRevoked,
            attemptsOnLimited: onLimited,
            attempts: stats.total,
            wastedPer100Requests: round((wasted / settings.requests) * 100, 2),
            ok: record.ok,
            failed: record.failed,
            lost: record.lost,
            notSent: record.notSent,
            errors: record.errors,
            latencyP50Ms: round(quantile(record.latenciesMs, 0.5), 1),
            latencyP99Ms: round(p99, 1),
            wallMs: round(record.wallMs, 0),
            attemptsByKey: stats.byKey,
          },
          summary: `wasted ${wasted} attempts (${onRevoked} on revoked, ${onLimited} on limited) · ok ${record.ok}/${settings.requests} · failed ${record.failed} · lost ${record.lost}${record.notSent > 0 ? ` · not sent ${record.notSent}` : ''} · p99 ${fmt(p99)} ms · ${fmt(record.wallMs / 1000, 1)} s`,
        };
      } finally {
        await fake.close();
      }
    });

    const bare = wastedBy.get('bare-sdk');
    const recipe = wastedBy.get('recipe');
    for (const result of results) {
      const wasted = wastedBy.get(result.peer);
      if (wasted === undefined) continue;
      if (result.peer !== 'bare-sdk' && bare !== undefined) result.vsBare = `wasted ${ratio(wasted, bare)}`;
      if (result.peer !== 'recipe' && recipe !== undefined) result.vsRecipe = `wasted ${ratio(wasted, recipe)}`;
    }
    const library = results.find((result) => result.peer === 'library' && result.failed === undefined);
    const targets: TargetCheck[] = [];
    if (library !== undefined) {
      const others = [...wastedBy.entries()].filter(([id]) => id !== 'library').map(([, value]) => value);
      const fewest = others.length > 0 ? Math.min(...others) : undefined;
      const ok = library.figures['ok'] as number;
      targets.push({
        id: 'dead-keys.waste',
        target: 'every request answered, fewest attempts wasted (no number set by the issue)',
        measured: `${ok}/${settings.requests} ok, ${wastedBy.get('library')} wasted${fewest === undefined ? '' : `; fewest among peers ${fewest}`}`,
        met: ok === settings.requests && (fewest === undefined || wastedBy.get('library')! <= fewest),
      });
    }
    return {
      id: 'dead-keys',
      title: 'Dead keys',
      settings,
      results,
      targets,
      notes: [
        `${ordered.length} keys: ${settings.healthyKeys} healthy, one revoked (401), one answering 429 with Retry-After ${settings.limitedRetryAfterSeconds} s; ${settings.requests} requests, ${settings.concurrency} in flight; no peer is told which keys are dead.`,
        `Lost = no outcome when the run ended: ${settings.stallMs / 1000} s after the last outcome, or ${settings.deadlineMs / 1000} s after the start. openai ${'6.x'} sleeps any Retry-After it is given (no 60 s cap in this version), so its requests on the limited key wait 600 s.`,
        ...(parallel ? ['Quick run: the peers ran side by side, each on its own fake server.'] : []),
      ],
    };
  },
};
