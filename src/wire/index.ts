export { classifyHttpError, type HttpErrorInput } from './classify.js';
export { retryAfterMsFrom, MAX_RETRY_AFTER_MS } from './retry-after.js';
export { DEFAULT_MAX_EVENT_BYTES } from './sse.js';
export { toHeaderLookup, type HeaderLookup, type HeaderSource } from './headers.js';
export { parseErrorBody, type ParsedErrorBody, type ErrorAvailability } from './error-body.js';
export {
  parseStreamChunk,
  parseCompletionBody,
  parseUsage,
  advanceStream,
  streamErrorFromPayload,
  type WireContext,
  type StreamChunkContent,
  type StreamChunkResult,
  type CompletionResult,
  type StreamProgress,
} from './chunk.js';
