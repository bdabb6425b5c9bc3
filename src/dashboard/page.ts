import { dashboardCharts } from './charts.js';
import { dashboardClient, type DashboardClientConfig } from './client.js';

/**
 * The dashboard's one page, self-contained: inline CSS and script, no font, no CDN, no build step,
 * so it works on a machine without internet and can be served from any Node server.
 */

const STYLE = `
:root {
  color-scheme: light;
  --bg: #f4f6fa; --panel: #ffffff; --ink: #1c2433; --muted: #6b778c; --line: #e3e8f0;
  --ok: #1f9d55; --probe: #d69e2e; --open: #e03e3e; --disabled: #8a94a6; --exhausted: #8e44ad;
  --accent: #2f6fde; --ratelimited: #c05621;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; background: var(--bg); color: var(--ink); }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px; padding: 14px 24px; background: #1c2433; color: #fff; }
header.top h1 { font-size: 17px; margin: 0; font-weight: 600; letter-spacing: .2px; }
header.top .sub { color: #aab4c5; font-size: 13px; }
#connection { margin-left: auto; font-size: 12px; padding: 3px 10px; border-radius: 999px; background: #3b4658; }
#connection::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--probe); vertical-align: 0; }
#connection[data-state="live"]::before { background: #4ade80; box-shadow: 0 0 6px #4ade80; }
#connection[data-state="ended"]::before { background: var(--disabled); }
.summary { display: flex; flex-wrap: wrap; gap: 10px 28px; align-items: center; padding: 12px 24px; background: var(--panel); border-bottom: 1px solid var(--line); }
.summary .metric { display: flex; flex-direction: column; }
.summary .metric b { font-size: 18px; font-variant-numeric: tabular-nums; }
.summary .metric span { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .6px; }
#states { display: flex; gap: 6px; flex-wrap: wrap; }
.chip { padding: 3px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; color: #fff; background: var(--c); }
main { display: grid; grid-template-columns: minmax(0, 1fr) 560px; gap: 20px; padding: 20px 24px; align-items: start; }
@media (max-width: 1100px) { main { grid-template-columns: minmax(0, 1fr); } }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .8px; color: var(--muted); margin: 0 0 10px; font-weight: 600; }
#keys { display: grid; grid-template-columns: repeat(auto-fill, minmax(265px, 1fr)); gap: 14px; }
.card { background: var(--panel); border: 1px solid var(--line); border-top: 4px solid var(--c); border-radius: 10px; padding: 12px 14px; box-shadow: 0 1px 2px rgba(16,24,40,.05); transition: border-color .2s; }
.card-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 8px; margin-bottom: 8px; }
.card .label { font-weight: 650; font-size: 15px; }
.fingerprint { color: var(--muted); font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.badge { margin-left: auto; font-size: 11.5px; font-weight: 650; padding: 2px 9px; border-radius: 999px; color: #fff; background: var(--c); white-space: nowrap; }
.model .badge { margin-left: 0; }
.stats { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 6px 10px; margin: 0 0 8px; }
.stat.span-2 { grid-column: span 2; }
.stat.span-3 { grid-column: span 3; }
.stat dt { color: var(--muted); font-size: 10.5px; text-transform: uppercase; letter-spacing: .5px; }
.stat dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 550; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
/* "429s" reads wrong in capitals. */
.stat.stat-ratelimited dt, .summary .metric-ratelimited span { text-transform: none; }
.stat-ratelimited dd.some, #ratelimited.some, td.some { color: var(--ratelimited); }
.legend { margin: -4px 0 10px; color: var(--muted); font-size: 12px; max-width: 70ch; }
.legend b { color: var(--ink); }
.legend b.ratelimited { color: var(--ratelimited); }
.history h2 .sub { text-transform: none; letter-spacing: 0; font-weight: 400; }
svg.chart { width: 100%; height: 56px; display: block; }
svg.spark { width: 100%; height: 32px; display: block; }
svg.mini-chart { height: 30px; }
.chart-line { fill: none; stroke: var(--c, var(--accent)); stroke-width: 1.6; vector-effect: non-scaling-stroke; }
.chart-area { fill: var(--c, var(--accent)); opacity: .12; }
.chart-line.line-queued { stroke: var(--muted); stroke-dasharray: 4 3; }
.chart-line.line-ratelimited { stroke: var(--ratelimited); }
.chart-area.line-ratelimited { fill: var(--ratelimited); }
.chart-line.line-failed { stroke: var(--open); stroke-dasharray: 4 3; }
.chart-empty { stroke: var(--line); stroke-dasharray: 4 4; vector-effect: non-scaling-stroke; }
figure { margin: 0; min-width: 0; }
.minis { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px; }
.mini-caption { display: flex; justify-content: space-between; gap: 6px; font-size: 10.5px; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.mini-value { color: var(--ink); font-variant-numeric: tabular-nums; text-transform: none; letter-spacing: 0; font-weight: 550; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.history { margin: 20px 24px 0; --c: var(--accent); }
#charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px 24px; }
.figure-caption { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: 0 8px; }
.figure-title { color: var(--muted); font-size: 12px; }
.figure-value { font-size: 16px; font-variant-numeric: tabular-nums; white-space: nowrap; }
.figure-note { margin: 2px 0 0; color: var(--muted); font-size: 11.5px; font-variant-numeric: tabular-nums; }
.errors { list-style: none; margin: 8px 0 0; padding: 8px 0 0; border-top: 1px dashed var(--line); font-size: 12px; min-height: 26px; }
.errors li { display: grid; grid-template-columns: auto auto 1fr; gap: 6px; align-items: baseline; }
.errors li.none { color: var(--muted); display: block; }
.errors .kind { font-weight: 650; color: var(--open); }
.errors .when { color: var(--muted); }
.errors .message { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: #3c4657; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
/* Past its least width the table scrolls inside its panel, never the page. */
.table-scroll { overflow-x: auto; }
table { width: 100%; min-width: 500px; border-collapse: collapse; font-size: 13px; table-layout: fixed; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 10px; text-transform: uppercase; letter-spacing: .3px; padding: 4px 6px; border-bottom: 1px solid var(--line); }
td { padding: 7px 6px; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.model-id { font-weight: 600; overflow-wrap: anywhere; }
.model-error { color: var(--open); font-size: 11.5px; }
.model-error:empty { display: none; }
th.c-model { width: 24%; } th.c-state { width: 21%; } th.c-num { width: 11%; } th.c-wide { width: 12%; } th.c-narrow { width: 7%; } th.c-trend { width: 14%; }
/* A long state ("open: failing 28.7s") wraps inside its column rather than over the next one. */
.model .badge { white-space: normal; display: inline-block; border-radius: 8px; line-height: 1.3; }
th.c-narrow { text-transform: none; }
#models-empty { color: var(--muted); }
.state-closed { --c: var(--ok); }
.state-half-open { --c: var(--probe); }
.state-open { --c: var(--open); }
.state-disabled { --c: var(--disabled); }
.state-exhausted { --c: var(--exhausted); }
.card.state-open { box-shadow: 0 0 0 3px rgba(224,62,62,.12); }
.card.state-disabled { opacity: .8; }
footer { padding: 0 24px 20px; color: var(--muted); font-size: 12px; }
@media (max-width: 600px) {
  header.top, .summary { padding-left: 12px; padding-right: 12px; }
  main { padding: 16px 12px; }
  .history { margin: 16px 12px 0; }
  footer { padding: 0 12px 16px; }
}
`;

