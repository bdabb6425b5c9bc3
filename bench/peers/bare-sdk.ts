/**
 * The bare `openai` SDK: one client per key, round robin, the SDK's own retries (`maxRetries` 2:
 * 408, 409, 429, 5xx, honouring `retry-after-ms`/`retry-after` up to 60 s). Nothing else.
 */
import OpenAI from 'openai';
import {
  Cancellation,
  chatBody,
  failure,
  type BenchRequest,
  type Outcome,
  type Peer,
  type PeerContext,
  type PeerSession,
} from './types.js';

/** Runs one request on one SDK client: iterates the stream when streaming, counting content chunks. */
export async function sdkCall(client: OpenAI, model: string, request: BenchRequest, signal: AbortSignal): Promise<number> {
  if (request.stream) {
    const stream = await client.chat.completions.create({ ...chatBody(model, request), stream: true }, { signal });
    let chunks = 0;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta?.content;
      if (typeof content === 'string' && content.length > 0) chunks++;
    }
    return chunks;
  }
  await client.chat.completions.create({ ...chatBody(model, request), stream: false }, { signal });
  return 0;
}

export function sdkClient(
  context: PeerContext,
  apiKey: string,
  options: { maxRetries?: number; baseURL?: string; defaultHeaders?: Record<string, string> } = {},
): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: options.baseURL ?? context.baseURL,
    ...(options.maxRetries === undefined ? {} : { maxRetries: options.maxRetries }),
    ...(options.defaultHeaders === undefined ? {} : { defaultHeaders: options.defaultHeaders }),
    ...(context.fetch === undefined ? {} : { fetch: context.fetch }),
    organization: null,
    project: null,
  });
}

export const bareSdkPeer: Peer = {
  id: 'bare-sdk',
  name: 'bare openai SDK',
  description: 'openai v6, one client per key, round robin, the SDK default maxRetries 2 (honours retry-after up to 60 s)',
  async start(context: PeerContext): Promise<PeerSession> {
    const clients = context.keys.map((key) => sdkClient(context, key.key));
    const cancellation = new Cancellation();
    let cursor = 0;
    const next = () => {
      const index = cursor;
      cursor = (cursor + 1) % clients.length;
      return index;
    };
    return {
      async run(request): Promise<Outcome> {
        const index = next();
        try {
          const chunks = await cancellation.with((signal) => sdkCall(clients[index]!, context.model, request, signal));
          return { ok: true, chunks, keyLabel: context.keys[index]!.label };
        } catch (error) {
          return failure(error);
        }
      },
      pick() {
        next();
      },
      async close() {
        cancellation.abortAll();
      },
    };
  },
};
