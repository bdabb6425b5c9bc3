/**
 * A fake OpenRouter on 127.0.0.1 (`node:http` only) that speaks the real wire format, so clients can
 * be tested with the real `openai` SDK, real sockets and no network. All state lives in the
 * instance; real timers and `Date.now()` are used, since this is the I/O edge of the tests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { answerChat, faultApplies, type ModelTiming } from './chat-answer.js';
import { parseChatRequest, type ChatRequestView } from './chat-request.js';
import { Exchange, TimerRegistry, type ExchangeEnd } from './exchange.js';
import { FaultBook } from './fault-book.js';
import { resolveRecording } from './fixtures.js';
import { InFlightGauge } from './in-flight.js';
import { KeyRegistry, type KeyState } from './key-registry.js';
import {
  badRequestReply,
  currentKeyReply,
  DEFAULT_IN_FLIGHT_RETRY_AFTER_SECONDS,
  inFlightBudgetReply,
  insufficientCreditsReply,
  internalErrorReply,
  keyLimitReply,
  legacyKeyReply,
  noCredentialsReply,
  notFoundReply,
  platformRateLimitReply,
  providerRateLimitReply,
  userNotFoundReply,
  weightExceedsBudgetReply,
  type JsonReply,
  type KeyView,
} from './replies.js';
import type {
  FakeAbortEvent,
  FakeAccountPatch,
  FakeFault,
  FakeKeyPatch,
  FakeModelConfig,
  FakeOpenRouter,
  FakeRequestFilter,
  FakeRequestRecord,
  FakeServerOptions,
} from './types.js';
import { defaultAnswer, estimatePromptTokens, estimateTokens, usageFor, type Generation } from './wire.js';

const HOST = '127.0.0.1';
const CHAT_PATH = '/api/v1/chat/completions';
const KEY_PATH = '/api/v1/key';
const LEGACY_KEY_PATH = '/api/v1/auth/key';
const DEFAULT_PROVIDER = 'FakeProvider';
const DEFAULT_CHUNK_COUNT = 8;
const DEFAULT_KEEP_ALIVE_INTERVAL_MS = 100;
const DEFAULT_WAIT_FOR_ABORT_MS = 1000;
/** `max_tokens` the 402 message reports when the request sets none. */
const DEFAULT_MAX_TOKENS = 4096;

/** Starts a fake OpenRouter on 127.0.0.1; resolves once it listens. */
export async function startFakeOpenRouter(options: FakeServerOptions): Promise<FakeOpenRouter> {
  const fake = new FakeOpenRouterServer(options);
  await fake.listen(options.port ?? 0);
  return fake;
}

type Authentication = { kind: 'missing' } | { kind: 'unknown' } | { kind: 'known'; key: KeyState };

class FakeOpenRouterServer implements FakeOpenRouter {
  private readonly server: Server;
  private readonly timers = new TimerRegistry();
  private readonly sockets = new Set<Socket>();
  private readonly exchanges = new Set<Exchange>();
  private readonly abortListeners = new Set<(event: FakeAbortEvent) => void>();
  private readonly registry: KeyRegistry;
  private readonly faults: FaultBook;
  private readonly records: FakeRequestRecord[] = [];
  /** Admitted requests not yet ended, per model (its providers' capacity) and per account (its in-flight budget). */
  private readonly modelsInFlight = new InFlightGauge();
  private readonly accountsInFlight = new InFlightGauge();
  private abortCount = 0;
  private generationCount = 0;
  private origin = '';
  private closing: Promise<void> | undefined;

