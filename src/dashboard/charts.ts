/**
 * The dashboard page's history and its inline SVG charts. Like the page's script (client.ts), the
 * page embeds this as source text (`dashboardCharts.toString()`), so it must stay self-contained:
 * no imports at run time, nothing from outside its own body. No chart library: the page loads
 * nothing from anywhere, and its Content-Security-Policy allows inline SVG built through the DOM.
 *
 * The server sends only the current state, so the page keeps its own history: at most one sample
 * per `sampleEveryMs`, and none older than `historyMs` (300 samples for 5 minutes at 1 s). A
 * snapshot offers a sample, and so does a one-second tick, so that an idle pool shows as zero
 * rather than as a line drawn across the gap.
 */

import type { HealthFrame } from './events.js';

/** What the page remembers of one moment: running totals (rates come from their differences) and gauges. */
export interface HistorySample {
  /** The page's clock, in ms. */
  at: number;
  /** Completions so far, pool-wide. */
  requests: number;
  /** Spend so far (USD), pool-wide. */
  cost: number;
  /** Attempts answered 429 so far; null when the feed does not count them. */
  rateLimited: number | null;
  /** Other failed attempts so far; null when the feed does not count them. */
  failed: number | null;
  inFlight: number;
  queued: number;
  /** Per key label: its spend so far (USD). */
  keyCost: Record<string, number>;
}

/** A point of a chart: page time (ms) and value. */
export type ChartPoint = readonly [at: number, value: number];

/** One line of a chart; the first line of a chart is also filled below. */
export interface ChartLine {
  points: readonly ChartPoint[];
  /** Its look: `line-a` is the chart's colour; the page's style has the others. */
  className: string;
}

