import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    runner: 'evy/vitest', // the one line: each test runs in a green thread, killed at its timeout
    include: ['test/**/*.test.mjs'],
  },
});
