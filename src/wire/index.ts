export { classifyHttpError, type HttpErrorInput } from './classify.js';
export { retryAfterMsFrom } from './retry-after.js';
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
