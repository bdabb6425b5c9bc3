import type { Peer, PeerId } from '../peers/types.js';
import type { FakeHost } from '../support/fake-host.js';

export type ScenarioId =
  | 'saturation'
  | 'saturation-unknown'
  | 'saturation-slow'
  | 'shared-accounts'
  | 'provider-capacity'
  | 'overhead'
  | 'streaming'
  | 'dead-keys'
  | 'scale'
  | 'fleet';

export interface ScenarioEnv {
  host: FakeHost;
  quick: boolean;
  peers: readonly Peer[];
  log: (message: string) => void;
}

/** One peer's figures in one scenario; `failed` when it could not be measured. */
export interface PeerResult {
  peer: PeerId;
  name: string;
  /** Every figure, for the JSON. */
  figures: Record<string, unknown>;
  /** The figures that matter, in one line, for the table. */
  summary: string;
  /** Ratios against the baselines measured in the same run. */
  vsBare?: string;
  vsRecipe?: string;
  failed?: string;
  /**
   * Whether the table puts the scenario's targets on this row. Default: on the library's row. The
   * fleet scenario has two library rows (memory store, Redis store) and sets it on the Redis one.
   */
  showsTargets?: boolean;
}

export interface TargetCheck {
  /** Stable id, e.g. `overhead.cpu`; the report's notes on missed targets are keyed by it. */
  id: string;
  target: string;
  measured: string;
  /** null when it could not be measured. */
  met: boolean | null;
}

export interface ScenarioResult {
  id: ScenarioId;
  title: string;
  settings: Record<string, unknown>;
  results: PeerResult[];
  targets: TargetCheck[];
  notes: string[];
  durationMs: number;
  failed?: string;
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  run(env: ScenarioEnv): Promise<Omit<ScenarioResult, 'durationMs'>>;
}

/** Runs `body` for one peer, turning any throw into a `failed` row rather than ending the bench. */
export async function measurePeer(peer: Peer, env: ScenarioEnv, body: () => Promise<PeerResult>): Promise<PeerResult> {
  const started = Date.now();
  try {
    const result = await body();
    env.log(`  ${peer.name}: ${result.summary} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return result;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    env.log(`  ${peer.name}: failed: ${reason}`);
    return { peer: peer.id, name: peer.name, figures: {}, summary: `failed: ${reason}`, failed: reason };
  }
}

/**
 * Measures every peer, one after another, or side by side (each on its own fake server) when
 * `parallel`: the quick run does that for the scenarios whose figures are counts and waits rather
 * than CPU (saturation, dead keys), to stay under a minute.
 */
export async function forEachPeer(env: ScenarioEnv, parallel: boolean, body: (peer: Peer) => Promise<PeerResult>): Promise<PeerResult[]> {
  if (parallel) return Promise.all(env.peers.map((peer) => measurePeer(peer, env, () => body(peer))));
  const results: PeerResult[] = [];
  for (const peer of env.peers) results.push(await measurePeer(peer, env, () => body(peer)));
  return results;
}

export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function pct(fraction: number, digits = 1): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : 'n/a';
}

export function ratio(value: number, baseline: number, digits = 2): string {
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return 'n/a';
  return `${(value / baseline).toFixed(digits)}×`;
}
