// StrykerJS over the core primitives, with their fast unit test files only (vitest.stryker.config.ts).
// Not part of `npm test` or CI: `npm run stryker` (docs/mutation.md has the scores and the decisions).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.stryker.config.ts', related: false },
  mutate: [
    'src/queue.ts',
    'src/semaphore.ts',
    'src/event.ts',
    'src/greenpool.ts',
    'src/greenpile.ts',
    'src/timeout.ts',
    'src/waiter.ts',
    'src/ownership.ts',
  ],
  coverageAnalysis: 'perTest',
  concurrency: 2,
  // Timers in these tests are real: a mutant that breaks a wake-up makes a test hang. Stryker's limit is the
  // test's own time x 1.5 + this; a hung mutant then costs a restart of the test process, so keep it short.
  timeoutMS: 5000,
  // Module-level code (a static mutant) would need every test for each mutant: skipped, and reported as such.
  ignoreStatic: true,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  // Not copied into the sandbox: other runs' sandboxes, reports, the test-runner projects.
  ignorePatterns: ['/.stryker-tmp*', '/reports', '/.tmp-runners-*', '/dist'],
  cleanTempDir: 'always',
};
