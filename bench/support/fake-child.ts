/**
 * The fake OpenRouter servers of a benchmark run, in a child process of their own, so that the CPU
 * the bench measures in the parent is the client's only. Driven over the IPC channel by
 * `fake-host.ts`: start a server, read its counters, close it, report this process's CPU.
 */
import { startFakeOpenRouter, type FakeOpenRouter, type FakeServerOptions } from '../../src/testing/index.js';
import type { ChildReply, ChildRequest, ServerStats } from './fake-protocol.js';

const servers = new Map<number, FakeOpenRouter>();
let nextId = 1;

const FILLER = 'The quick brown fox jumps over the lazy dog while the benchmark counts every chunk. ';

/** An answer of exactly `chars` characters, so every streamed chunk carries content. */
function answerOf(chars: number): string {
  return FILLER.repeat(Math.ceil(chars / FILLER.length)).slice(0, chars);
}

function statsOf(fake: FakeOpenRouter): ServerStats {
  const byStatus: Record<string, number> = {};
  const byKey: Record<string, Record<string, number>> = {};
  for (const record of fake.requests) {
    const status = String(record.status);
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    const label = record.keyLabel ?? '(unknown)';
    const perKey = (byKey[label] ??= {});
    perKey[status] = (perKey[status] ?? 0) + 1;
  }
  return { total: fake.requests.length, byStatus, byKey, aborted: fake.abortedConnections };
}

async function handle(request: ChildRequest): Promise<unknown> {
  switch (request.op) {
    case 'start': {
      const { answerChars, ...options } = request.options;
      const text = answerChars === undefined ? undefined : answerOf(answerChars);
      const serverOptions: FakeServerOptions = { ...options, ...(text === undefined ? {} : { respond: () => text }) };
      const fake = await startFakeOpenRouter(serverOptions);
      const id = nextId++;
      servers.set(id, fake);
      return { id, baseURL: fake.baseURL };
    }
    case 'stats': {
      const fake = servers.get(request.id);
      if (fake === undefined) throw new Error(`no fake server ${request.id}`);
      return statsOf(fake);
    }
    case 'reset': {
      servers.get(request.id)?.reset();
      return null;
    }
    case 'close': {
      const fake = servers.get(request.id);
      servers.delete(request.id);
      await fake?.close();
      return null;
    }
    case 'cpu':
      return process.cpuUsage();
  }
}

process.on('message', (message: ChildRequest & { seq: number }) => {
  handle(message).then(
    (result) => process.send?.({ seq: message.seq, ok: true, result } satisfies ChildReply),
    (error: unknown) =>
      process.send?.({ seq: message.seq, ok: false, error: error instanceof Error ? error.message : String(error) } satisfies ChildReply),
  );
});

process.on('disconnect', () => {
  void Promise.all([...servers.values()].map((fake) => fake.close())).finally(() => process.exit(0));
});

process.send?.({ seq: 0, ok: true, result: 'ready' } satisfies ChildReply);
