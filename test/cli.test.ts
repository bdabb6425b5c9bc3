import { spawn } from 'node:child_process';
import {
  accessSync,
  appendFileSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { get as httpGet } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run-cli.js';
import type { CliIo } from '../src/cli/io.js';
import { parsePrompts } from '../src/cli/prompts.js';
import { renderHealthTable } from '../src/cli/health-table.js';
import { ProgressReporter, renderBar, renderPlain } from '../src/cli/progress.js';
import type { KeyHealth, PoolHealth } from '../src/index.js';
import { idleKeyHealth } from './helpers/health-records.js';
import { startFakeOpenRouter, type FakeOpenRouter } from '../src/testing/index.js';
import { TEST_KEYS, leakedKeyLabels } from './helpers/test-keys.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const builtCli = join(root, 'dist', 'cli.js');
const samplePrompts = join(root, 'examples', 'prompts.jsonl');

/** Scratch space outside test-output/: keys files written here must never reach the scanned output. */
const scratch = mkdtempSync(join(tmpdir(), 'openrouter-rx-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * Everything the CLI printed or wrote in these tests, kept under test-output/ so that
 * scripts/scan-secrets.mjs checks it for key text too (keys files themselves stay in `scratch`).
 */
const outputLog = join(root, 'test-output', 'cli-output.log');
mkdirSync(dirname(outputLog), { recursive: true });
function keep(what: string, text: string): void {
  if (text.length > 0) appendFileSync(outputLog, `--- ${what}\n${text}\n`);
}

let fileCount = 0;
function scratchFile(name: string, content?: string): string {
  const path = join(scratch, `${++fileCount}-${name}`);
  if (content !== undefined) writeFileSync(path, content);
  return path;
}

interface Captured {
  io: CliIo;
  stdout: () => string;
  stderr: () => string;
}

function capture(
  options: { env?: Record<string, string>; tty?: boolean; columns?: number; signal?: AbortSignal; abortSignal?: AbortSignal } = {},
): Captured {
  let stdout = '';
  let stderr = '';
  return {
    io: {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text), isTTY: options.tty ?? false, columns: options.columns ?? 100 },
      env: options.env ?? {},
      cwd: root,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.abortSignal === undefined ? {} : { abortSignal: options.abortSignal }),
    },
    stdout: () => stdout,
    stderr: () => stderr,
  };
}

async function cli(argv: string[], options: Parameters<typeof capture>[0] = {}) {
  const captured = capture(options);
  const code = await runCli(argv, captured.io);
  keep(`runCli stdout (exit ${code})`, captured.stdout());
  keep(`runCli stderr (exit ${code})`, captured.stderr());
  return { code, stdout: captured.stdout(), stderr: captured.stderr() };
}

interface ResultRow {
  id: string;
  ok: boolean;
  keyLabel?: string;
  content?: string;
  line?: number;
  error?: { kind: string; message: string; status?: number };
}

/** Every line of a results file, parsed; fails on a line that is not whole JSON. */
function readResults(path: string): ResultRow[] {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  keep(`results file ${path}`, text);
  if (text.length > 0) expect(text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as ResultRow);
}

/** Whole lines in a results file so far, for polling (not kept: that would log every poll). */
function lineCount(path: string): number {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').length - 1 : 0;
}

function expectUniqueIds(rows: readonly ResultRow[]): void {
  expect(new Set(rows.map((row) => row.id)).size).toBe(rows.length);
}

function promptsFile(count: number): string {
  return scratchFile(
    'prompts.jsonl',
    Array.from({ length: count }, (_, index) => JSON.stringify({ id: `p${index + 1}`, prompt: `Prompt number ${index + 1}` })).join('\n') +
      '\n',
  );
}

