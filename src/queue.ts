// Queues between green threads: eventlet's LightQueue, Queue, PriorityQueue and LifoQueue.
// maxsize undefined/null/negative: unbounded; 0: a channel (put waits until a getter takes the item).
import { Empty, EvyError, Full, invalidArgType, QueueClosed } from './errors.js';
import { Deque } from './deque.js';
import { current } from './runtime.js';
import { checkBoolean, checkOptionalSeconds } from './validate.js';
import { ready, Waiter, WaitList } from './waiter.js';

function parseMaxsize(maxsize: unknown): number {
  if (maxsize === undefined || maxsize === null) return Infinity;
  if (typeof maxsize !== 'number' || Number.isNaN(maxsize)) throw invalidArgType('maxsize', 'a number, null or undefined', maxsize);
  if (maxsize < 0) return Infinity;
  if (!Number.isInteger(maxsize) && maxsize !== Infinity) throw invalidArgType('maxsize', 'an integer', maxsize);
  return maxsize;
}

function failFull(w: Waiter): void {
  w.fail(new Full(`queue is full (put timed out)`));
}

function failEmpty(w: Waiter): void {
  w.fail(new Empty(`queue is empty (get timed out)`));
}

/** A queue without task tracking (no taskDone/join). */
export class LightQueue<T = unknown> {
  protected max: number;
  protected getters = new WaitList();
  protected putters = new WaitList();
  private isClosed = false;

  constructor(maxsize?: number | null) {
    this.max = parseMaxsize(maxsize);
    this._init();
  }

  /** The bound (Infinity when unbounded, 0 for a channel). */
  get maxsize(): number {
    return this.max;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  qsize(): number {
    return this._qsize();
  }

  empty(): boolean {
    return this._qsize() === 0;
  }

  /** A channel is always both empty and full. */
  full(): boolean {
    return this._qsize() >= this.max;
  }

  /** Threads blocked in get(). */
  getting(): number {
    return this.getters.size;
  }

  /** Threads blocked in put(). */
  putting(): number {
    return this.putters.size;
  }

  /** Puts `item`; when there is no room, waits (up to `timeout` seconds) or, with block=false, throws Full. */
  put(item: T, block = true, timeout?: number | null): Promise<void> {
    checkBoolean(block, 'block');
    const ms = checkOptionalSeconds(timeout);
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    if (this.isClosed) return Promise.reject(new QueueClosed('put() on a closed queue'));
    if (this.offer(item)) return Promise.resolve();
    if (!block) return Promise.reject(new Full());
    const w = new Waiter<void>(t, 'Queue.put');
    w.value = item;
    return w.park(this.putters, ms, failFull);
  }

  /** Puts without waiting; throws Full when there is no room (or no getter, on a channel). */
  putNowait(item: T): void {
    if (this.isClosed) throw new QueueClosed('put() on a closed queue');
    if (!this.offer(item)) throw new Full();
  }

  /** Removes and returns an item; when there is none, waits (up to `timeout` seconds) or, with block=false, throws Empty. */
  get(block = true, timeout?: number | null): Promise<T> {
    checkBoolean(block, 'block');
    const ms = checkOptionalSeconds(timeout);
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    if (this._qsize() > 0 || this.putters.size > 0) return Promise.resolve(this.take());
    if (this.isClosed) return Promise.reject(new QueueClosed());
    if (!block) return Promise.reject(new Empty());
    return new Waiter<T>(t, 'Queue.get').park(this.getters, ms, failEmpty);
  }

  /** Takes an item without waiting (from a blocked putter, on a channel); throws Empty when there is none. */
  getNowait(): T {
    if (this._qsize() > 0 || this.putters.size > 0) return this.take();
    throw this.isClosed ? new QueueClosed() : new Empty();
  }

  /** Changes the bound; growing wakes blocked putters. Shrinking never drops items. */
  resize(maxsize: number | null | undefined): void {
    this.max = parseMaxsize(maxsize);
    this.admitPutters();
  }

  /**
   * Closes the queue: later puts throw QueueClosed, blocked putters get QueueClosed (their items are not
   * queued), items already queued can still be taken, then get() throws QueueClosed and iteration ends.
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const w of this.putters.drain()) w.fail(new QueueClosed('queue closed while put() was waiting'));
    for (const w of this.getters.drain()) w.fail(new QueueClosed());
  }

  /** Yields items as they come; ends when the queue is closed and drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      let item: T;
      try {
        item = await this.get();
      } catch (e) {
        if (e instanceof QueueClosed) return;
        throw e;
      }
      yield item;
    }
  }

  /** Hands the item to a waiting getter or queues it if there is room. */
  private offer(item: T): boolean {
    const getter = this.getters.shift();
    if (getter !== undefined) {
      this._accepted();
      getter.wake(item);
      return true;
    }
    if (this._qsize() < this.max) {
      this._put(item);
      this._accepted();
      return true;
    }
    return false;
  }

  /** Caller checked that an item (queued, or held by a blocked putter) exists. */
  private take(): T {
    if (this._qsize() > 0) {
      const item = this._get();
      this.admitPutters();
      return item;
    }
    const putter = this.putters.shift()!;
    this._accepted();
    // Wake the putter one microtask later, so the getter (which awaits our result) resumes first:
    // on a channel, put() returns only after the getter has received the item.
    queueMicrotask(() => putter.wake(undefined));
    return putter.value as T;
  }

  private admitPutters(): void {
    while (this.putters.size > 0 && this._qsize() < this.max) {
      const w = this.putters.shift()!;
      this._put(w.value as T);
      this._accepted();
      w.wake(undefined);
    }
  }

  // Storage: FIFO by default; subclasses override these four.
  declare private items: Deque<T>;
  protected _init(): void {
    this.items = new Deque<T>();
  }
  protected _put(item: T): void {
    this.items.push(item);
  }
  protected _get(): T {
    return this.items.shift() as T;
  }
  protected _qsize(): number {
    return this.items.length;
  }
  /** An item entered the queue (or was handed to a getter). */
  protected _accepted(): void {}
}

/** A queue with Python's task tracking: taskDone() and join(). */
export class Queue<T = unknown> extends LightQueue<T> {
  private unfinished = 0;
  private joiners = new WaitList();

