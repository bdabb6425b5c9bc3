/**
 * Every API key string the test suites use, in one place, so that `scripts/scan-secrets.mjs`
 * (which parses this file for `sk-or-v1-...` string literals) can check that none of them ever
 * reaches captured test output. Add a key here before using it in a test; never build key text
 * at run time (the scanner only sees literals written in this file).
 *
 * The keys are fake: they only authenticate against the fake OpenRouter of `openrouter-rx/testing`.
 */
export const TEST_KEYS = {
  // test/fake-server.test.ts, test/transport.test.ts
  alpha: 'sk-or-v1-test-alpha',
  beta: 'sk-or-v1-test-beta',
  gamma: 'sk-or-v1-test-gamma',
  nobody: 'sk-or-v1-test-nobody',
  // marbles/attempt-timeouts.spec.ts, marbles/first-token-gating.spec.ts, marbles/mid-stream-restart.spec.ts
  timeouts1: 'sk-or-v1-timeouts-1',
  gating1: 'sk-or-v1-gating-1',
  restart1: 'sk-or-v1-restart-1',
  restart2: 'sk-or-v1-restart-2',
  // marbles/model-fallback.spec.ts
  fallback1: 'sk-or-v1-fallback-1',
  fallback2: 'sk-or-v1-fallback-2',
  // Keys the suites use through the code they run (test/cli.test.ts, test/examples.test.ts):
  // src/cli/fake.ts, src/cli/dashboard-demo.ts, examples/demo.ts, examples/support/endpoint.ts.
  // Copies: keep them in step with those files, or the scan stops looking for them.
  cliFakeNorth: 'sk-or-v1-cli-fake-north-0001',
  cliFakeSouth: 'sk-or-v1-cli-fake-south-0002',
  cliFakeEast: 'sk-or-v1-cli-fake-east-0003',
  cliFakeWest: 'sk-or-v1-cli-fake-west-0004',
  dashDemoAlpha: 'sk-or-v1-dash-demo-alpha',
  dashDemoBeta: 'sk-or-v1-dash-demo-beta',
  dashDemoGamma: 'sk-or-v1-dash-demo-gamma',
  dashDemoDelta: 'sk-or-v1-dash-demo-delta',
  dashDemoOmega: 'sk-or-v1-dash-demo-omega',
  demoAlpha: 'sk-or-v1-demo-alpha',
  demoBeta: 'sk-or-v1-demo-beta',
  demoGamma: 'sk-or-v1-demo-gamma',
  demoDelta: 'sk-or-v1-demo-delta',
  demoOmega: 'sk-or-v1-demo-omega',
  exampleKeyOne: 'sk-or-v1-example-key-one',
  exampleKeyTwo: 'sk-or-v1-example-key-two',
  // test/angular-app.test.ts, through the backend of examples/angular-app/server.mjs (a copy: keep in step)
  angularAppAlpha: 'sk-or-v1-angular-app-alpha',
  angularAppBeta: 'sk-or-v1-angular-app-beta',
  angularAppGamma: 'sk-or-v1-angular-app-gamma',
  // test/cli.test.ts: as long as a real OpenRouter key (sk-or-v1- and 64 characters)
  cliLongKey: 'sk-or-v1-7f3c9a1e5b2z4f6a8c0e1b3z5f7a9c2e4b6z8f0a1c3e5b7z9f2a4c6e8b0z1f3a',
  // test/pool.properties.test.ts (only ever handed to a fake transport)
  prop1: 'sk-or-v1-test-prop-1-c0ffee',
  prop2: 'sk-or-v1-test-prop-2-c0ffee',
  prop3: 'sk-or-v1-test-prop-3-c0ffee',
  prop4: 'sk-or-v1-test-prop-4-c0ffee',
  prop5: 'sk-or-v1-test-prop-5-c0ffee',
  prop6: 'sk-or-v1-test-prop-6-c0ffee',
  // test/pool.integration.test.ts
  quota1: 'sk-or-v1-test-quota-1-5a1e7b',
  quota2: 'sk-or-v1-test-quota-2-5a1e7b',
  quota3: 'sk-or-v1-test-quota-3-5a1e7b',
  quota4: 'sk-or-v1-test-quota-4-5a1e7b',
  revoked: 'sk-or-v1-test-revoked-d34d',
  healthy1: 'sk-or-v1-test-healthy-1-9f0a',
  healthy2: 'sk-or-v1-test-healthy-2-9f0a',
  capped: 'sk-or-v1-test-capped-7c4b',
  credit: 'sk-or-v1-test-credit-3e8d',
  // test/secrets.test.ts
  secretAuth: 'sk-or-v1-test-secret-auth-41b7',
  secretCredits: 'sk-or-v1-test-secret-credits-42c8',
  secretCap: 'sk-or-v1-test-secret-cap-43d9',
  secretRate: 'sk-or-v1-test-secret-rate-44ea',
  secretGood: 'sk-or-v1-test-secret-good-45fb',
  // test/unhandled-rejection.test.ts (through test/helpers/abort-probe.ts)
  abortProbe: 'sk-or-v1-test-abort-probe-6d2e',
  // test/secrets.test.ts (echoedPrefix in test/edges/ too): OpenRouter-shaped keys (`sk-or-v1-` and 64 characters), whose first 20
  // characters are distinctive enough that an echo of them alone is a leak too.
  paddedNewline: 'sk-or-v1-96ec826c3fcz34d86abd327z934da5cf4f1z88ae50a2ccezfe1ef27f733zfd68',
  paddedSpace: 'sk-or-v1-7f8a00fba26z3b193a5ad4cz1aae786fd0azb2473c1911ez6702f03e332za9f6',
  echoedPrefix: 'sk-or-v1-aa1c799b008ze411e8a2a9azcb3b068b4c2z56c72fddf0czd6775a0a89fz6566',
  // test/transport.test.ts: keys whose end begins their secret again, its first 16 characters or its first one.
  loopingTail: 'sk-or-v1-5e0b7z21c9d4f6a83f9a1c7e5b2d4z6081a3c5e7f9b1d3e55e0b7z21c9d4f6a8',
  tailBeginsSecret: 'sk-or-v1-b7d20e94c1fz3a58e6170d2c94bf83a1e5z7c0d94b26f18a3e5c7d90b2f4a6eb',
} as const;

