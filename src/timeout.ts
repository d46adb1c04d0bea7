// Timeout: eventlet's Timeout as an Error that starts when constructed and, when it fires, is thrown
// into the thread that created it at that thread's current (or next) evy wait.
import { brand } from './errors.js';
import { spawn, type GreenThread } from './greenthread.js';
import { current, rt } from './runtime.js';
import { checkFunction, checkSeconds } from './validate.js';

export class Timeout extends Error {
  code = 'ERR_EVY_TIMEOUT';
  /** The delay it was created with (null: never fires). */
  readonly seconds: number | null;
  /** What is thrown when it fires: the given error, else the Timeout itself. */
  readonly error: unknown;
  private thread: GreenThread | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(seconds?: number | null, error?: unknown) {
    const s = seconds === undefined || seconds === null ? null : seconds;
    // Checked before `error` is instantiated: a bad argument creates nothing.
    const ms = s === null ? 0 : checkSeconds(s);
    super(s === null ? 'timed out' : `timed out after ${s} second${s === 1 ? '' : 's'}`);
    this.name = 'Timeout';
    this.seconds = s;
    this.error = error === undefined ? this : typeof error === 'function' ? new (error as new () => unknown)() : error;
    if (s !== null) {
      this.thread = current();
      // Like Evy's timers: a pending Timeout never keeps the process alive.
      this.timer = rt.timers.setTimeout(fire, ms, this).unref();
    }
  }

  /** True while scheduled and neither fired nor cancelled. */
  get pending(): boolean {
    return this.timer !== null;
  }

  /** Prevents the Timeout from firing; if it fired but was not yet delivered, drops it. Idempotent. */
  cancel(): void {
    if (this.timer !== null) {
      rt.timers.clearTimeout(this.timer);
      this.timer = null;
    }
    const t = this.thread;
    if (t !== null) t._dropThrow(this.error);
    this.thread = null;
  }

  [Symbol.dispose](): void {
    this.cancel();
  }

  /** @internal */
  _fire(): void {
    this.timer = null;
    const t = this.thread;
    if (t === null || t.dead) return;
    // Parked: reject the waits now. Busy on a foreign await: deliver at its next evy wait.
    if (!t._interrupt(this.error)) t._queueThrow(this.error);
  }
}
brand(Timeout, 'Timeout');

function fire(t: Timeout): void {
  t._fire();
}

/** A Timeout that has already expired (for waits whose own deadline passed). */
export function expiredTimeout(seconds: number): Timeout {
  const t = new Timeout(null);
  (t as { seconds: number | null }).seconds = seconds;
  t.message = `timed out after ${seconds} second${seconds === 1 ? '' : 's'}`;
  return t;
}

/**
 * Runs `fn(...args)` in a child thread. At the deadline the child is killed (so the resources it owns are
 * destroyed) and, once it has finished, a Timeout is thrown here. Killing the caller kills the child too.
 */
export async function withTimeout<A extends unknown[], T>(
  seconds: number | null | undefined,
  fn: (...args: A) => T | PromiseLike<T>,
  ...args: A
): Promise<Awaited<T>> {
  const ms = seconds === null || seconds === undefined ? null : checkSeconds(seconds);
  checkFunction(fn);
  const child = spawn(fn, ...args);
  const timeout = expiredTimeout(seconds ?? 0);
  let expired = false;
  const timer =
    ms === null
      ? null
      : rt.timers
          .setTimeout(() => {
            expired = true;
            void child.kill(timeout);
          }, ms)
          .unref();
  try {
    const value = await child.wait();
    if (expired) throw timeout; // the child caught the kill and returned: still too late
    return value;
  } catch (e) {
    // Expired, and the child died of the kill: whatever the kill made it throw (the AbortError of a fetch
    // on its signal, a destroyed socket's error), the caller gets the Timeout.
    if (expired && child.dead) throw timeout;
    if (e !== timeout && !child.dead) await child.kill(e); // the caller was killed or interrupted
    throw e;
  } finally {
    if (timer !== null) rt.timers.clearTimeout(timer);
  }
}
