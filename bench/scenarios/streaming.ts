/**
 * Streaming: many concurrent streams of many chunks, no delay between chunks. Chunks per second,
 * and client CPU per content chunk; a peer's overhead per chunk is (its CPU − the bare SDK's CPU)
 * / chunks, the bare SDK iterating its own `Stream` and counting content deltas. The fake server
 * runs in a child process, so its CPU is not counted. See `throughput.ts` for the rounds.
 */
import { median, round } from '../support/measure.js';
import { measureOnFakeServer, requireClean, signed, throughputResults } from './throughput.js';
import type { Scenario, TargetCheck } from './types.js';

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
    const keys = Array.from({ length: settings.keys }, (_, index) => ({
      key: `sk-or-v1-bench-streaming-${index + 1}`,
      label: `key-${index + 1}`,
    }));
    const server = {
      keys,
      defaultModel: { latencyMs: 0, firstTokenMs: 0, chunkCount: settings.chunksPerStream, chunkGapMs: 0 },
      answerChars: settings.chunksPerStream * 8,
    };
    const measured = await measureOnFakeServer(
      env,
      server,
      { keys, model: 'bench/streaming', concurrency: settings.concurrency },
      {
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
          requireClean(record);
          if (record.chunks !== record.ok * settings.chunksPerStream)
            throw new Error(`received ${record.chunks} content chunks, expected ${record.ok * settings.chunksPerStream}`);
        },
      },
    );

    const { results, against } = await throughputResults(env, measured, {
      rate: 'chunksPerSecond',
      unit: 'Chunk',
      rateText: 'chunks/s',
      unitText: 'chunk',
      digits: { json: 3, cpu: 2, gateway: 1, difference: 2 },
      batch: (batch) => ({
        streams: batch.record.ok,
        chunks: batch.record.chunks,
        wallMs: round(batch.record.wallMs, 0),
        chunksPerSecond: round(batch.rate, 0),
        cpuUsPerChunk: round(batch.cpuUs, 3),
        streamP50Ms: round(median(batch.record.latenciesMs), 1),
      }),
    });

    const targets: TargetCheck[] = [];
    const library = against('library', 'bare-sdk');
    if (library !== undefined) {
      targets.push({
        id: 'streaming.chunk',
        target: '< 1 µs added per chunk',
        measured: `${signed(library.cpuDifference, 2)} µs`,
        met: library.cpuDifference < 1,
      });
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
