/**
 * The Angular example (examples/angular-app) as a user builds and runs it: the library installed by
 * its package name (`file:../..` with `install-links`, so npm packs the repository by its `files`, as
 * it would install the published package), the app built by the Angular CLI, its backend started
 * (it holds the keys, in front of the fake OpenRouter), and the page driven in Debian's Chromium.
 * The pool runs in the page, over `createFetchTransport()`: tokens stream into the text area, and
 * the key the fake server has revoked turns `disabled`.
 *
 * Installing takes a minute or two the first time (the npm cache makes later ones faster); a rerun
 * with the same lockfile and the same packed library skips it. Everything the commands print goes
 * to test-output/angular-app.log, which scripts/scan-secrets.mjs checks for key text.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeMissingChromium, haveChromium, launchChromium } from './helpers/chromium.js';
import { leakedKeyLabels } from './helpers/test-keys.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const appDir = join(root, 'examples', 'angular-app');
const LOG_FILE = join(root, 'test-output', 'angular-app.log');
const STAMP_FILE = join(appDir, 'node_modules', '.openrouter-rx-test-stamp');
/** npm ci (network included), then ng build, on two busy cores: each command has its own limit, within the hook's. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;
const BUILD_TIMEOUT_MS = 5 * 60_000;
const SETUP_TIMEOUT_MS = INSTALL_TIMEOUT_MS + BUILD_TIMEOUT_MS + 2 * 60_000;
/** What the example's fake server answers every prompt with (examples/angular-app/server.mjs). */
const ANSWER = 'Many keys, one stream: each request takes the key that can serve it, a revoked key steps aside, and the words keep coming.';

/** The environment for the commands: no real key may reach the example's backend. */
function commandEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NG_CLI_ANALYTICS: 'false', ...extra };
  for (const name of Object.keys(env)) if (name.startsWith('OPENROUTER_')) delete env[name];
  return env;
}

function log(text: string): void {
  mkdirSync(dirname(LOG_FILE), { recursive: true });
  appendFileSync(LOG_FILE, text);
}

