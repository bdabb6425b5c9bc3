export { createOpenRouterTransport, type OpenRouterTransportOptions } from './openai-transport.js';
export { fetchKeyInfo, parseKeyInfo, type KeyInfo } from './key-info.js';
export type { OpenRouterClientOptions } from './client-options.js';