describe('openrouter-rx flags', () => {
  it('prints help for the tool and for each command', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('openrouter-rx run <prompts.jsonl> --out <results.jsonl>');
    const run = await cli(['run', '--help']);
    expect(run.code).toBe(0);
    for (const flag of [
      '--out',
      '--model',
      '--fallback-models',
      '--concurrency',
      '--strategy',
      '--timeout-ms',
      '--first-token-timeout-ms',
      '--idle-timeout-ms',
      '--keys-file',
      '--fake',
    ]) {
      expect(run.stdout).toContain(flag);
    }
    expect((await cli(['dashboard', '--help'])).stdout).toContain('--port');
  });

  it.each([
    [['run', '--out', 'x.jsonl', '--fake'], /prompts file: missing/],
    [['run', 'examples/prompts.jsonl', '--fake'], /--out: is required/],
    [
      ['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--concurrency', '0'],
      /--concurrency: must be a whole number from 1 to 1000, got "0"/,
    ],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--concurrency', 'lots'], /--concurrency: must be a whole number/],
    [
      ['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--strategy', 'fastest'],
      /--strategy: must be one of roundRobin, weighted, leastInFlight, powerOfTwo, latency; got "fastest"/,
    ],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--timeout-ms', '5'], /--timeout-ms: must be a whole number from 100/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--first-token-timeout-ms', '-1'], /--first-token-timeout-ms/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--base-url', 'openrouter'], /--base-url: must be an http\(s\) URL/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--model', 'gpt 4'], /--model: must be a model slug without spaces/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--keys-file', 'k.txt'], /--keys-file: not with --fake/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake-latency-ms', '10'], /--fake-latency-ms: only applies with --fake/],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--modle', 'a/b'], /unknown flag --modle/],
    [['run', 'examples/prompts.jsonl', '-o'], /--out needs a value/],
    [['run', 'a.jsonl', 'b.jsonl', '-o', 'x.jsonl'], /one prompts file at a time/],
    [['dashboard', '--port', '70000'], /--port: must be a whole number from 0 to 65535/],
    [['dashboard', '--rate', '5'], /--rate: only applies with --fake/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ])('rejects %j with a message naming the flag', async (argv, message) => {
    const result = await cli(argv);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(existsSync(join(root, 'x.jsonl'))).toBe(false);
  });

  it.each([
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--modle', 'a/b']],
    [['run', 'examples/prompts.jsonl', '-o']],
    [['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--concurrency', '0']],
    [['dashboard', '--bogus']],
  ])('points a bad call %j at --help once', async (argv) => {
    const result = await cli(argv);
    expect(result.code).toBe(2);
    expect(result.stderr.match(/--help/g)).toEqual(['--help']);
    expect(result.stderr).toContain(`(openrouter-rx ${argv[0]} --help lists the flags)`);
  });

  it.each([['--key'], ['--api-key'], ['-k']])('refuses keys given as %s, without echoing them', async (flag) => {
    for (const argv of [
      ['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', flag, TEST_KEYS.alpha],
      ['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', `${flag}=${TEST_KEYS.alpha}`],
    ]) {
      const result = await cli(argv);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('stays in your shell history');
      expect(result.stderr).toContain('OPENROUTER_API_KEYS');
      expect(leakedKeyLabels(result.stderr + result.stdout)).toEqual([]);
    }
  });

  it('refuses a key pasted as an argument, without echoing it', async () => {
    const result = await cli(['run', TEST_KEYS.alpha, '-o', 'x.jsonl']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('looks like an API key');
    expect(leakedKeyLabels(result.stderr + result.stdout)).toEqual([]);
  });

  it('asks for keys when there are none, and points at --fake', async () => {
    const result = await cli(['run', 'examples/prompts.jsonl', '-o', scratchFile('out.jsonl')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/no API keys: set OPENROUTER_API_KEYS .* or pass --keys-file .*--fake/);
  });

  it('reports keys-file mistakes by line and fingerprint, never by key text', async () => {
    const duplicate = scratchFile('keys.txt', `# team keys\nteam-a=${TEST_KEYS.alpha}\n\nteam-b=${TEST_KEYS.alpha}\n`);
    chmodSync(duplicate, 0o600);
    const result = await cli(['run', 'examples/prompts.jsonl', '-o', scratchFile('out.jsonl'), '--keys-file', duplicate]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/keys\.txt line 4: the same key \(#[0-9a-f]{6}\) as .*keys\.txt line 2/);
    expect(leakedKeyLabels(result.stderr)).toEqual([]);

    const badLabel = scratchFile('keys.txt', `bad label=${TEST_KEYS.alpha}\n`);
    const labelResult = await cli(['run', 'examples/prompts.jsonl', '-o', scratchFile('out.jsonl'), '--keys-file', badLabel]);
    expect(labelResult.stderr).toMatch(/line 1: the label may hold letters, digits and \. _ - : @ only/);
    // A message about a keys line names the line, never what it holds.
    expect(labelResult.stderr).not.toContain('bad label');
    expect(leakedKeyLabels(labelResult.stderr)).toEqual([]);

    const sameLabel = scratchFile('keys.txt', `ops=${TEST_KEYS.alpha}\nops=${TEST_KEYS.beta}\n`);
    const sameLabelResult = await cli(['run', 'examples/prompts.jsonl', '-o', scratchFile('out.jsonl'), '--keys-file', sameLabel]);
    expect(sameLabelResult.stderr).toMatch(/keys\.txt line 2: the same label as .*keys\.txt line 1/);
    expect(sameLabelResult.stderr).not.toContain('ops');
    expect(leakedKeyLabels(sameLabelResult.stderr)).toEqual([]);

    const missing = await cli(['run', 'examples/prompts.jsonl', '-o', scratchFile('out.jsonl'), '--keys-file', join(scratch, 'nope.txt')]);
    expect(missing.stderr).toMatch(/--keys-file: cannot read .*nope\.txt: ENOENT/);
  });
});

describe('prompts file parsing', () => {
  it('turns every line into a request or a numbered bad line, with ids unique', () => {
    const entries = parsePrompts(
      [
        '{"id":"a","prompt":"Hello"}',
        '',
        '{"prompt":"no id"}',
        '{oops',
        '{"id":"a","prompt":"again"}',
        '{"messages":[{"role":"user","content":"hi"}],"model":"x/y","temperature":0.3}',
        '{"prompt":"p","messages":[]}',
        '{"prompt":"hot","temperature":"hot"}',
        '[1,2]',
        '{"id":7,"prompt":"numeric id"}',
      ].join('\n'),
      { model: 'fallback/model' },
    );
    expect(entries.map((entry) => [entry.kind, entry.id, entry.line])).toEqual([
      ['ok', 'a', 1],
      ['ok', '3', 3],
      ['bad', '4', 4],
      ['bad', 'a@line-5', 5],
      ['ok', '6', 6],
      ['bad', '7', 7],
      ['bad', '8', 8],
      ['bad', '9', 9],
      ['bad', '7@line-10', 10],
    ]);
    const messages = Object.fromEntries(entries.filter((entry) => entry.kind === 'bad').map((entry) => [entry.line, entry.message]));
    expect(messages[4]).toMatch(/not valid JSON/);
    expect(messages[5]).toBe('the id "a" is already used on line 1');
    expect(messages[7]).toBe('give "prompt" or "messages", not both');
    expect(messages[8]).toMatch(/temperature/);
    expect(messages[9]).toMatch(/must be a JSON object/);
    const first = entries[0];
    expect(first?.kind === 'ok' && first.request).toMatchObject({
      id: 'a',
      model: 'fallback/model',
      stream: true,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    const own = entries[4];
    expect(own?.kind === 'ok' && own.request.model).toBe('x/y');
  });

  it('needs a model from the line or --model', () => {
    const [entry] = parsePrompts('{"prompt":"hi"}\n', {});
    expect(entry).toMatchObject({ kind: 'bad', message: 'no model: give the line a "model", or pass --model' });
  });
});

describe('progress rendering', () => {
  it('shows done, failed, rate and ETA', () => {
    const counts = { total: 100, succeeded: 40, failed: 2, inFlight: 8 };
    expect(renderPlain(counts, 10_000)).toBe('progress: 42/100 done (40 ok, 2 failed), 8 in flight, 4.2/s, ETA 14s');
    const bar = renderBar(counts, 10_000, 80, false);
    expect(bar).toMatch(/^\[█+░+\] {2}42% 42\/100 done · 2 failed · 8 in flight · 4\.2\/s · ETA 14s$/);
    expect([...bar].length).toBeLessThan(80);
  });

  it('shows no ETA once the run is stopping, then says it stopped', () => {
    const counts = { total: 100, succeeded: 40, failed: 2, inFlight: 8 };
    expect(renderBar(counts, 10_000, 80, false, 'stopping')).toMatch(/ 8 in flight · 4\.2\/s · stopping…$/);
    expect(renderPlain(counts, 10_000, 'stopped')).toBe('progress: 42/100 done (40 ok, 2 failed), 8 in flight, 4.2/s, stopped');

    let written = '';
    let now = 0;
    const reporter = new ProgressReporter({ write: (text: string) => (written += text), isTTY: true, columns: 100 }, 'bar', () => now);
    reporter.start(100);
    // No failure, so that no colour code splits the line.
    reporter.update({ succeeded: 42, failed: 0, inFlight: 8 });
    now = 10_000;
    reporter.note('a note redraws the bar');
    expect(written).toContain('ETA 14s');
    written = '';
    reporter.markStopping();
    reporter.note('stopping: no new prompts');
    reporter.update({ succeeded: 50, failed: 0, inFlight: 0 });
    reporter.finish();
    expect(written).not.toContain('ETA');
    expect(written).toContain('stopping…');
    expect(written).toMatch(/ 50\/100 done · 0 failed · 0 in flight · 5\.0\/s · stopped\n$/);
  });
});

describe('the final health table', () => {
  /** A key that has served a dozen requests, a third of its quota left. */
  const keyHealth = (label: string, extra: Partial<KeyHealth> = {}): KeyHealth =>
    idleKeyHealth(label, {
      successes: 12,
      latencyMs: 120,
      quota: [{ scope: 'key', unit: 'requests', limit: 10, remaining: 3, freesAt: 400, windowMs: 1000, source: 'configured' }],
      usage: { requests: 12, promptTokens: 40, completionTokens: 60, totalTokens: 100, cost: 0.01 },
      ...extra,
    });
  const health: PoolHealth = {
    keys: [
      keyHealth('alpha'),
      keyHealth('a-rather-long-label-for-the-team-key', {
        state: 'open',
        openReason: 'rate-limit',
        cooldownUntil: 5000,
        lastError: { kind: 'rate_limit', status: 429, message: 'Rate limit exceeded', at: 0 },
      }),
    ],
    models: [{ ...keyHealth('unused'), model: 'anthropic/claude-3.5-haiku-20241022', state: 'closed' }],
    usage: { requests: 24, promptTokens: 80, completionTokens: 120, totalTokens: 200, cost: 0.02 },
    queued: 0,
    at: 0,
  };

  it('uses every column when the terminal is wide enough', () => {
    const table = renderHealthTable(health, 120);
    expect(table.split('\n')[0]).toMatch(/^key +state +in-flight +done +errors +quota +latency +last error$/);
    expect(table).toContain('a-rather-long… #abcdef');
    expect(table).toContain('rate_limit 429');
  });

  it.each([100, 80, 60, 40])('fits %i columns: labels elided, fingerprints kept, the least telling columns dropped', (columns) => {
    const lines = renderHealthTable(health, columns).split('\n');
    for (const line of lines) expect([...line].length, line).toBeLessThanOrEqual(columns);
    expect(lines[1]).toMatch(/^alpha #abcdef +ok /);
    expect(lines[2]).toMatch(/^a-rat\S*… #abcdef +OPEN 5s/);
    expect(lines[0]).toMatch(/^key +state +.*done/);
  });

  it('takes 80 columns when the terminal does not say', () => {
    expect(renderHealthTable(health)).toBe(renderHealthTable(health, 80));
    expect(renderHealthTable(health, 0)).toBe(renderHealthTable(health, 80));
    expect(renderHealthTable(health, 80)).toContain('rate_limit 429');
  });
});

describe('openrouter-rx run, in-process', () => {
  let fake: FakeOpenRouter;

  beforeAll(async () => {
    fake = await startFakeOpenRouter({
      keys: [
        { key: TEST_KEYS.healthy1, label: 'server-one' },
        { key: TEST_KEYS.healthy2, label: 'server-two' },
        { key: TEST_KEYS.revoked, label: 'server-revoked', revoked: true },
      ],
      defaultModel: { latencyMs: 5, chunkCount: 3 },
    });
  });
  afterAll(() => fake.close());
  afterEach(() => fake.clearFaults());

  it('runs the sample file on the fake server, one line per prompt, and a rerun does nothing', async () => {
    const out = scratchFile('results.jsonl');
    const first = await cli(['run', 'examples/prompts.jsonl', '--out', out, '--fake', '--fake-latency-ms', '5']);
    expect(first.code).toBe(0);
    const rows = readResults(out);
    const inputs = readFileSync(samplePrompts, 'utf8').trim().split('\n');
    expect(rows).toHaveLength(inputs.length);
    expectUniqueIds(rows);
    expect(rows.every((row) => row.ok)).toBe(true);
    expect(rows.map((row) => row.id)).toContain('23'); // the line without an id is named by its line number
    expect(first.stderr).toMatch(/progress: 24\/24 done \(24 ok, 0 failed\)/);
    expect(first.stdout).toMatch(/24 result\(s\) written this run \(24 ok, 0 failed\).*24 of 24 prompt\(s\) have a result/);
    const before = readFileSync(out, 'utf8');

    const again = await cli(['run', 'examples/prompts.jsonl', '--out', out, '--fake']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('24 already in');
    expect(again.stderr).toContain('nothing to do');
    expect(readFileSync(out, 'utf8')).toBe(before);
  });

  it('uses keys from a keys file with labels, and no key text reaches any output', async () => {
    const keys = scratchFile('keys.txt', `one=${TEST_KEYS.healthy1}\ntwo=${TEST_KEYS.healthy2}\nthree=${TEST_KEYS.revoked}\n`);
    chmodSync(keys, 0o600);
    const out = scratchFile('results.jsonl');
    const result = await cli([
      'run',
      promptsFile(12),
      '--out',
      out,
      '--keys-file',
      keys,
      '--base-url',
      fake.baseURL,
      '--model',
      'test/model',
      '--strategy',
      'roundRobin',
      '-c',
      '3',
    ]);
    expect(result.code).toBe(0);
    const rows = readResults(out);
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((row) => row.keyLabel))).toEqual(new Set(['one', 'two']));
    expect(result.stderr).toContain('key three'); // the revoked key's state change, by label
    expect(leakedKeyLabels(result.stdout + result.stderr + readFileSync(out, 'utf8'))).toEqual([]);
  });

  it('takes keys from OPENROUTER_API_KEYS, and warns about a keys file others can read', async () => {
    const out = scratchFile('results.jsonl');
    const env = { OPENROUTER_API_KEYS: `first=${TEST_KEYS.healthy1}, ${TEST_KEYS.healthy2}` };
    const result = await cli(['run', promptsFile(4), '--out', out, '--base-url', fake.baseURL, '--model', 'test/model'], { env });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('2 key(s) from OPENROUTER_API_KEYS');
    expect(new Set(readResults(out).map((row) => row.keyLabel))).toEqual(new Set(['first', 'key-2']));

    // Spaces around an entry or its '=' are the writer's, and a newline separates entries as a comma does.
    const spaced = scratchFile('spaced.jsonl');
    const spacedEnv = { OPENROUTER_API_KEYS: ` first = ${TEST_KEYS.healthy1} ,\nsecond=${TEST_KEYS.healthy2}\n` };
    const spacedRun = await cli(['run', promptsFile(4), '--out', spaced, '--base-url', fake.baseURL, '--model', 'test/model'], {
      env: spacedEnv,
    });
    expect(spacedRun.code).toBe(0);
    expect(spacedRun.stderr).toContain('2 key(s) from OPENROUTER_API_KEYS');
    expect(new Set(readResults(spaced).map((row) => row.keyLabel))).toEqual(new Set(['first', 'second']));

    const open = scratchFile('keys.txt', `${TEST_KEYS.healthy1}\n`);
    chmodSync(open, 0o644);
    const warned = await cli([
      'run',
      promptsFile(1),
      '--out',
      scratchFile('results.jsonl'),
      '--keys-file',
      open,
      '--base-url',
      fake.baseURL,
      '--model',
      'test/model',
    ]);
    expect(warned.stderr).toMatch(/can be read by other users .*chmod 600/);
  });

  describe('refuses a key written where its label goes, and never prints it', () => {
    /** Runs against the fake server, which would accept these keys: only the label rule stops the run. */
    async function runWith(keys: { file?: string; env?: Record<string, string> }) {
      const out = scratchFile('results.jsonl');
      const argv = ['run', promptsFile(2), '--out', out, '--base-url', fake.baseURL, '--model', 'test/model'];
      const result = await cli(
        keys.file === undefined ? argv : [...argv, '--keys-file', keys.file],
        keys.env === undefined ? {} : { env: keys.env },
      );
      const written = existsSync(out) ? readFileSync(out, 'utf8') : '';
      keep(`results file ${out}`, written);
      return { ...result, written };
    }

    it.each([
      ['a key short enough to pass as a label', TEST_KEYS.healthy2],
      ['a key as long as a real one', TEST_KEYS.cliLongKey],
    ])('key=label in a keys file: %s', async (_case, swapped) => {
      const keys = scratchFile('keys.txt', `one=${TEST_KEYS.healthy1}\n\n${swapped}=two\n`);
      chmodSync(keys, 0o600);
      const result = await runWith({ file: keys });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(
        /keys\.txt line 3: what comes before '=' looks like an API key, not a label: write label=key, the label first/,
      );
      expect(result.written).toBe('');
      expect(leakedKeyLabels(result.stdout + result.stderr + result.written)).toEqual([]);
    });

    it('key=label in OPENROUTER_API_KEYS', async () => {
      const result = await runWith({ env: { OPENROUTER_API_KEYS: `first=${TEST_KEYS.healthy1},${TEST_KEYS.healthy2}=second` } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/entry 2 of OPENROUTER_API_KEYS: what comes before '=' looks like an API key/);
      expect(result.written).toBe('');
      expect(leakedKeyLabels(result.stdout + result.stderr + result.written)).toEqual([]);
    });

    it('a token-like label that does not start with sk-', async () => {
      const token = '9c1f0e7a3b5d2c4e6f8a0b1c3d5e7f9a';
      const keys = scratchFile('keys.txt', `${token}=${TEST_KEYS.healthy1}\n`);
      chmodSync(keys, 0o600);
      const result = await runWith({ file: keys });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/keys\.txt line 1: what comes before '=' looks like an API key/);
      expect(result.stdout + result.stderr + result.written).not.toContain(token);
    });

    it('an empty label', async () => {
      const result = await runWith({ env: { OPENROUTER_API_KEYS: `=${TEST_KEYS.healthy1}` } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/entry 1 of OPENROUTER_API_KEYS: nothing before '='/);
      expect(leakedKeyLabels(result.stdout + result.stderr)).toEqual([]);
    });

    it('a label with a space is refused as a label, not split into a key of its own', async () => {
      const result = await runWith({ env: { OPENROUTER_API_KEYS: `team a=${TEST_KEYS.healthy1}` } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/entry 1 of OPENROUTER_API_KEYS: the label may hold letters, digits/);
      expect(result.written).toBe('');
      expect(leakedKeyLabels(result.stdout + result.stderr + result.written)).toEqual([]);
    });
  });

  it('reports bad lines with their line number and writes them as failures, next to the good ones', async () => {
    const input = scratchFile(
      'prompts.jsonl',
      [
        '{"id":"good-1","prompt":"fine"}',
        'this is not json',
        '{"id":"hot","prompt":"x","temperature":"hot"}',
        '{"id":"good-2","prompt":"fine too"}',
        '{"id":"good-1","prompt":"dup"}',
      ].join('\n'),
    );
    const out = scratchFile('results.jsonl');
    const result = await cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/prompts\.jsonl line 2: not valid JSON/);
    expect(result.stderr).toMatch(/prompts\.jsonl line 3: .*temperature/);
    expect(result.stderr).toMatch(/prompts\.jsonl line 5: the id "good-1" is already used on line 1/);
    const rows = readResults(out);
    expectUniqueIds(rows);
    expect(rows).toHaveLength(5);
    expect(rows.filter((row) => !row.ok).map((row) => [row.id, row.line, row.error?.kind])).toEqual([
      ['2', 2, 'bad_request'],
      ['hot', 3, 'bad_request'],
      ['good-1@line-5', 5, 'bad_request'],
    ]);
    expect(
      rows
        .filter((row) => row.ok)
        .map((row) => row.id)
        .sort(),
    ).toEqual(['good-1', 'good-2']);
  });

  it('writes request failures as failure lines with the error kind and status', async () => {
    fake.setFaults('test/broken', [{ type: 'status', status: 400, message: 'this model rejects everything' }]);
    const out = scratchFile('results.jsonl');
    const env = { OPENROUTER_API_KEYS: TEST_KEYS.healthy1 };
    const result = await cli(['run', promptsFile(2), '--out', out, '--base-url', fake.baseURL, '--model', 'test/broken'], { env });
    expect(result.code).toBe(1);
    const rows = readResults(out);
    expect(rows).toHaveLength(2);
    expect(rows.every((row) => !row.ok && row.error?.kind === 'bad_request' && row.error.status === 400)).toBe(true);
    expect(result.stderr).toMatch(/p1 failed: bad_request 400/);
  });

  it('drops a partial last line left by a kill, and runs that prompt again', async () => {
    const input = promptsFile(5);
    const out = scratchFile('results.jsonl');
    writeFileSync(out, '{"id":"p1","ok":true,"content":"x"}\n{"id":"p2","ok":true,"content":"y"}\n{"id":"p3","ok":tr');
    const result = await cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/ended with a partial line .*runs again/);
    const rows = readResults(out);
    expectUniqueIds(rows);
    expect(rows.map((row) => row.id).sort()).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
  });

  it('--retry-failed drops earlier failures and runs those prompts again', async () => {
    const input = promptsFile(3);
    const out = scratchFile('results.jsonl');
    writeFileSync(out, '{"id":"p1","ok":false,"error":{"kind":"upstream","message":"503"}}\n{"id":"p2","ok":true,"content":"kept"}\n');
    const skipped = await cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5']);
    expect(
      readResults(out)
        .map((row) => row.id)
        .sort(),
    ).toEqual(['p1', 'p2', 'p3']);
    expect(skipped.code).toBe(0);
    const retried = await cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5', '--retry-failed']);
    expect(retried.code).toBe(0);
    expect(retried.stderr).toContain('removed 1 failure line(s)');
    const rows = readResults(out);
    expectUniqueIds(rows);
    expect(rows.find((row) => row.id === 'p1')?.ok).toBe(true);
    expect(rows.find((row) => row.id === 'p2')?.content).toBe('kept');
  });

  it('stops without writing anything when every key is revoked, so a rerun with good keys does the work', async () => {
    const input = promptsFile(6);
    const out = scratchFile('results.jsonl');
    const result = await cli(['run', input, '--out', out, '--base-url', fake.baseURL, '--model', 'test/model'], {
      env: { OPENROUTER_API_KEYS: TEST_KEYS.revoked },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: .*disabled.*fix that and run the same command again/);
    expect(readResults(out)).toEqual([]);
    const fixed = await cli(['run', input, '--out', out, '--base-url', fake.baseURL, '--model', 'test/model'], {
      env: { OPENROUTER_API_KEYS: TEST_KEYS.healthy1 },
    });
    expect(fixed.code).toBe(0);
    expect(readResults(out)).toHaveLength(6);
  });

  it('draws a progress bar and the per-key health line on a terminal', async () => {
    const result = await cli(['run', promptsFile(6), '--out', scratchFile('results.jsonl'), '--fake', '--fake-latency-ms', '5'], {
      tty: true,
    });
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/\[█+\] 100% 6\/6 done · 0 failed/);
    expect(result.stderr).toMatch(/keys: north .*│ south .*│ east .*│ west/);
    expect(result.stderr).toContain('\x1b[J'); // redrawn in place
    expect(result.stderr).not.toContain('progress:');
  });

  it('ends with a health table as wide as the terminal at most', async () => {
    const result = await cli(['run', promptsFile(6), '--out', scratchFile('results.jsonl'), '--fake', '--fake-latency-ms', '5'], {
      tty: true,
      columns: 50,
    });
    expect(result.code).toBe(0);
    const table = result.stderr.slice(result.stderr.lastIndexOf('\nkey ') + 1, result.stderr.indexOf('\nqueued: ') + 1).split('\n');
    expect(table[0]).toMatch(/^key +state/);
    expect(table.slice(1, 5).map((line) => line.split(' ')[0])).toEqual(['north', 'south', 'east', 'west']);
    for (const line of table) expect([...line].length, line).toBeLessThanOrEqual(50);
  });

  it('stops admitting on the first signal, lets the prompts in flight finish, and resumes', async () => {
    const input = promptsFile(10);
    const out = scratchFile('results.jsonl');
    const stop = new AbortController();
    const running = cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '150', '-c', '2'], { signal: stop.signal });
    while (lineCount(out) === 0) await new Promise((wait) => setTimeout(wait, 10));
    stop.abort();
    const result = await running;
    expect(result.code).toBe(130);
    expect(result.stderr).toMatch(/stopping: no new prompts; waiting for \d in flight/);
    const rows = readResults(out);
    expectUniqueIds(rows);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.length).toBeLessThan(10);
    expect(rows.every((row) => row.ok)).toBe(true); // in-flight prompts finished, none aborted
    const resumed = await cli(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5']);
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toContain(`${rows.length} already in`);
    const all = readResults(out);
    expect(all).toHaveLength(10);
    expectUniqueIds(all);
  });

  it('on a terminal, the bar drops its ETA after Ctrl-C: stopping… while prompts finish, then stopped', async () => {
    const out = scratchFile('results.jsonl');
    const stop = new AbortController();
    const running = cli(['run', promptsFile(10), '--out', out, '--fake', '--fake-latency-ms', '150', '-c', '2'], {
      signal: stop.signal,
      tty: true,
    });
    while (lineCount(out) === 0) await new Promise((wait) => setTimeout(wait, 10));
    stop.abort();
    const result = await running;
    expect(result.code).toBe(130);
    const before = result.stderr.slice(0, result.stderr.indexOf('stopping: no new prompts'));
    const after = result.stderr.slice(before.length);
    expect(before).toMatch(/ · ETA (\d+s|--)/);
    expect(after).not.toContain('ETA');
    expect(after).toMatch(/done · 0 failed · 0 in flight · \d+\.\d\/s · stopped\n/);
  });
});

/** The status of a GET with exactly these headers (fetch will not send a made-up Host); a feed is cut at its head. */
function statusOf(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolveStatus, reject) => {
    httpGet(url, { headers, agent: false }, (response) => {
      resolveStatus(response.statusCode ?? 0);
      response.destroy();
    }).on('error', reject);
  });
}

async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolveListen) => probe.listen(0, '127.0.0.1', resolveListen));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolveClose) => probe.close(resolveClose));
  return port;
}

