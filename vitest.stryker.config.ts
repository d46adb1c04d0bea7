// The fast unit tests of the core primitives, for StrykerJS (stryker.config.mjs); not used by `npm test`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/queue.test.ts',
      'test/event-semaphore.test.ts',
      'test/greenpool.test.ts',
      'test/greenthread.test.ts',
      'test/timeout.test.ts',
      'test/ownership.test.ts',
      'test/boundaries.test.ts',
      'test/wait-labels.test.ts',
      'test/waiter.test.ts',
    ],
    // Stryker runs vitest in one worker thread; these files patch nothing and pass sharing it (isolate: false
    // saves a fresh worker per file and per mutant).
    pool: 'threads',
    isolate: false,
    testTimeout: 20_000,
  },
});
