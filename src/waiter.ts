// The one blocking mechanism every evy primitive uses. A thread that blocks creates a Waiter; the waiter
// is registered on the thread (so a kill or a Timeout can reject it) and, usually, on the primitive's
// WaitList (so a put/release/send can wake it). Whoever settles it first wins; the rest is cleanup.
import { current, rt } from './runtime.js';
import type { GreenThread } from './greenthread.js';

const noop = (): void => {};
const NONE: readonly Waiter[] = Object.freeze([]);

export class Waiter<T = any> {
  thread: GreenThread;
  /** What the thread is parked on, for people reading a thread dump. */
  label: string;
  /** A value the waiter carries (a putter's item). */
  value: unknown = undefined;
  list: WaitList | null = null;
  promise: Promise<T> | null = null;
  private res: ((v: T) => void) | null = null;
  private rej: ((e: unknown) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private onTimeout: ((w: Waiter<T>) => void) | null = null;

  constructor(thread: GreenThread, label: string) {
    this.thread = thread;
    this.label = label;
  }

  get settled(): boolean {
    return this.res === null;
  }

  /** Parks on `list` (if any) for at most `ms` milliseconds; `onTimeout` then decides the outcome. */
  park(list: WaitList | null, ms?: number, onTimeout?: (w: Waiter<T>) => void): Promise<T> {
    const p = new Promise<T>((res, rej) => {
      this.res = res;
      this.rej = rej;
    });
    this.promise = p;
    const t = this.thread;
    if (t._parked === null) t._parked = this;
    else (t._parkedMore ??= new Set()).add(this);
    if (list !== null) list.push(this);
    if (ms !== undefined) {
      this.onTimeout = onTimeout!;
      this.timer = rt.timers.setTimeout(fireTimeout, ms, this);
    }
    return p;
  }

  wake(value: T): void {
    const res = this.res;
    if (res === null) return;
    this.detach();
    res(value);
  }

  fail(error: unknown): void {
    const rej = this.rej;
    if (rej === null) return;
    this.detach();
    rej(error);
  }

  /** Rejects on behalf of a kill or a Timeout. The promise is marked handled: code that created a wait
   *  and never awaited it (it threw first) must not crash the process with an unhandled rejection. */
  interrupt(error: unknown): void {
    if (this.rej === null) return;
    this.promise!.catch(noop);
    this.fail(error);
  }

  private detach(): void {
    this.res = this.rej = null;
    if (this.list !== null) this.list.remove(this);
    if (this.timer !== null) {
      rt.timers.clearTimeout(this.timer);
      this.timer = null;
    }
    const t = this.thread;
    if (t._parked === this) t._parked = null;
    else t._parkedMore?.delete(this);
  }
}

function fireTimeout(w: Waiter): void {
  w['timer'] = null;
  w['onTimeout']!(w);
}

/** FIFO of waiters with O(1) removal (lazy: a removed waiter is skipped when reached). */
export class WaitList {
  private items: (Waiter | undefined)[] = [];
  private head = 0;
  size = 0;

  push(w: Waiter): void {
    w.list = this;
    this.items.push(w);
    this.size++;
  }

  /** Removes and returns the oldest waiter still waiting. */
  shift(): Waiter | undefined {
    if (this.size === 0) return undefined; // no allocation on the common empty case
    const items = this.items;
    while (this.head < items.length) {
      const w = items[this.head];
      items[this.head++] = undefined;
      if (w !== undefined && w.list === this) {
        w.list = null;
        this.size--;
        this.compact();
        return w;
      }
    }
    this.items = [];
    this.head = 0;
    this.size = 0;
    return undefined;
  }

  remove(w: Waiter): void {
    if (w.list !== this) return;
    w.list = null;
    if (--this.size === 0) {
      this.items = [];
      this.head = 0;
    }
  }

  /** Takes every waiter out, oldest first (no allocation when there is none: the common case). */
  drain(): readonly Waiter[] {
    if (this.size === 0) return NONE;
    const out: Waiter[] = [];
    for (let w = this.shift(); w !== undefined; w = this.shift()) out.push(w);
    return out;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * Entry point of every evy wait: if the calling thread was killed (sticky) or has a Timeout due, reject at
 * once; otherwise park a new waiter. Returns the waiter, or the rejected promise.
 */
export function block<T>(label: string): Waiter<T> | Promise<never> {
  const t = current();
  const e = t._takeInterrupt();
  return e === undefined ? new Waiter<T>(t, label) : Promise.reject(e);
}

/** A wait that is already satisfied: still throws in a killed thread (cancellation is sticky). */
export function ready<T>(value: T): Promise<T> {
  const e = current()._takeInterrupt();
  return e === undefined ? Promise.resolve(value) : Promise.reject(e);
}

/** A wait whose outcome is already a failure (still the kill error first in a killed thread). */
export function readyReject(error: unknown): Promise<never> {
  const e = current()._takeInterrupt();
  return Promise.reject(e === undefined ? error : e);
}

/** Throws the calling thread's pending kill or Timeout, for synchronous entry points. */
export function checkInterrupt(): void {
  const e = current()._takeInterrupt();
  if (e !== undefined) throw e;
}

export function wakeUndefined(w: Waiter): void {
  w.wake(undefined);
}

export function wakeFalse(w: Waiter): void {
  w.wake(false);
}
