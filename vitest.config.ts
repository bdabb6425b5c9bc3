import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Building the Angular example (npm ci, ng build) takes both cores for a minute or two: it runs
 * first, alone, so that the timing-sensitive suites never share the machine with it.
 */
const BROWSER_APP = 'test/angular-app.test.ts';

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
          exclude: [...configDefaults.exclude, BROWSER_APP],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
