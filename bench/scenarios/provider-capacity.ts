/**
 * Provider capacity (issue 12): one model whose providers serve N requests at once, across every
 * key and account; above N the fake server answers OpenRouter's upstream 429 (`Provider returned
 * error`, `metadata.provider_name`), after the model's latency, with no `X-RateLimit-*` and no
 * `Retry-After`, as OpenRouter relays a provider's. The keys have no quota. Nobody is told N: it
 * is a concurrency to discover (openrouter-wire.md §8). Demand is far above it (a closed loop of
 * `concurrency` requests). Each peer gets a fresh fake server.
 *
 * - goodput: successful completions per second over the measured span (warm-up excluded), as a
 *   fraction of what N slots give (N answers per `latencyMs`);
 * - 429 share: 429 answers over every attempt the fake server saw (drain included);
 * - failed, lost: every request must be answered;
 * - longest stall: the longest stretch of the measured span with no successful completion (what a
 *   client that parks the model, or sleeps a long backoff, shows from the outside); also over the
 *   whole run, from the first request to the last outcome.
 */
import type { BenchKey } from '../peers/types.js';
import { round } from '../support/measure.js';
import { aheadTargets, longestGapMs, libraryView, runLoad, setRatios } from './compare.js';
import { fmt, forEachPeer, pct, type PeerResult, type Scenario, type TargetCheck } from './types.js';

const MAX_STALL_MS = 3000;

export const providerCapacity: Scenario = {
  id: 'provider-capacity',
  title: 'Provider capacity, untold',
  async run(env) {
    const id = 'provider-capacity' as const;
    const title = providerCapacity.title;
    const settings = {
      keys: 4,
      slots: 4,
      latencyMs: 200,
      concurrency: 48,
      durationMs: env.quick ? 4000 : 10_000,
      warmupMs: 1000,
      /** How long requests still in flight at the end may take to finish. */
      drainMs: env.quick ? 15_000 : 30_000,
      providerName: 'BenchProvider',
    };
    const model = 'bench/provider-capacity';
    const slotsPerSecond = (settings.slots * 1000) / settings.latencyMs;
    const spanSeconds = (settings.durationMs - settings.warmupMs) / 1000;
    const keys: BenchKey[] = Array.from({ length: settings.keys }, (_, index) => ({
      key: `sk-or-v1-bench-${id}-${index + 1}`,
      label: `key-${index + 1}`,
    }));

    // One after another: goodput here is a matter of latency, which peers side by side would skew.
    const results = await forEachPeer(env, false, async (peer) => {
      const fake = await env.host.start({
        keys: keys.map((key) => ({ key: key.key, label: key.label })),
        models: {
          [model]: {
            latencyMs: settings.latencyMs,
            capacity: { concurrent: settings.slots, providerName: settings.providerName },
          },
        },
      });
      try {
        const { record, observed, stats, inSpan, rateLimited, share429, p50, p99 } = await runLoad(
          peer,
          fake,
          { keys, model, concurrency: settings.concurrency },
          settings,
        );
        const goodput = inSpan / spanSeconds / slotsPerSecond;
        const stall = longestGapMs(record.okAtMs, settings.warmupMs, settings.durationMs);
        const stallWholeRun = longestGapMs(record.okAtMs, 0, record.wallMs);
        return {
          peer: peer.id,
          name: peer.name,
          figures: {
            goodputFraction: round(goodput, 4),
            goodputPerSecond: round(inSpan / spanSeconds, 2),
            slotsPerSecond,
            completedInSpan: inSpan,
            attempts: stats.total,
            answered429: rateLimited,
            share429: round(share429, 4),
            attemptsByStatus: stats.byStatus,
            longestStallInSpanMs: round(stall, 0),
            longestStallWholeRunMs: round(stallWholeRun, 0),
            latencyP50Ms: round(p50, 1),
            latencyP99Ms: round(p99, 1),
            issued: record.issued,
            ok: record.ok,
            failed: record.failed,
            lost: record.lost,
            errors: record.errors,
            wallMs: round(record.wallMs, 0),
            ...(observed === undefined ? {} : { observed }),
          },
          summary:
            `goodput ${pct(goodput, 1)} of ${settings.slots} slots · 429s ${pct(share429)} of ${fmt(stats.total)} attempts · ` +
            `longest stall ${fmt(stall)} ms (${fmt(stallWholeRun)} ms over the run) · p50 ${fmt(p50)} ms · p99 ${fmt(p99)} ms · ` +
            `failed ${record.failed} · lost ${record.lost}${observed === undefined ? '' : ` · ${libraryView(observed)}`}`,
        } satisfies PeerResult;
      } finally {
        await fake.close();
      }
    });

    setRatios(results, [
      { name: 'goodputFraction', text: 'goodput' },
      { name: 'share429', text: '429s' },
    ]);

    const library = results.find((result) => result.peer === 'library');
    const targets: TargetCheck[] = [];
    if (library !== undefined && library.failed === undefined) {
      const figures = library.figures;
      const goodput = figures['goodputFraction'] as number;
      const share = figures['share429'] as number;
      const failed = figures['failed'] as number;
      const lost = figures['lost'] as number;
      const stall = figures['longestStallInSpanMs'] as number;
      targets.push({
        id: `${id}.goodput`,
        target: `goodput ≥ 90% of what ${settings.slots} slots give, untold`,
        measured: `${pct(goodput)} (${fmt(figures['goodputPerSecond'] as number, 1)}/s of ${fmt(slotsPerSecond)}/s)`,
        met: goodput >= 0.9,
      });
      targets.push({
        id: `${id}.429`,
        target: '≤ 5% of attempts answered 429',
        measured: `${pct(share, 2)}, ${fmt(figures['answered429'] as number)} of ${fmt(figures['attempts'] as number)} attempts`,
        met: share <= 0.05,
      });
      targets.push({
        id: `${id}.answered`,
        target: 'every request answered (failed = lost = 0)',
        measured: `failed ${failed}, lost ${lost}`,
        met: failed === 0 && lost === 0,
      });
      targets.push({
        id: `${id}.stall`,
        target: `longest stall ≤ ${MAX_STALL_MS / 1000} s (no completion in the measured span)`,
        measured: `${fmt(stall)} ms`,
        met: stall <= MAX_STALL_MS,
      });
      targets.push(...aheadTargets({ id, results, ceilingName: `${settings.slots} slots`, ceilingTie: 0.95, on429: true }));
    } else {
      targets.push({
        id: `${id}.goodput`,
        target: `goodput ≥ 90% of ${settings.slots} slots, ≤ 5% 429s, every request answered, stall ≤ 3 s, ahead of every peer`,
        measured: 'library not measured',
        met: null,
      });
    }

    return {
      id,
      title,
      settings: { ...settings, model, slotsPerSecond, measuredSeconds: spanSeconds },
      results,
      targets,
      notes: [
        `One model served ${settings.slots} at a time (answers in ${settings.latencyMs} ms: ${fmt(slotsPerSecond)} answers/s at most), ${settings.concurrency} requests in flight over ${settings.keys} keys without quotas. Above ${settings.slots} the server answers the upstream 429 (\`Provider returned error\`, provider ${settings.providerName}) after the same ${settings.latencyMs} ms, with no \`X-RateLimit-*\` and no \`Retry-After\`. Goodput over ${spanSeconds} s after a ${settings.warmupMs} ms warm-up.`,
        'Nobody is told the capacity (no `maxConcurrent`, no model limits): it is a concurrency to discover from the 429s. Longest stall = the longest stretch of the measured span with no successful completion.',
      ],
    };
  },
};
