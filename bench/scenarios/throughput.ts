/**
 * The measurement shared by `overhead` and `streaming`: every peer in process runs the same batch
 * in interleaved rounds (the order rotating each round), after a shared warm-up, so that load from
 * elsewhere on the machine hits them alike; a peer's figure is its median over the rounds, and
 * its overhead against the bare SDK is the median of the per-round differences (the two ran
 * seconds apart). Portkey, whose work happens in another process, runs one shorter batch.
 */
import { bareSdkPeer } from '../peers/bare-sdk.js';
import type { Peer, PeerContext, PeerId, PeerSession } from '../peers/types.js';
import { benchRequest, drive, type RunRecord } from '../support/driver.js';
import type { FakeStartOptions } from '../support/fake-protocol.js';
import { collectGarbage, median, round } from '../support/measure.js';
import { fmt, measurePeer, ratio, type PeerResult, type ScenarioEnv } from './types.js';

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
  // A scavenge first: no peer pays for the young garbage of the batch before. Not a full GC: after
  // any full GC V8 deoptimises code every peer runs (undici's, Node's event loop), and each peer
  // spends about twice its CPU per request over its next ~2,000 requests; a batch that began with
  // one measured that recovery. A batch long enough holds the full GCs its own garbage brings (V8
  // runs one every few thousand requests), at the rate the peer's own allocations set.
  collectGarbage('young');
  const serverBefore = await env.host.cpuMicros();
  const record = await drive(session, {
    concurrency: plan.concurrency,
    total,
    deadlineMs: plan.deadlineMs,
    makeRequest: () => benchRequest(plan.stream),
  });
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

