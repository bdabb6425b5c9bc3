import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: {
      index: 'src/index.ts',
      testing: 'src/testing/index.ts',
      redis: 'src/redis/index.ts',
      dashboard: 'src/dashboard/index.ts',
      otel: 'src/otel/index.ts',
    },
    // Optional peers: users who never import `openrouter-rx/redis` (or `/otel`) never install ioredis
    // (or @opentelemetry/api).
    external: ['ioredis', '@opentelemetry/api'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    // Keep the CLI's files: the second build below writes them, in parallel with this one.
    clean: ['!cli.js', '!cli.js.map'],
    target: 'node20',
    // Shared chunks: the entries share one copy of the error classes, so `instanceof` works across them.
    splitting: true,
    treeshake: true,
  },
  {
    // The `openrouter-rx` executable: ESM only, no types, one self-contained file with its shebang.
    entry: { cli: 'src/cli/main.ts' },
    external: ['ioredis'],
    format: ['esm'],
    dts: false,
    sourcemap: true,
    clean: false,
    target: 'node20',
    splitting: false,
    treeshake: true,
    banner: { js: '#!/usr/bin/env node' },
  },
]);
