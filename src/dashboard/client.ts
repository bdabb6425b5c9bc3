import type { KeyHealth, KeyState, LastError, ModelHealth, PoolHealth, QuotaRemaining } from '../health/records.js';

/**
 * The dashboard page's script. It is written here, in TypeScript, so that the compiler checks it
 * against the health types it renders; the page embeds it as source text (`dashboardClient
 * .toString()`), so it must stay self-contained: no imports at run time, no reference to anything
 * outside its own body. It keeps what the server does not send (a latency history per key and the
 * last few errors) and reconciles the DOM in place, so a card keeps its element across updates.
 */

export interface DashboardClientConfig {
  /** The SSE endpoint, relative to the page. */
  eventsUrl: string;
  /** Latency samples kept per key and model for the sparkline. */
  sparkPoints: number;
  /** Recent errors kept per key and model. */
  errorsKept: number;
}

export function dashboardClient(config: DashboardClientConfig): void {
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
  let latest: PoolHealth | undefined;
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

  const money = (value: number) =>
    value >= 100 ? `$${value.toFixed(0)}` : value > 0 && value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;

  const count = (value: number) =>
    value >= 1_000_000 ? `${(value / 1_000_000).toFixed(1)}M` : value >= 10_000 ? `${(value / 1000).toFixed(1)}k` : String(value);

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

  const SVG = 'http://www.w3.org/2000/svg';

  const drawSparkline = (svg: SVGSVGElement, samples: readonly number[]) => {
    const width = 160;
    const height = 32;
    while (svg.firstChild !== null) svg.removeChild(svg.firstChild);
    if (samples.length < 2) {
      const line = document.createElementNS(SVG, 'line');
      line.setAttribute('x1', '0');
      line.setAttribute('x2', String(width));
      line.setAttribute('y1', String(height / 2));
      line.setAttribute('y2', String(height / 2));
      line.setAttribute('class', 'spark-empty');
      svg.appendChild(line);
      return;
    }
    const low = Math.min(...samples);
    const high = Math.max(...samples);
    const span = high - low || 1;
    const step = width / (samples.length - 1);
    const points = samples.map(
      (value, index) => `${(index * step).toFixed(1)},${(height - 3 - ((value - low) / span) * (height - 6)).toFixed(1)}`,
    );
    const area = document.createElementNS(SVG, 'polygon');
    area.setAttribute('points', `0,${height} ${points.join(' ')} ${width},${height}`);
    area.setAttribute('class', 'spark-area');
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.join(' '));
    line.setAttribute('class', 'spark-line');
    svg.append(area, line);
  };

  const newSparkline = () => {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 160 32');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('aria-label', 'latency, recent requests');
    return svg;
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
      ['outcomes', 'ok / failed', 1],
      ['latency', 'latency', 1],
      ['ttft', 'first token', 1],
      ['credit', 'credit left', 2],
      ['quota', 'quota left', 3],
    ] as const) {
      const cell = make('div', `stat span-${span}`);
      const value = make('dd', 'value');
      value.dataset.field = name;
      cell.append(make('dt', 'name', title), value);
      stats.appendChild(cell);
    }
    const spark = newSparkline();
    const errors = make('ul', 'errors');
    errors.dataset.field = 'errors';
    card.append(header, stats, spark, errors);
    return { samples: [], requests: 0, errors: [], element: card };
  };

  const updateKeyCard = (tracked: Tracked, key: KeyHealth) => {
    const card = tracked.element;
    if (card.dataset.state !== key.state) {
      card.dataset.state = key.state;
      card.className = `card state-${key.state}`;
    }
    setText(field(card, 'state'), stateText(key.state, key.openReason, key.cooldownUntil));
    setText(field(card, 'inflight'), key.maxConcurrent === null ? String(key.inFlight) : `${key.inFlight} / ${key.maxConcurrent}`);
    setText(field(card, 'quota'), quotaText(key.quota));
    setText(field(card, 'credit'), creditText(key));
    setText(field(card, 'outcomes'), `${key.usage.requests} / ${key.failures}`);
    setText(field(card, 'latency'), ms(key.latencyMs));
    setText(field(card, 'ttft'), ms(key.timeToFirstTokenMs));
    if (track(tracked, key) || card.querySelector('svg.spark line, svg.spark polyline') === null) {
      drawSparkline(card.querySelector<SVGSVGElement>('svg.spark')!, tracked.samples);
    }
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
    const cells = ['inflight', 'outcomes', 'latency'].map((fieldName) => {
      const cell = make('td', 'num');
      cell.dataset.field = fieldName;
      return cell;
    });
    const sparkCell = make('td', 'model-spark');
    sparkCell.appendChild(newSparkline());
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
    setText(field(row, 'inflight'), String(model.inFlight));
    setText(field(row, 'outcomes'), `${model.usage.requests} / ${model.failures}`);
    setText(field(row, 'latency'), ms(model.latencyMs));
    if (track(tracked, model) || row.querySelector('svg.spark line, svg.spark polyline') === null) {
      drawSparkline(row.querySelector<SVGSVGElement>('svg.spark')!, tracked.samples);
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

  const renderSummary = (health: PoolHealth) => {
    const states = new Map<KeyState, number>();
    let inFlight = 0;
    for (const key of health.keys) {
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
    setText(byId('inflight'), String(inFlight));
    setText(byId('queued'), String(health.queued));
    setText(byId('requests'), count(health.usage.requests));
    setText(byId('tokens'), count(health.usage.totalTokens));
    setText(byId('cost'), money(health.usage.cost));
    setText(byId('updated'), new Date().toLocaleTimeString());
    byId('models-empty').hidden = health.models.length > 0;
  };

  const render = (health: PoolHealth) => {
    latest = health;
    receivedAt = Date.now();
    renderSummary(health);
    reconcile(byId('keys'), keyCards, health.keys, (key) => key.label, newKeyCard, updateKeyCard);
    reconcile(byId('models'), modelRows, health.models, (model) => model.model, newModelRow, updateModelRow);
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
  source.onmessage = (message: MessageEvent<string>) => render(JSON.parse(message.data) as PoolHealth);
  source.addEventListener('end', () => {
    source.close();
    setConnection('ended');
  });
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
