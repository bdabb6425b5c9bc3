import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', testing: 'src/testing.ts', redis: 'src/redis/index.ts' },
  // ioredis is an optional peer: users who never import `openrouter-rx/redis` never install it.
  external: ['ioredis'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // Shared chunks: the entries share one copy of the error classes, so `instanceof` works across them.
  splitting: true,
  treeshake: true,
});
