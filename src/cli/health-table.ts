import type { KeyHealth, ModelHealth, PoolHealth } from '../index.js';

/**
 * Renders pool health as a fixed-width table for a terminal: one row per key, then one per model.
 * Shared by the demo and the examples; labels and fingerprints only, never key text.
 */
const STATE_MARK: Record<string, string> = {
  closed: 'ok',
  open: 'OPEN',
  'half-open': 'probe',
  disabled: 'DISABLED',
  exhausted: 'EXHAUSTED',
};

function cell(value: string | number, width: number): string {
  const text = String(value);
  return text.length >= width ? text.slice(0, width) : text + ' '.repeat(width - text.length);
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

export function renderKeyRow(key: KeyHealth, now: number): string {
  return [
    cell(`${key.label} ${key.fingerprint}`, 22),
    cell(`${STATE_MARK[key.state] ?? key.state}${until(key.cooldownUntil, now)}`, 14),
    cell(key.inFlight, 9),
    cell(key.usage.requests, 7),
    cell(key.failures, 7),
    cell(quotaLeft(key), 9),
    cell(ms(key.latencyMs), 9),
    cell(key.lastError === null ? '' : `${key.lastError.kind}${key.lastError.status === undefined ? '' : ` ${key.lastError.status}`}`, 24),
  ].join(' ');
}

export function renderModelRow(model: ModelHealth, now: number): string {
  return [
    cell(model.model, 22),
    cell(`${STATE_MARK[model.state] ?? model.state}${until(model.cooldownUntil, now)}`, 14),
    cell(model.inFlight, 9),
    cell(model.usage.requests, 7),
    cell(model.failures, 7),
    cell('', 9),
    cell(ms(model.latencyMs), 9),
    cell(model.lastError === null ? '' : model.lastError.kind, 24),
  ].join(' ');
}

export function renderHealthTable(health: PoolHealth): string {
  const header = [
    cell('key', 22),
    cell('state', 14),
    cell('in-flight', 9),
    cell('done', 7),
    cell('errors', 7),
    cell('quota', 9),
    cell('latency', 9),
    cell('last error', 24),
  ].join(' ');
  const lines = [header, ...health.keys.map((key) => renderKeyRow(key, health.at))];
  if (health.models.length > 0) {
    lines.push(cell('model', 22));
    lines.push(...health.models.map((model) => renderModelRow(model, health.at)));
  }
  lines.push(`queued: ${health.queued}   tokens: ${health.usage.totalTokens}   cost: $${health.usage.cost.toFixed(4)}`);
  return lines.join('\n');
}

/** Redraws the table in place on a TTY; elsewhere prints it as plain lines, at most once a second. */
export function createHealthPrinter(stream: NodeJS.WriteStream = process.stdout): (health: PoolHealth, final?: boolean) => void {
  let drawnLines = 0;
  let lastPlainAt = -Infinity;
  return (health, final = false) => {
    const table = renderHealthTable(health);
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
