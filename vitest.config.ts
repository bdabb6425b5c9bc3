import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'marbles/**/*.spec.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Everything the suite prints is kept, so scripts/scan-secrets.mjs can prove no key leaked.
    setupFiles: ['test/helpers/capture-output.ts'],
    reporters: ['default', ['json', { outputFile: 'test-output/vitest.json' }]],
  },
});
