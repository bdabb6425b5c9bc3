/**
 * The measurement shared by `overhead` and `streaming`: every peer in process runs the same batch
 * in interleaved rounds (the order rotating each round), after a shared warm-up, so that load from
 * elsewhere on the machine hits them alike; a peer's figure is its median over the rounds, and
 * its overhead against the bare SDK is the median of the per-round differences (the two ran
 * seconds apart). Portkey, whose work happens in another process, runs one shorter batch.
 */
import { bareSdkPeer } from '../peers/bare-sdk.js';
import type { Peer, PeerId, PeerSession } from '../peers/types.js';
import { benchRequest, drive, type RunRecord } from '../support/driver.js';
import { collectGarbage, median } from '../support/measure.js';
import type { ScenarioEnv } from './types.js';

export interface Batch {
  /** Per second, of the unit (requests or chunks). */
  rate: number;
  /** Client CPU per unit, µs. */
  cpuUs: number;
  /** The fake server's CPU per unit, µs. */
  serverCpuUs: number;
  /** Portkey's gateway CPU per unit, µs. */
  helperCpuUs: number | undefined;
  record: RunRecord;
}

export interface ThroughputPlan {
  stream: boolean;
  concurrency: number;
  /** Requests per batch. */
  perBatch: number;
  rounds: number;
  sharedWarmup: number;
  peerWarmup: number;
  /** Requests in Portkey's single batch (and its warm-up is a tenth of it). */
  portkeyBatch: number;
  deadlineMs: number;
  /** Units of a run: requests or content chunks. */
  units(record: RunRecord): number;
  /** Throws if a run is not clean (failures, missing chunks). */
  check(record: RunRecord): void;
}

export interface PeerBatches {
  batches: Batch[];
  failed?: string;
}

export function signed(value: number, digits = 1): string {
  if (!Number.isFinite(value)) return 'n/a';
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(digits)}`;
}

async function batch(env: ScenarioEnv, session: PeerSession, plan: ThroughputPlan, total: number): Promise<Batch> {
  // A GC first: no peer pays for another's garbage.
  collectGarbage();
  const serverBefore = await env.host.cpuMicros();
  const record = await drive(session, { concurrency: plan.concurrency, total, deadlineMs: plan.deadlineMs, makeRequest: () => benchRequest(plan.stream) });
  const serverAfter = await env.host.cpuMicros();
  plan.check(record);
  const units = Math.max(1, plan.units(record));
  return {
    rate: (units / record.wallMs) * 1000,
    cpuUs: record.cpuMicros / units,
    serverCpuUs: (serverAfter - serverBefore) / units,
    helperCpuUs: record.helperCpuMicros === undefined ? undefined : record.helperCpuMicros / units,
    record,
  };
}

export async function measureThroughput(env: ScenarioEnv, context: Parameters<Peer['start']>[0], plan: ThroughputPlan): Promise<Map<PeerId, PeerBatches>> {
  const results = new Map<PeerId, PeerBatches>(env.peers.map((peer) => [peer.id, { batches: [] }]));
  const sessions = new Map<PeerId, PeerSession>();
  const fail = (id: PeerId, error: unknown) => {
    results.get(id)!.failed = error instanceof Error ? error.message : String(error);
  };
  try {
    const warmer = await bareSdkPeer.start(context);
    await drive(warmer, { concurrency: plan.concurrency, total: plan.sharedWarmup, deadlineMs: plan.deadlineMs, makeRequest: () => benchRequest(plan.stream) });
    await warmer.close();
    for (const peer of env.peers) {
      try {
        const session = await peer.start(context);
        sessions.set(peer.id, session);
        const warmup = peer.id === 'portkey' ? Math.max(1, Math.round(plan.portkeyBatch / 10)) : plan.peerWarmup;
        const record = await drive(session, { concurrency: plan.concurrency, total: warmup, deadlineMs: plan.deadlineMs, makeRequest: () => benchRequest(plan.stream) });
        plan.check(record);
      } catch (error) {
        fail(peer.id, error);
      }
    }
    const inProcess = env.peers.filter((peer) => peer.id !== 'portkey' && sessions.has(peer.id) && results.get(peer.id)!.failed === undefined);
    for (let round = 0; round < plan.rounds; round++) {
      const order = inProcess.map((_, index) => inProcess[(index + round) % inProcess.length]!);
      for (const peer of order) {
        const entry = results.get(peer.id)!;
        if (entry.failed !== undefined) continue;
        try {
          entry.batches.push(await batch(env, sessions.get(peer.id)!, plan, plan.perBatch));
        } catch (error) {
          fail(peer.id, error);
        }
      }
    }
    const portkey = env.peers.find((peer) => peer.id === 'portkey');
    if (portkey !== undefined && sessions.has('portkey') && results.get('portkey')!.failed === undefined) {
      try {
        results.get('portkey')!.batches.push(await batch(env, sessions.get('portkey')!, plan, plan.portkeyBatch));
      } catch (error) {
        fail('portkey', error);
      }
    }
  } finally {
    for (const session of sessions.values()) await session.close();
  }
  return results;
}

/** Median over the rounds of (peer − baseline) client CPU per unit, pairing rounds by index. */
export function pairedCpuDifference(peer: PeerBatches | undefined, baseline: PeerBatches | undefined): number | undefined {
  if (peer === undefined || baseline === undefined || peer.failed !== undefined || baseline.failed !== undefined) return undefined;
  const count = Math.min(peer.batches.length, baseline.batches.length);
  if (count === 0) return undefined;
  const differences = Array.from({ length: count }, (_, index) => peer.batches[index]!.cpuUs - baseline.batches[index]!.cpuUs);
  return median(differences);
}

export function medianOf(entry: PeerBatches, pick: (batch: Batch) => number | undefined): number | undefined {
  const values = entry.batches.map(pick).filter((value): value is number => value !== undefined);
  return values.length === 0 ? undefined : median(values);
}
