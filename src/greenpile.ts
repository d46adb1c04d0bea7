// GreenPile: spawn tasks into a pool, then iterate their results in spawn order.
import { Deque } from './deque.js';
import { invalidArgType } from './errors.js';
import { GreenPool } from './greenpool.js';
import type { GreenThread } from './greenthread.js';
import { current } from './runtime.js';
import { checkFunction } from './validate.js';
import { Waiter, WaitList } from './waiter.js';

export class GreenPile<T = unknown> implements AsyncIterableIterator<T> {
  readonly pool: GreenPool;
  private results = new Deque<GreenThread<T>>();
  /** Spawns still waiting for a pool slot: their results are coming. */
  private pending = 0;
  private readers = new WaitList();

  constructor(sizeOrPool: number | GreenPool = 1000) {
    if (sizeOrPool instanceof GreenPool) this.pool = sizeOrPool;
    else if (typeof sizeOrPool === 'number') this.pool = new GreenPool(sizeOrPool);
    else throw invalidArgType('sizeOrPool', 'a number or a GreenPool', sizeOrPool);
  }

  /** Spawns `fn(...args)` in the pool (waiting for a slot); its result comes out in spawn order. */
  async spawn<A extends unknown[]>(fn: (...args: A) => T | PromiseLike<T>, ...args: A): Promise<void> {
    checkFunction(fn);
    this.pending++;
    try {
      this.results.push((await this.pool.spawn(fn, ...args)) as GreenThread<T>);
    } finally {
      this.pending--;
      for (const w of this.readers.drain()) w.wake(undefined);
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next result in spawn order (rethrows that task's error); done once every spawned task was consumed. */
  async next(): Promise<IteratorResult<T, undefined>> {
    for (;;) {
      const gt = this.results.shift();
      if (gt !== undefined) return { value: await gt.wait(), done: false };
      if (this.pending === 0) return { value: undefined, done: true };
      const t = current();
      const e = t._takeInterrupt();
      if (e !== undefined) throw e;
      await new Waiter<void>(t, 'GreenPile.next').park(this.readers);
    }
  }
}
