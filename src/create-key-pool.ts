import * as z from 'zod/mini';
import { createPool, type KeyPool } from './create-pool.js';
import type { KeyCredential } from './core/types.js';
import type { KeyPoolInput } from './pool/config.js';
import { createOpenRouterTransport, fetchKeyInfo, type OpenRouterClientOptions } from './transport/index.js';
import { clientOptionsSchema } from './transport/client-options.js';
import { formatZodError, safeParseEnglish, ValidationError } from './core/validation.js';

/**
 * `createKeyPool`'s options: the core pool config, where `transport` defaults to OpenRouter
 * through the `openai` SDK, plus how to reach OpenRouter.
 */
export type KeyPoolOptions = Omit<KeyPoolInput, 'transport'> &
  Partial<Pick<KeyPoolInput, 'transport'>> &
  Pick<OpenRouterClientOptions, 'baseURL' | 'appUrl' | 'appTitle' | 'timeoutMs'>;

const endpointSchema = z.strictObject(z.pick(clientOptionsSchema, { baseURL: true, appUrl: true, appTitle: true, timeoutMs: true }).shape);

/**
 * Creates a key pool that talks to OpenRouter (or any OpenAI-compatible `baseURL`) through the
 * real `openai` SDK, with `maxRetries: 0`: the pool owns retries. The config is validated with
 * zod; a bad one throws a `ValidationError` naming the field.
 */
export function createKeyPool(options: KeyPoolOptions): KeyPool {
  // Not a config at all: the pool's own check says so, at the root, not as a missing `keys`.
  if (typeof options !== 'object' || options === null) return createPool(options);
  const { baseURL, appUrl, appTitle, timeoutMs, ...config } = options;
  const endpoint = safeParseEnglish(endpointSchema, { baseURL, appUrl, appTitle, timeoutMs });
  if (!endpoint.success) throw new ValidationError(formatZodError(endpoint.error, 'key pool config'), endpoint.error.issues);
  const client: OpenRouterClientOptions = Object.fromEntries(Object.entries(endpoint.data).filter(([, value]) => value !== undefined));
  return createPool(
    Object.assign({}, config, {
      transport:
        config.transport ??
        createOpenRouterTransport(Object.assign({}, client, config.scheduler === undefined ? {} : { scheduler: config.scheduler })),
      keyInfo: config.keyInfo ?? ((key: KeyCredential) => fetchKeyInfo(key, client)),
    }),
  );
}
