import { EvyError, outOfRange } from './errors.js';
import { booleanError, checkBoolean, checkCount, checkFunction, checkOptionalSeconds, optionalSecondsError, toMs } from './validate.js';
import { current } from './runtime.js';
import { Waiter, wakeFalse, WaitList } from './waiter.js';

/**
 * A counting semaphore. `acquire()` resolves `true`, or `false` when non-blocking or timed out (Python's
 * threading semantics). A release hands the permit straight to the longest waiter (FIFO, no barging).
 */
export class Semaphore {
  protected count: number;
  protected waiters = new WaitList();

  constructor(value = 1) {
    this.count = checkCount(value, 'value');
  }

  acquire(blocking = true, timeout?: number | null): Promise<boolean> {
    const bad = booleanError(blocking, 'blocking') ?? optionalSecondsError(timeout);
    if (bad !== undefined) return Promise.reject(bad);
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    if (this.count > 0 && this.waiters.size === 0) {
      this.count--;
      return Promise.resolve(true);
    }
    if (!blocking) return Promise.resolve(false);
    return new Waiter<boolean>(t, 'Semaphore.acquire').park(this.waiters, toMs(timeout), wakeFalse);
  }

  release(): void {
    const w = this.waiters.shift();
    if (w !== undefined) w.wake(true);
    else this.count++;
  }

  /** Runs `fn` holding one permit (Python's `with sem:`). */
  run<T>(fn: () => T | PromiseLike<T>): Promise<Awaited<T>> {
    return holding(this, fn);
  }

  /** Permits available now (negative after a pool shrank below its running count). */
  get counter(): number {
    return this.count;
  }

  /** Permits minus the threads waiting for one. */
  get balance(): number {
    return this.count - this.waiters.size;
  }

  /** Threads blocked in acquire(). */
  get waiting(): number {
    return this.waiters.size;
  }

  locked(): boolean {
    return this.count <= 0;
  }

  bounded(): boolean {
    return false;
  }

  /** @internal Takes a permit if one is free and nobody queues for it. */
  _tryAcquire(): boolean {
    if (this.count > 0 && this.waiters.size === 0) {
      this.count--;
      return true;
    }
    return false;
  }

  /** @internal Adds `delta` permits (may go negative), waking waiters while permits are free. */
  _adjust(delta: number): void {
    this.count += delta;
    while (this.count > 0) {
      const w = this.waiters.shift();
      if (w === undefined) break;
      this.count--;
      w.wake(true);
    }
  }
}

/** A Semaphore whose release past its initial value is an error. */
export class BoundedSemaphore extends Semaphore {
  readonly limit: number;

  constructor(value = 1) {
    super(value);
    this.limit = value;
  }

  override release(): void {
    if (this.waiters.size === 0 && this.count >= this.limit) {
      throw new EvyError(`BoundedSemaphore released too many times (limit ${this.limit})`, 'ERR_EVY_SEMAPHORE_OVER_RELEASED');
    }
    super.release();
  }
}

/** A semaphore whose acquire blocks at 0 and whose release blocks at `limit` (eventlet's CappedSemaphore). */
export class CappedSemaphore {
  private lower: Semaphore;
  private upper: Semaphore;

  constructor(count: number, limit: number) {
    checkCount(count, 'count');
    checkCount(limit, 'limit');
    if (count > limit) throw outOfRange('count', `an integer <= limit (${limit})`, count);
    this.lower = new Semaphore(count);
    this.upper = new Semaphore(limit - count);
  }

  // As eventlet: move the permit to the other side first, then wait on this side; undo on failure.
  async acquire(blocking = true, timeout?: number | null): Promise<boolean> {
    // Checked before a permit moves to the other side: a bad argument changes nothing.
    checkWaitArgs(blocking, timeout);
    if (!blocking && this.lower.locked()) return false;
    this.upper.release();
    return this.settle(this.lower.acquire(blocking, timeout), this.upper);
  }

  /** Blocks while the count is at its limit; `false` when non-blocking or timed out. */
  async release(blocking = true, timeout?: number | null): Promise<boolean> {
    checkWaitArgs(blocking, timeout);
    if (!blocking && this.upper.locked()) return false;
    this.lower.release();
    return this.settle(this.upper.acquire(blocking, timeout), this.lower);
  }

  private async settle(acquired: Promise<boolean>, moved: Semaphore): Promise<boolean> {
    let ok = false;
    try {
      ok = await acquired;
      return ok;
    } finally {
      if (!ok) moved._adjust(-1);
    }
  }

  run<T>(fn: () => T | PromiseLike<T>): Promise<Awaited<T>> {
    return holding(this, fn);
  }

  get counter(): number {
    return this.lower.counter;
  }

  get balance(): number {
    return this.lower.balance - this.upper.balance;
  }

  locked(): boolean {
    return this.lower.locked();
  }

  bounded(): boolean {
    return this.upper.locked();
  }
}


/** Runs `fn` holding one permit of `sem` (Python's `with sem:`), releasing it however fn ends. */
async function holding<T>(sem: { acquire(): Promise<boolean>; release(): unknown }, fn: () => T | PromiseLike<T>): Promise<Awaited<T>> {
  checkFunction(fn);
  await sem.acquire();
  try {
    return await fn();
  } finally {
    await sem.release();
  }
}

function checkWaitArgs(blocking: unknown, timeout: unknown): void {
  checkBoolean(blocking, 'blocking');
  checkOptionalSeconds(timeout);
}