const dashboardToken = 'cli-dashboard-token-5f2e9b';

describe('openrouter-rx dashboard, in-process', () => {
  async function serve(argv: string[], env: Record<string, string> = {}) {
    const stop = new AbortController();
    const captured = capture({ signal: stop.signal, env });
    const running = runCli(['dashboard', '--fake', '--port', '0', ...argv], captured.io);
    while (!captured.stdout().includes('http://')) await new Promise((wait) => setTimeout(wait, 10));
    const url = /http:\/\/\S+\//.exec(captured.stdout())![0];
    const stopped = async () => {
      stop.abort();
      const code = await running;
      keep('dashboard stdout', captured.stdout());
      keep('dashboard stderr', captured.stderr());
      return { code, stdout: captured.stdout(), stderr: captured.stderr() };
    };
    return { url, stopped };
  }

  it('asks for OPENROUTER_RX_DASHBOARD_TOKEN on every route when it is set, without printing it', async () => {
    const { url, stopped } = await serve([], { OPENROUTER_RX_DASHBOARD_TOKEN: dashboardToken });
    for (const path of ['', 'health.json', 'events']) {
      expect([path, await statusOf(`${url}${path}`)]).toEqual([path, 401]);
      expect([path, await statusOf(`${url}${path}`, { authorization: 'Bearer not-the-token-at-all' })]).toEqual([path, 401]);
      expect([path, await statusOf(`${url}${path}`, { authorization: `Bearer ${dashboardToken}` })]).toEqual([path, 200]);
    }
    expect(await statusOf(`${url}?token=${dashboardToken}`)).toBe(303);
    const result = await stopped();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('?token=<OPENROUTER_RX_DASHBOARD_TOKEN>');
    expect(result.stdout + result.stderr).not.toContain(dashboardToken);
  });

  it('answers only to its own host names, and to those of --allowed-host', async () => {
    const { url, stopped } = await serve(['--allowed-host', 'dash.example.com,ops.example.com']);
    const port = new URL(url).port;
    expect(await statusOf(`${url}health.json`, { host: `evil.example:${port}` })).toBe(403);
    expect(await statusOf(`${url}health.json`, { host: `localhost:${port}` })).toBe(200);
    expect(await statusOf(`${url}health.json`, { host: `ops.example.com:${port}` })).toBe(200);
    expect(await statusOf(`${url}health.json`, { host: `127.0.0.1:${port}`, origin: 'http://evil.example' })).toBe(403);
    expect((await stopped()).code).toBe(0);
  });

  it.each([
    [
      ['dashboard', '--fake', '--allowed-host', 'https://dash.example.com/'],
      {},
      /--allowed-host: must be a host name such as dash\.example\.com/,
    ],
    [
      ['dashboard', '--fake'],
      { OPENROUTER_RX_DASHBOARD_TOKEN: 'short-secret' },
      /OPENROUTER_RX_DASHBOARD_TOKEN: must be at least 16 characters/,
    ],
    [
      ['run', 'examples/prompts.jsonl', '-o', 'x.jsonl', '--fake', '--dashboard-port', '4999'],
      { OPENROUTER_RX_DASHBOARD_TOKEN: 'short secret with spaces' },
      /OPENROUTER_RX_DASHBOARD_TOKEN: must be at least/,
    ],
  ])('refuses %j with a message naming the flag or variable, never quoting a token', async (argv, env, message) => {
    const result = await cli(argv, { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toContain('short');
    expect(existsSync(join(root, 'x.jsonl'))).toBe(false);
  });

  it('run --dashboard-port asks for the token too', async () => {
    const port = await freePort();
    const stop = new AbortController();
    const captured = capture({ signal: stop.signal, env: { OPENROUTER_RX_DASHBOARD_TOKEN: dashboardToken } });
    const running = runCli(
      [
        'run',
        promptsFile(6),
        '--out',
        scratchFile('results.jsonl'),
        '--fake',
        '--fake-latency-ms',
        '2000',
        '-c',
        '1',
        '--dashboard-port',
        String(port),
      ],
      captured.io,
    );
    while (!captured.stderr().includes('dashboard: http://')) await new Promise((wait) => setTimeout(wait, 10));
    const url = `http://127.0.0.1:${port}/`;
    expect(await statusOf(`${url}health.json`)).toBe(401);
    expect(await statusOf(`${url}health.json`, { authorization: `Bearer ${dashboardToken}` })).toBe(200);
    stop.abort();
    expect(await running).toBe(130);
    keep('run --dashboard-port stderr', captured.stderr());
    expect(captured.stdout() + captured.stderr()).not.toContain(dashboardToken);
  });

  it('serves the demo dashboard until stopped', async () => {
    const stop = new AbortController();
    const captured = capture({ signal: stop.signal });
    const running = runCli(['dashboard', '--fake', '--port', '0', '--rate', '20'], captured.io);
    while (!captured.stdout().includes('http://')) await new Promise((wait) => setTimeout(wait, 10));
    const url = /http:\/\/\S+/.exec(captured.stdout())![0];
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('openrouter-rx demo');
    const health = (await (await fetch(`${url}health.json`)).json()) as { keys: Array<{ label: string }> };
    expect(health.keys.map((key) => key.label)).toEqual(['alpha', 'beta', 'gamma', 'delta', 'omega']);
    stop.abort();
    expect(await running).toBe(0);
    expect(captured.stdout()).toContain('dashboard stopped');
  });
});

describe('the built executable (dist/cli.js)', () => {
  beforeAll(() => {
    if (!existsSync(builtCli)) throw new Error(`${builtCli} is missing: run \`npm run build\` first (npm test does)`);
  });

  interface Child {
    code: number | null;
    stdout: string;
    stderr: string;
  }

  function start(args: string[]) {
    const child = spawn(builtCli, args, { cwd: root, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const output = { stdout: '', stderr: '' };
    child.stdout.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
    const done = new Promise<Child>((resolveDone) =>
      child.on('close', (code) => {
        keep(`dist/cli.js ${args.join(' ')} stdout`, output.stdout);
        keep(`dist/cli.js ${args.join(' ')} stderr`, output.stderr);
        resolveDone({ code, ...output });
      }),
    );
    return { child, output, done };
  }

  async function untilLines(path: string, count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (lineCount(path) < count) {
      if (Date.now() > deadline) throw new Error(`fewer than ${count} result lines in ${path} after ${timeoutMs} ms`);
      await new Promise((wait) => setTimeout(wait, 10));
    }
  }

  it('is the package bin, with a shebang and the executable bit', () => {
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(resolve(root, manifest.bin['openrouter-rx']!)).toBe(builtCli);
    expect(readFileSync(builtCli, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    accessSync(builtCli, constants.X_OK);
  });

  it('runs the sample with --fake, shows plain progress without a terminal, and a rerun does no work twice', async () => {
    const out = scratchFile('results.jsonl');
    const first = await start(['run', 'examples/prompts.jsonl', '--out', out, '--fake']).done;
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/^progress: 24\/24 done/m);
    expect(first.stdout).toMatch(/24 of 24 prompt\(s\) have a result/);
    const rows = readResults(out);
    expect(rows).toHaveLength(24);
    expectUniqueIds(rows);
    const written = readFileSync(out, 'utf8');
    const again = await start(['run', 'examples/prompts.jsonl', '--out', out, '--fake']).done;
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('nothing to do');
    expect(readFileSync(out, 'utf8')).toBe(written);
  });

  it('on SIGINT stops admitting, finishes the prompts in flight, exits 130 with a valid file, and resumes', async () => {
    const input = promptsFile(12);
    const out = scratchFile('results.jsonl');
    const run = start(['run', input, '--out', out, '--fake', '--fake-latency-ms', '300', '-c', '2']);
    await untilLines(out, 1);
    run.child.kill('SIGINT');
    const stopped = await run.done;
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toMatch(/stopping: no new prompts/);
    expect(stopped.stderr).toMatch(/stopped: \d+ prompt\(s\) not run; run the same command again to resume/);
    const rows = readResults(out);
    expectUniqueIds(rows);
    expect(rows.every((row) => row.ok)).toBe(true);
    expect(rows.length).toBeLessThan(12);

    const resumed = await start(['run', input, '--out', out, '--fake', '--fake-latency-ms', '5']).done;
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toContain(`${rows.length} already in`);
    const all = readResults(out);
    expect(all).toHaveLength(12);
    expectUniqueIds(all);
  });

  it('on a second SIGINT aborts the prompts in flight at once, leaving whole lines only', async () => {
    const input = promptsFile(12);
    const out = scratchFile('results.jsonl');
    const run = start(['run', input, '--out', out, '--fake', '--fake-latency-ms', '2000', '-c', '3']);
    // Wait until it is under way: the first progress line is printed once prompts are admitted.
    while (!run.output.stderr.includes('progress:')) await new Promise((wait) => setTimeout(wait, 10));
    const signalledAt = Date.now();
    run.child.kill('SIGINT');
    await new Promise((wait) => setTimeout(wait, 100));
    run.child.kill('SIGINT');
    const stopped = await run.done;
    expect(Date.now() - signalledAt).toBeLessThan(1900); // sooner than the prompts could have finished
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toMatch(/aborting 3 prompt\(s\) in flight/);
    expect(readResults(out)).toEqual([]);
  });
});
