import type { KeyHealth, ModelHealth, PoolHealth } from '../index.js';

/**
 * Renders pool health as a fixed-width table for a terminal: one row per key, then one per model.
 * Shared by the demo and the examples; labels and fingerprints only, never key text. The table
 * fits the width it is given: a narrow terminal would wrap each row onto two lines, and the
 * in-place redraw counts lines. So it first narrows the label and last-error columns, then drops
 * the least telling columns, and cuts what still does not fit.
 */
const STATE_MARK: Record<string, string> = {
  closed: 'ok',
  open: 'OPEN',
  'half-open': 'probe',
  disabled: 'DISABLED',
  exhausted: 'EXHAUSTED',
};

/** When the terminal does not say (not a TTY, or a pseudo-terminal without a size). */
const DEFAULT_WIDTH = 80;

interface Column {
  title: string;
  /** The width it gets when there is room. */
  width: number;
  /** The width it can narrow to (eliding its text) before columns are dropped. */
  narrowest: number;
  /** `width` is the column's, for a cell that elides part of its text rather than its end. */
  key(key: KeyHealth, now: number, width: number): string;
  model(model: ModelHealth, now: number): string;
}

function ms(value: number | null): string {
  return value === null ? '-' : `${Math.round(value)}ms`;
}

function quotaLeft(key: KeyHealth): string {
  const requests = key.quota.find((quota) => quota.unit === 'requests');
  return requests === undefined ? '-' : `${requests.remaining}/${requests.limit}`;
}

function until(at: number | null, now: number): string {
  if (at === null) return '';
  const seconds = Math.max(0, (at - now) / 1000);
  return seconds >= 60 ? ` ${Math.round(seconds / 60)}m` : ` ${Math.ceil(seconds * 10) / 10}s`;
}

/** `text` in exactly `width` columns: padded, or cut with an ellipsis. */
function cell(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text + ' '.repeat(width - chars.length);
  return width <= 1 ? chars.slice(0, width).join('') : `${chars.slice(0, width - 1).join('')}…`;
}

/** The label elided rather than the fingerprint: two keys with one label differ only there. */
function keyName(key: KeyHealth, width: number): string {
  const room = width - key.fingerprint.length - 1;
  if ([...key.label].length <= room) return `${key.label} ${key.fingerprint}`;
  return room >= 3 ? `${cell(key.label, room)} ${key.fingerprint}` : key.label;
}

const COLUMNS: readonly Column[] = [
  { title: 'key', width: 22, narrowest: 12, key: (key, _now, width) => keyName(key, width), model: (model) => model.model },
  {
    title: 'state',
    width: 14,
    narrowest: 14,
    key: (key, now) => `${STATE_MARK[key.state] ?? key.state}${until(key.cooldownUntil, now)}`,
    model: (model, now) => `${STATE_MARK[model.state] ?? model.state}${until(model.cooldownUntil, now)}`,
  },
  { title: 'in-flight', width: 9, narrowest: 9, key: (key) => String(key.inFlight), model: (model) => String(model.inFlight) },
  { title: 'done', width: 7, narrowest: 7, key: (key) => String(key.usage.requests), model: (model) => String(model.usage.requests) },
  { title: 'errors', width: 7, narrowest: 7, key: (key) => String(key.failures), model: (model) => String(model.failures) },
  { title: 'quota', width: 9, narrowest: 9, key: quotaLeft, model: () => '' },
  { title: 'latency', width: 9, narrowest: 9, key: (key) => ms(key.latencyMs), model: (model) => ms(model.latencyMs) },
  {
    title: 'last error',
    width: 24,
    // `rate_limit 429`, whole.
    narrowest: 14,
    key: (key) =>
      key.lastError === null ? '' : `${key.lastError.kind}${key.lastError.status === undefined ? '' : ` ${key.lastError.status}`}`,
    model: (model) => model.lastError?.kind ?? '',
  },
];

/** Dropped first when narrowing is not enough: what says least about a key at the end of a run. */
const DROP_ORDER: readonly string[] = ['quota', 'in-flight', 'latency', 'last error', 'errors', 'done'];

interface Layout {
  columns: readonly Column[];
  widths: readonly number[];
}

function totalWidth(widths: readonly number[]): number {
  return widths.reduce((sum, width) => sum + width, 0) + Math.max(0, widths.length - 1);
}

/** The columns that fit `width`, each as wide as it may be within it. */
function layout(width: number): Layout {
  let columns = COLUMNS;
  for (const title of DROP_ORDER) {
    if (totalWidth(columns.map((column) => column.narrowest)) <= width) break;
    columns = columns.filter((column) => column.title !== title);
  }
  const widths = columns.map((column) => column.narrowest);
  // What is left over widens the narrowed columns again, the label first.
  let spare = width - totalWidth(widths);
  columns.forEach((column, index) => {
    const grow = Math.max(0, Math.min(spare, column.width - widths[index]!));
    widths[index]! += grow;
    spare -= grow;
  });
  return { columns, widths };
}

/**
 * Health as a table no wider than `columns` (the terminal's). Undefined or 0 (a pipe, or a
 * pseudo-terminal without a size) means 80.
 */
export function renderHealthTable(health: PoolHealth, columns?: number): string {
  const width = columns || DEFAULT_WIDTH;
  const { columns: shown, widths } = layout(width);
  const row = (texts: readonly string[]) =>
    texts
      .map((text, index) => cell(text, widths[index]!))
      .join(' ')
      .trimEnd();
  const now = health.at;
  const lines = [row(shown.map((column) => column.title))];
  for (const key of health.keys) lines.push(row(shown.map((column, index) => column.key(key, now, widths[index]!))));
  if (health.models.length > 0) {
    lines.push('model');
    for (const model of health.models) lines.push(row(shown.map((column) => column.model(model, now))));
  }
  lines.push(`queued: ${health.queued}   tokens: ${health.usage.totalTokens}   cost: $${health.usage.cost.toFixed(4)}`);
  return lines.map((line) => cell(line, width).trimEnd()).join('\n');
}

/** Redraws the table in place on a TTY; elsewhere prints it as plain lines, at most once a second. */
export function createHealthPrinter(stream: NodeJS.WriteStream = process.stdout): (health: PoolHealth, final?: boolean) => void {
  let drawnLines = 0;
  let lastPlainAt = -Infinity;
  return (health, final = false) => {
    const table = renderHealthTable(health, stream.columns);
    if (stream.isTTY) {
      if (drawnLines > 0) stream.write(`\x1b[${drawnLines}A\x1b[J`);
      stream.write(`${table}\n`);
      drawnLines = table.split('\n').length;
      return;
    }
    const now = Date.now();
    if (!final && now - lastPlainAt < 1000) return;
    lastPlainAt = now;
    stream.write(`${table}\n\n`);
  };
}
