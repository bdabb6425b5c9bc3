/**
 * The faults armed on each model and how many hits each has left. The caller's fault objects are
 * never mutated: the remaining `times` live here.
 */
import type { FakeFault, FakeModelConfig } from './types.js';

interface ArmedFault {
  readonly fault: FakeFault;
  /** Hits left; undefined means every request. */
  remaining: number | undefined;
}

function arm(faults: readonly FakeFault[]): ArmedFault[] {
  return faults.map((fault) => ({ fault, remaining: fault.times }));
}

export class FaultBook {
  private readonly armed = new Map<string, ArmedFault[]>();
  /** Faults a model not listed in `models` starts with (each such model gets its own `times`). */
  private defaultFaults: readonly FakeFault[];

  constructor(models: Readonly<Record<string, FakeModelConfig>>, defaultModel: FakeModelConfig) {
    this.defaultFaults = defaultModel.faults ?? [];
    for (const [model, config] of Object.entries(models)) this.armed.set(model, arm(config.faults ?? []));
  }

  set(model: string, faults: readonly FakeFault[]): void {
    this.armed.set(model, arm(faults));
  }

  add(model: string, fault: FakeFault): void {
    this.armedFor(model).push({ fault, remaining: fault.times });
  }

  clear(model?: string): void {
    if (model !== undefined) {
      this.armed.set(model, []);
      return;
    }
    for (const faults of this.armed.values()) faults.length = 0;
    this.defaultFaults = [];
  }

  /** The first fault with hits left that applies to this request; spends one of its hits. */
  take(model: string, applies: (fault: FakeFault) => boolean): FakeFault | undefined {
    const hit = this.armedFor(model).find((armed) => (armed.remaining === undefined || armed.remaining > 0) && applies(armed.fault));
    if (hit?.remaining !== undefined) hit.remaining -= 1;
    return hit?.fault;
  }

  private armedFor(model: string): ArmedFault[] {
    const existing = this.armed.get(model);
    if (existing !== undefined) return existing;
    const created = arm(this.defaultFaults);
    this.armed.set(model, created);
    return created;
  }
}
