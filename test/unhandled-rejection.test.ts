/**
 * Aborting an attempt at any moment must never leave a promise rejection unhandled: Node's default
 * is to end the process on one. The probe runs in a child process so that Node's own behaviour is
 * what is tested (vitest installs handlers of its own in its workers).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ALL_TEST_KEYS } from './helpers/test-keys.js';

const PROBE = fileURLToPath(new URL('./helpers/abort-probe.ts', import.meta.url));
const CALLS = 2500;

interface ProbeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runProbe(calls: number, seed: number): Promise<ProbeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--unhandled-rejections=throw', PROBE, String(calls), String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A crash report is shown with key labels in place of any key text. */
function masked(text: string): string {
  return ALL_TEST_KEYS.reduce((result, [label, key]) => result.split(key).join(`[${label}]`), text).slice(-2000);
}

describe('aborting attempts at random moments', () => {
  it(`${CALLS} single calls unsubscribed or timed out at random (many after the headers): the process lives, each call ends once`, async () => {
    const run = await runProbe(CALLS, 7);
    expect(run.code, `the probe process died:\n${masked(run.stderr)}`).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
    // The deadline may cut a run on a slow machine short, but never below a meaningful count.
    expect(summary['started']).toBeGreaterThanOrEqual(1000);
    expect(summary['ended']! + summary['unsubscribed']!).toBe(summary['started']);
    expect(summary['extra']).toBe(0);
    expect(summary['hanging']).toBe(0);
    // The case that crashed: a body read aborted just after its headers arrived.
    expect(summary['afterHeaders']).toBeGreaterThan(300);
  }, 60_000);
});
