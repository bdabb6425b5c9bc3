import type { FakeServerOptions } from '../../src/testing/index.js';

/** What the parent may configure: the JSON part of the fake server's options, plus an answer size. */
export type FakeStartOptions = Omit<FakeServerOptions, 'respond' | 'port' | 'fixturesDir'> & {
  /** Every answer is this many characters, so a stream of `chunkCount` chunks has no empty chunk. */
  answerChars?: number;
};

export type ChildRequest =
  | { op: 'start'; options: FakeStartOptions }
  | { op: 'stats'; id: number }
  | { op: 'reset'; id: number }
  | { op: 'close'; id: number }
  | { op: 'cpu' };

export type ChildReply = { seq: number; ok: true; result: unknown } | { seq: number; ok: false; error: string };

/** Chat requests a fake server saw, by HTTP status and by key label. */
export interface ServerStats {
  total: number;
  byStatus: Record<string, number>;
  byKey: Record<string, Record<string, number>>;
  aborted: number;
}
