/**
 * Runs a TypeScript module as a user would, with tsx, from the repository root and with no
 * OpenRouter key in its environment (only PATH and what the caller adds), so that examples and
 * README snippets fall back to the embedded fake server. What it prints is appended to a log under
 * test-output/, which scripts/scan-secrets.mjs checks for key text.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface TsxRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface TsxRunOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Killed, and the run rejected, after this long. */
  timeoutMs: number;
  /** The log's file name under test-output/. */
  log: string;
}

export function runWithTsx(file: string, { args = [], env = {}, timeoutMs, log }: TsxRunOptions): Promise<TsxRun> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rejectRun(new Error(`${file} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      mkdirSync(join(root, 'test-output'), { recursive: true });
      appendFileSync(join(root, 'test-output', log), `--- ${file} ${args.join(' ')} (exit ${code})\n${stdout}\n${stderr}\n`);
      resolveRun({ code, stdout, stderr });
    });
  });
}
