import { copyError, OpenRouterError } from './errors.js';
import type { KeyCredential } from './types.js';

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
/**
 * The secret after a key's scheme prefix (`sk-or-v1-`) is also key text when quoted on its own
 * (`Bearer 3a9f0c…` from a proxy that strips the prefix): from its first 16 characters (64 bits of
 * hex) on, which no other text matches by chance.
 */
export const DISTINCTIVE_SECRET_LENGTH = 16;
const SCHEME_PREFIX = /^sk-(?:[a-z]+-v\d+-)?/;

/** Values nested deeper than this are replaced whole: no answer nests so deep, and the walk stays bounded. */
export const MAX_REDACTED_DEPTH = 64;
export const TOO_DEEP_PLACEHOLDER = '[redacted: nested too deep]';
const CIRCULAR_PLACEHOLDER = '[circular]';
/** Cause chains are copied this far; a longer chain is cut. */
const MAX_CAUSE_DEPTH = 8;

export function keyPlaceholder(key: KeyCredential): string {
  return `[key ${key.label} ${key.fingerprint}]`;
}

/**
 * What key text looks like for one key, worked out once: an attempt asks it of every streamed
 * chunk, so the key's distinctive head and its JSON-escaped form are not rebuilt per chunk.
 */
export class KeyText {
  /** The key as it is sent. */
  readonly secret: string;
  /** Its first `DISTINCTIVE_PREFIX_LENGTH` characters (the whole key if shorter): key text starts so. */
  private readonly head: string;
  /** The head as it reads inside a JSON string, where `"` and `\` come escaped. */
  private readonly escapedHead: string;
  /** The secret after the scheme prefix, when long enough to be key text on its own ('' otherwise). */
  readonly echoedSecret: string;
  /** Its first `DISTINCTIVE_SECRET_LENGTH` characters ('' when there is none). */
  private readonly bodyHead: string;
  private readonly placeholder: string;

  constructor(key: KeyCredential) {
    this.secret = key.key.trim();
    this.head = this.secret.slice(0, DISTINCTIVE_PREFIX_LENGTH);
    this.escapedHead = JSON.stringify(this.head).slice(1, -1);
    const prefixLength = SCHEME_PREFIX.exec(this.secret)?.[0].length ?? 0;
    const body = this.secret.slice(prefixLength);
    this.echoedSecret = prefixLength > 0 && body.length >= DISTINCTIVE_SECRET_LENGTH ? body : '';
    this.bodyHead = this.echoedSecret.slice(0, DISTINCTIVE_SECRET_LENGTH);
    this.placeholder = keyPlaceholder(key);
  }

  /**
   * Whether raw response text (JSON included) may hold key text: a cheap test before any copy. JSON
   * can write any character as a `\u` escape, which no search of the raw text would see through:
   * text with an escape of an ASCII character (key text is ASCII; text in other scripts escapes
   * none) is copied and scrubbed decoded.
   */
  mentionedIn(text: string): boolean {
    if (this.head === '') return false;
    if (ASCII_ESCAPE.test(text)) return true;
    if (this.bodyHead !== '' && text.includes(this.bodyHead)) return true;
    return text.includes(this.head) || (this.escapedHead !== this.head && text.includes(this.escapedHead));
  }

  /**
   * Where the end of `text` that may still grow into key text starts (`text.length` when none): a
   * start of the key or of its secret that the text ends in. An echo that ended inside `text`
   * (whole, or cut short by other text) is redacted as one, so no end of it is held back: held, it
   * would be redacted again on its own (a second placeholder), or released as a stray character.
   */
  heldFrom(text: string): number {
    // As `redact` finds echoes: of the whole key first, then of its secret in what is left. A start
    // of the key inside an echo of the secret is still one (a secret may hold the key's head).
    const afterKeys = endOfEchoes(text, this.head, this.secret);
    const fromKey = startOfTail(text, this.secret, afterKeys);
    if (this.echoedSecret === '') return fromKey;
    const afterSecrets = Math.max(afterKeys, endOfEchoes(text, this.bodyHead, this.echoedSecret));
    return Math.min(fromKey, startOfTail(text, this.echoedSecret, afterSecrets));
  }

  /** What every echo of the key starts with: its head (as raw text and inside a JSON string), its secret's head. */
  get echoStarts(): string[] {
    return [this.head, this.escapedHead, this.bodyHead].filter((start, index, starts) => start !== '' && starts.indexOf(start) === index);
  }