export type TestKeyLabel = keyof typeof TEST_KEYS;

/** Every key, with its label: what a test searches output for (report the label, never the key). */
export const ALL_TEST_KEYS: ReadonlyArray<readonly [label: TestKeyLabel, key: string]> = Object.entries(TEST_KEYS) as Array<
  [TestKeyLabel, string]
>;

/** The label of a key string, for reporting a leak without printing the key. */
export function labelOfKey(key: string): string | undefined {
  return ALL_TEST_KEYS.find(([, candidate]) => candidate === key)?.[0];
}

/**
 * The library redacts any echo of a key's first 20 characters or more, and of its secret's first 16
 * after `sk-or-v1-` (src/core/redact.ts). For an OpenRouter-shaped key (`sk-or-v1-` and 64 hex)
 * those are distinctive, so a search looks for them instead of the whole key: it finds partial
 * echoes too. The shorter test
 * keys share their starts (`sk-or-v1-test-secret…`), so they are searched for whole.
 * scripts/scan-secrets.mjs applies the same rule.
 */
const ECHO_PREFIX_LENGTH = 20;
// Real keys are 64 hex digits; the test keys carry a `z` now and then, so that no tracked file holds
// something a secret scanner takes for a real key.
const OPENROUTER_KEY_SHAPE = /^sk-or-v1-[0-9a-z]{64}$/;

/** The secret after `sk-or-v1-` is key text on its own too, from its first 16 characters on (see `DISTINCTIVE_SECRET_LENGTH`). */
const SECRET_ECHO_LENGTH = 16;

function searchTextsOf(key: string): string[] {
  if (!OPENROUTER_KEY_SHAPE.test(key)) return [key];
  const secretStart = 'sk-or-v1-'.length;
  return [key.slice(0, ECHO_PREFIX_LENGTH), key.slice(secretStart, secretStart + SECRET_ECHO_LENGTH)];
}

/** Labels of every test key that occurs in `text`, whole or as a partial echo (so a failing assertion names labels only). */
export function leakedKeyLabels(text: string): TestKeyLabel[] {
  return ALL_TEST_KEYS.filter(([, key]) => searchTextsOf(key).some((search) => text.includes(search))).map(([label]) => label);
}