  constructor(private readonly options: FakeServerOptions) {
    for (const config of Object.values(options.models ?? {})) this.checkFaults(config.faults ?? []);
    this.checkFaults(options.defaultModel?.faults ?? []);
    this.registry = new KeyRegistry(options.keys, options.accounts ?? []);
    this.faults = new FaultBook(options.models ?? {}, options.defaultModel ?? {});
    this.server = createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => this.trackSocket(socket));
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, HOST, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        const boundPort = typeof address === 'object' && address !== null ? address.port : port;
        this.origin = `http://${HOST}:${boundPort}`;
        resolve();
      });
    });
  }

  get url(): string {
    return this.origin;
  }

  get baseURL(): string {
    return `${this.origin}/api/v1`;
  }

  get requests(): readonly FakeRequestRecord[] {
    return this.records;
  }

  get abortedConnections(): number {
    return this.abortCount;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  countRequests(filter: FakeRequestFilter = {}): number {
    return this.records.filter(
      (record) =>
        (filter.keyLabel === undefined || record.keyLabel === filter.keyLabel) &&
        (filter.model === undefined || record.model === filter.model) &&
        (filter.status === undefined || record.status === filter.status),
    ).length;
  }

  setFaults(model: string, faults: readonly FakeFault[]): void {
    this.checkFaults(faults);
    this.faults.set(model, faults);
  }

  addFault(model: string, fault: FakeFault): void {
    this.checkFaults([fault]);
    this.faults.add(model, fault);
  }

  clearFaults(model?: string): void {
    this.faults.clear(model);
  }

  setKey(key: string, patch: FakeKeyPatch): void {
    this.registry.setKey(key, patch);
  }

  setAccount(id: string, patch: FakeAccountPatch): void {
    this.registry.setAccount(id, patch);
  }

  reset(): void {
    // In place, so a reference a test already holds sees the reset too.
    this.records.length = 0;
    this.abortCount = 0;
  }

  onAbort(listener: (event: FakeAbortEvent) => void): () => void {
    this.abortListeners.add(listener);
    return () => this.abortListeners.delete(listener);
  }

  waitForAbort(timeoutMs = DEFAULT_WAIT_FOR_ABORT_MS): Promise<FakeAbortEvent> {
    if (this.closing !== undefined) return Promise.reject(new Error('fake OpenRouter is closed'));
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void): void => {
        this.timers.cancel(timer);
        unsubscribe();
        this.server.off('close', onClose);
        outcome();
      };
      const unsubscribe = this.onAbort((event) => settle(() => resolve(event)));
      const onClose = (): void => settle(() => reject(new Error('fake OpenRouter closed before any abort')));
      const timer = this.timers.start(() => settle(() => reject(new Error(`no client abort within ${timeoutMs} ms`))), timeoutMs);
      this.server.once('close', onClose);
    });
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // The server reports closed before its sockets do; wait for both so nothing outlives close().
    const socketsClosed = [...this.sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)));
    for (const exchange of this.exchanges) exchange.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.timers.cancelAll();
    await Promise.all([serverClosed, ...socketsClosed]);
  }

  // Connections and exchanges.

  private trackSocket(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const exchange = new Exchange(request, response, this.timers, (ended, how) => this.onExchangeEnd(ended, how));
    this.exchanges.add(exchange);
    this.route(exchange).catch((error: unknown) => this.failInternally(exchange, error));
  }

  private onExchangeEnd(exchange: Exchange, how: ExchangeEnd): void {
    this.exchanges.delete(exchange);
    if (how !== 'client-closed') return;
    this.abortCount += 1;
    if (exchange.record !== undefined) exchange.record.clientAborted = true;
    const event: FakeAbortEvent = { at: Date.now(), path: exchange.path, record: exchange.record };
    for (const listener of [...this.abortListeners]) listener(event);
  }

  /** A bug or a missing fixture surfaces as a 500 naming it, never as a hang. */
  private failInternally(exchange: Exchange, error: unknown): void {
    if (exchange.response.headersSent) {
      exchange.drop('close');
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    exchange.sendJson(internalErrorReply(`fake OpenRouter: ${message}`));
  }

  private async route(exchange: Exchange): Promise<void> {
    const method = exchange.request.method;
    const path = exchange.path;
    if (method === 'POST' && path === CHAT_PATH) return this.chat(exchange);
    if (method === 'GET' && path === KEY_PATH && this.options.legacyKeyEndpointOnly !== true) {
      return this.keyInfo(exchange, currentKeyReply);
    }
    if (method === 'GET' && path === LEGACY_KEY_PATH) return this.keyInfo(exchange, legacyKeyReply);
    exchange.sendJson(notFoundReply(path));
  }

  private authenticate(request: IncomingMessage): Authentication {
    const token = /^Bearer\s+(\S.*)$/i.exec(request.headers.authorization ?? '')?.[1]?.trim();
    if (token === undefined || token === '') return { kind: 'missing' };
    const key = this.registry.find(token);
    return key === undefined || key.config.revoked === true ? { kind: 'unknown' } : { kind: 'known', key };
  }

  private keyInfo(exchange: Exchange, reply: (key: KeyView) => JsonReply): void {
    const auth = this.authenticate(exchange.request);
    if (auth.kind === 'missing') exchange.sendJson(noCredentialsReply());
    else if (auth.kind === 'unknown') exchange.sendJson(userNotFoundReply());
    else exchange.sendJson(reply(this.registry.viewOf(auth.key, Date.now())));
  }

  // Chat completions.

  private async chat(exchange: Exchange): Promise<void> {
    const arrivedAt = Date.now();
    const { request, problem } = parseChatRequest(await readBody(exchange.request));
    const auth = this.authenticate(exchange.request);
    const record: FakeRequestRecord = {
      keyLabel: auth.kind === 'known' ? auth.key.label : undefined,
      model: request.model,
      stream: request.stream,
      status: 0,
      at: arrivedAt,
    };
    this.records.push(record);
    exchange.record = record;

    if (auth.kind === 'missing') return exchange.sendJson(noCredentialsReply());
    if (auth.kind === 'unknown') return exchange.sendJson(userNotFoundReply());
    const rejection = problem === undefined ? this.admissionRejection(auth.key, request) : badRequestReply(problem);
    if (rejection !== undefined) return exchange.sendJson(rejection);
    this.accountsInFlight.hold(this.registry.accountOf(auth.key).config.id, exchange);
    return this.answer(exchange, auth.key, request);
  }

  /**
   * OpenRouter's checks before any model is tried: key limit, credits, the request's weight, the
   * in-flight budget, then the quotas. A rejected request takes no place in any of them.
   */
  private admissionRejection(key: KeyState, request: ChatRequestView): JsonReply | undefined {
    const userId = this.registry.userIdOf(key);
    const account = this.registry.accountOf(key).config;
    if (key.config.keyLimitExceeded === true) return keyLimitReply(userId);
    if (account.outOfCredits === true) return insufficientCreditsReply(request.maxTokens ?? DEFAULT_MAX_TOKENS, userId);
    if (account.maxTokensBudget !== undefined && request.maxTokens !== undefined && request.maxTokens > account.maxTokensBudget) {
      return weightExceedsBudgetReply(request.maxTokens, account.maxTokensBudget, userId);
    }
    const inFlightBudget = account.inFlightBudget;
    if (inFlightBudget !== undefined && this.accountsInFlight.count(account.id) >= inFlightBudget.concurrent) {
      return inFlightBudgetReply(inFlightBudget.retryAfterSeconds ?? DEFAULT_IN_FLIGHT_RETRY_AFTER_SECONDS, userId);
    }
    const now = Date.now();
    const quotaRejection = this.registry.admit(key, request.model, now);
    return quotaRejection === undefined ? undefined : platformRateLimitReply(quotaRejection, now, userId);
  }

  private async answer(exchange: Exchange, key: KeyState, request: ChatRequestView): Promise<void> {
    const config = this.modelConfig(request.model);
    const provider = config.provider ?? DEFAULT_PROVIDER;
    const capacity = config.capacity;
    if (capacity !== undefined && this.modelsInFlight.count(request.model) >= capacity.concurrent) {
      // Every provider of the model is busy: OpenRouter tried them (the latency) and relays their 429.
      if (!(await exchange.sleep(config.latencyMs ?? 0))) return;
      exchange.sendJson(providerRateLimitReply(request.model, capacity.providerName ?? provider, this.registry.userIdOf(key)));
      return;
    }
    this.modelsInFlight.hold(request.model, exchange);
    const promptTokens = estimatePromptTokens(request.messages);
    const lastRole = request.messages.at(-1)?.role;
    const fault = this.faults.take(request.model, (candidate) => faultApplies(candidate, promptTokens, lastRole));
    if (exchange.record !== undefined && fault !== undefined) exchange.record.fault = fault.type;
    await answerChat(exchange, {
      generation: this.generate(request, provider, promptTokens),
      stream: request.stream,
      timing: timingOf(config),
      keepAliveIntervalMs: this.options.keepAliveIntervalMs ?? DEFAULT_KEEP_ALIVE_INTERVAL_MS,
      fault,
      faultContext: {
        model: request.model,
        provider,
        userId: this.registry.userIdOf(key),
        promptTokens,
        contextLength: config.contextLength,
      },
      loadRecording: (fixture) => resolveRecording(fixture, this.options.fixturesDir),
    });
  }

  private modelConfig(model: string): FakeModelConfig {
    return this.options.models?.[model] ?? this.options.defaultModel ?? {};
  }

  private generate(request: ChatRequestView, provider: string, promptTokens: number): Generation {
    const text =
      this.options.respond?.({ model: request.model, messages: request.messages }) ?? defaultAnswer(request.model, request.messages);
    const now = Date.now();
    this.generationCount += 1;
    return {
      id: `gen-${Math.floor(now / 1000)}-fake${String(this.generationCount).padStart(16, '0')}`,
      created: Math.floor(now / 1000),
      model: request.model,
      provider,
      text,
      usage: usageFor(promptTokens, estimateTokens(text)),
    };
  }

  /** A `replay` by name without `fixturesDir` can never work: say so when the fault is set. */
  private checkFaults(faults: readonly FakeFault[]): void {
    const namedReplay = faults.find((fault) => fault.type === 'replay' && typeof fault.fixture === 'string');
    if (namedReplay !== undefined && this.options.fixturesDir === undefined) {
      throw new Error('a replay fault that names a fixture needs FakeServerOptions.fixturesDir');
    }
  }
}

function timingOf(config: FakeModelConfig): ModelTiming {
  return {
    latencyMs: config.latencyMs ?? 0,
    firstTokenMs: config.firstTokenMs ?? 0,
    chunkCount: config.chunkCount ?? DEFAULT_CHUNK_COUNT,
    chunkGapMs: config.chunkGapMs ?? 0,
  };
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
