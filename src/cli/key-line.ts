import type { KeyHealth, KeyState, PoolHealth } from '../health/records.js';

/**
 * The compact per-key health line under the progress bar: each key's label, state and load, in
 * one terminal line. Labels only, never key text. When the keys do not fit the width (a pool of a
 * thousand keys), it falls back to counts per state.
 */

const STATE_WORD: Record<KeyState, string> = {
  closed: 'ok',
  'half-open': 'probe',
  open: 'open',
  disabled: 'disabled',
  exhausted: 'exhausted',
};

/** ANSI colours per state: green ok, yellow probing, red open, grey disabled, magenta exhausted. */
const STATE_COLOUR: Record<KeyState, string> = {
  closed: '32',
  'half-open': '33',
  open: '31',
  disabled: '90',
  exhausted: '35',
};

function paint(text: string, colour: string, enabled: boolean): string {
  return enabled ? `\x1b[${colour}m${text}\x1b[39m` : text;
}

function seconds(until: number | null, now: number): string {
  if (until === null) return '';
  const left = Math.max(0, until - now) / 1000;
  return left >= 60 ? ` ${Math.round(left / 60)}m` : ` ${left.toFixed(1)}s`;
}

function describeKey(key: KeyHealth, now: number, colour: boolean): { text: string; width: number } {
  const state = `${STATE_WORD[key.state]}${seconds(key.cooldownUntil, now)}`;
  const load = key.inFlight > 0 ? ` ${key.inFlight}⇅` : '';
  const plain = `${key.label} ${state}${load}`;
  return { text: `${key.label} ${paint(state, STATE_COLOUR[key.state], colour)}${load}`, width: [...plain].length };
}

/** `keys: alpha ok 2⇅ │ beta open 3.1s │ gamma disabled`, or counts when that is wider than `width`. */
export function renderKeyLine(health: PoolHealth, width: number, colour: boolean, now: number = health.at): string {
  const parts = health.keys.map((key) => describeKey(key, now, colour));
  const separator = ' │ ';
  const full = `keys: ${parts.map((part) => part.text).join(separator)}`;
  const fullWidth = 6 + parts.reduce((sum, part) => sum + part.width, 0) + separator.length * Math.max(0, parts.length - 1);
  if (fullWidth <= width) return full;
  const counts = new Map<KeyState, number>();
  let inFlight = 0;
  for (const key of health.keys) {
    counts.set(key.state, (counts.get(key.state) ?? 0) + 1);
    inFlight += key.inFlight;
  }
  const summary = [...counts].map(([state, count]) => paint(`${count} ${STATE_WORD[state]}`, STATE_COLOUR[state], colour)).join(', ');
  return `keys: ${summary}; ${inFlight} in flight`;
}

/** One plain line per key state change, for logs: `key beta: ok -> open 3.0s (rate_limit 429)`. */
export function describeKeyChange(before: KeyHealth | undefined, after: KeyHealth, now: number): string | undefined {
  if (before !== undefined && before.state === after.state) return undefined;
  if (before === undefined && after.state === 'closed') return undefined;
  const error =
    after.lastError === null ? '' : ` (${after.lastError.kind}${after.lastError.status === undefined ? '' : ` ${after.lastError.status}`})`;
  const from = before === undefined ? '' : `${STATE_WORD[before.state]} -> `;
  return `key ${after.label} ${after.fingerprint}: ${from}${STATE_WORD[after.state]}${seconds(after.cooldownUntil, now)}${error}`;
}
