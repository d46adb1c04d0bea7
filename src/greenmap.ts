// The ordered result iterator behind GreenPool.imap/starmap: keeps up to `window` calls in flight and
// yields results in input order. A call that threw rethrows at its position; iteration then goes on.
import { Deque } from './deque.js';
import type { GreenPool } from './greenpool.js';
import type { GreenThread } from './greenthread.js';

export class GreenMap<R> implements AsyncIterableIterator<R> {
  private inflight = new Deque<GreenThread<R>>();
  private syncSource: Iterator<unknown[]> | null = null;
  private asyncSource: AsyncIterator<unknown[]> | null = null;
  private exhausted = false;
  private readonly window: number;

  /** @internal */
  constructor(
    private pool: GreenPool,
    private fn: (...args: unknown[]) => R | PromiseLike<R>,
    source: Iterable<unknown[]> | AsyncIterable<unknown[]>,
  ) {
    this.window = Math.max(1, pool.size);
    if (typeof (source as AsyncIterable<unknown[]>)[Symbol.asyncIterator] === 'function') {
      this.asyncSource = (source as AsyncIterable<unknown[]>)[Symbol.asyncIterator]();
    } else {
      this.syncSource = (source as Iterable<unknown[]>)[Symbol.iterator]();
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<R, undefined>> {
    await this.fill();
    const head = this.inflight.shift();
    if (head === undefined) return { value: undefined, done: true };
    return { value: await head.wait(), done: false };
  }

  /** Stops feeding and kills the calls still in flight (a `break` out of `for await`). */
  async return(): Promise<IteratorResult<R, undefined>> {
    this.exhausted = true;
    const left = [...this.inflight];
    this.inflight = new Deque();
    await Promise.all(left.map((gt) => gt.kill()));
    await this.asyncSource?.return?.();
    this.syncSource?.return?.();
    return { value: undefined, done: true };
  }

  private async fill(): Promise<void> {
    while (!this.exhausted && this.inflight.length < this.window) {
      const r = this.syncSource !== null ? this.syncSource.next() : await this.asyncSource!.next();
      if (r.done) {
        this.exhausted = true;
        return;
      }
      const args = r.value;
      if (!Array.isArray(args)) throw new TypeError('starmap() items must be arrays of arguments');
      this.inflight.push(await this.pool.spawn(this.fn, ...args));
    }
  }
}
