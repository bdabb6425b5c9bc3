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
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; background: var(--bg); color: var(--ink); }
header.top { display: flex; align-items: center; gap: 16px; padding: 14px 24px; background: #1c2433; color: #fff; }
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
main { display: grid; grid-template-columns: minmax(0, 1fr) 520px; gap: 20px; padding: 20px 24px; align-items: start; }
@media (max-width: 1100px) { main { grid-template-columns: 1fr; } }
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
svg.spark { width: 100%; height: 32px; display: block; }
.spark-line { fill: none; stroke: var(--c); stroke-width: 1.6; vector-effect: non-scaling-stroke; }
.spark-area { fill: var(--c); opacity: .12; }
.spark-empty { stroke: var(--line); stroke-dasharray: 4 4; vector-effect: non-scaling-stroke; }
.errors { list-style: none; margin: 8px 0 0; padding: 8px 0 0; border-top: 1px dashed var(--line); font-size: 12px; min-height: 26px; }
.errors li { display: grid; grid-template-columns: auto auto 1fr; gap: 6px; align-items: baseline; }
.errors li.none { color: var(--muted); display: block; }
.errors .kind { font-weight: 650; color: var(--open); }
.errors .when { color: var(--muted); }
.errors .message { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: #3c4657; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; table-layout: fixed; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 10px; text-transform: uppercase; letter-spacing: .3px; padding: 4px 6px; border-bottom: 1px solid var(--line); }
td { padding: 7px 6px; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.model-id { font-weight: 600; overflow-wrap: anywhere; }
.model-error { color: var(--open); font-size: 11.5px; }
.model-error:empty { display: none; }
th.c-model { width: 25%; } th.c-state { width: 31%; } th.c-num { width: 11%; } th.c-trend { width: 11%; }
#models-empty { color: var(--muted); }
.state-closed { --c: var(--ok); }
.state-half-open { --c: var(--probe); }
.state-open { --c: var(--open); }
.state-disabled { --c: var(--disabled); }
.state-exhausted { --c: var(--exhausted); }
.card.state-open { box-shadow: 0 0 0 3px rgba(224,62,62,.12); }
.card.state-disabled { opacity: .8; }
footer { padding: 0 24px 20px; color: var(--muted); font-size: 12px; }
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
  const config: DashboardClientConfig = { eventsUrl: options.eventsUrl ?? 'events', sparkPoints: 40, errorsKept: 4 };
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
  <div class="metric"><b id="requests">0</b><span>requests</span></div>
  <div class="metric"><b id="tokens">0</b><span>tokens</span></div>
  <div class="metric"><b id="cost">$0.00</b><span>cost</span></div>
  <div class="metric"><b id="updated">—</b><span>updated</span></div>
</section>
<main>
  <section><h2>Keys</h2><div id="keys"></div></section>
  <section class="panel"><h2>Models</h2>
    <table><thead><tr><th class="c-model">model</th><th class="c-state">state</th><th class="c-num">in flight</th><th class="c-num">ok / fail</th><th class="c-num">latency</th><th class="c-trend">trend</th></tr></thead>
    <tbody id="models"></tbody></table>
    <p id="models-empty">No model has been used yet.</p>
  </section>
</main>
<footer>Keys are shown by label and fingerprint only; key text never leaves the server.</footer>
<script>${NAME_SHIM}(${dashboardClient.toString()})(${configJson});</script>
</body>
</html>
`;
}
