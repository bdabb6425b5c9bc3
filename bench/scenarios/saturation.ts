/**
 * Saturation: K keys, each with a request quota per window at the fake server, and more demand
 * than their sum (a closed loop of `concurrency` requests against a server that answers in
 * `latencyMs`). Only the library is told the quotas (a user knows their keys' quotas; the peers
 * have no place to put them). Each peer gets a fresh fake server, so windows and counters start empty.
 *
 * - goodput: successful completions per window over the measured span (warm-up excluded), as a
 *   fraction of Σ quota;
 * - 429 share: 429 answers over every attempt the fake server saw (drain included);
 * - latency p50/p99 of successful requests, from the call to the outcome;
 * - failed: requests that ended with an error; lost: requests without an outcome at the deadline.
 *
 * Two variants: answers in 20 ms (both runs), and in 250 ms (full run only), where an answer takes
 * a quarter of the quota window, as a long non-streamed generation does against a per-minute quota.
 */
import type { BenchKey } from '../peers/types.js';
import { benchRequest, drive } from '../support/driver.js';
import { quantile, round } from '../support/measure.js';
import { fmt, forEachPeer, pct, ratio, type PeerResult, type Scenario, type ScenarioId, type TargetCheck } from './types.js';

function saturationScenario(id: ScenarioId, title: string, latencyMs: number): Scenario {
  return {
    id,
    title,
    async run(env) {
      const settings = {
        keys: 4,
        quotaRequests: 25,
        windowMs: 1000,
        latencyMs,
        concurrency: 64,
        durationMs: env.quick ? 3000 : 9000,
        warmupMs: 1000,
        /** How long requests still in flight at the end may take to finish. */
        drainMs: env.quick ? 10_000 : 25_000,
      };
      const sumQuota = settings.keys * settings.quotaRequests;
      const keys: BenchKey[] = Array.from({ length: settings.keys }, (_, index) => ({
        key: `sk-or-v1-bench-${id}-${index + 1}`,
        label: `key-${index + 1}`,
        limits: { quota: { requests: settings.quotaRequests, windowMs: settings.windowMs } },
      }));
      const windows = (settings.durationMs - settings.warmupMs) / settings.windowMs;
      const goodputs = new Map<string, number>();

      // One after another: the library's goodput depends on answer latency, which peers running
      // side by side on two cores would inflate for one another.
      const results = await forEachPeer(env, false, async (peer) => {
        const fake = await env.host.start({
          keys: keys.map((key) => ({
            key: key.key,
            label: key.label,
            quota: { requests: settings.quotaRequests, windowMs: settings.windowMs },
          })),
          defaultModel: { latencyMs: settings.latencyMs },
        });
        try {
          const session = await peer.start({ baseURL: fake.baseURL, keys, model: `bench/${id}`, concurrency: settings.concurrency });
          let record;
          try {
            record = await drive(session, {
              concurrency: settings.concurrency,
              durationMs: settings.durationMs,
              deadlineMs: settings.durationMs + settings.drainMs,
              makeRequest: () => benchRequest(false),
            });
          } finally {
            await session.close();
          }
          const stats = await fake.stats();
          const inSpan = record.okAtMs.filter((at) => at >= settings.warmupMs && at <= settings.durationMs).length;
          const goodput = inSpan / windows / sumQuota;
          const rateLimited = stats.byStatus['429'] ?? 0;
          const share429 = stats.total === 0 ? 0 : rateLimited / stats.total;
          const p50 = quantile(record.latenciesMs, 0.5);
          const p99 = quantile(record.latenciesMs, 0.99);
          goodputs.set(peer.id, goodput);
          return {
            peer: peer.id,
            name: peer.name,
            figures: {
              goodputFraction: round(goodput, 4),
              completedInSpan: inSpan,
              attempts: stats.total,
              answered429: rateLimited,
              share429: round(share429, 4),
              attemptsByStatus: stats.byStatus,
              latencyP50Ms: round(p50, 1),
              latencyP99Ms: round(p99, 1),
              issued: record.issued,
              ok: record.ok,
              failed: record.failed,
              lost: record.lost,
              errors: record.errors,
              wallMs: round(record.wallMs, 0),
            },
            summary: `goodput ${pct(goodput, 1)} of Σ quota · 429s ${pct(share429)} of ${fmt(stats.total)} attempts · p50 ${fmt(p50)} ms · p99 ${fmt(p99)} ms · failed ${record.failed} · lost ${record.lost}`,
          };
        } finally {
          await fake.close();
        }
      });

      const bare = goodputs.get('bare-sdk');
      const recipe = goodputs.get('recipe');
      for (const result of results) {
        const goodput = goodputs.get(result.peer);
        if (goodput === undefined) continue;
        if (result.peer !== 'bare-sdk' && bare !== undefined) result.vsBare = `goodput ${ratio(goodput, bare)}`;
        if (result.peer !== 'recipe' && recipe !== undefined) result.vsRecipe = `goodput ${ratio(goodput, recipe)}`;
      }

      const library = results.find((result) => result.peer === 'library');
      const targets: TargetCheck[] = [];
      if (library !== undefined && library.failed === undefined) {
        const goodput = library.figures['goodputFraction'] as number;
        const share = library.figures['share429'] as number;
        const lost = library.figures['lost'] as number;
        let bestPeer: PeerResult | undefined;
        for (const result of results) {
          if (result.peer === 'library' || result.failed !== undefined) continue;
          if (bestPeer === undefined || goodputs.get(result.peer)! > goodputs.get(bestPeer.peer)!) bestPeer = result;
        }
        const bestGoodput = bestPeer === undefined ? undefined : goodputs.get(bestPeer.peer);
        const tie = bestGoodput !== undefined && Math.abs(goodput - bestGoodput) < 0.005;
        const atQuota = tie && goodput >= 0.99;
        targets.push({ id: `${id}.goodput`, target: 'goodput ≥ 97% of Σ quota', measured: pct(goodput), met: goodput >= 0.97 });
        targets.push({ id: `${id}.429`, target: '< 1% of attempts answered 429', measured: pct(share, 2), met: share < 0.01 });
        targets.push({
          id: atQuota ? `${id}.ahead-tie` : `${id}.ahead`,
          target: 'goodput ahead of every peer',
          measured:
            bestPeer === undefined
              ? 'no peer measured'
              : `${pct(goodput)} vs best peer ${bestPeer.name} ${pct(bestGoodput!)}${atQuota ? ' (a tie at the quota)' : tie ? ' (a tie)' : ''}`,
          met: bestGoodput === undefined ? null : goodput > bestGoodput + 0.005,
        });
        targets.push({ id: `${id}.lost`, target: 'requests lost = 0', measured: String(lost), met: lost === 0 });
      } else {
        targets.push({
          id: `${id}.goodput`,
          target: 'goodput ≥ 97% of Σ quota, < 1% 429s, ahead of every peer',
          measured: 'library not measured',
          met: null,
        });
      }

      return {
        id,
        title,
        settings: { ...settings, sumQuotaPerWindow: sumQuota, measuredWindows: windows },
        results,
        targets,
        notes: [
          `${settings.keys} keys × ${settings.quotaRequests} requests per ${settings.windowMs} ms window (Σ ${sumQuota}), ${settings.concurrency} requests in flight against ${settings.latencyMs} ms answers: demand far above Σ quota. Goodput over ${windows} windows after a ${settings.warmupMs} ms warm-up.`,
          'Only the library is told the quotas; the peers have no place for them and learn from 429s.',
        ],
      };
    },
  };
}

export const saturation = saturationScenario('saturation', 'Saturation', 20);
/** Full run only: answers take a quarter of the quota window. */
export const saturationSlow = saturationScenario('saturation-slow', 'Saturation, 250 ms answers', 250);