export async function measureThroughput(
  env: ScenarioEnv,
  context: Parameters<Peer['start']>[0],
  plan: ThroughputPlan,
): Promise<Map<PeerId, PeerBatches>> {
  const results = new Map<PeerId, PeerBatches>(env.peers.map((peer) => [peer.id, { batches: [] }]));
  const sessions = new Map<PeerId, PeerSession>();
  const fail = (id: PeerId, error: unknown) => {
    results.get(id)!.failed = error instanceof Error ? error.message : String(error);
  };
  try {
    const warmer = await bareSdkPeer.start(context);
    await drive(warmer, {
      concurrency: plan.concurrency,
      total: plan.sharedWarmup,
      deadlineMs: plan.deadlineMs,
      makeRequest: () => benchRequest(plan.stream),
    });
    await warmer.close();
    for (const peer of env.peers) {
      try {
        const session = await peer.start(context);
        sessions.set(peer.id, session);
        const warmup = peer.id === 'portkey' ? Math.max(1, Math.round(plan.portkeyBatch / 10)) : plan.peerWarmup;
        const record = await drive(session, {
          concurrency: plan.concurrency,
          total: warmup,
          deadlineMs: plan.deadlineMs,
          makeRequest: () => benchRequest(plan.stream),
        });
        plan.check(record);
      } catch (error) {
        fail(peer.id, error);
      }
    }
    const inProcess = env.peers.filter(
      (peer) => peer.id !== 'portkey' && sessions.has(peer.id) && results.get(peer.id)!.failed === undefined,
    );
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

/** `measureThroughput` on a fake server of its own, started with `server` and closed after. */
export async function measureOnFakeServer(
  env: ScenarioEnv,
  server: FakeStartOptions,
  context: Omit<PeerContext, 'baseURL'>,
  plan: ThroughputPlan,
): Promise<Map<PeerId, PeerBatches>> {
  const fake = await env.host.start(server);
  try {
    return await measureThroughput(env, { ...context, baseURL: fake.baseURL }, plan);
  } finally {
    await fake.close();
  }
}

/** Throws unless every request of the run succeeded. */
export function requireClean(record: RunRecord): void {
  if (record.failed > 0 || record.lost > 0)
    throw new Error(`${record.failed} failed, ${record.lost} lost: ${JSON.stringify(record.errors)}`);
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

/** How `throughputResults` names and rounds one scenario's figures. */
export interface ThroughputFigures {
  /** The rate's figure, e.g. `requestsPerSecond`; its ratio against a baseline is `${rate}Ratio`. */
  rate: string;
  /** The unit in figure names, e.g. `Request`: `clientCpuMicrosPer${unit}`, `cpuMicrosAddedPer${unit}`… */
  unit: string;
  /** The rate and the unit in the table, e.g. `req/s` and `req`. */
  rateText: string;
  unitText: string;
  /** Decimals: CPU figures in the JSON; client CPU, gateway CPU and CPU differences in the table. */
  digits: { json: number; cpu: number; gateway: number; difference: number };
  /** One batch, for the JSON. */
  batch: (batch: Batch) => Record<string, unknown>;
}

export interface ThroughputComparison {
  text: string;
  rateRatio: number;
  cpuDifference: number;
}

/**
 * Every peer's row from `measureThroughput`'s batches (medians over the rounds), with its ratios
 * against the bare SDK and the recipe; `against` compares two peers for the scenario's targets.
 */
export async function throughputResults(
  env: ScenarioEnv,
  measured: Map<PeerId, PeerBatches>,
  figures: ThroughputFigures,
): Promise<{ results: PeerResult[]; against: (id: PeerId, baseline: PeerId) => ThroughputComparison | undefined }> {
  const { rate: rateName, unit, rateText, unitText, digits } = figures;
  const cpuName = `clientCpuMicrosPer${unit}`;
  const results: PeerResult[] = [];
  for (const peer of env.peers) {
    results.push(
      await measurePeer(peer, env, async () => {
        const entry = measured.get(peer.id)!;
        if (entry.failed !== undefined) throw new Error(entry.failed);
        if (entry.batches.length === 0) throw new Error('no batch ran');
        const rate = medianOf(entry, (batch) => batch.rate)!;
        const cpuUs = medianOf(entry, (batch) => batch.cpuUs)!;
        const gatewayUs = medianOf(entry, (batch) => batch.helperCpuUs);
        return {
          peer: peer.id,
          name: peer.name,
          figures: {
            [rateName]: round(rate, 0),
            [cpuName]: round(cpuUs, digits.json),
            [`fakeServerCpuMicrosPer${unit}`]: round(
              medianOf(entry, (batch) => batch.serverCpuUs)!,
              digits.json,
            ),
            ...(gatewayUs === undefined ? {} : { [`gatewayCpuMicrosPer${unit}`]: round(gatewayUs, digits.json) }),
            batches: entry.batches.map(figures.batch),
          },
          summary:
            `${fmt(rate)} ${rateText} · ${fmt(cpuUs, digits.cpu)} µs client CPU/${unitText}` +
            (gatewayUs === undefined ? '' : ` (+ ${fmt(gatewayUs, digits.gateway)} µs in the gateway process)`),
        };
      }),
    );
  }

  const figure = (id: PeerId, name: string) =>
    results.find((result) => result.peer === id && result.failed === undefined)?.figures[name] as number | undefined;
  const against = (id: PeerId, baseline: PeerId): ThroughputComparison | undefined => {
    const rate = figure(id, rateName);
    const baseRate = figure(baseline, rateName);
    if (rate === undefined || baseRate === undefined) return undefined;
    // Peers in process ran in the same rounds: pair them. Portkey ran once: medians.
    const paired = id === 'portkey' ? undefined : pairedCpuDifference(measured.get(id), measured.get(baseline));
    const difference = paired ?? figure(id, cpuName)! - figure(baseline, cpuName)!;
    return {
      text: `${ratio(rate, baseRate)} ${rateText} · ${signed(difference, digits.difference)} µs CPU/${unitText}`,
      rateRatio: rate / baseRate,
      cpuDifference: difference,
    };
  };
  const compared = (comparison: ThroughputComparison) => ({
    [`${rateName}Ratio`]: round(comparison.rateRatio, 3),
    [`cpuMicrosAddedPer${unit}`]: round(comparison.cpuDifference, digits.json),
  });
  for (const result of results) {
    if (result.failed !== undefined) continue;
    const bare = result.peer === 'bare-sdk' ? undefined : against(result.peer, 'bare-sdk');
    const recipe = result.peer === 'recipe' ? undefined : against(result.peer, 'recipe');
    if (bare !== undefined) {
      result.vsBare = bare.text;
      result.figures['vsBare'] = compared(bare);
    }
    if (recipe !== undefined) {
      result.vsRecipe = recipe.text;
      result.figures['vsRecipe'] = compared(recipe);
    }
  }
  return { results, against };
}
