import { readFile, stat } from 'node:fs/promises';
import { fingerprintOf } from '../core/fingerprint.js';
import { KEYS_HINT, UsageError } from './args.js';

/**
 * Where the CLI's keys come from: `OPENROUTER_API_KEYS` or a keys file, never a flag (a flag lands
 * in the shell history and in `ps`). Messages name keys by line, label and fingerprint only.
 */

export interface CliKey {
  key: string;
  label: string;
}

export interface LoadedKeys {
  keys: CliKey[];
  /** Where they came from, for the banner: `OPENROUTER_API_KEYS` or the file's path. */
  source: string;
  /** Problems worth a warning that do not stop the run (a keys file others can read). */
  warnings: string[];
}

export const KEYS_ENV = 'OPENROUTER_API_KEYS';

/**
 * A label is a short name a person gave the key: 1 to 64 letters, digits and `. _ - : @`, starting
 * with a letter or digit. It is printed everywhere (progress, results, dashboard), so text shaped
 * like a key is refused as a label: a line written `key=label` would otherwise publish the key.
 */
const LABEL = /^[A-Za-z0-9][\w.:@-]{0,63}$/;

/**
 * Key-shaped text: an `sk-` prefix (OpenRouter's `sk-or-v1-…`, and other providers' keys), or 20 or
 * more letters and digits in a row, which is a token (hex, base64) rather than a name.
 */
const KEY_SHAPED = /^sk-|[A-Za-z0-9]{20}/i;

interface Entry {
  text: string;
  /** `line 3` of a file, `entry 2` of the variable. */
  where: string;
}

/** Reads the keys: `--keys-file` when given, else `OPENROUTER_API_KEYS`. */
export async function loadKeys(keysFile: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<LoadedKeys> {
  if (keysFile !== undefined) return loadKeysFile(keysFile);
  const variable = env[KEYS_ENV] ?? '';
  // Commas or newlines (a CI secret may hold one key per line); not spaces, which would make a
  // label with a space (`team a=sk-…`) into a key of its own, sent as a bearer token.
  const entries = variable
    .split(/[,\r\n]+/)
    .map((text) => text.trim())
    .filter((text) => text.length > 0)
    .map((text, index): Entry => ({ text, where: `entry ${index + 1} of ${KEYS_ENV}` }));
  if (entries.length === 0) throw new UsageError(`no API keys: ${KEYS_HINT}; or try it with --fake, no key needed`);
  return { keys: toKeys(entries), source: KEYS_ENV, warnings: [] };
}

async function loadKeysFile(path: string): Promise<LoadedKeys> {
  let text: string;
  let mode: number;
  try {
    [text, mode] = await Promise.all([readFile(path, 'utf8'), stat(path).then((stats) => stats.mode)]);
  } catch (error) {
    throw new UsageError(`--keys-file: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const entries = text
    .split(/\r?\n/)
    .map((line, index): Entry => ({ text: line.trim(), where: `${path} line ${index + 1}` }))
    .filter((entry) => entry.text.length > 0 && !entry.text.startsWith('#'));
  if (entries.length === 0) throw new UsageError(`--keys-file: ${path} holds no key (one key per line, optionally label=key)`);
  const warnings =
    process.platform !== 'win32' && (mode & 0o077) !== 0 ? [`${path} can be read by other users of this machine; chmod 600 ${path}`] : [];
  return { keys: toKeys(entries), source: path, warnings };
}

/**
 * `key` or `label=key` entries to labelled keys. Messages name the entry and what is wrong with it,
 * never its text: either side of the `=` may be the key.
 */
export function toKeys(entries: readonly Entry[]): CliKey[] {
  const byKey = new Map<string, string>();
  const byLabel = new Map<string, string>();
  return entries.map((entry, index) => {
    const equals = entry.text.indexOf('=');
    const label = equals >= 0 ? entry.text.slice(0, equals).trim() : `key-${index + 1}`;
    const key = (equals >= 0 ? entry.text.slice(equals + 1) : entry.text).trim();
    if (label.length === 0) throw new UsageError(`${entry.where}: nothing before '='; write label=key, or the key alone`);
    if (KEY_SHAPED.test(label)) {
      throw new UsageError(`${entry.where}: what comes before '=' looks like an API key, not a label: write label=key, the label first`);
    }
    if (!LABEL.test(label)) {
      throw new UsageError(
        `${entry.where}: the label may hold letters, digits and . _ - : @ only, start with a letter or digit, and be at most 64 long`,
      );
    }
    if (key.length === 0 || /\s/.test(key)) throw new UsageError(`${entry.where}: the key is empty or holds spaces`);
    const twin = byKey.get(key);
    if (twin !== undefined) throw new UsageError(`${entry.where}: the same key (${fingerprintOf(key)}) as ${twin}`);
    const sameLabel = byLabel.get(label);
    if (sameLabel !== undefined) throw new UsageError(`${entry.where}: the same label as ${sameLabel}`);
    byKey.set(key, entry.where);
    byLabel.set(label, entry.where);
    return { key, label };
  });
}

/** Replaces every key's text in `text` with its label and fingerprint: the last guard before output. */
export function keyRedactor(keys: readonly CliKey[]): (text: string) => string {
  const replacements = keys
    .filter((entry) => entry.key.length > 0)
    .map((entry) => [entry.key, `[key ${entry.label} ${fingerprintOf(entry.key)}]`] as const);
  return (text) => {
    let result = text;
    for (const [key, name] of replacements) if (result.includes(key)) result = result.split(key).join(name);
    return result;
  };
}
