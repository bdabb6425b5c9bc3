/**
 * What the rate-limit scenarios (saturation and its variants, shared accounts, provider capacity)
 * share: the ratio columns against the baselines, the "ahead of every peer" targets, the longest
 * stretch without a completion, and the library's own view of itself (`PeerSession.observe`).
 */
import type { Peer, PeerContext, PeerObservations } from '../peers/types.js';
import { benchRequest, drive, type RunRecord } from '../support/driver.js';
import type { FakeServerHandle } from '../support/fake-host.js';
import type { ServerStats } from '../support/fake-protocol.js';
import { quantile } from '../support/measure.js';
import { fmt, pct, ratio, type PeerResult, type ScenarioId, type TargetCheck } from './types.js';

/** What one peer's closed-loop run against its own fake server gave, as the rate-limit rows read it. */
export interface LoadRun {
  record: RunRecord;
  observed: PeerObservations | undefined;
  /** Successful completions inside the measured span (warm-up excluded). */
  inSpan: number;
  /** What the server saw: every attempt, by status and by key. */
  stats: ServerStats;
  rateLimited: number;
  /** 429 answers over every attempt the server saw. */
  share429: number;
  p50: number;
  p99: number;
}

/**
 * Runs `concurrency` requests in a closed loop through a peer for `durationMs` (plus `drainMs` for
 * what is still in flight), asks the library for its own view, and counts what the server saw.
 */
export async function runLoad(
  peer: Peer,
  fake: FakeServerHandle,
  context: Omit<PeerContext, 'baseURL' | 'observe'>,
  settings: { durationMs: number; drainMs: number; warmupMs: number },
): Promise<LoadRun> {
  const session = await peer.start({ ...context, baseURL: fake.baseURL, observe: true });
  let record: RunRecord;
  let observed: PeerObservations | undefined;
  try {
    record = await drive(session, {
      concurrency: context.concurrency,
      durationMs: settings.durationMs,
      deadlineMs: settings.durationMs + settings.drainMs,
      makeRequest: () => benchRequest(false),
    });
    observed = session.observe?.();
  } finally {
    await session.close();
  }
  const stats = await fake.stats();
  const rateLimited = stats.byStatus['429'] ?? 0;
  return {
    record,
    observed,
    inSpan: record.okAtMs.filter((at) => at >= settings.warmupMs && at <= settings.durationMs).length,
    stats,
    rateLimited,
    share429: stats.total === 0 ? 0 : rateLimited / stats.total,
    p50: quantile(record.latenciesMs, 0.5),
    p99: quantile(record.latenciesMs, 0.99),
  };
}

/** A figure of a row that was measured, if it is a number. */
export function figureOf(result: PeerResult | undefined, name: string): number | undefined {
  if (result === undefined || result.failed !== undefined) return undefined;
  const value = result.figures[name];
  return typeof value === 'number' ? value : undefined;
}

/**
 * Fills `vsBare` and `vsRecipe` with each figure's ratio against the two baselines of the same run,
 * e.g. `goodput 1.00× · 429s 0.05×`.
 */
export function setRatios(results: readonly PeerResult[], parts: ReadonlyArray<{ name: string; text: string }>): void {
  const bare = results.find((result) => result.peer === 'bare-sdk');
  const recipe = results.find((result) => result.peer === 'recipe');
  const compare = (result: PeerResult, baseline: PeerResult | undefined): string | undefined => {
    if (baseline === undefined || baseline === result || baseline.failed !== undefined || result.failed !== undefined) return undefined;
    const texts = parts.flatMap(({ name, text }) => {
      const value = figureOf(result, name);
      const base = figureOf(baseline, name);
      return value === undefined || base === undefined ? [] : [`${text} ${ratio(value, base)}`];
    });
    return texts.length === 0 ? undefined : texts.join(' · ');
  };
  for (const result of results) {
    const vsBare = compare(result, bare);
    const vsRecipe = compare(result, recipe);
    if (vsBare !== undefined) result.vsBare = vsBare;
    if (vsRecipe !== undefined) result.vsRecipe = vsRecipe;
  }
}

export interface AheadOptions {
  id: ScenarioId;
  results: readonly PeerResult[];
  /** Goodput as a fraction of the ceiling (Σ quota, or what the provider's slots give), as `goodputFraction`. */
  ceilingName: string;
  /** A tie (within half a point) at or above this fraction is a tie at the ceiling: nobody can pass it. */
  ceilingTie: number;
  /** Also a target of a smaller 429 share (`share429`) than every peer's. */
  on429: boolean;
}

