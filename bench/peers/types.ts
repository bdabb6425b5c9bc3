/**
 * The small interface every peer implements, so that each scenario drives the library and its
 * peers with the same workload, on the same fake server, in the same process run.
 */

export type PeerId = 'library' | 'bare-sdk' | 'recipe' | 'cockatiel' | 'portkey';

/** One API key as the user knows it. `limits` is what the user knows of its quotas. */
export interface BenchKey {
  key: string;
  label: string;
  limits?: {
    rpm?: number;
    maxConcurrent?: number;
    quota?: { requests: number; windowMs: number };
  };
}

export interface PeerContext {
  /** The fake server's `/api/v1` base URL. */
  baseURL: string;
  keys: readonly BenchKey[];
  model: string;
  /** Requests the driver keeps in flight; peers with their own cap (mergeMap, p-queue) use it. */
  concurrency: number;
  /** A `fetch` to use instead of the network (the scale scenario's never-answering one). */
  fetch?: typeof fetch;
  /** Ask for `PeerSession.observe` (the library watches its pool's events for it; off elsewhere, as it costs CPU). */
  observe?: boolean;
}

export interface BenchRequest {
  id: string;
  stream: boolean;
  messages: Array<{ role: 'user'; content: string }>;
  max_tokens: number;
}

export type Outcome = { ok: true; chunks: number; keyLabel?: string } | { ok: false; error: string; status?: number };

export interface PeerSession {
  /** Sends one request through the peer and settles with its terminal outcome (never rejects). */
  run(request: BenchRequest): Promise<Outcome>;
  /**
   * Chooses a key for one attempt the way the peer does, with no I/O (the scale scenario times it).
   * The library's includes admission: the lease is taken and given back.
   */
  pick?(): void;
  /** CPU time of helper processes the peer runs (Portkey's gateway), in µs, if any. */
  helperCpuMicros?(): number | undefined;
  /**
   * What the peer shows of its own state, read before `close` (the library's pool health and
   * events: how it grouped the keys into accounts, what it parked and for how long). Figures only:
   * no scenario steers by them.
   */
  observe?(): PeerObservations;
  /** Aborts whatever is in flight and frees every resource. */
  close(): Promise<void>;
}

/** The library's view of itself at the end of a run (`PeerSession.observe`). */
export interface PeerObservations {
  /** Distinct accounts the pool's health shows the keys in, and which key is in which. */
  accounts: number;
  accountOfKey: Record<string, string>;
  /** Quotas the pool's health shows at the end (told or learnt), distinct by scope, limit and window. */
  quotas: Array<{ scope: string; unit: string; limit: number; windowMs: number; source?: string }>;
  /** `cooldown` events on the pool's `events$` by scope and reason (e.g. `key rate-limit`). */
  parks: Record<string, number>;
  /** The longest cooldown announced (`until - at`), and the sum of them all, ms. */
  longestParkMs: number;
  totalParkMs: number;
  /** `retry` events by reason. */
  retries: Record<string, number>;
  /** Concurrency limits the pool reported (`concurrency` events), per what they are of (e.g. `model bench/x`). */
  concurrency: Record<string, { first: number; last: number; min: number; max: number; changes: number }>;
  /** Quotas the pool announced it learnt (`limit-learned` events), by scope, quota and cause. */
  learned: Record<string, number>;
  /** Every event on `events$`, by type. */
  events: Record<string, number>;
}

export interface Peer {
  id: PeerId;
  /** Row name in the table. */
  name: string;
  /** One line on how it is configured, for the JSON and the README. */
  description: string;
  start(context: PeerContext): Promise<PeerSession>;
}

/** `error.status` of an SDK `APIError`, if any. */
export function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

export function describeError(error: unknown): string {
  const status = statusOf(error);
  const name = (error as { name?: unknown } | null)?.name;
  const kind = (error as { kind?: unknown } | null)?.kind;
  if (typeof kind === 'string') return status === undefined ? kind : `${kind} ${status}`;
  if (status !== undefined) return `http ${status}`;
  const message = (error as { message?: unknown } | null)?.message;
  const label = typeof name === 'string' ? name : 'error';
  return typeof message === 'string' && message !== '' ? `${label}: ${message.slice(0, 120)}` : label;
}

export function failure(error: unknown): Outcome {
  const status = statusOf(error);
  return { ok: false, error: describeError(error), ...(status === undefined ? {} : { status }) };
}

/** The chat body every peer sends. */
export function chatBody(model: string, request: BenchRequest): { model: string; messages: BenchRequest['messages']; max_tokens: number } {
  return { model, messages: request.messages, max_tokens: request.max_tokens };
}

/**
 * Per-request abort signals, all aborted by `abortAll()`. One shared signal would not do: the SDK
 * adds an `abort` listener to the caller's signal on every request and never removes it.
 */
export class Cancellation {
  private readonly live = new Set<AbortController>();
  private closed = false;

  get aborted(): boolean {
    return this.closed;
  }

  /** Runs `body` with a fresh signal that `abortAll` aborts. */
  async with<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    if (this.closed) controller.abort();
    this.live.add(controller);
    try {
      return await body(controller.signal);
    } finally {
      this.live.delete(controller);
    }
  }

  abortAll(): void {
    this.closed = true;
    for (const controller of this.live) controller.abort();
    this.live.clear();
  }
}
