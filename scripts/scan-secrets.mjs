#!/usr/bin/env node
/**
 * Fails (exit 1) if any test API key appears in any file under test-output/ (the captured test
 * output of test/helpers/capture-output.ts, vitest's reports, and whatever else tests write there).
 *
 * The keys are the `sk-or-v1-...` string literals of test/helpers/test-keys.ts, trimmed: a literal
 * written with surrounding whitespace (`' sk-or-v1-...\n'`) is searched for as the key the library
 * sends and redacts. For an OpenRouter-shaped key (`sk-or-v1-` and 64 hex) the scan looks for its
 * first 20 characters, and for the first 16 characters of its secret after `sk-or-v1-`, so a
 * partial echo counts as a leak too: the library redacts any echo that long
 * (src/transport/redact.ts; test/helpers/test-keys.ts searches the same way). A leak is
 * reported by file name and the key's label (its property name there) and index, never by the key.
 *
 * Usage: node scripts/scan-secrets.mjs [output-dir]   (default: test-output)
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const keysFile = join(root, 'test', 'helpers', 'test-keys.ts');
const outputDir = resolve(root, process.argv[2] ?? 'test-output');

/** Characters of a key's start that the library treats as key text (DISTINCTIVE_PREFIX_LENGTH). */
const ECHO_PREFIX_LENGTH = 20;
/** Characters of the secret after `sk-or-v1-` that are key text on their own (DISTINCTIVE_SECRET_LENGTH). */
const SECRET_ECHO_LENGTH = 16;
// Real keys are 64 hex digits; the test keys carry a `z` now and then, so that no tracked file holds
// something a secret scanner takes for a real key.
const OPENROUTER_KEY_SHAPE = /^sk-or-v1-[0-9a-z]{64}$/;

/** `label: 'sk-or-v1-...'` entries, plus any other `sk-or-v1-...` literal (labelled by index). */
function loadKeys() {
  const source = readFileSync(keysFile, 'utf8');
  const keys = [];
  const seen = new Set();
  // Whitespace, written or escaped, around the key inside the quotes is not part of the key.
  const padding = String.raw`(?:\s|\\[nrt])*`;
  const literal = new RegExp(String.raw`(['"\x60])${padding}(sk-or-v1-[A-Za-z0-9-]+)${padding}\1`, 'g');
  for (const match of source.matchAll(literal)) {
    const key = match[2];
    if (seen.has(key)) continue;
    seen.add(key);
    // The property name just before the literal, if it is written as `name: 'sk-or-v1-...'`.
    const before = source.slice(Math.max(0, match.index - 80), match.index);
    const label = /([A-Za-z_$][\w$]*)\s*:\s*$/.exec(before)?.[1];
    const needles = OPENROUTER_KEY_SHAPE.test(key)
      ? [key.slice(0, ECHO_PREFIX_LENGTH), key.slice('sk-or-v1-'.length, 'sk-or-v1-'.length + SECRET_ECHO_LENGTH)]
      : [key];
    keys.push({ needles, label: label ?? `#${keys.length}`, index: keys.length });
  }
  return keys;
}

function listFiles(dir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...listFiles(path));
    else if (entry.isFile() || (entry.isSymbolicLink() && statSync(path).isFile())) files.push(path);
  }
  return files;
}

const keys = loadKeys();
if (keys.length === 0) {
  console.error(`scan-secrets: no sk-or-v1-... literals found in ${relative(root, keysFile)}; refusing to pass an empty scan`);
  process.exit(1);
}
if (!existsSync(outputDir)) {
  console.error(
    `scan-secrets: ${relative(root, outputDir) || outputDir} does not exist; run the tests first (the capture setup file writes it)`,
  );
  process.exit(1);
}

const files = listFiles(outputDir);
if (!files.some((file) => /(^|[\\/])captured-\d+\.log$/.test(file))) {
  console.error(
    `scan-secrets: no captured-<pid>.log under ${relative(root, outputDir) || outputDir}/; is test/helpers/capture-output.ts in vitest's setupFiles?`,
  );
  process.exit(1);
}
const leaks = [];
for (const file of files) {
  // Bytes, not text: a key is ASCII, so it is found in any encoding that keeps ASCII as is.
  const content = readFileSync(file);
  for (const { needles, label, index } of keys) {
    if (needles.some((needle) => content.includes(needle))) leaks.push(`${relative(root, file)}: test key "${label}" (#${index})`);
  }
}

if (leaks.length > 0) {
  console.error(`scan-secrets: ${leaks.length} test key occurrence${leaks.length === 1 ? '' : 's'} in test output:`);
  for (const leak of leaks) console.error(`  ${leak}`);
  process.exit(1);
}
console.log(
  `scan-secrets: ${files.length} file${files.length === 1 ? '' : 's'} under ${relative(root, outputDir)}/, ${keys.length} keys, no leak`,
);
