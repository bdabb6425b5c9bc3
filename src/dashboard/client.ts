import type { KeyHealth, KeyState, LastError, ModelHealth, QuotaRemaining } from '../health/records.js';
import type { DashboardCharts, HistorySample } from './charts.js';
import type { HealthFrame } from './events.js';
import type { FailedAttemptCounts } from './failed-attempts.js';

/**
 * The dashboard page's script. It is written here, in TypeScript, so that the compiler checks it
 * against the health types it renders; the page embeds it as source text (`dashboardClient
 * .toString()`), so it must stay self-contained: no imports at run time, no reference to anything
 * outside its own body; the charts come in as an argument, embedded the same way (charts.ts). It
 * keeps what the server does not send (a latency history per key, the last few errors, a few
 * minutes of history for the charts) and reconciles the DOM in place, so a card keeps its element
 * across updates.
 */

export interface DashboardClientConfig {
  /** The SSE endpoint, relative to the page. */
  eventsUrl: string;
  /** Latency samples kept per key and model for the sparkline. */
  sparkPoints: number;
  /** Recent errors kept per key and model. */
  errorsKept: number;
  /** How far back the charts go, in ms. */
  historyMs: number;
  /** Least time between two history samples, in ms. */
  sampleEveryMs: number;
}

export function dashboardClient(config: DashboardClientConfig, charts: DashboardCharts): void {
  const STATE_TEXT: Record<KeyState, string> = {
    closed: 'healthy',
    'half-open': 'probing',
    open: 'open',
    disabled: 'disabled',
    exhausted: 'exhausted',
  };

  interface Tracked {
    samples: number[];
    requests: number;
    errors: LastError[];
    element: HTMLElement;
  }

  const keyCards = new Map<string, Tracked>();
  const modelRows = new Map<string, Tracked>();
  const history = charts.createHistory(config.historyMs, config.sampleEveryMs);
  let latest: HealthFrame | undefined;
  let receivedAt = 0;

  const byId = (id: string): HTMLElement => {
    const element = document.getElementById(id);
    if (element === null) throw new Error(`dashboard page lacks #${id}`);
    return element;
  };

  const make = <K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] => {
    const element = document.createElement(tag);
    element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  };

  const field = (root: HTMLElement, name: string): HTMLElement => {
    const element = root.querySelector<HTMLElement>(`[data-field="${name}"]`);
    if (element === null) throw new Error(`missing field ${name}`);
    return element;
  };

  const setText = (element: HTMLElement, text: string) => {
    if (element.textContent !== text) element.textContent = text;
  };

  const ms = (value: number | null) =>
    value === null ? '—' : value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;

  /** `245–478 ms`, or `0.8–12.1 s` once the top reaches seconds. */
  const msRange = (low: number, high: number) =>
    high >= 10_000 ? `${(low / 1000).toFixed(1)}–${(high / 1000).toFixed(1)} s` : `${Math.round(low)}–${Math.round(high)} ms`;

  const money = (value: number) =>
    value >= 100 ? `$${value.toFixed(0)}` : value > 0 && value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;

  const count = (value: number) =>
    value >= 1_000_000 ? `${(value / 1_000_000).toFixed(1)}M` : value >= 10_000 ? `${(value / 1000).toFixed(1)}k` : String(value);

  const perSecondText = (value: number) => `${value >= 10 ? value.toFixed(0) : value.toFixed(1)}/s`;

  const spanText = (spanMs: number) =>
    spanMs >= 60_000 ? `${Math.round(spanMs / 60_000)} min` : `${Math.max(1, Math.round(spanMs / 1000))} s`;

  /** Failed attempts of a key or model, as the feed counts them; undefined when it does not. */
  const failedAttemptsOf = (scope: 'keys' | 'models', id: string): FailedAttemptCounts | undefined => {
    const counted = latest?.failedAttempts;
    return counted === undefined ? undefined : (counted[scope][id] ?? { rateLimited: 0, failed: 0 });
  };

  /** A 429 count, marked when there are any, so that a zero does not catch the eye. */
  const setRateLimited = (element: HTMLElement, attempts: FailedAttemptCounts | undefined) => {
    setText(element, attempts === undefined ? '—' : count(attempts.rateLimited));
    element.classList.toggle('some', (attempts?.rateLimited ?? 0) > 0);
  };

  const windowText = (windowMs: number) =>
    windowMs % 86_400_000 === 0
      ? `${windowMs / 86_400_000}d`
      : windowMs % 3_600_000 === 0
        ? `${windowMs / 3_600_000}h`
        : windowMs % 60_000 === 0
          ? `${windowMs / 60_000}m`
          : `${windowMs / 1000}s`;

  const quotaText = (quota: readonly QuotaRemaining[]) => {
    if (quota.length === 0) return 'no limit set';
    // The scarcest window is the one that will refuse next.
    const tightest = [...quota].sort((a, b) => a.remaining / a.limit - b.remaining / b.limit)[0]!;
    const unit = tightest.unit === 'requests' ? 'req' : 'tok';
    return `${count(tightest.remaining)} / ${count(tightest.limit)} ${unit} per ${windowText(tightest.windowMs)}`;
  };

  const creditText = (key: KeyHealth) => {
    if (key.credit === null) return 'unknown';
    if (key.credit.limitRemaining === null) return key.credit.isFreeTier ? 'free tier' : 'no cap';
    return `${money(key.credit.limitRemaining)}${key.credit.limit === null ? '' : ` of ${money(key.credit.limit)}`}`;
  };

  /** Time left on a cooldown, counted on from the snapshot's clock. */
  const cooldownText = (until: number | null) => {
    if (until === null || latest === undefined) return '';
    const left = until - latest.at - (Date.now() - receivedAt);
    if (left <= 0) return '';
    return left >= 60_000 ? ` ${Math.ceil(left / 60_000)}m` : ` ${(left / 1000).toFixed(1)}s`;
  };

  const stateText = (state: KeyState, reason: string | null, until: number | null) =>
    `${STATE_TEXT[state]}${state === 'open' && reason !== null ? `: ${reason === 'rate-limit' ? 'rate-limited' : 'failing'}` : ''}${cooldownText(until)}`;

  const ago = (at: number) => {
    if (latest === undefined) return '';
    const seconds = Math.max(0, Math.round((latest.at + (Date.now() - receivedAt) - at) / 1000));
    return seconds < 60 ? `${seconds}s ago` : seconds < 3600 ? `${Math.round(seconds / 60)}m ago` : `${Math.round(seconds / 3600)}h ago`;
  };

  /** Records a latency sample per new success, and each new error; returns whether samples moved. */
  const track = (tracked: Tracked, entity: KeyHealth | ModelHealth): boolean => {
    let moved = false;
    if (entity.usage.requests !== tracked.requests) {
      tracked.requests = entity.usage.requests;
      if (entity.latencyMs !== null) {
        tracked.samples.push(entity.latencyMs);
        if (tracked.samples.length > config.sparkPoints) tracked.samples.shift();
        moved = true;
      }
    }
    const error = entity.lastError;
    if (error !== null && tracked.errors[0]?.at !== error.at) {
      tracked.errors.unshift(error);
      tracked.errors.length = Math.min(tracked.errors.length, config.errorsKept);
    }
    return moved;
  };

  const renderErrors = (list: HTMLElement, errors: readonly LastError[]) => {
    while (list.firstChild !== null) list.removeChild(list.firstChild);
    if (errors.length === 0) {
      list.appendChild(make('li', 'none', 'no errors'));
      return;
    }
    for (const error of errors) {
      const item = make('li', 'error');
      item.appendChild(make('span', 'kind', `${error.kind}${error.status === undefined ? '' : ` ${error.status}`}`));
      item.appendChild(make('span', 'when', ago(error.at)));
      item.appendChild(make('span', 'message', error.message));
      item.title = error.message;
      list.appendChild(item);
    }
  };

  /** A small chart with its caption: what it shows, and a value beside it in text. */
  const newMiniChart = (name: string, title: string, label: string) => {
    const figure = make('figure', 'mini');
    figure.dataset.chart = name;
    const caption = make('figcaption', 'mini-caption');
    const value = make('span', 'mini-value');
    value.dataset.field = `${name}-value`;
    caption.append(make('span', 'mini-title', title), value);
    figure.append(caption, charts.newChart(label, 'chart mini-chart'));
    return figure;
  };

  const newKeyCard = (key: KeyHealth): Tracked => {
    const card = make('article', 'card');
    card.dataset.key = key.label;
    const header = make('header', 'card-head');
    header.append(make('span', 'label', key.label), make('span', 'fingerprint', key.fingerprint));
    const badge = make('span', 'badge');
    badge.dataset.field = 'state';
    header.appendChild(badge);
    const stats = make('dl', 'stats');
    for (const [name, title, span] of [
      ['inflight', 'in flight', 1],
      ['latency', 'latency', 1],
      ['ttft', 'first token', 1],
      ['ok', 'ok', 1],
      ['failed', 'failed', 1],
      ['ratelimited', '429s', 1],
      ['spend', 'spend', 1],
      ['tokens', 'tokens in / out', 2],
      ['credit', 'credit left', 3],
      ['quota', 'quota left', 3],
    ] as const) {
      const cell = make('div', `stat span-${span} stat-${name}`);
      const term = make('dt', 'name', title);
      if (name === 'ratelimited') term.title = 'attempts answered 429: not failures, the key was parked until its limit reset';
      const value = make('dd', 'value');
      value.dataset.field = name;
      cell.append(term, value);
      stats.appendChild(cell);
    }
    const minis = make('div', 'minis');
    minis.append(
      newMiniChart('latency', 'latency', `latency of the last ${config.sparkPoints} successes`),
      newMiniChart('spend', 'spend', 'spend of this key over the recent minutes'),
    );
    const errors = make('ul', 'errors');
    errors.dataset.field = 'errors';
    card.append(header, stats, minis, errors);
    return { samples: [], requests: 0, errors: [], element: card };
  };

  const updateKeyCard = (tracked: Tracked, key: KeyHealth) => {
    const card = tracked.element;
    if (card.dataset.state !== key.state) {
      card.dataset.state = key.state;
      card.className = `card state-${key.state}`;
    }
    const attempts = failedAttemptsOf('keys', key.label);
    setText(field(card, 'state'), stateText(key.state, key.openReason, key.cooldownUntil));
    setText(field(card, 'inflight'), key.maxConcurrent === null ? String(key.inFlight) : `${key.inFlight} / ${key.maxConcurrent}`);
    setText(field(card, 'quota'), quotaText(key.quota));
    setText(field(card, 'credit'), creditText(key));
    setText(field(card, 'ok'), count(key.usage.requests));
    setText(field(card, 'failed'), attempts === undefined ? '—' : count(attempts.failed));
    setRateLimited(field(card, 'ratelimited'), attempts);
    setText(field(card, 'spend'), money(key.usage.cost));
    setText(field(card, 'tokens'), `${count(key.usage.promptTokens)} / ${count(key.usage.completionTokens)}`);
    setText(field(card, 'latency'), ms(key.latencyMs));
    setText(field(card, 'ttft'), ms(key.timeToFirstTokenMs));
    if (track(tracked, key) || card.querySelector('[data-chart="latency"] svg > *') === null) {
      charts.drawSparkline(card.querySelector<SVGSVGElement>('[data-chart="latency"] svg')!, tracked.samples);
    }
    // The sparkline spans its samples' range (the lowest at the bottom, the highest at the top): say so.
    const samples = tracked.samples;
    setText(field(card, 'latency-value'), samples.length < 2 ? '—' : msRange(Math.min(...samples), Math.max(...samples)));
    renderErrors(field(card, 'errors'), tracked.errors);
  };

  const newModelRow = (model: ModelHealth): Tracked => {
    const row = make('tr', 'model');
    row.dataset.model = model.model;
    const name = make('td', 'model-name');
    const error = make('div', 'model-error');
    error.dataset.field = 'error';
    name.append(make('div', 'model-id', model.model), error);
    const state = make('td', 'model-state');
    const badge = make('span', 'badge');
    badge.dataset.field = 'state';
    state.appendChild(badge);
    const cells = ['inflight', 'outcomes', 'ratelimited', 'latency'].map((fieldName) => {
      const cell = make('td', 'num');
      cell.dataset.field = fieldName;
      return cell;
    });
    const sparkCell = make('td', 'model-spark');
    sparkCell.appendChild(charts.newChart(`latency of the last ${config.sparkPoints} successes`, 'chart spark'));
    row.append(name, state, ...cells, sparkCell);
    return { samples: [], requests: 0, errors: [], element: row };
  };

  const updateModelRow = (tracked: Tracked, model: ModelHealth) => {
    const row = tracked.element;
    if (row.dataset.state !== model.state) {
      row.dataset.state = model.state;
      row.className = `model state-${model.state}`;
    }
    setText(field(row, 'state'), stateText(model.state, model.openReason, model.cooldownUntil));
    const attempts = failedAttemptsOf('models', model.model);
    setText(field(row, 'inflight'), String(model.inFlight));
    setText(field(row, 'outcomes'), `${count(model.usage.requests)} / ${attempts === undefined ? '—' : count(attempts.failed)}`);
    setRateLimited(field(row, 'ratelimited'), attempts);
    setText(field(row, 'latency'), ms(model.latencyMs));
    if (track(tracked, model) || row.querySelector('svg.spark > *') === null) {
      charts.drawSparkline(row.querySelector<SVGSVGElement>('svg.spark')!, tracked.samples);
    }
    const last = tracked.errors[0];
    setText(
      field(row, 'error'),
      last === undefined ? '' : `${last.kind}${last.status === undefined ? '' : ` ${last.status}`} · ${ago(last.at)}`,
    );
  };

  /** Adds, updates and removes children so that `parent` shows exactly `items`, in order. */
  const reconcile = <T>(
    parent: HTMLElement,
    tracked: Map<string, Tracked>,
    items: readonly T[],
    idOf: (item: T) => string,
    create: (item: T) => Tracked,
    update: (tracked: Tracked, item: T) => void,
  ) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const id = idOf(item);
      seen.add(id);
      let entry = tracked.get(id);
      if (entry === undefined) {
        entry = create(item);
        tracked.set(id, entry);
      }
      update(entry, item);
      if (parent.children[index] !== entry.element) parent.insertBefore(entry.element, parent.children[index] ?? null);
    });
    for (const [id, entry] of tracked) {
      if (!seen.has(id)) {
        entry.element.remove();
        tracked.delete(id);
      }
    }
  };

  const renderSummary = (frame: HealthFrame) => {
    const states = new Map<KeyState, number>();
    let inFlight = 0;
    for (const key of frame.keys) {
      states.set(key.state, (states.get(key.state) ?? 0) + 1);
      inFlight += key.inFlight;
    }
    const chips = byId('states');
    while (chips.firstChild !== null) chips.removeChild(chips.firstChild);
    for (const state of ['closed', 'half-open', 'open', 'exhausted', 'disabled'] as const) {
      const number = states.get(state) ?? 0;
      if (number === 0) continue;
      const chip = make('span', `chip state-${state}`, `${number} ${STATE_TEXT[state]}`);
      chips.appendChild(chip);
    }
    const attempts = frame.failedAttempts?.pool;
    setText(byId('inflight'), String(inFlight));
    setText(byId('queued'), String(frame.queued));
    setText(byId('requests'), count(frame.usage.requests));
    setText(byId('failed'), attempts === undefined ? '—' : count(attempts.failed));
    setRateLimited(byId('ratelimited'), attempts);
    setText(byId('tokens'), count(frame.usage.totalTokens));
    setText(byId('cost'), money(frame.usage.cost));
    setText(byId('updated'), new Date().toLocaleTimeString());
    byId('models-empty').hidden = frame.models.length > 0;
  };

  // ── History: the pool's charts, and each key's spend ────────────────────────────────────────
  const POOL_CHARTS = [
    ['completions', 'completions / s', 'completions per second, pool-wide'],
    ['load', 'in flight · queued', 'requests in flight (solid line) and waiting for a key (dashed grey line)'],
    ['spend', 'spend', 'spend within the charted time, pool-wide'],
    ['refusals', '429s · failed / s', 'attempts per second answered 429 (solid orange line) and failed otherwise (dashed red line)'],
  ] as const;

  const poolCharts = new Map<string, { svg: SVGSVGElement; value: HTMLElement; note: HTMLElement }>();
  for (const [name, title, label] of POOL_CHARTS) {
    const figure = make('figure', 'figure');
    figure.dataset.chart = name;
    const caption = make('figcaption', 'figure-caption');
    const value = make('b', 'figure-value', '—');
    caption.append(make('span', 'figure-title', title), value);
    const svg = charts.newChart(label);
    const note = make('p', 'figure-note');
    figure.append(caption, svg, note);
    byId('charts').appendChild(figure);
    poolCharts.set(name, { svg, value, note });
  }

  const drawPoolCharts = (samples: readonly HistorySample[], from: number, to: number) => {
    const chart = (name: string) => poolCharts.get(name)!;
    const completions = charts.perSecond(samples, (sample) => sample.requests);
    const inFlight = charts.gauge(samples, (sample) => sample.inFlight);
    const queued = charts.gauge(samples, (sample) => sample.queued);
    const spend = charts.sinceOldest(samples, (sample) => sample.cost);
    const rateLimited = charts.perSecond(samples, (sample) => sample.rateLimited);
    const failed = charts.perSecond(samples, (sample) => sample.failed);
    const within = (total: (sample: HistorySample) => number | null) => charts.addedWithin(samples, total);
    charts.drawTimeChart(chart('completions').svg, [{ points: completions, className: 'line-a' }], from, to);
    setText(chart('completions').value, perSecondText(charts.latest(completions) ?? 0));
    setText(
      chart('completions').note,
      `peak ${perSecondText(charts.peak(completions))} · ${count(within((sample) => sample.requests) ?? 0)} done`,
    );
    charts.drawTimeChart(
      chart('load').svg,
      [
        { points: inFlight, className: 'line-a' },
        { points: queued, className: 'line-queued' },
      ],
      from,
      to,
    );
    setText(chart('load').value, `${charts.latest(inFlight) ?? 0} · ${charts.latest(queued) ?? 0}`);
    setText(chart('load').note, `peak ${charts.peak(inFlight)} in flight, ${charts.peak(queued)} queued`);
    charts.drawTimeChart(chart('spend').svg, [{ points: spend, className: 'line-a' }], from, to);
    setText(chart('spend').value, money(charts.latest(spend) ?? 0));
    setText(chart('spend').note, `${money(samples[samples.length - 1]?.cost ?? 0)} in all`);
    charts.drawTimeChart(
      chart('refusals').svg,
      [
        { points: rateLimited, className: 'line-ratelimited' },
        { points: failed, className: 'line-failed' },
      ],
      from,
      to,
    );
    const rateLimitedWithin = within((sample) => sample.rateLimited);
    setText(chart('refusals').value, `${perSecondText(charts.latest(rateLimited) ?? 0)} · ${perSecondText(charts.latest(failed) ?? 0)}`);
    setText(
      chart('refusals').note,
      rateLimitedWithin === null
        ? 'not counted by this feed'
        : `${count(rateLimitedWithin)} 429s · ${count(within((sample) => sample.failed) ?? 0)} failed`,
    );
  };

  const drawKeySpend = (samples: readonly HistorySample[], from: number, to: number) => {
    for (const [label, tracked] of keyCards) {
      const spend = charts.sinceOldest(samples, (sample) => sample.keyCost[label] ?? 0);
      charts.drawTimeChart(
        tracked.element.querySelector<SVGSVGElement>('[data-chart="spend"] svg')!,
        [{ points: spend, className: 'line-a' }],
        from,
        to,
      );
      setText(field(tracked.element, 'spend-value'), `+${money(charts.latest(spend) ?? 0)}`);
    }
  };

  /** Takes a sample of `frame` if one is due, and redraws the charts when it did. */
  const sample = (frame: HealthFrame) => {
    const now = Date.now();
    if (!history.offer(charts.sampleOf(frame, now))) return;
    const samples = history.samples;
    const { from, to } = charts.timeSpan(samples, now, config.historyMs);
    setText(byId('history-span'), spanText(now - (samples[0]?.at ?? now)));
    drawPoolCharts(samples, from, to);
    drawKeySpend(samples, from, to);
  };

  const render = (frame: HealthFrame) => {
    latest = frame;
    receivedAt = Date.now();
    renderSummary(frame);
    reconcile(byId('keys'), keyCards, frame.keys, (key) => key.label, newKeyCard, updateKeyCard);
    reconcile(byId('models'), modelRows, frame.models, (model) => model.model, newModelRow, updateModelRow);
    sample(frame);
    document.body.dataset.ready = 'true';
  };

  const setConnection = (state: 'live' | 'connecting' | 'ended') => {
    const status = byId('connection');
    status.dataset.state = state;
    setText(status, state === 'live' ? 'live' : state === 'connecting' ? 'reconnecting…' : 'pool disposed');
  };

  const source = new EventSource(config.eventsUrl);
  source.onopen = () => setConnection('live');
  source.onerror = () => setConnection(source.readyState === EventSource.CLOSED ? 'ended' : 'connecting');
  source.onmessage = (message: MessageEvent<string>) => render(JSON.parse(message.data) as HealthFrame);
  source.addEventListener('end', () => {
    source.close();
    setConnection('ended');
  });
  // An idle pool sends nothing, yet its rates fall to zero: the history goes on without snapshots.
  setInterval(() => {
    if (latest !== undefined) sample(latest);
  }, config.sampleEveryMs);
  // Cooldowns and "ago" times count down between snapshots.
  setInterval(() => {
    if (latest === undefined) return;
    for (const key of latest.keys) {
      const tracked = keyCards.get(key.label);
      if (tracked !== undefined) setText(field(tracked.element, 'state'), stateText(key.state, key.openReason, key.cooldownUntil));
    }
    for (const model of latest.models) {
      const tracked = modelRows.get(model.model);
      if (tracked !== undefined) setText(field(tracked.element, 'state'), stateText(model.state, model.openReason, model.cooldownUntil));
    }
  }, 250);
}
