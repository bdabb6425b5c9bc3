import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Building the Angular example (npm ci, ng build) takes both cores for a minute or two: it runs
 * first, alone, so that the timing-sensitive suites never share the machine with it.
 */
const BROWSER_APP = 'test/angular-app.test.ts';
/**
 * The soak runs last, alone: beside the dashboard's Chromium its process was once starved for
 * seconds, every attempt in flight timed out, and the healthy models' breakers stayed open past
 * the requests' modelWaitMs (attempt timeouts still count time the client's own event loop was
 * blocked). It tests the guarantees under network faults, not under a starved host.
 */
const SOAK = 'test/soak.test.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Everything the suite prints is kept, so scripts/scan-secrets.mjs can prove no key leaked.
    setupFiles: ['test/helpers/capture-output.ts'],
    reporters: ['default', ['json', { outputFile: 'test-output/vitest.json' }]],
    projects: [
      { extends: true, test: { name: 'browser-app', include: [BROWSER_APP], sequence: { groupOrder: 0 } } },
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/**/*.test.ts', 'marbles/**/*.spec.ts'],
          exclude: [...configDefaults.exclude, BROWSER_APP, SOAK],
          sequence: { groupOrder: 1 },
        },
      },
      { extends: true, test: { name: 'soak', include: [SOAK], sequence: { groupOrder: 2 } } },
    ],
  },
});
