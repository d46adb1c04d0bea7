// `test: { runner: 'evy/vitest' }`: vitest's default runner, each test in a green thread (src/testing/vitest.ts).
// vitest 4.1 has the runner class and the task accessors on its main entry and deprecates vitest/runners and
// vitest/suite, which vitest 3.2 needs: this file picks the right ones (a top-level await, so ESM only,
// as vitest itself is).
import * as vitest from 'vitest';
import { createRunner } from './dist/testing/vitest.js';

const R = vitest.TestRunner;
const api =
  R !== undefined && typeof R.getTestFn === 'function'
    ? // 4.1's TestRunner.setTestFn is its getFn (a slip): setFn null makes the runner's runTask() run each test.
      { Base: R, getFn: R.getTestFn, setFn: null, getHooks: R.getSuiteHooks }
    : await (async () => {
        const [{ VitestTestRunner }, suite] = await Promise.all([import('vitest/runners'), import('vitest/suite')]);
        return { Base: VitestTestRunner, getFn: suite.getFn, setFn: suite.setFn, getHooks: suite.getHooks };
      })();

export default createRunner(api);
export { configure } from './dist/testing/vitest.js';
