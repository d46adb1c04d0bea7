// evy.debug: see what green threads are doing (thread dump), what blocks the loop (blocking detection), and
// what a piece of code left open (leak report). Everything is opt-in.
import { blockingDetection, blockingDetectionStatus } from './blocking.js';
import { assertNoLeaks, leaks } from './leaks.js';
import { describeResource, dumpOnSignal, formatHub, formatThreads, threads, trackThreads } from './threads.js';

export { blockingDetection, blockingDetectionStatus, type BlockReport, type BlockingOptions } from './blocking.js';
export { assertNoLeaks, leaks, type Leak, type LeakReport, type LeaksOptions } from './leaks.js';
export { describeResource, dumpOnSignal, formatHub, formatThreads, threads, trackThreads, type ThreadReport } from './threads.js';

/** The debug namespace: `evy.debug`. */
export const debug = {
  blockingDetection,
  blockingDetectionStatus,
  formatThreads,
  formatHub,
  threads,
  trackThreads,
  dumpOnSignal,
  leaks,
  assertNoLeaks,
  describeResource,
};