/** Runs a command to its end; rejects with the end of its output if it fails. */
function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolveRun, rejectRun) => {
    log(`\n$ (${cwd}) ${command} ${args.join(' ')}\n`);
    const child = spawn(command, args, { cwd, env: commandEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      log(chunk.toString());
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      rejectRun(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveRun(output);
      else rejectRun(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${output.slice(-4000)}`));
    });
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * The app's dependencies, installed with `npm ci` from its committed lockfile, unless the last
 * install here was from the same lockfile and the same library (what `npm pack` would publish,
 * compared by the tarball's integrity).
 */
async function installApp(): Promise<void> {
  if (!existsSync(join(root, 'dist', 'index.js')) || !existsSync(join(root, 'dist', 'testing.js'))) {
    await run('npm', ['run', 'build'], root, BUILD_TIMEOUT_MS);
  }
  const [pack] = JSON.parse(await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root, 60_000)) as Array<{
    integrity: string;
  }>;
  const stamp = JSON.stringify({ lockfile: sha256(join(appDir, 'package-lock.json')), library: pack!.integrity });
  if (existsSync(STAMP_FILE) && readFileSync(STAMP_FILE, 'utf8') === stamp) {
    log('\n(node_modules is current: npm ci skipped)\n');
    return;
  }
  await run('npm', ['ci', '--no-audit', '--no-fund'], appDir, INSTALL_TIMEOUT_MS);
  writeFileSync(STAMP_FILE, stamp);
}

interface EsbuildMetafile {
  outputs: Record<string, { imports: Array<{ path: string; kind: string }>; inputs: Record<string, unknown>; entryPoint?: string }>;
}

/** Input files of the app's initial load: the entry's output and every output it imports statically. */
function initialInputs(stats: EsbuildMetafile): { initial: string[]; inputs: string[] } {
  const entry = Object.keys(stats.outputs).find((file) => stats.outputs[file]!.entryPoint?.endsWith('src/main.ts'));
  expect(entry, 'the entry of src/main.ts in dist/stats.json').toBeDefined();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imported of stats.outputs[file]?.imports ?? []) if (imported.kind === 'import-statement') visit(imported.path);
  };
  visit(entry!);
  const initial = [...seen];
  return { initial, inputs: initial.flatMap((file) => Object.keys(stats.outputs[file]!.inputs)) };
}

/** Starts the example's backend on a free port; resolves with its URL once it listens. */
function startBackend(): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  return new Promise((resolveStart, rejectStart) => {
    const child = spawn(process.execPath, ['server.mjs'], {
      cwd: appDir,
      env: commandEnv({ PORT: '0' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let started = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rejectStart(new Error(`the backend did not start within 30 s:\n${output}`));
    }, 30_000);
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      log(chunk.toString());
      const url = /^angular-app: (http:\/\/127\.0\.0\.1:\d+\/)/m.exec(output)?.[1];
      if (url !== undefined && !started) {
        started = true;
        clearTimeout(timer);
        resolveStart({ child, url, output: () => output });
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('exit', (code) => {
      clearTimeout(timer);
      rejectStart(new Error(`the backend exited (${code}) before listening:\n${output}`));
    });
  });
}

/** Stops the backend (it closes the fake server on SIGTERM), SIGKILL if it takes over 5 s. */
async function stopBackend(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

if (!haveChromium) describeMissingChromium('the Angular example in Chromium', 'angular-app.test.ts');

describe.runIf(haveChromium)('the Angular example in Chromium', () => {
  let backend: Awaited<ReturnType<typeof startBackend>> | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let stats: EsbuildMetafile;
  const requested: string[] = [];
  const pageErrors: string[] = [];
  const apiBodies: Promise<string>[] = [];

  beforeAll(async () => {
    const startedAt = Date.now();
    await installApp();
    const installedAt = Date.now();
    await run(join(appDir, 'node_modules', '.bin', 'ng'), ['build', '--stats-json'], appDir, BUILD_TIMEOUT_MS);
    log(`\n(install ${((installedAt - startedAt) / 1000).toFixed(1)} s, ng build ${((Date.now() - installedAt) / 1000).toFixed(1)} s)\n`);
    stats = JSON.parse(readFileSync(join(appDir, 'dist', 'stats.json'), 'utf8')) as EsbuildMetafile;

    backend = await startBackend();
    browser = await launchChromium();
    page = await browser.newPage();
    page.on('request', (request) => requested.push(request.url()));
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    page.on('response', (response) => {
      if (new URL(response.url()).pathname.startsWith('/api/')) apiBodies.push(response.text().catch(() => ''));
    });
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    if (backend !== undefined) await stopBackend(backend.child);
  });

  it('keeps the openai SDK out of the initial load: the pool in the page uses fetch', () => {
    const { initial, inputs } = initialInputs(stats);
    // The library's code is there, installed by its package name (not the repository's src/).
    expect(inputs.some((input) => input.includes('node_modules/openrouter-rx/dist/'))).toBe(true);
    expect(inputs.filter((input) => input.startsWith('../'))).toEqual([]);
    expect(inputs.filter((input) => input.includes('node_modules/openai/'))).toEqual([]);
    // The SDK is a chunk of its own, loaded only by the default transport, which this app never creates.
    const lazy = Object.keys(stats.outputs).filter(
      (file) => !initial.includes(file) && Object.keys(stats.outputs[file]!.inputs).some((input) => input.includes('node_modules/openai/')),
    );
    expect(lazy.length).toBeGreaterThan(0);
    expect(Object.keys(stats.outputs).filter((file) => file.endsWith('.js')).length).toBeGreaterThan(initial.length);
  });

  it('streams the tokens of an answer into the page, and shows the revoked key turn disabled', async () => {
    const origin = backend!.url;
    await page.goto(origin);
    await page.waitForFunction(() => document.querySelectorAll('#keys [data-key]').length === 3, undefined, { timeout: 15_000 });
    const states = () =>
      page.$$eval('#keys [data-key]', (items) =>
        items.map((item) => `${item.getAttribute('data-key')}=${item.getAttribute('data-state')}`),
      );
    expect(await states()).toEqual(['alpha=closed', 'beta=closed', 'gamma=closed']);

    await page.click('#ask');
    // The text area, watched as the answer arrives: at least two partial texts, each a prefix of the next.
    const seen: string[] = [];
    let status = 'idle';
    const deadline = Date.now() + 30_000;
    while (status !== 'done' && status !== 'failed') {
      if (Date.now() > deadline) throw new Error(`no complete answer within 30 s; seen: ${JSON.stringify(seen)}`);
      const now = await page.$eval('#answer', (area) => ({
        text: (area as HTMLTextAreaElement).value,
        status: area.getAttribute('data-status') ?? '',
      }));
      status = now.status;
      if (status === 'streaming' && now.text !== '' && now.text !== seen.at(-1)) seen.push(now.text);
      await new Promise((wait) => setTimeout(wait, 25));
    }
    expect(status).toBe('done');
    const final = await page.inputValue('#answer');
    expect(final).toBe(ANSWER);
    // (The whole text may show before the status turns: the stream's end follows its last token.)
    const partial = seen.filter((text) => text.length < ANSWER.length);
    expect(partial.length, `texts seen while streaming: ${JSON.stringify(seen)}`).toBeGreaterThanOrEqual(2);
    for (const [index, text] of seen.entries()) {
      expect(ANSWER.startsWith(text)).toBe(true);
      if (index > 0) expect(text.length).toBeGreaterThan(seen[index - 1]!.length);
    }

    // Keys in turn: alpha first, refused with a 401 (its key is revoked), so beta answered on the second attempt.
    await page.waitForSelector('#keys [data-key="alpha"][data-state="disabled"]', { timeout: 5000 });
    expect(await page.textContent('#reply-status')).toBe('Done: key beta answered, after 2 attempt(s).');
    expect(await states()).toEqual(['alpha=disabled', 'beta=closed', 'gamma=closed']);
    expect(await page.textContent('#keys [data-key="alpha"]')).toContain('last error: authentication');
  });

  it('never shows key text, never leaves the backend, never loads the SDK, and logs no error', async () => {
    const origin = new URL(backend!.url).origin;
    const bodies = await Promise.all(apiBodies);
    expect(bodies.length).toBeGreaterThanOrEqual(3);
    const seenByThePage = [await page.content(), ...bodies, requested.join('\n')].join('\n');
    expect(leakedKeyLabels(seenByThePage)).toEqual([]);
    expect(leakedKeyLabels(backend!.output())).toEqual([]);
    expect(requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith('data:'))).toEqual([]);
    const lazySdk = Object.keys(stats.outputs).filter((file) =>
      Object.keys(stats.outputs[file]!.inputs).some((input) => input.includes('node_modules/openai/')),
    );
    expect(requested.filter((url) => lazySdk.some((file) => url.endsWith(`/${file.split('/').pop()}`)))).toEqual([]);
    // The revoked key's 401 is the pool's business, not an error of the page; the browser logs the
    // failed fetch itself, though ("Failed to load resource: ... 401").
    expect(pageErrors.filter((message) => !/status of 401/.test(message))).toEqual([]);
  });
});
