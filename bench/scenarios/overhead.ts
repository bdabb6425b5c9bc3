/**
 * Overhead: no limits, answers at once (latency 0), the same requests at the same concurrency
 * through each peer. Requests per second, and client CPU per request: this process's CPU
 * (`process.cpuUsage`) over a batch divided by its requests. The fake server runs in a child
 * process, so its CPU is not counted (it is in the JSON); for Portkey the gateway's process CPU is
 * reported apart, since that is where its work happens. See `throughput.ts` for the rounds.
 */
import type { PeerId } from '../peers/types.js';
import { round } from '../support/measure.js';
import { measureThroughput, medianOf, pairedCpuDifference, signed, type PeerBatches } from './throughput.js';
import { fmt, measurePeer, ratio, type PeerResult, type Scenario, type TargetCheck } from './types.js';

export const overhead: Scenario = {
  id: 'overhead',
  title: 'Overhead',
  async run(env) {
    const settings = {
      keys: 4,
      latencyMs: 0,
      concurrency: 16,
      requestsPerBatch: env.quick ? 200 : 600,
      rounds: env.quick ? 5 : 11,
      sharedWarmupRequests: env.quick ? 800 : 4000,
      peerWarmupRequests: env.quick ? 200 : 1000,
      portkeyRequests: env.quick ? 300 : 1500,
    };
    const keys = Array.from({ length: settings.keys }, (_, index) => ({ key: `sk-or-v1-bench-overhead-${index + 1}`, label: `key-${index + 1}` }));
    const fake = await env.host.start({ keys, defaultModel: { latencyMs: settings.latencyMs } });
    let measured: Map<PeerId, PeerBatches>;
    try {
      measured = await measureThroughput(env, { baseURL: fake.baseURL, keys, model: 'bench/overhead', concurrency: settings.concurrency }, {
        stream: false,
        concurrency: settings.concurrency,
        perBatch: settings.requestsPerBatch,
        rounds: settings.rounds,
        sharedWarmup: settings.sharedWarmupRequests,
        peerWarmup: settings.peerWarmupRequests,
        portkeyBatch: settings.portkeyRequests,
        deadlineMs: 120_000,
        units: (record) => record.ok,
        check: (record) => {
          if (record.failed > 0 || record.lost > 0) throw new Error(`${record.failed} failed, ${record.lost} lost: ${JSON.stringify(record.errors)}`);
        },
      });
    } finally {
      await fake.close();
    }

    const results: PeerResult[] = [];
    for (const peer of env.peers) {
      results.push(
        await measurePeer(peer, env, async () => {
          const entry = measured.get(peer.id)!;
          if (entry.failed !== undefined) throw new Error(entry.failed);
          if (entry.batches.length === 0) throw new Error('no batch ran');
          const rps = medianOf(entry, (batch) => batch.rate)!;
          const cpuUs = medianOf(entry, (batch) => batch.cpuUs)!;
          const gatewayUs = medianOf(entry, (batch) => batch.helperCpuUs);
          return {
            peer: peer.id,
            name: peer.name,
            figures: {
              requestsPerSecond: round(rps, 0),
              clientCpuMicrosPerRequest: round(cpuUs, 1),
              fakeServerCpuMicrosPerRequest: round(medianOf(entry, (batch) => batch.serverCpuUs)!, 1),
              ...(gatewayUs === undefined ? {} : { gatewayCpuMicrosPerRequest: round(gatewayUs, 1) }),
              batches: entry.batches.map((batch) => ({ requests: batch.record.ok, wallMs: round(batch.record.wallMs, 0), rps: round(batch.rate, 0), cpuUs: round(batch.cpuUs, 1) })),
            },
            summary: `${fmt(rps)} req/s · ${fmt(cpuUs, 1)} µs client CPU/req` + (gatewayUs === undefined ? '' : ` (+ ${fmt(gatewayUs)} µs in the gateway process)`),
          };
        }),
      );
    }

    const rpsOf = (id: PeerId) => results.find((result) => result.peer === id && result.failed === undefined)?.figures['requestsPerSecond'] as number | undefined;
    const cpuOf = (id: PeerId) => results.find((result) => result.peer === id && result.failed === undefined)?.figures['clientCpuMicrosPerRequest'] as number | undefined;
    const against = (id: PeerId, baseline: PeerId) => {
      const rps = rpsOf(id);
      const baseRps = rpsOf(baseline);
      if (rps === undefined || baseRps === undefined) return undefined;
      // Peers in process ran in the same rounds: pair them. Portkey ran once: medians.
      const paired = id === 'portkey' ? undefined : pairedCpuDifference(measured.get(id), measured.get(baseline));
      const difference = paired ?? cpuOf(id)! - cpuOf(baseline)!;
      return { text: `${ratio(rps, baseRps)} req/s · ${signed(difference)} µs CPU/req`, rpsRatio: rps / baseRps, cpuDifference: difference };
    };
    for (const result of results) {
      if (result.failed !== undefined) continue;
      const bare = result.peer === 'bare-sdk' ? undefined : against(result.peer, 'bare-sdk');
      const recipe = result.peer === 'recipe' ? undefined : against(result.peer, 'recipe');
      if (bare !== undefined) {
        result.vsBare = bare.text;
        result.figures['vsBare'] = { requestsPerSecondRatio: round(bare.rpsRatio, 3), cpuMicrosAddedPerRequest: round(bare.cpuDifference, 1) };
      }
      if (recipe !== undefined) {
        result.vsRecipe = recipe.text;
        result.figures['vsRecipe'] = { requestsPerSecondRatio: round(recipe.rpsRatio, 3), cpuMicrosAddedPerRequest: round(recipe.cpuDifference, 1) };
      }
    }

    const targets: TargetCheck[] = [];
    const library = against('library', 'bare-sdk');
    if (library !== undefined) {
      targets.push({ id: 'overhead.rps', target: '≥ 95% of the bare SDK’s req/s', measured: `${(library.rpsRatio * 100).toFixed(1)}%`, met: library.rpsRatio >= 0.95 });
      targets.push({ id: 'overhead.cpu', target: '< 30 µs CPU added per request', measured: `${signed(library.cpuDifference)} µs`, met: library.cpuDifference < 30 });
    } else {
      targets.push({ id: 'overhead.rps', target: '≥ 95% of the bare SDK’s req/s, < 30 µs CPU added per request', measured: 'library or bare SDK not measured', met: null });
    }
    return {
      id: 'overhead',
      title: 'Overhead',
      settings,
      results,
      targets,
      notes: [
        `${settings.keys} keys without limits, answers with no delay, ${settings.concurrency} requests in flight; ${settings.rounds} interleaved rounds of ${settings.requestsPerBatch} requests per peer (Portkey: one batch of ${settings.portkeyRequests}).`,
        'Client CPU only: the fake server runs in a child process. Portkey’s gateway CPU is reported apart.',
      ],
    };
  },
};
