/**
 * One HTTP request/response of the fake server, and the timers behind its delays. Both exist so
 * that `close()` can stop everything at once and so that a connection closed by the client (an
 * abort) is told apart from one the server dropped on purpose (`reset`, `cut`, `close()`).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { JsonReply } from './replies.js';
import type { FakeRequestRecord } from './types.js';

/** Every pending timer of one server, so `close()` can clear them all. */
export class TimerRegistry {
  private readonly pending = new Set<NodeJS.Timeout>();

  start(callback: () => void, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      callback();
    }, ms);
    this.pending.add(timer);
    return timer;
  }

  cancel(timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.pending.delete(timer);
  }

  cancelAll(): void {
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
  }
}

/** How an exchange ended: response complete, connection closed by the client, or dropped by the server. */
export type ExchangeEnd = 'finished' | 'client-closed' | 'server-closed';

export class Exchange {
  /** The chat request this exchange answers, once known; its status follows `writeHead`. */
  record: FakeRequestRecord | undefined;
  private ending: ExchangeEnd | undefined;
  private droppedByServer = false;
  private readonly wakeSleepers = new Set<() => void>();
  private readonly endCallbacks: Array<() => void> = [];

  constructor(
    readonly request: IncomingMessage,
    readonly response: ServerResponse,
    private readonly timers: TimerRegistry,
    onEnd: (exchange: Exchange, ending: ExchangeEnd) => void,
  ) {
    response.once('close', () => {
      this.ending = this.classifyEnd();
      this.wakeAll();
      for (const callback of this.endCallbacks.splice(0)) callback();
      onEnd(this, this.ending);
    });
  }

  /** Calls `callback` once the exchange has ended, however it ended (at once if it already has). */
  whenEnded(callback: () => void): void {
    if (this.ending === undefined) this.endCallbacks.push(callback);
    else callback();
  }

  get path(): string {
    return (this.request.url ?? '/').split('?')[0] ?? '/';
  }

  /** True while the server may still write. */
  get open(): boolean {
    return this.ending === undefined && !this.droppedByServer && !this.response.writableEnded;
  }

  /** Waits `ms`; resolves false at once if the connection closes meanwhile, so a flow can stop. */
  sleep(ms: number): Promise<boolean> {
    if (!this.open) return Promise.resolve(false);
    if (ms <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = (): void => {
        this.timers.cancel(timer);
        resolve(false);
      };
      const timer = this.timers.start(() => {
        this.wakeSleepers.delete(wake);
        resolve(this.open);
      }, ms);
      this.wakeSleepers.add(wake);
    });
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    if (!this.open) return;
    if (this.record !== undefined) this.record.status = status;
    this.response.writeHead(status, headers);
  }

  write(text: string): void {
    if (this.open) this.response.write(text);
  }

  end(body?: string | Buffer): void {
    if (!this.open) return;
    if (body === undefined) this.response.end();
    else this.response.end(body);
  }

  sendJson(reply: JsonReply, extraHeaders: OutgoingHttpHeaders = {}): void {
    const body = JSON.stringify(reply.body);
    this.writeHead(reply.status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      ...extraHeaders,
      ...reply.headers,
    });
    this.end(body);
  }

  /**
   * Drops the connection mid-response. `reset` sends a TCP RST at once, as a crashed peer would;
   * `close` first flushes what was written (so the client reads it), then closes the socket.
   */
  drop(how: 'reset' | 'close'): void {
    if (this.ending !== undefined) return;
    this.droppedByServer = true;
    this.wakeAll();
    const socket = this.request.socket;
    if (how === 'reset') socket.resetAndDestroy();
    // Ending the socket, not the response, leaves the HTTP body incomplete on the wire.
    else socket.end(() => socket.destroy());
  }

  /** Destroys the connection at once, unwritten data included (used by `close()`). */
  destroy(): void {
    if (this.ending !== undefined) return;
    this.droppedByServer = true;
    this.wakeAll();
    this.request.socket.destroy();
  }

  private classifyEnd(): ExchangeEnd {
    if (this.droppedByServer) return 'server-closed';
    return this.response.writableFinished ? 'finished' : 'client-closed';
  }

  private wakeAll(): void {
    for (const wake of this.wakeSleepers) wake();
    this.wakeSleepers.clear();
  }
}