  /** Items put and not yet marked done with taskDone(). */
  get unfinishedTasks(): number {
    return this.unfinished;
  }

  protected override _accepted(): void {
    this.unfinished++;
  }

  /** Marks one item taken from the queue as processed. */
  taskDone(): void {
    if (this.unfinished <= 0) {
      throw new EvyError('taskDone() called more times than items were put', 'ERR_EVY_TASK_DONE_TOO_MANY');
    }
    if (--this.unfinished === 0) for (const w of this.joiners.drain()) w.wake(undefined);
  }

  /** Waits until every item put has been marked done; returns at once when none is unfinished. */
  join(): Promise<void> {
    if (this.unfinished === 0) return ready(undefined);
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    return new Waiter<void>(t, 'Queue.join').park(this.joiners);
  }
}

/** Orders like Python tuples: numbers and strings by `<`, arrays element by element. */
export function defaultCompare(a: unknown, b: unknown): number {
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const c = defaultCompare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
}

/** Gets the smallest item first (a binary heap); `compare` defaults to Python tuple order. */
export class PriorityQueue<T = unknown> extends Queue<T> {
  declare private heap: T[];
  private compare: (a: T, b: T) => number;

  constructor(maxsize?: number | null, compare: (a: T, b: T) => number = defaultCompare) {
    super(maxsize);
    if (typeof compare !== 'function') throw invalidArgType('compare', 'a function', compare);
    this.compare = compare;
  }

  protected override _init(): void {
    this.heap = [];
  }
  protected override _qsize(): number {
    return this.heap.length;
  }
  protected override _put(item: T): void {
    const h = this.heap;
    let i = h.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(h[i]!, h[parent]!) >= 0) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }
  protected override _get(): T {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.compare(h[l]!, h[m]!) < 0) m = l;
        if (r < h.length && this.compare(h[r]!, h[m]!) < 0) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Gets the most recently put item first. */
export class LifoQueue<T = unknown> extends Queue<T> {
  declare private stack: T[];
  protected override _init(): void {
    this.stack = [];
  }
  protected override _qsize(): number {
    return this.stack.length;
  }
  protected override _put(item: T): void {
    this.stack.push(item);
  }
  protected override _get(): T {
    return this.stack.pop()!;
  }
}
