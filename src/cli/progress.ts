import type { PoolHealth } from '../health/records.js';
import type { CliOutput } from './io.js';
import { describeKeyChange, renderKeyLine } from './key-line.js';

/**
 * Progress of a batch. On a terminal: a bar (done, failed, rate, ETA) and the per-key health line,
 * redrawn in place a few times a second. Elsewhere (CI logs, a pipe): plain lines, at most one a
 * second, plus one line per key state change. Real time is fine here: this is the CLI's edge.
 */

export type ProgressMode = 'bar' | 'plain' | 'none';

export interface ProgressCounts {
  /** Prompts this run sends (already-done ones excluded). */
  total: number;
  succeeded: number;
  failed: number;
  inFlight: number;
}

const REDRAW_MS = 150;
const PLAIN_EVERY_MS = 1000;

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '--';
  const total = Math.max(0, Math.round(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, '0')}m`;
  if (minutes > 0) return `${minutes}m${String(secs).padStart(2, '0')}s`;
  return `${secs}s`;
}

/** Prompts per second and the time left, from this run's pace. */
export function pace(counts: ProgressCounts, elapsedMs: number): { rate: number; etaMs: number } {
  const finished = counts.succeeded + counts.failed;
  const rate = elapsedMs > 0 ? (finished * 1000) / elapsedMs : 0;
  const left = counts.total - finished;
  return { rate, etaMs: left === 0 ? 0 : rate > 0 ? (left / rate) * 1000 : Infinity };
}

/**
 * Where a run is: `running` has an ETA. Once Ctrl-C stopped admitting prompts there is none to give
 * (what is left will not be sent), so the bar says `stopping…` while the prompts in flight finish,
 * then `stopped`.
 */
export type ProgressPhase = 'running' | 'stopping' | 'stopped';

function outlook(counts: ProgressCounts, elapsedMs: number, phase: ProgressPhase): string {
  if (phase === 'stopping') return 'stopping…';
  if (phase === 'stopped') return 'stopped';
  return `ETA ${formatDuration(pace(counts, elapsedMs).etaMs)}`;
}

/** `[█████░░░░░]  42% 42/100 done · 2 failed · 3 in flight · 3.1/s · ETA 19s` (fits 80 columns) */
export function renderBar(
  counts: ProgressCounts,
  elapsedMs: number,
  width: number,
  colour: boolean,
  phase: ProgressPhase = 'running',
): string {
  const finished = counts.succeeded + counts.failed;
  const fraction = counts.total === 0 ? 1 : finished / counts.total;
  const { rate } = pace(counts, elapsedMs);
  const failed = counts.failed > 0 && colour ? `\x1b[31m${counts.failed} failed\x1b[39m` : `${counts.failed} failed`;
  const tail = ` ${String(Math.floor(fraction * 100)).padStart(3)}% ${finished}/${counts.total} done · ${failed} · ${counts.inFlight} in flight · ${rate.toFixed(1)}/s · ${outlook(counts, elapsedMs, phase)}`;
  // eslint-disable-next-line no-control-regex -- the ESC (\x1b) that starts an ANSI colour code is the point
  const tailWidth = tail.replace(/\x1b\[\d+m/g, '').length;
  // Two brackets, and the last column left free: writing into it wraps on some terminals.
  const barWidth = Math.max(10, Math.min(30, width - tailWidth - 3));
  const filled = Math.round(fraction * barWidth);
  return `[${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}]${tail}`;
}

export function renderPlain(counts: ProgressCounts, elapsedMs: number, phase: ProgressPhase = 'running'): string {
  const finished = counts.succeeded + counts.failed;
  const { rate } = pace(counts, elapsedMs);
  return `progress: ${finished}/${counts.total} done (${counts.succeeded} ok, ${counts.failed} failed), ${counts.inFlight} in flight, ${rate.toFixed(1)}/s, ${outlook(counts, elapsedMs, phase)}`;
}

/** Cuts a line to `width` columns, keeping ANSI colour codes intact and closing any left open. */
function fit(line: string, width: number): string {
  let visible = 0;
  let out = '';
  for (let index = 0; index < line.length;) {
    // eslint-disable-next-line no-control-regex -- the ESC (\x1b) that starts an ANSI colour code is the point
    const escape = /^\x1b\[\d+m/.exec(line.slice(index));
    if (escape !== null) {
      out += escape[0];
      index += escape[0].length;
      continue;
    }
    const char = String.fromCodePoint(line.codePointAt(index)!);
    if (visible >= width - 1) return `${out}…\x1b[0m`;
    out += char;
    visible++;
    index += char.length;
  }
  return out;
}

export class ProgressReporter {
  private counts: ProgressCounts = { total: 0, succeeded: 0, failed: 0, inFlight: 0 };
  private health: PoolHealth | undefined;
  private phase: ProgressPhase = 'running';
  private drawn = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private startedAt = 0;
  private lastPlainAt = -Infinity;
  private lastPlain = '';

  constructor(
    private readonly out: CliOutput,
    readonly mode: ProgressMode,
    private readonly now: () => number = Date.now,
  ) {}

  start(total: number): void {
    this.counts = Object.assign({}, this.counts, { total });
    this.startedAt = this.now();
    if (this.mode === 'bar') {
      this.draw();
      // The bar moves with time (rate, ETA, cooldowns) even while no prompt finishes.
      this.timer = setInterval(() => this.draw(), REDRAW_MS);
      this.timer.unref?.();
    }
  }

  update(counts: Omit<ProgressCounts, 'total'>): void {
    this.counts = Object.assign({}, counts, { total: this.counts.total });
    if (this.mode === 'plain') this.plain(false);
  }

  setHealth(health: PoolHealth): void {
    if (this.mode === 'plain' && this.health !== undefined) {
      const before = new Map(this.health.keys.map((key) => [key.label, key]));
      for (const key of health.keys) {
        const change = describeKeyChange(before.get(key.label), key, health.at);
        if (change !== undefined) this.out.write(`${change}\n`);
      }
    }
    this.health = health;
  }

  /** No more prompts will be admitted (Ctrl-C, or a pool that cannot serve): no ETA from now on. */
  markStopping(): void {
    if (this.phase === 'running') this.phase = 'stopping';
  }

  /** A message that stays: printed above the bar, or as a plain line. */
  note(message: string): void {
    if (this.mode === 'bar') {
      this.clear();
      this.out.write(`${message}\n`);
      this.draw();
    } else {
      this.out.write(`${message}\n`);
    }
  }

  finish(): void {
    if (this.phase === 'stopping') this.phase = 'stopped';
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.mode === 'bar') {
      this.draw();
      this.out.write('\n');
      this.drawn = 0;
    } else if (this.mode === 'plain') {
      this.plain(true);
    }
  }

  private plain(force: boolean): void {
    const now = this.now();
    if (!force && now - this.lastPlainAt < PLAIN_EVERY_MS) return;
    const line = renderPlain(this.counts, now - this.startedAt, this.phase);
    if (force && line === this.lastPlain) return;
    this.lastPlainAt = now;
    this.lastPlain = line;
    this.out.write(`${line}\n`);
  }

  private clear(): void {
    if (this.drawn === 0) return;
    this.out.write(`\r${this.drawn > 1 ? `\x1b[${this.drawn - 1}A` : ''}\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    // A pseudo-terminal without a size reports 0 columns: assume the classic 80.
    const width = Math.max(40, this.out.columns || 80);
    const lines = [renderBar(this.counts, this.now() - this.startedAt, width, true, this.phase)];
    if (this.health !== undefined) lines.push(renderKeyLine(this.health, width, true, this.now()));
    this.clear();
    this.out.write(lines.map((line) => fit(line, width)).join('\n'));
    this.drawn = lines.length;
  }
}
