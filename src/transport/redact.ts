import type { KeyCredential } from '../types.js';

/**
 * Keeps API key text out of everything the library reports. Error bodies and SDK messages can
 * echo what was sent (a proxy quoting the Authorization header, a provider quoting the request), so
 * every string that reaches an error is scrubbed, and the key is named by its public label.
 */

export function keyPlaceholder(key: KeyCredential): string {
  return `[key ${key.label} ${key.fingerprint}]`;
}

export function redactText(text: string, key: KeyCredential): string {
  return key.key === '' ? text : text.split(key.key).join(keyPlaceholder(key));
}

/** A copy of a JSON-like value with the key text replaced in every string. */
export function redactValue(value: unknown, key: KeyCredential, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value, key);
  if (depth > 8 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => redactValue(item, key, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, redactValue(item, key, depth + 1)]));
}

/**
 * Scrubs an error's message and stack, and its cause's, in place before the error leaves the
 * transport (the stack is scrubbed too because V8 copies the message into it at construction).
 */
export function redactError<E extends Error>(error: E, key: KeyCredential): E {
  for (const target of error.cause instanceof Error ? [error, error.cause] : [error]) {
    target.message = redactText(target.message, key);
    if (target.stack !== undefined) target.stack = redactText(target.stack, key);
  }
  return error;
}

/**
 * Redacts a text that arrives in pieces (a streamed answer), where the key could be split across
 * two pieces: it holds back the end of each piece while it could be the start of the key, and
 * releases it with the next piece (or `flush`).
 */
export class StreamRedactor {
  private held = '';

  constructor(private readonly key: KeyCredential) {}

  push(piece: string): string {
    const secret = this.key.key;
    if (secret === '') return piece;
    const text = redactText(this.held + piece, this.key);
    let keep = Math.min(secret.length - 1, text.length);
    while (keep > 0 && !secret.startsWith(text.slice(text.length - keep))) keep--;
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }
}
