import { rt } from './runtime.js';
import { secondsError } from './validate.js';
import { block, wakeUndefined, WaitList } from './waiter.js';

// sleep(0) must let I/O run, so it waits for a loop turn (setImmediate); one immediate per turn wakes
// every thread that yielded in it, so a hundred yielding threads pay for one turn, not a hundred.
let idle = new WaitList();
let idleScheduled = false;

function flushIdle(): void {
  const batch = idle;
  idle = new WaitList();
  idleScheduled = false;
  for (let w = batch.shift(); w !== undefined; w = batch.shift()) w.wake(undefined);
}

/**
 * Parks the calling green thread for `seconds` (fractions allowed). `sleep(0)` yields to every other ready
 * thread and to pending I/O callbacks. An evy wait: a kill or a Timeout interrupts it.
 */
export function sleep(seconds = 0): Promise<void> {
  const e = secondsError(seconds);
  if (e !== undefined) return Promise.reject(e);
  const w = block<void>('sleep');
  if (w instanceof Promise) return w;
  if (seconds === 0) {
    if (!idleScheduled) {
      idleScheduled = true;
      rt.timers.setImmediate(flushIdle);
    }
    return w.park(idle);
  }
  return w.park(null, seconds * 1000, wakeUndefined);
}
