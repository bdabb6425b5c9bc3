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

/** Labels of every test key that occurs in `text` (so a failing assertion names labels only). */
export function leakedKeyLabels(text: string): TestKeyLabel[] {
  return ALL_TEST_KEYS.filter(([, key]) => text.includes(key)).map(([label]) => label);
}
