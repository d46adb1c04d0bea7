// The ordered result iterator behind GreenPool.imap/starmap. Up to `pool.size` worker threads of the pool
// pull items from the source, so a 100k-item map costs a thousand spawns, not a hundred thousand. Results
// come out in input order; a call that threw rethrows at its position and iteration then goes on. At most
// `window` results are buffered ahead of the consumer, so memory stays bounded whatever the input size.
import type { GreenPool } from './greenpool.js';
import type { GreenThread } from './greenthread.js';
import { illegalConstructor } from './errors.js';
import { current } from './runtime.js';
import { Waiter, WaitList } from './waiter.js';

const kMake = Symbol('evy.GreenMap');
const EMPTY = 0;
const OK = 1;
const FAILED = 2;

export class GreenMap<R> implements AsyncIterableIterator<R> {
  private syncSource: Iterator<unknown> | null = null;
  private asyncSource: AsyncIterator<unknown> | null = null;
  private readonly window: number;
  private readonly state: Uint8Array;
  private readonly values: unknown[];
  private nextIndex = 0;
  private consumed = 0;
  private total = Infinity;
  private exhausted = false;
  private closed = false;
  private workers = new Set<GreenThread<unknown>>();
  /** Why the workers are all gone before the end (they were killed from outside). */
  private failure: unknown = undefined;
  private readers = new WaitList();
  private space = new WaitList();
  private readonly onWorkerExit = (gt: GreenThread<unknown>): void => {
    this.workers.delete(gt);
    if (this.workers.size === 0 && !this.exhausted && !this.closed) {
      this.failure = gt.dead ? workerFailure(gt) : undefined;
      this.wakeReaders();
    }
  };

  /** Made by GreenPool.imap() and starmap(). */
  private constructor(
    token: symbol,
    private pool: GreenPool,
    private fn: (...args: unknown[]) => R | PromiseLike<R>,
    source: Iterable<unknown> | AsyncIterable<unknown>,
    private spread: boolean,
  ) {
    if (token !== kMake) throw illegalConstructor('GreenMap', 'GreenPool.imap() and starmap()');
    this.window = 2 * Math.max(1, pool.size);
    this.state = new Uint8Array(this.window);
    this.values = new Array(this.window);
    if (typeof (source as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
      this.asyncSource = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    } else {
      this.syncSource = (source as Iterable<unknown>)[Symbol.iterator]();
    }
  }

  /**
   * @internal `spread`: each source item is an array of arguments (starmap, or imap over several
   * iterables); otherwise each item is the one argument (imap over one iterable: no array per item).
   */
  static _make<R>(pool: GreenPool, fn: (...args: unknown[]) => R | PromiseLike<R>, source: Iterable<unknown> | AsyncIterable<unknown>, spread: boolean): GreenMap<R> {
    return new GreenMap<R>(kMake, pool, fn, source, spread);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<R, undefined>> {
    // Fast path, no async frame: the next result in order is already there.
    const slot = this.consumed % this.window;
    if (this.state[slot] !== EMPTY) {
      const e = current()._takeInterrupt();
      return e !== undefined ? Promise.reject(e) : this.take(slot);
    }
    return this.nextSlow();
  }

  private async nextSlow(): Promise<IteratorResult<R, undefined>> {
    for (;;) {
      const slot = this.consumed % this.window;
      if (this.state[slot] !== EMPTY) return this.take(slot);
      if (this.consumed >= this.total || this.closed) return { value: undefined, done: true };
      if (this.failure !== undefined) throw this.failure;
      await this.addWorkers();
      if (this.state[slot] !== EMPTY || this.consumed >= this.total) continue;
      const t = current();
      const e = t._takeInterrupt();
      if (e !== undefined) throw e;
      await new Waiter<void>(t, 'GreenPool.imap').park(this.readers);
    }
  }

  private take(slot: number): Promise<IteratorResult<R, undefined>> {
    const s = this.state[slot];
    const v = this.values[slot];
    this.state[slot] = EMPTY;
    this.values[slot] = undefined;
    this.consumed++;
    // Workers that ran a full window ahead resume once half of it is free again (not one per item).
    if (this.space.size > 0 && this.nextIndex - this.consumed <= this.window >> 1) {
      for (const w of this.space.drain()) w.wake(undefined);
    }
    return s === FAILED ? Promise.reject(v) : Promise.resolve({ value: v as R, done: false });
  }

  /** Stops feeding and kills the workers (a `break` out of `for await`). */
  async return(): Promise<IteratorResult<R, undefined>> {
    if (!this.closed) {
      this.closed = true;
      for (const w of this.space.drain()) w.wake(undefined);
      await Promise.all([...this.workers].map((gt) => gt.kill()));
      await this.asyncSource?.return?.();
      this.syncSource?.return?.();
    }
    return { value: undefined, done: true };
  }

  /** Starts workers in the pool's free slots; with none free, waits for one (or, from inside the full pool, works inline). */
  private async addWorkers(): Promise<void> {
    if (this.exhausted) return;
    while (this.workers.size < this.pool.size) {
      const gt = this.pool._tryLaunch(this.work, [this]);
      if (gt === null) break;
      this.track(gt);
    }
    if (this.workers.size > 0) return;
    if (this.pool._owns(current())) {
      await this.run(true); // a thread of the full pool mapping over it: do one item here
      return;
    }
    this.track(await this.pool.spawn(this.work, this));
  }

  private track(gt: GreenThread<unknown>): void {
    this.workers.add(gt);
    gt.link(this.onWorkerExit);
  }

  /** A worker thread's body. */
  private work(map: GreenMap<R>): Promise<void> {
    return map.run(false);
  }

  /** Pulls, calls and stores items until the source is exhausted (or one item when `once`). */
  private async run(once: boolean): Promise<void> {
    do {
      while (!this.exhausted && !this.closed && this.nextIndex - this.consumed >= this.window) {
        const t = current();
        const e = t._takeInterrupt();
        if (e !== undefined) throw e;
        await new Waiter<void>(t, 'GreenPool.imap (window full)').park(this.space);
      }
      if (this.exhausted || this.closed) return;
      const idx = this.nextIndex++;
      let state = OK;
      let value: unknown;
      try {
        const r = this.syncSource !== null ? this.syncSource.next() : await this.asyncSource!.next();
        if (r.done) {
          this.finish(idx);
          return;
        }
        let out: R | PromiseLike<R>;
        if (this.spread) {
          if (!Array.isArray(r.value)) throw new TypeError('starmap() items must be arrays of arguments');
          out = this.fn(...r.value);
        } else {
          out = this.fn(r.value);
        }
        // Any thenable (another realm's Promise, a query builder), as spawn() does.
        value = out !== null && typeof (out as PromiseLike<R>)?.then === 'function' ? await out : out;
      } catch (e) {
        if (e !== undefined && e === current()._killError) throw e;
        state = FAILED;
        value = e;
      }
      const slot = idx % this.window;
      this.state[slot] = state;
      this.values[slot] = value;
      if (idx === this.consumed) this.wakeReaders();
    } while (!once);
  }

  private finish(idx: number): void {
    this.exhausted = true;
    this.total = Math.min(this.total, idx);
    for (const w of this.space.drain()) w.wake(undefined);
    this.wakeReaders();
  }

  private wakeReaders(): void {
    for (const w of this.readers.drain()) w.wake(undefined);
  }
}

function workerFailure(gt: GreenThread<unknown>): unknown {
  const e = gt._killError;
  return e === undefined ? new Error('GreenPool.imap: its worker threads ended unexpectedly') : e;
}
