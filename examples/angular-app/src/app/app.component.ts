import { ChangeDetectionStrategy, Component, inject } from '@angular/core';
import { toSignal } from '@angular/core/rxjs-interop';
import { Subject, switchMap } from 'rxjs';
import type { KeyHealth } from 'openrouter-rx';
import { IDLE_REPLY, OpenRouterService, type Reply } from './openrouter.service';

const MODEL = 'openai/gpt-4o-mini';

/**
 * A prompt box whose answer streams in, and every key's health, live. Both are signals made by
 * `toSignal` from the pool's Observables: no manual subscription, and OnPush (zoneless) change
 * detection follows them. A new prompt cancels the answer still streaming (`switchMap`), which
 * aborts its HTTP request.
 */
@Component({
  selector: 'app-root',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    <h1>openrouter-rx in Angular</h1>
    <p>The key pool runs in this page; the backend that served it holds the API keys and adds them to each request.</p>
    <label for="prompt">Prompt</label>
    <input id="prompt" #prompt value="Write a short poem about many keys sharing one stream." />
    <button id="ask" type="button" [disabled]="reply().status === 'streaming'" (click)="ask(prompt.value)">Ask</button>
    <textarea id="answer" readonly rows="6" [value]="reply().text" [attr.data-status]="reply().status"></textarea>
    <p id="reply-status">{{ describeReply(reply()) }}</p>

    <h2>Keys</h2>
    @if (unavailable() > 0) {
      <p class="warning">{{ unavailable() }} key(s) cannot take traffic right now.</p>
    }
    <ul id="keys">
      @for (key of keys(); track key.label) {
        <li [attr.data-key]="key.label" [attr.data-state]="key.state">
          <b>{{ key.label }}</b> {{ key.fingerprint }}: <span class="state">{{ key.state }}</span>, {{ describeKey(key) }}
        </li>
      }
    </ul>
  `,
  styles: `
    :host {
      display: block;
      max-width: 48rem;
      margin: 2rem auto;
      font-family: system-ui, sans-serif;
    }
    textarea {
      display: block;
      width: 100%;
      margin-top: 0.5rem;
    }
    input {
      width: 28rem;
      margin: 0 0.5rem;
    }
    [data-state='disabled'] .state,
    .warning {
      color: #b00020;
    }
    [data-state='closed'] .state {
      color: #1b7f3a;
    }
  `,
})
export class AppComponent {
  private readonly openRouter = inject(OpenRouterService);
  private readonly prompts = new Subject<string>();

  readonly keys = toSignal(this.openRouter.keys$, { initialValue: [] as readonly KeyHealth[] });
  readonly unavailable = toSignal(this.openRouter.unavailableKeys$, { initialValue: 0 });
  readonly reply = toSignal(this.prompts.pipe(switchMap((prompt) => this.openRouter.stream(prompt, MODEL))), {
    initialValue: IDLE_REPLY,
  });

  ask(prompt: string): void {
    this.prompts.next(prompt);
  }

  describeReply(reply: Reply): string {
    switch (reply.status) {
      case 'idle':
        return 'Ask something.';
      case 'streaming':
        return reply.keyLabel === undefined ? 'Waiting for the first token…' : `Streaming from key ${reply.keyLabel}…`;
      case 'done':
        return `Done: key ${reply.keyLabel ?? '?'} answered, after ${reply.attempts ?? 1} attempt(s).`;
      case 'failed':
        return `Failed: ${reply.error ?? 'unknown error'}`;
    }
  }

  describeKey(key: KeyHealth): string {
    const latency = key.latencyMs === null ? '' : `, ${Math.round(key.latencyMs)} ms`;
    const error = key.lastError === null ? '' : ` (last error: ${key.lastError.kind})`;
    return `${key.successes} ok, ${key.failures} failed, ${key.inFlight} in flight${latency}${error}`;
  }
}
