/**
 * Key text split across streamed tool-call arguments at any offset, in any order of calls, with or
 * without its `sk-or-v1-` prefix, is redacted. (Checks a review ran: they held.)
 */
import { lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { createFetchTransport, createOpenRouterTransport } from '../../src/transport/index.js';
import type { KeyCredential } from '../../src/core/types.js';
import { TEST_KEYS } from '../helpers/test-keys.js';

const SECRET = TEST_KEYS.echoedPrefix;
const KEY: KeyCredential = { key: SECRET, label: 'alpha', fingerprint: 'fp' };
const chunk = (calls: unknown[]) =>
  `data: ${JSON.stringify({ id: 'g', model: 'm/a', choices: [{ index: 0, delta: { tool_calls: calls } }] })}\n\n`;
const end = `data: {"id":"g","model":"m/a","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n`;
const args = (index: number, text: string) => ({ index, function: { arguments: text } });

describe.each([
  ['sdk', createOpenRouterTransport],
  ['fetch', createFetchTransport],
] as const)('%s', (_n, create) => {
  for (const cut of [1, 9, 12, 20, 21, 25, 30, 40, 60, 72])
    for (const layout of ['two calls', 'reordered', 'echoed secret'] as const)
      it(`key split at ${cut}, ${layout}`, async () => {
        const text = layout === 'echoed secret' ? SECRET.slice(9) : SECRET;
        const c = Math.min(cut, text.length - 1);
        const sse =
          layout === 'reordered'
            ? chunk([args(1, 'a ' + text.slice(0, c)), args(0, `x ${SECRET} y`)]) +
              chunk([args(0, 'z'), args(1, text.slice(c) + ' b')]) +
              end
            : chunk([args(0, `x ${SECRET.slice(0, 25)}`), args(1, 'a ' + text.slice(0, c))]) + chunk([args(1, text.slice(c) + ' b')]) + end;
        const fetchImpl = async () => new Response(sse, { status: 200, headers: { 'content-type': 'text/event-stream' } });
        const events = await lastValueFrom(
          create({ baseURL: 'http://127.0.0.1:9/api/v1', fetch: fetchImpl })(KEY, {
            model: 'm/a',
            stream: true,
            messages: [{ role: 'user', content: 'hi' }],
          }).pipe(toArray()),
        );
        const perIndex = new Map<unknown, string>();
        for (const e of events)
          if (e.type === 'chunk')
            for (const call of e.toolCalls ?? [])
              perIndex.set(
                call['index'],
                (perIndex.get(call['index']) ?? '') + String((call['function'] as { arguments?: string }).arguments ?? ''),
              );
        for (const joined of perIndex.values()) {
          expect(joined).not.toContain(SECRET.slice(0, 20));
          expect(joined).not.toContain(SECRET.slice(9, 25));
        }
      });
});
