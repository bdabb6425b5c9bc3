/**
 * Answers an admitted chat request: waits the model's latency, then either lets the fault that hit
 * it answer (an error body, a dropped socket, silence, a replayed recording) or generates the
 * answer, streamed as SSE or as one JSON body, with the streaming faults woven in.
 */
import type { Exchange } from './exchange.js';
import {
  contentPolicyReply,
  contextLengthReply,
  errorTypeForStatus,
  inBandErrorReply,
  prefillRejectedReply,
  statusFaultReply,
  upstreamRateLimitReply,
  type FaultContext,
  type JsonReply,
} from './replies.js';
import type { FakeFault, FakeRecordedResponse } from './types.js';
import {
  completionBody,
  contentChunk,
  DONE_EVENT,
  finishChunk,
  inBandErrorChunk,
  KEEP_ALIVE_EVENT,
  MALFORMED_BODY,
  MALFORMED_EVENT,
  splitIntoChunks,
  sseEvent,
  usageChunk,
  estimateTokens,
  usageFor,
  type Generation,
  type InBandError,
} from './wire.js';

/** A model's timing with every default filled in. */
export interface ModelTiming {
  latencyMs: number;
  firstTokenMs: number;
  chunkCount: number;
  chunkGapMs: number;
}

export interface AnswerPlan {
  generation: Generation;
  stream: boolean;
  timing: ModelTiming;
  keepAliveIntervalMs: number;
  fault: FakeFault | undefined;
  faultContext: FaultContext;
  loadRecording: (fixture: string | FakeRecordedResponse) => Promise<FakeRecordedResponse>;
}

type FaultOf<Type extends FakeFault['type']> = Extract<FakeFault, { type: Type }>;
/** Faults that shape a generated answer instead of replacing it. */
type GenerationFault = FaultOf<'slow-first-token' | 'cut' | 'stall' | 'malformed' | 'missing-done' | 'in-band-error'>;
type InterruptFault = FaultOf<'cut' | 'stall' | 'malformed' | 'in-band-error'>;

export async function answerChat(exchange: Exchange, plan: AnswerPlan): Promise<void> {
  if (!(await exchange.sleep(plan.timing.latencyMs))) return;
  const fault = plan.fault;
  switch (fault?.type) {
    case 'reset':
      exchange.drop('reset');
      return;
    case 'silent':
      // Hold the connection open without a byte; it ends when the client gives up or on close().
      return;
    case 'replay':
      replay(exchange, await plan.loadRecording(fault.fixture));
      return;
    case 'status':
    case 'rate-limit':
    case 'context-length':
    case 'content-policy':
    case 'reject-prefill':
      exchange.sendJson(errorReplyFor(fault, plan.faultContext));
      return;
    default:
      if (plan.stream) await streamAnswer(exchange, plan, fault);
      else await completeAnswer(exchange, plan, fault);
  }
}

/** Whether a conditional fault applies to a request; unconditional faults always do. */
export function faultApplies(fault: FakeFault, promptTokens: number, lastRole: string | undefined): boolean {
  if (fault.type === 'context-length') return promptTokens > fault.maxPromptTokens;
  if (fault.type === 'reject-prefill') return lastRole === 'assistant';
  return true;
}

function errorReplyFor(
  fault: FaultOf<'status' | 'rate-limit' | 'context-length' | 'content-policy' | 'reject-prefill'>,
  context: FaultContext,
): JsonReply {
  switch (fault.type) {
    case 'status':
      return statusFaultReply(fault, context);
    case 'rate-limit':
      return upstreamRateLimitReply(fault, context);
    case 'context-length':
      return contextLengthReply(fault, context);
    case 'content-policy':
      return contentPolicyReply(fault, context);
    case 'reject-prefill':
      return prefillRejectedReply(context);
  }
}

/** Writes a recording as recorded: status, headers, and the body bytes unchanged. */
function replay(exchange: Exchange, recording: FakeRecordedResponse): void {
  exchange.writeHead(recording.status, recording.headers);
  exchange.end(Buffer.from(recording.body, 'utf8'));
}

function firstTokenDelay(plan: AnswerPlan, fault: GenerationFault | undefined): number {
  return fault?.type === 'slow-first-token' ? fault.delayMs : plan.timing.firstTokenMs;
}

/** `streamedText`: the content sent before the error, billed when the fault asks for usage. */
function inBandError(fault: FaultOf<'in-band-error'>, generation: Generation, streamedText: string): InBandError {
  const code = fault.code ?? 502;
  return {
    code,
    message: fault.message ?? 'Provider returned error',
    errorType: typeof code === 'number' ? errorTypeForStatus(code) : 'server',
    providerCode: 'server_error',
    ...(fault.usage === true ? { usage: usageFor(generation.usage.prompt_tokens, estimateTokens(streamedText)) } : {}),
  };
}

