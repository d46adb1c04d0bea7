// The types of vitest.mjs: the runner class vitest loads from `test: { runner: 'evy/vitest' }`, and configure.
export { configure, type LeakPolicy, type TestingOptions } from './dist/testing/vitest.js';
declare const EvyVitestRunner: new (config: any) => any;
export default EvyVitestRunner;
