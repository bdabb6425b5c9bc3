/**
 * Overhead: no limits, answers at once (latency 0), the same requests at the same concurrency
 * through each peer. Requests per second, and client CPU per request: this process's CPU
 * (`process.cpuUsage`) over a batch divided by its requests. The fake server runs in a child
 * process, so its CPU is not counted (it is in the JSON); for Portkey the gateway's process CPU is
 * reported apart, since that is where its work happens. See `throughput.ts` for the rounds.
 */
import { round } from '../support/measure.js';
import { measureOnFakeServer, requireClean, signed, throughputResults } from './throughput.js';
import type { Scenario, TargetCheck } from './types.js';

export const overhead: Scenario = {
  id: 'overhead',
  title: 'Overhead',
  async run(env) {
    const settings = {
      keys: 4,
      latencyMs: 0,
      concurrency: 16,
      requestsPerBatch: env.quick ? 600 : 4000,
      rounds: env.quick ? 5 : 9,
      sharedWarmupRequests: env.quick ? 800 : 4000,
      peerWarmupRequests: env.quick ? 200 : 1000,
      portkeyRequests: env.quick ? 300 : 1500,
    };
    const keys = Array.from({ length: settings.keys }, (_, index) => ({
      key: `sk-or-v1-bench-overhead-${index + 1}`,
      label: `key-${index + 1}`,
    }));
    const measured = await measureOnFakeServer(
      env,
      { keys, defaultModel: { latencyMs: settings.latencyMs } },
      { keys, model: 'bench/overhead', concurrency: settings.concurrency },
      {
        stream: false,
        concurrency: settings.concurrency,
        perBatch: settings.requestsPerBatch,
        rounds: settings.rounds,
        sharedWarmup: settings.sharedWarmupRequests,
        peerWarmup: settings.peerWarmupRequests,
        portkeyBatch: settings.portkeyRequests,
        deadlineMs: 120_000,
        units: (record) => record.ok,
        check: requireClean,
      },
    );

    const { results, against } = await throughputResults(env, measured, {
      rate: 'requestsPerSecond',
      unit: 'Request',
      rateText: 'req/s',
      unitText: 'req',
      digits: { json: 1, cpu: 1, gateway: 0, difference: 1 },
      batch: (batch) => ({
        requests: batch.record.ok,
        wallMs: round(batch.record.wallMs, 0),
        rps: round(batch.rate, 0),
        cpuUs: round(batch.cpuUs, 1),
      }),
    });

    const targets: TargetCheck[] = [];
    const library = against('library', 'bare-sdk');
    if (library !== undefined) {
      targets.push({
        id: 'overhead.rps',
        target: '≥ 95% of the bare SDK’s req/s',
        measured: `${(library.rateRatio * 100).toFixed(1)}%`,
        met: library.rateRatio >= 0.95,
      });
      targets.push({
        id: 'overhead.cpu',
        // Issue 13: within 60 µs of the bare SDK's client CPU per request.
        target: '≤ 60 µs CPU added per request',
        measured: `${signed(library.cpuDifference)} µs`,
        met: library.cpuDifference <= 60,
      });
    } else {
      targets.push({
        id: 'overhead.rps',
        target: '≥ 95% of the bare SDK’s req/s, ≤ 60 µs CPU added per request',
        measured: 'library or bare SDK not measured',
        met: null,
      });
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