  /** `text` with every echo of the key (whole, from its head on, or its secret from its start on) replaced by the placeholder. */
  redact(text: string): string {
    const withKey = this.redactFrom(text, this.head, this.secret);
    return this.bodyHead === '' ? withKey : this.redactFrom(withKey, this.bodyHead, this.echoedSecret);
  }

  /** `text` with every run that starts with `head` and goes on spelling `whole` replaced. */
  private redactFrom(text: string, head: string, whole: string): string {
    let at = head === '' ? -1 : text.indexOf(head);
    if (at < 0) return text;
    let result = '';
    let from = 0;
    while (at >= 0) {
      // The echo runs on as long as the text goes on spelling the key.
      let end = at + head.length;
      while (end - at < whole.length && text[end] === whole[end - at]) end += 1;
      result += text.slice(from, at) + this.placeholder;
      from = end;
      at = text.indexOf(head, end);
    }
    return result + text.slice(from);
  }
}

/** A JSON `\u` escape of a printable ASCII character (what key text is made of). */
const ASCII_ESCAPE = /\\u00[2-7][0-9a-f]/i;

/** An OpenRouter API key (`sk-or-v1-` and 20 or more of its characters), not the masked name OpenRouter shows (`sk-or-v1-ab1...890`). */
const KEY_SHAPE = 'sk-or-v\\d+-[0-9a-z]{20,}';
const KEY_SHAPED_TEXT = new RegExp(KEY_SHAPE, 'gi');
const WHOLE_KEY = new RegExp(`^${KEY_SHAPE}$`, 'i');

/** `text` with what looks like an OpenRouter API key replaced, for text that quotes keys the caller does not know. */
export function redactKeyShaped(text: string): string {
  return text.replace(KEY_SHAPED_TEXT, '[key-shaped text]');
}

/** Whether `text` (trimmed) is an OpenRouter API key, as a label must never be. */
export function isKeyShaped(text: string): boolean {
  return WHOLE_KEY.test(text.trim());
}

export function redactText(text: string, key: KeyCredential): string {
  return new KeyText(key).redact(text);
}

/**
 * A copy of a JSON-like value with key text replaced in every string and property name, at any
 * depth: a subtree deeper than `MAX_REDACTED_DEPTH`, or one that contains itself, is replaced by
 * a placeholder rather than passed through unscrubbed.
 */
export function redactValue(value: unknown, key: KeyCredential): unknown {
  return redactValueWith(value, new KeyText(key));
}

function redactValueWith(value: unknown, keyText: KeyText): unknown {
  return mapStrings(value, (text) => keyText.redact(text));
}

/**
 * A copy of a JSON-like value with `map` applied to every string and property name, at any depth:
 * a subtree deeper than `MAX_REDACTED_DEPTH`, or one that contains itself, becomes a placeholder.
 */
function mapStrings(value: unknown, map: (text: string) => string): unknown {
  const ancestors = new Set<object>();
  const visit = (item: unknown, depth: number): unknown => {
    if (typeof item === 'string') return map(item);
    if (typeof item !== 'object' || item === null) return item;
    if (depth >= MAX_REDACTED_DEPTH) return TOO_DEEP_PLACEHOLDER;
    if (ancestors.has(item)) return CIRCULAR_PLACEHOLDER;
    ancestors.add(item);
    const copy = Array.isArray(item)
      ? item.map((entry) => visit(entry, depth + 1))
      : Object.fromEntries(Object.entries(item).map(([name, entry]) => [map(name), visit(entry, depth + 1)]));
    ancestors.delete(item);
    return copy;
  };
  return visit(value, 0);
}

/**
 * Scrubs an error of ours (made by the caller, or its copy of another's) before it leaves the
 * transport (or, for a user's transport, before an attempt reports it): its message and stack (V8
 * copies the message into the stack at construction), its metadata, and its cause chain. Only the
 * error's own writable fields are rewritten. A cause is never touched: a scrubbed copy takes its
 * place (of a foreign one, such as an SDK error or a `DOMException` whose `message` is a read-only
 * getter, a plain `Error`), so the object, with whatever else it holds (request options, raw
 * bodies), never leaves the transport, and a user's own error stays as they made it.
 */
export function redactError<E extends OpenRouterError>(error: E, key: KeyCredential): E {
  scrub(error, new KeyText(key), 0);
  return error;
}

/**
 * The key text of every key of a pool, to scrub an error that one key's request drew of the others
 * too: a server or a proxy may quote a key other than the one the request carried. An error is
 * searched once for the starts of every key's echoes (positions whose first four characters begin
 * one, then the starts of each length there), not once per key, so that a pool of a thousand keys
 * scrubs an error about as fast as a pool of one.
 */