// Streaming.

async function streamAnswer(exchange: Exchange, plan: AnswerPlan, fault: GenerationFault | undefined): Promise<void> {
  const { generation, timing } = plan;
  exchange.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    'X-Generation-Id': generation.id,
  });
  exchange.write(KEEP_ALIVE_EVENT);
  if (!(await keepAliveFor(exchange, firstTokenDelay(plan, fault), plan.keepAliveIntervalMs))) return;
  exchange.write(sseEvent(contentChunk(generation, '')));

  const pieces = splitIntoChunks(generation.text, timing.chunkCount);
  const interrupt = isInterrupt(fault) ? { fault, at: Math.min(fault.afterChunks, pieces.length) } : undefined;
  for (const [index, piece] of pieces.entries()) {
    if (interrupt?.at === index && !(await interruptStream(exchange, generation, interrupt.fault, pieces.slice(0, index).join('')))) return;
    if (index > 0 && !(await exchange.sleep(timing.chunkGapMs))) return;
    exchange.write(sseEvent(contentChunk(generation, piece)));
  }
  if (interrupt?.at === pieces.length && !(await interruptStream(exchange, generation, interrupt.fault, generation.text))) return;
  if (!(await exchange.sleep(timing.chunkGapMs))) return;

  exchange.write(sseEvent(finishChunk(generation)));
  exchange.write(sseEvent(usageChunk(generation)));
  if (fault?.type === 'missing-done') {
    // The nasty real case hangs: no [DONE], no close, until the client gives up.
    if (fault.ending === 'close') exchange.end();
    return;
  }
  exchange.end(DONE_EVENT);
}

function isInterrupt(fault: GenerationFault | undefined): fault is InterruptFault {
  return fault !== undefined && 'afterChunks' in fault;
}

/** Sends `: OPENROUTER PROCESSING` comments every `intervalMs` for `totalMs`; false if the client left. */
async function keepAliveFor(exchange: Exchange, totalMs: number, intervalMs: number): Promise<boolean> {
  let remainingMs = totalMs;
  while (remainingMs > 0) {
    const stepMs = Math.min(intervalMs, remainingMs);
    if (!(await exchange.sleep(stepMs))) return false;
    remainingMs -= stepMs;
    if (remainingMs > 0) exchange.write(KEEP_ALIVE_EVENT);
  }
  return exchange.open;
}

/** Applies a mid-stream fault; true if the stream goes on afterwards. */
async function interruptStream(exchange: Exchange, generation: Generation, fault: InterruptFault, streamedText: string): Promise<boolean> {
  switch (fault.type) {
    case 'cut':
      exchange.drop('close');
      return false;
    case 'stall':
      return exchange.sleep(fault.stallMs);
    case 'malformed':
      exchange.write(MALFORMED_EVENT);
      return true;
    case 'in-band-error':
      exchange.end(sseEvent(inBandErrorChunk(generation, inBandError(fault, generation, streamedText))));
      return false;
  }
}

// Non-streaming: the whole generation happens before the headers.

async function completeAnswer(exchange: Exchange, plan: AnswerPlan, fault: GenerationFault | undefined): Promise<void> {
  const { generation, timing } = plan;
  const stallMs = fault?.type === 'stall' ? fault.stallMs : 0;
  const generationMs = firstTokenDelay(plan, fault) + timing.chunkCount * timing.chunkGapMs + stallMs;
  if (!(await exchange.sleep(generationMs))) return;

  const generationHeader = { 'X-Generation-Id': generation.id };
  const completion = completionBody(generation);
  const body = JSON.stringify(completion);
  switch (fault?.type) {
    case 'cut':
      exchange.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      exchange.write(body.slice(0, Math.floor(body.length / 2)));
      exchange.drop('close');
      return;
    case 'malformed':
      exchange.writeHead(200, { 'Content-Type': 'application/json', ...generationHeader });
      exchange.end(MALFORMED_BODY);
      return;
    case 'in-band-error': {
      const error = inBandError(fault, generation, generation.text);
      exchange.sendJson(inBandErrorReply(error.code, error.message, error.errorType, error.usage), generationHeader);
      return;
    }
    case 'missing-done':
      if (fault.ending !== 'close') {
        // No Content-Length and no final chunk: the body never completes.
        exchange.writeHead(200, { 'Content-Type': 'application/json', ...generationHeader });
        exchange.write(body);
        return;
      }
  }
  exchange.sendJson({ status: 200, body: completion }, generationHeader);
}
