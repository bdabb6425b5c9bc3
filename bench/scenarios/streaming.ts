/**
 * Streaming: many concurrent streams of many chunks, no delay between chunks. Chunks per second,
 * and client CPU per content chunk; a peer's overhead per chunk is (its CPU − the bare SDK's CPU)
 * / chunks, the bare SDK iterating its own `Stream` and counting content deltas. The fake server
 * runs in a child process, so its CPU is not counted. See `throughput.ts` for the rounds.
 */
import type { PeerId } from '../peers/types.js';
import { median, round } from '../support/measure.js';
import { measureThroughput, medianOf, pairedCpuDifference, signed, type PeerBatches } from './throughput.js';
import { fmt, measurePeer, ratio, type PeerResult, type Scenario, type TargetCheck } from './types.js';

export const streaming: Scenario = {
  id: 'streaming',
  title: 'Streaming',
  async run(env) {
    const settings = {
      keys: 4,
      concurrency: env.quick ? 32 : 64,
      chunksPerStream: env.quick ? 200 : 1000,
      streamsPerBatch: env.quick ? 32 : 64,
      rounds: env.quick ? 5 : 7,
      sharedWarmupStreams: env.quick ? 64 : 128,
      peerWarmupStreams: env.quick ? 16 : 64,
      portkeyStreams: env.quick ? 32 : 96,
    };
    const keys = Array.from({ length: settings.keys }, (_, index) => ({ key: `sk-or-v1-bench-streaming-${index + 1}`, label: `key-${index + 1}` }));
    const fake = await env.host.start({
      keys,
      defaultModel: { latencyMs: 0, firstTokenMs: 0, chunkCount: settings.chunksPerStream, chunkGapMs: 0 },
      answerChars: settings.chunksPerStream * 8,
    });
    let measured: Map<PeerId, PeerBatches>;
    try {
      measured = await measureThroughput(env, { baseURL: fake.baseURL, keys, model: 'bench/streaming', concurrency: settings.concurrency }, {
        stream: true,
        concurrency: settings.concurrency,
        perBatch: settings.streamsPerBatch,
        rounds: settings.rounds,
        sharedWarmup: settings.sharedWarmupStreams,
        peerWarmup: settings.peerWarmupStreams,
        portkeyBatch: settings.portkeyStreams,
        deadlineMs: 180_000,
        units: (record) => record.chunks,
        check: (record) => {
          if (record.failed > 0 || record.lost > 0) throw new Error(`${record.failed} failed, ${record.lost} lost: ${JSON.stringify(record.errors)}`);
          if (record.chunks !== record.ok * settings.chunksPerStream) throw new Error(`received ${record.chunks} content chunks, expected ${record.ok * settings.chunksPerStream}`);
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
          const rate = medianOf(entry, (batch) => batch.rate)!;
          const cpuUs = medianOf(entry, (batch) => batch.cpuUs)!;
          const gatewayUs = medianOf(entry, (batch) => batch.helperCpuUs);
          return {
            peer: peer.id,
            name: peer.name,
            figures: {
              chunksPerSecond: round(rate, 0),
              clientCpuMicrosPerChunk: round(cpuUs, 3),
              fakeServerCpuMicrosPerChunk: round(medianOf(entry, (batch) => batch.serverCpuUs)!, 3),
              ...(gatewayUs === undefined ? {} : { gatewayCpuMicrosPerChunk: round(gatewayUs, 3) }),
              batches: entry.batches.map((batch) => ({
                streams: batch.record.ok,
                chunks: batch.record.chunks,
                wallMs: round(batch.record.wallMs, 0),
                chunksPerSecond: round(batch.rate, 0),
                cpuUsPerChunk: round(batch.cpuUs, 3),
                streamP50Ms: round(median(batch.record.latenciesMs), 1),
              })),
            },
            summary: `${fmt(rate)} chunks/s · ${fmt(cpuUs, 2)} µs client CPU/chunk` + (gatewayUs === undefined ? '' : ` (+ ${fmt(gatewayUs, 1)} µs in the gateway process)`),
          };
        }),
      );
    }

    const figure = (id: PeerId, name: string) => results.find((result) => result.peer === id && result.failed === undefined)?.figures[name] as number | undefined;
    const against = (id: PeerId, baseline: PeerId) => {
      const rate = figure(id, 'chunksPerSecond');
      const baseRate = figure(baseline, 'chunksPerSecond');
      if (rate === undefined || baseRate === undefined) return undefined;
      const paired = id === 'portkey' ? undefined : pairedCpuDifference(measured.get(id), measured.get(baseline));
      const difference = paired ?? figure(id, 'clientCpuMicrosPerChunk')! - figure(baseline, 'clientCpuMicrosPerChunk')!;
      return { text: `${ratio(rate, baseRate)} chunks/s · ${signed(difference, 2)} µs CPU/chunk`, rateRatio: rate / baseRate, cpuDifference: difference };
    };
    for (const result of results) {
      if (result.failed !== undefined) continue;
      const bare = result.peer === 'bare-sdk' ? undefined : against(result.peer, 'bare-sdk');
      const recipe = result.peer === 'recipe' ? undefined : against(result.peer, 'recipe');
      if (bare !== undefined) {
        result.vsBare = bare.text;
        result.figures['vsBare'] = { chunksPerSecondRatio: round(bare.rateRatio, 3), cpuMicrosAddedPerChunk: round(bare.cpuDifference, 3) };
      }
      if (recipe !== undefined) {
        result.vsRecipe = recipe.text;
        result.figures['vsRecipe'] = { chunksPerSecondRatio: round(recipe.rateRatio, 3), cpuMicrosAddedPerChunk: round(recipe.cpuDifference, 3) };
      }
    }
    const targets: TargetCheck[] = [];
    const library = against('library', 'bare-sdk');
    if (library !== undefined) {
      targets.push({ id: 'streaming.chunk', target: '< 1 µs added per chunk', measured: `${signed(library.cpuDifference, 2)} µs`, met: library.cpuDifference < 1 });
    } else {
      targets.push({ id: 'streaming.chunk', target: '< 1 µs added per chunk', measured: 'library or bare SDK not measured', met: null });
    }
    return {
      id: 'streaming',
      title: 'Streaming',
      settings,
      results,
      targets,
      notes: [
        `${settings.concurrency} concurrent streams of ${settings.chunksPerStream} content chunks, no gap between chunks; ${settings.rounds} interleaved rounds of ${settings.streamsPerBatch} streams per peer (Portkey: one batch of ${settings.portkeyStreams}).`,
        'Per-chunk overhead = (client CPU of the peer − client CPU of the bare SDK) / content chunks, paired by round.',
      ],
    };
  },
};
