import { OpenRouterError } from '../core/errors.js';
import type { KeyCredential } from '../core/types.js';

/**
 * Keeps API key text out of everything the library reports. Error bodies and SDK messages can
 * echo what was sent (a proxy quoting the Authorization header, a provider quoting the request), so
 * every string that reaches an error is scrubbed, and the key is named by its public label.
 *
 * Key text is the key as it is sent (trimmed: `fetch` trims header values), and any echo of its
 * first `DISTINCTIVE_PREFIX_LENGTH` characters or more: upstreams that quote a key often cut it
 * short (`Bearer sk-or-v1-3a9f0c…`). Twenty characters of an OpenRouter key are `sk-or-v1-` and 11
 * secret hex digits (44 bits), which no other text matches by chance, while the previews OpenRouter
 * itself shows (`sk-or-v1-3a9...f12`: 12 characters and the last 3) stay readable. A fragment that
 * does not start the key (a `…f12` ending) is not matched: it is what previews are made of, and a
 * short one tells nothing. A key shorter than that is matched whole only.
 */
export const DISTINCTIVE_PREFIX_LENGTH = 20;

/** Values nested deeper than this are replaced whole: no answer nests so deep, and the walk stays bounded. */
export const MAX_REDACTED_DEPTH = 64;
export const TOO_DEEP_PLACEHOLDER = '[redacted: nested too deep]';
const CIRCULAR_PLACEHOLDER = '[circular]';
/** Cause chains are copied this far; a longer chain is cut. */
const MAX_CAUSE_DEPTH = 8;

export function keyPlaceholder(key: KeyCredential): string {
  return `[key ${key.label} ${key.fingerprint}]`;
}

function secretOf(key: KeyCredential): string {
  return key.key.trim();
}

/** The start of the key that marks key text wherever it appears (the whole key if shorter). */
function distinctiveHead(secret: string): string {
  return secret.slice(0, DISTINCTIVE_PREFIX_LENGTH);
}

/**
 * Whether raw response text (JSON included, where `"` and `\` come escaped) holds key text: a
 * cheap test, so that only what mentions the key is copied to be scrubbed.
 */
export function mentionsKey(text: string, key: KeyCredential): boolean {
  const head = distinctiveHead(secretOf(key));
  if (head === '') return false;
  const escaped = JSON.stringify(head).slice(1, -1);
  return text.includes(head) || (escaped !== head && text.includes(escaped));
}

export function redactText(text: string, key: KeyCredential): string {
  const secret = secretOf(key);
  const head = distinctiveHead(secret);
  let at = head === '' ? -1 : text.indexOf(head);
  if (at < 0) return text;
  const placeholder = keyPlaceholder(key);
  let result = '';
  let from = 0;
  while (at >= 0) {
    // The echo runs on as long as the text goes on spelling the key.
    let end = at + head.length;
    while (end - at < secret.length && text[end] === secret[end - at]) end += 1;
    result += text.slice(from, at) + placeholder;
    from = end;
    at = text.indexOf(head, end);
  }
  return result + text.slice(from);
}

/**
 * A copy of a JSON-like value with key text replaced in every string and property name, at any
 * depth: a subtree deeper than `MAX_REDACTED_DEPTH`, or one that contains itself, is replaced by
 * a placeholder rather than passed through unscrubbed.
 */
export function redactValue(value: unknown, key: KeyCredential): unknown {
  const ancestors = new Set<object>();
  const visit = (item: unknown, depth: number): unknown => {
    if (typeof item === 'string') return redactText(item, key);
    if (typeof item !== 'object' || item === null) return item;
    if (depth >= MAX_REDACTED_DEPTH) return TOO_DEEP_PLACEHOLDER;
    if (ancestors.has(item)) return CIRCULAR_PLACEHOLDER;
    ancestors.add(item);
    const copy = Array.isArray(item)
      ? item.map((entry) => visit(entry, depth + 1))
      : Object.fromEntries(Object.entries(item).map(([name, entry]) => [redactText(name, key), visit(entry, depth + 1)]));
    ancestors.delete(item);
    return copy;
  };
  return visit(value, 0);
}

/**
 * Scrubs an error of ours before it leaves the transport: its message and stack (V8 copies the
 * message into the stack at construction), its metadata, and its cause chain. Only the error's own
 * writable fields are rewritten. A foreign cause (an SDK error; a `DOMException`, whose `message`
 * is a read-only getter) is never touched: a scrubbed copy takes its place, so the object, with
 * whatever else it holds (request options, raw bodies), never leaves the transport.
 */
export function redactError<E extends OpenRouterError>(error: E, key: KeyCredential): E {
  scrub(error, key, 0);
  return error;
}

function scrub(error: OpenRouterError, key: KeyCredential, depth: number): void {
  rewrite(error, 'message', redactText(error.message, key));
  if (error.stack !== undefined) rewrite(error, 'stack', redactText(error.stack, key));
  if (error.metadata !== undefined) rewrite(error, 'metadata', redactValue(error.metadata, key));
  if (error.cause === undefined) return;
  if (error.cause instanceof OpenRouterError && error.cause !== error && depth < MAX_CAUSE_DEPTH) scrub(error.cause, key, depth + 1);
  else rewrite(error, 'cause', scrubbedCopy(error.cause, key, depth + 1));
}

/** Sets an own, writable data property of an error of ours, and only when the value changed. */
function rewrite(error: OpenRouterError, name: 'message' | 'stack' | 'metadata' | 'cause', value: unknown): void {
  const current = Object.getOwnPropertyDescriptor(error, name);
  if (current?.writable === true && current.value !== value) Object.defineProperty(error, name, { ...current, value });
}

/** A new error carrying the name, message, stack and `code` of `cause`, scrubbed; never `cause` itself. */
function scrubbedCopy(cause: unknown, key: KeyCredential, depth: number): unknown {
  if (!(cause instanceof Error)) return redactValue(cause, key);
  const inner =
    depth < MAX_CAUSE_DEPTH && cause.cause !== undefined && cause.cause !== cause ? scrubbedCopy(cause.cause, key, depth + 1) : undefined;
  const copy = new Error(redactText(cause.message, key), inner === undefined ? undefined : { cause: inner });
  Object.defineProperty(copy, 'name', { value: cause.name, writable: true, configurable: true, enumerable: false });
  copy.stack = cause.stack === undefined ? undefined : redactText(cause.stack, key);
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') Object.assign(copy, { code });
  return copy;
}

/**
 * Redacts a text that arrives in pieces (a streamed answer), where key text could be split across
 * two pieces: it holds back the end of each piece while it could be the start of the key, and
 * releases it, scrubbed, with the next piece (or `flush`).
 */
export class StreamRedactor {
  private held = '';
  private readonly secret: string;

  constructor(private readonly key: KeyCredential) {
    this.secret = secretOf(key);
  }

  push(piece: string): string {
    const secret = this.secret;
    if (secret === '') return piece;
    const text = this.held + piece;
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
    return redactText(cut === text.length ? text : text.slice(0, cut), this.key);
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return redactText(rest, this.key);
  }
}
