import { ChangeDetectionStrategy, Component, DestroyRef, inject, signal } from '@angular/core';
import { takeUntilDestroyed, toSignal } from '@angular/core/rxjs-interop';
import type { KeyHealth } from '../../src/index.js';
import { OpenRouterService } from './openrouter.service.js';

/**
 * A component on top of `OpenRouterService`: every key's health, live, and a prompt box whose
 * answer streams in. Signals from `toSignal` keep it OnPush without any manual subscription.
 */
@Component({
  selector: 'app-key-health',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    @if (unavailable() > 0) {
      <p class="warning">{{ unavailable() }} key(s) cannot take traffic right now.</p>
    }
    <ul>
      @for (key of keys(); track key.label) {
        <li [class]="'key state-' + key.state">
          <b>{{ key.label }}</b> {{ key.fingerprint }}: {{ describe(key) }}
        </li>
      }
    </ul>
    <input #prompt placeholder="Ask something" />
    <button (click)="ask(prompt.value)">Ask</button>
    <p class="answer">{{ answer() }}</p>
  `,
})
export class KeyHealthComponent {
  private readonly openRouter = inject(OpenRouterService);
  private readonly destroyRef = inject(DestroyRef);

  readonly keys = toSignal(this.openRouter.keys$, { initialValue: [] as readonly KeyHealth[] });
  readonly unavailable = toSignal(this.openRouter.unavailableKeys$, { initialValue: 0 });
  readonly answer = signal('');

  describe(key: KeyHealth): string {
    const latency = key.latencyMs === null ? '' : `, ${Math.round(key.latencyMs)} ms`;
    return `${key.state}, ${key.inFlight} in flight${latency}`;
  }

  ask(prompt: string): void {
    this.openRouter
      .stream(prompt, 'openai/gpt-4o-mini')
      .pipe(takeUntilDestroyed(this.destroyRef))
      .subscribe({
        next: (text) => this.answer.set(text),
        error: (error: unknown) => this.answer.set(`failed: ${error instanceof Error ? error.message : String(error)}`),
      });
  }
}
