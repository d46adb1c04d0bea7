import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Patching is process-wide: every test file runs in its own child process.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