export function dashboardCharts() {
  const SVG = 'http://www.w3.org/2000/svg';
  /** The charts' own coordinates; CSS stretches them (`preserveAspectRatio="none"`). */
  const WIDTH = 300;
  const HEIGHT = 60;
  /** Below this, a time axis would stretch a few seconds across the whole chart. */
  const SHORTEST_SPAN_MS = 30_000;

  const sampleOf = (frame: HealthFrame, at: number): HistorySample => {
    const attempts = frame.failedAttempts?.pool;
    const keyCost: HistorySample['keyCost'] = {};
    let inFlight = 0;
    for (const key of frame.keys) {
      keyCost[key.label] = key.usage.cost;
      inFlight += key.inFlight;
    }
    return {
      at,
      requests: frame.usage.requests,
      cost: frame.usage.cost,
      rateLimited: attempts?.rateLimited ?? null,
      failed: attempts?.failed ?? null,
      inFlight,
      queued: frame.queued,
      keyCost,
    };
  };

  const createHistory = (historyMs: number, sampleEveryMs: number) => {
    const samples: HistorySample[] = [];
    return {
      samples: samples as readonly HistorySample[],
      /** Keeps `sample` unless the last one is younger than `sampleEveryMs`; says whether it did. */
      offer(sample: HistorySample): boolean {
        const last = samples[samples.length - 1];
        if (last !== undefined && sample.at - last.at < sampleEveryMs) return false;
        // Totals that went down come from a new pool (the server restarted): its history starts over.
        if (last !== undefined && (sample.requests < last.requests || sample.cost < last.cost)) samples.length = 0;
        samples.push(sample);
        // One sample older than the window stays, so that the lines reach the chart's left edge.
        while (samples.length > 2 && samples[1]!.at <= sample.at - historyMs) samples.shift();
        return true;
      },
    };
  };

  /** Per second, between consecutive samples, of a running total; nothing where it is unknown. */
  const perSecond = (samples: readonly HistorySample[], total: (sample: HistorySample) => number | null): ChartPoint[] => {
    const points: ChartPoint[] = [];
    for (let index = 1; index < samples.length; index++) {
      const before = total(samples[index - 1]!);
      const after = total(samples[index]!);
      const seconds = (samples[index]!.at - samples[index - 1]!.at) / 1000;
      if (before !== null && after !== null && seconds > 0) points.push([samples[index]!.at, Math.max(0, after - before) / seconds]);
    }
    return points;
  };

  /** A running total counted from the oldest sample kept: what was added within the window. */
  const sinceOldest = (samples: readonly HistorySample[], total: (sample: HistorySample) => number): ChartPoint[] => {
    const first = samples[0];
    return first === undefined ? [] : samples.map((sample): ChartPoint => [sample.at, total(sample) - total(first)]);
  };

  /** What a running total added between the oldest sample kept and the newest; null when unknown. */
  const addedWithin = (samples: readonly HistorySample[], total: (sample: HistorySample) => number | null): number | null => {
    const first = samples[0] === undefined ? null : total(samples[0]);
    const now = samples.length === 0 ? null : total(samples[samples.length - 1]!);
    return first === null || now === null ? null : now - first;
  };

  const latest = (points: readonly ChartPoint[]): number | undefined => points[points.length - 1]?.[1];

  const peak = (points: readonly ChartPoint[]) => Math.max(0, ...points.map(([, value]) => value));

  const gauge = (samples: readonly HistorySample[], value: (sample: HistorySample) => number): ChartPoint[] =>
    samples.map((sample): ChartPoint => [sample.at, value(sample)]);

  /** The time the charts span: the history kept, at least `SHORTEST_SPAN_MS`, at most `historyMs`. */
  const timeSpan = (samples: readonly HistorySample[], now: number, historyMs: number) => {
    const oldest = samples[0]?.at ?? now;
    const span = Math.min(historyMs, Math.max(SHORTEST_SPAN_MS, now - oldest));
    return { from: now - span, to: now };
  };

  const element = (name: string, attributes: Record<string, string>) => {
    const node = document.createElementNS(SVG, name);
    for (const [attribute, value] of Object.entries(attributes)) node.setAttribute(attribute, value);
    return node;
  };

  const clear = (svg: SVGSVGElement) => {
    while (svg.firstChild !== null) svg.removeChild(svg.firstChild);
  };

  const emptyLine = () =>
    element('line', { x1: '0', x2: String(WIDTH), y1: String(HEIGHT / 2), y2: String(HEIGHT / 2), class: 'chart-empty' });

  /** An SVG for a chart, described for screen readers by `label` (its caption holds the numbers). */
  const newChart = (label: string, className = 'chart') => {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', className);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    return svg;
  };

  /** Lines over time, from `from` to `to`, on one scale from zero to the highest value. */
  const drawTimeChart = (svg: SVGSVGElement, lines: readonly ChartLine[], from: number, to: number) => {
    clear(svg);
    const drawn = lines.filter((line) => line.points.length >= 2);
    if (drawn.length === 0) {
      svg.appendChild(emptyLine());
      return;
    }
    const highest = Math.max(...drawn.flatMap((line) => line.points.map(([, value]) => value)));
    const scale = highest > 0 ? highest : 1;
    const x = (at: number) => (((at - from) / (to - from)) * WIDTH).toFixed(1);
    const y = (value: number) => (HEIGHT - 2 - (value / scale) * (HEIGHT - 6)).toFixed(1);
    drawn.forEach((line, index) => {
      const points = line.points.map(([at, value]) => `${x(at)},${y(value)}`).join(' ');
      if (index === 0) {
        const start = x(line.points[0]![0]);
        const end = x(line.points[line.points.length - 1]![0]);
        svg.appendChild(
          element('polygon', { points: `${start},${HEIGHT} ${points} ${end},${HEIGHT}`, class: `chart-area ${line.className}` }),
        );
      }
      svg.appendChild(element('polyline', { points, class: `chart-line ${line.className}` }));
    });
  };

  /** The last `samples`, evenly spaced (recent latencies, one per success), scaled to their range. */
  const drawSparkline = (svg: SVGSVGElement, samples: readonly number[]) => {
    clear(svg);
    if (samples.length < 2) {
      svg.appendChild(emptyLine());
      return;
    }
    const low = Math.min(...samples);
    const span = Math.max(...samples) - low || 1;
    const step = WIDTH / (samples.length - 1);
    const points = samples
      .map((value, index) => `${(index * step).toFixed(1)},${(HEIGHT - 4 - ((value - low) / span) * (HEIGHT - 10)).toFixed(1)}`)
      .join(' ');
    svg.append(
      element('polygon', { points: `0,${HEIGHT} ${points} ${WIDTH},${HEIGHT}`, class: 'chart-area' }),
      element('polyline', { points, class: 'chart-line line-a' }),
    );
  };

  return {
    sampleOf,
    createHistory,
    perSecond,
    sinceOldest,
    addedWithin,
    latest,
    peak,
    gauge,
    timeSpan,
    newChart,
    drawTimeChart,
    drawSparkline,
  };
}

/** What the page's script gets from `dashboardCharts()`. */
export type DashboardCharts = ReturnType<typeof dashboardCharts>;
