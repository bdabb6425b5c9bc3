import type { ChatRequest } from './types.js';

/** Characters per token for the estimate; OpenAI's rule of thumb for English text. */
const CHARS_PER_TOKEN = 4;
/** Per-message framing tokens (role, separators), as OpenAI's counting guide adds them. */
const TOKENS_PER_MESSAGE = 4;

function contentLength(content: unknown): number {
  if (typeof content === 'string') return content.length;
  if (Array.isArray(content)) {
    let length = 0;
    for (const part of content) {
      if (part !== null && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
        length += (part as { text: string }).text.length;
      }
    }
    return length;
  }
  return 0;
}

/** Prompt tokens, estimated from the text of the messages (no tokenizer: fast, and close enough to admit by). */
export function estimatePromptTokens(request: ChatRequest): number {
  let chars = 0;
  for (const message of request.messages) chars += contentLength(message.content);
  return Math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * request.messages.length;
}

/**
 * Tokens a request may use, for `tpm` quotas before its usage is known: the prompt estimate plus
 * `max_tokens` (or the pool's default completion budget). Reconciled with the billed usage later.
 */
export function estimateTokens(request: ChatRequest, defaultCompletionTokens: number): number {
  const completion = request.max_completion_tokens ?? request.max_tokens ?? defaultCompletionTokens;
  return estimatePromptTokens(request) + completion;
}