/**
 * Bundlers that keep function names (tsx, esbuild's `keepNames`) wrap inner functions in a
 * module-level `__name(fn, "name")` helper, which the embedded source text would then call without
 * having it: the page defines a no-op stand-in.
 */
const NAME_SHIM = 'var __name = (target) => target;\n';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** Options of `dashboardPage`. */
export interface DashboardPageOptions {
  /** Shown in the page header and tab. Default `openrouter-rx`. */
  title?: string;
  /** The SSE endpoint, relative to the page. Default `events`. */
  eventsUrl?: string;
}

/** The HTML of the dashboard page. */
export function dashboardPage(options: DashboardPageOptions = {}): string {
  const title = escapeHtml(options.title ?? 'openrouter-rx');
  const config: DashboardClientConfig = {
    eventsUrl: options.eventsUrl ?? 'events',
    sparkPoints: 40,
    errorsKept: 4,
    historyMs: 5 * 60_000,
    sampleEveryMs: 1000,
  };
  // `<` escaped so that no string in the config can close the script element.
  const configJson = JSON.stringify(config).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · key health</title>
<style>${STYLE}</style>
</head>
<body>
<header class="top">
  <h1>${title}</h1><span class="sub">key and model health, live</span>
  <span id="connection" data-state="connecting">connecting…</span>
</header>
<section class="summary">
  <div id="states"></div>
  <div class="metric"><b id="inflight">0</b><span>in flight</span></div>
  <div class="metric"><b id="queued">0</b><span>queued</span></div>
  <div class="metric"><b id="requests">0</b><span>completions</span></div>
  <div class="metric"><b id="failed">—</b><span>failed</span></div>
  <div class="metric metric-ratelimited"><b id="ratelimited">—</b><span>429s</span></div>
  <div class="metric"><b id="tokens">0</b><span>tokens</span></div>
  <div class="metric"><b id="cost">$0.00</b><span>spend</span></div>
  <div class="metric"><b id="updated">—</b><span>updated</span></div>
</section>
<section class="panel history" aria-labelledby="history-title">
  <h2 id="history-title">History · last <span id="history-span">0 s</span> <span class="sub">(kept by this page, up to ${config.historyMs / 60_000} min)</span></h2>
  <div id="charts"></div>
</section>
<main>
  <section><h2>Keys</h2>
    <p class="legend"><b class="ratelimited">429s</b> are attempts the server rate-limited. They are not failures: the key is parked until its limit resets, and the request moves to another key. <b>Failed</b> counts the other failed attempts that touch the key (a model&#39;s own failures show on its row). Both are counted since the dashboard started.</p>
    <div id="keys"></div>
  </section>
  <section class="panel"><h2>Models</h2>
    <div class="table-scroll"><table><thead><tr><th class="c-model">model</th><th class="c-state">state</th><th class="c-num">in flight</th><th class="c-wide">ok / failed</th><th class="c-narrow">429s</th><th class="c-wide">latency</th><th class="c-trend">trend</th></tr></thead>
    <tbody id="models"></tbody></table></div>
    <p id="models-empty">No model has been used yet.</p>
  </section>
</main>
<footer>Keys are shown by label and fingerprint only; key text never leaves the server.</footer>
<script>${NAME_SHIM}(${dashboardClient.toString()})(${configJson}, (${dashboardCharts.toString()})());</script>
</body>
</html>
`;
}
