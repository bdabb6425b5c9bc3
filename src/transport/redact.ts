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
    const joined = this.held + piece;
    const text = joined.includes(secret) ? redactText(joined, this.key) : joined;
    // The longest end of `text` that could begin the key: only positions holding its first
    // character are candidates, so most pieces are checked in a few steps.
    let cut = text.length;
    for (let at = text.indexOf(secret[0]!, Math.max(0, text.length - secret.length + 1)); at >= 0; at = text.indexOf(secret[0]!, at + 1)) {
      if (secret.startsWith(text.slice(at))) {
        cut = at;
        break;
      }
    }
    this.held = text.slice(cut);
    return cut === text.length ? text : text.slice(0, cut);
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }
}