/**
 * "Ahead of every peer": goodput more than half a point above the best peer's (a tie at the ceiling
 * gets its own id, `<id>.ahead-tie`, so the notes can say it is no loss), and, with `on429`, a
 * smaller share of attempts answered 429 than every peer (`<id>.ahead-429`; a tie is not ahead).
 */
export function aheadTargets(options: AheadOptions): TargetCheck[] {
  const { id, results } = options;
  const library = results.find((result) => result.peer === 'library');
  const goodput = figureOf(library, 'goodputFraction');
  const share = figureOf(library, 'share429');
  const others = results.filter((result) => result.peer !== 'library' && result.failed === undefined);
  const targets: TargetCheck[] = [];
  if (goodput === undefined || share === undefined) return targets;

  let best: PeerResult | undefined;
  for (const result of others) {
    const value = figureOf(result, 'goodputFraction');
    if (value !== undefined && (best === undefined || value > figureOf(best, 'goodputFraction')!)) best = result;
  }
  const bestGoodput = figureOf(best, 'goodputFraction');
  const tie = bestGoodput !== undefined && Math.abs(goodput - bestGoodput) < 0.005;
  const atCeiling = tie && goodput >= options.ceilingTie;
  targets.push({
    id: atCeiling ? `${id}.ahead-tie` : `${id}.ahead`,
    target: 'goodput ahead of every peer',
    measured:
      best === undefined
        ? 'no peer measured'
        : `${pct(goodput)} vs best peer ${best.name} ${pct(bestGoodput!)}${atCeiling ? ` (a tie at ${options.ceilingName})` : tie ? ' (a tie)' : ''}`,
    met: bestGoodput === undefined ? null : goodput > bestGoodput + 0.005,
  });

  if (options.on429) {
    let fewest: PeerResult | undefined;
    for (const result of others) {
      const value = figureOf(result, 'share429');
      if (value !== undefined && (fewest === undefined || value < figureOf(fewest, 'share429')!)) fewest = result;
    }
    const fewestShare = figureOf(fewest, 'share429');
    targets.push({
      id: `${id}.ahead-429`,
      target: 'a smaller share of attempts answered 429 than every peer',
      measured:
        fewest === undefined
          ? 'no peer measured'
          : `${pct(share, 2)} vs fewest among peers ${fewest.name} ${pct(fewestShare!, 2)}${share === fewestShare ? ' (a tie)' : ''}`,
      met: fewestShare === undefined ? null : share < fewestShare,
    });
  }
  return targets;
}

/**
 * The longest stretch of [from, to] (ms since the start of the run) with no successful completion:
 * what a user sees of a client that parks everything, or waits out a long backoff.
 */
export function longestGapMs(okAtMs: readonly number[], from: number, to: number): number {
  let previous = from;
  let longest = 0;
  for (const at of [...okAtMs].sort((a, b) => a - b)) {
    if (at < from) continue;
    if (at > to) break;
    longest = Math.max(longest, at - previous);
    previous = at;
  }
  return Math.max(longest, to - previous);
}

/**
 * The library's view of itself, for its row's summary: what it parked and for how long, the quotas
 * its health shows at the end (told or learnt), and any concurrency limit it reported.
 */
export function libraryView(observed: PeerObservations): string {
  const parks = Object.values(observed.parks).reduce((sum, count) => sum + count, 0);
  const scopes = Object.entries(observed.parks)
    .map(([name, count]) => `${count} ${name}`)
    .join(', ');
  const parts = [parks === 0 ? 'parked nothing' : `parked ${fmt(parks)}× (${scopes}; longest ${fmt(observed.longestParkMs)} ms)`];
  if (observed.quotas.length > 0) {
    const quotas = observed.quotas.map(
      (quota) => `${quota.scope} ${fmt(quota.limit)}/${fmt(quota.windowMs)} ms${quota.source === undefined ? '' : ` (${quota.source})`}`,
    );
    parts.push(`quotas in health: ${quotas.join(', ')}`);
  }
  const limits = Object.entries(observed.concurrency);
  if (limits.length > 0) {
    const texts = limits.map(([name, limit]) => `${name} ${limit.last} at the end (${limit.min}–${limit.max}, ${limit.changes} changes)`);
    parts.push(`concurrency limit: ${texts.join(', ')}`);
  }
  return parts.join(' · ');
}