export class PoolKeyTexts {
  /** The keys by their echo starts, by the starts' lengths. */
  private readonly byStart = new Map<number, Map<string, KeyText[]>>();
  /** The first four characters of every echo start, as `prefixCode` reads them. */
  private readonly prefixes = new Set<number>();
  /** Echo starts shorter than four characters (keys that short), searched for one by one. */
  private readonly shortStarts: Array<readonly [string, KeyText]> = [];

  constructor(keys: readonly KeyCredential[]) {
    for (const keyText of keys.map((key) => new KeyText(key))) {
      for (const start of keyText.echoStarts) {
        if (start.length < PREFIX_LENGTH) {
          this.shortStarts.push([start, keyText]);
          continue;
        }
        this.prefixes.add(prefixCode(start, 0));
        let ofLength = this.byStart.get(start.length);
        if (ofLength === undefined) this.byStart.set(start.length, (ofLength = new Map<string, KeyText[]>()));
        const keysOfStart = ofLength.get(start);
        if (keysOfStart === undefined) ofLength.set(start, [keyText]);
        else if (!keysOfStart.includes(keyText)) keysOfStart.push(keyText);
      }
    }
  }

  /**
   * Scrubs `error` as `redactError(error, sender)` does, then of every other key of the pool that
   * it still quotes. The first scrub leaves plain text, plain metadata and plain causes (a `Map`,
   * an `Error` or a `toJSON` in metadata copied as their fields), so the search reads all that a
   * logger could print of it.
   */
  redactError<E extends OpenRouterError>(error: E, sender: KeyCredential): E {
    redactError(error, sender);
    for (const keyText of this.mentionedIn(searchedTextOf(error))) scrub(error, keyText, 0);
    return error;
  }

  /** The keys whose echo starts `text` holds. */
  private mentionedIn(text: string): Set<KeyText> {
    const found = new Set<KeyText>();
    for (const [start, keyText] of this.shortStarts) if (text.includes(start)) found.add(keyText);
    for (let at = 0; at + PREFIX_LENGTH <= text.length; at++) {
      if (!this.prefixes.has(prefixCode(text, at))) continue;
      for (const [length, ofLength] of this.byStart) {
        const keys = at + length <= text.length ? ofLength.get(text.slice(at, at + length)) : undefined;
        if (keys !== undefined) for (const keyText of keys) found.add(keyText);
      }
    }
    return found;
  }
}

/** How many characters of an echo start `PoolKeyTexts` checks at every position before it looks further. */
const PREFIX_LENGTH = 4;

/** The first four characters of `text` from `at`, seven bits each, as one number (a collision only costs a lookup). */
function prefixCode(text: string, at: number): number {
  return (
    ((text.charCodeAt(at) & 0x7f) << 21) |
    ((text.charCodeAt(at + 1) & 0x7f) << 14) |
    ((text.charCodeAt(at + 2) & 0x7f) << 7) |
    (text.charCodeAt(at + 3) & 0x7f)
  );
}

/**
 * The text of a scrubbed error that may quote a key: its message, stack and `code`, every string of
 * its metadata (names included, as `redactValue` walks it: a `toJSON` hides nothing from a logger's
 * inspection), and its causes'.
 */
function searchedTextOf(error: OpenRouterError): string {
  const texts: string[] = [];
  let item: unknown = error;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH && item !== undefined; depth++) {
    if (!(item instanceof Error)) {
      collectStrings(item, texts);
      break;
    }
    texts.push(item.message, item.stack ?? '');
    const code = (item as { code?: unknown }).code;
    if (typeof code === 'string') texts.push(code);
    if (item instanceof OpenRouterError) collectStrings(item.metadata, texts);
    item = item.cause === item ? undefined : item.cause;
  }
  return texts.join('\n');
}

/** Every string in a JSON-like value, and its property names, as `redactValue` walks it. */
function collectStrings(value: unknown, texts: string[]): void {
  mapStrings(value, (text) => {
    texts.push(text);
    return text;
  });
}

function scrub(error: OpenRouterError, keyText: KeyText, depth: number): void {
  rewrite(error, 'message', keyText.redact(error.message));
  if (error.stack !== undefined) rewrite(error, 'stack', keyText.redact(error.stack));
  if (error.metadata !== undefined) rewrite(error, 'metadata', redactValueWith(error.metadata, keyText));
  if (error.cause === undefined) return;
  if (error.cause instanceof OpenRouterError && error.cause !== error && depth < MAX_CAUSE_DEPTH) {
    // A copy, scrubbed: the cause may be a user's (a transport of their own failed with it).
    const cause = copyError(error.cause, {});
    scrub(cause, keyText, depth + 1);
    rewrite(error, 'cause', cause);
  } else rewrite(error, 'cause', scrubbedCopy(error.cause, keyText, depth + 1));
}

/** Sets an own, writable data property of an error of ours, and only when the value changed. */
function rewrite(error: OpenRouterError, name: 'message' | 'stack' | 'metadata' | 'cause', value: unknown): void {
  const current = Object.getOwnPropertyDescriptor(error, name);
  if (current?.writable === true && current.value !== value) Object.defineProperty(error, name, Object.assign({}, current, { value }));
}

/** A new error carrying the name, message, stack and `code` of `cause`, scrubbed; never `cause` itself. */
function scrubbedCopy(cause: unknown, keyText: KeyText, depth: number): unknown {
  if (!(cause instanceof Error)) return redactValueWith(cause, keyText);
  const inner =
    depth < MAX_CAUSE_DEPTH && cause.cause !== undefined && cause.cause !== cause
      ? scrubbedCopy(cause.cause, keyText, depth + 1)
      : undefined;
  const copy = new Error(keyText.redact(cause.message), inner === undefined ? undefined : { cause: inner });
  Object.defineProperty(copy, 'name', { value: cause.name, writable: true, configurable: true, enumerable: false });
  copy.stack = cause.stack === undefined ? undefined : keyText.redact(cause.stack);
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

  constructor(private readonly keyText: KeyText) {}

  push(piece: string): string {
    if (this.keyText.secret === '') return piece;
    const text = this.held + piece;
    const cut = this.keyText.heldFrom(text);
    this.held = text.slice(cut);
    return this.keyText.redact(cut === text.length ? text : text.slice(0, cut));
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return this.keyText.redact(rest);
  }
}

/**
 * Where the longest end of `text` from `from` on that could begin `whole` starts (`text.length`
 * when none): only positions holding its first character are candidates, so most pieces are
 * checked in a few steps.
 */
function startOfTail(text: string, whole: string, from: number): number {
  for (let at = text.indexOf(whole[0]!, Math.max(from, text.length - whole.length + 1)); at >= 0; at = text.indexOf(whole[0]!, at + 1)) {
    if (whole.startsWith(text.slice(at))) return at;
  }
  return text.length;
}

/**
 * Where the last echo in `text` that cannot grow ends (0 when none): a run from `head` on that goes
 * on spelling `whole`, as `redactFrom` finds them, that is whole or stops before the end of `text`.
 */
function endOfEchoes(text: string, head: string, whole: string): number {
  let released = 0;
  let at = head === '' ? -1 : text.indexOf(head);
  while (at >= 0) {
    let end = at + head.length;
    while (end - at < whole.length && text[end] === whole[end - at]) end += 1;
    // A run that reaches the end of the text short of the whole key may go on in the next piece.
    if (end === text.length && end - at < whole.length) break;
    released = end;
    at = text.indexOf(head, end);
  }
  return released;
}

type ToolCallDelta = Readonly<Record<string, unknown>>;

/**
 * Redacts streamed tool calls: each call's `function.arguments` arrives in pieces like an answer's
 * text, so each call (by its `index`) gets a `StreamRedactor` of its own. Deltas come back as
 * copies with their arguments scrubbed and the end held back while it could begin the key; what
 * is held at the end of the stream comes back from `flush` as argument deltas of its own.
 */
export class ToolCallRedactor {
  private readonly byIndex = new Map<unknown, StreamRedactor>();

  constructor(private readonly keyText: KeyText) {}

  push(calls: ReadonlyArray<ToolCallDelta>): ToolCallDelta[] {
    return calls.map((call) => {
      const fn = call['function'];
      const args = typeof fn === 'object' && fn !== null ? (fn as Record<string, unknown>)['arguments'] : undefined;
      if (typeof args !== 'string') return call;
      let redactor = this.byIndex.get(call['index']);
      if (redactor === undefined) {
        redactor = new StreamRedactor(this.keyText);
        this.byIndex.set(call['index'], redactor);
      }
      return Object.assign({}, call, { function: Object.assign({}, fn, { arguments: redactor.push(args) }) });
    });
  }

  /** The arguments still held back, one delta per call that holds any; undefined when none does. */
  flush(): ToolCallDelta[] | undefined {
    const held: ToolCallDelta[] = [];
    for (const [index, redactor] of this.byIndex) {
      const rest = redactor.flush();
      if (rest !== '') held.push({ index, function: { arguments: rest } });
    }
    return held.length === 0 ? undefined : held;
  }
}
