// GreenPool: a bounded set of green threads. spawn() waits for a free slot (backpressure).
import { EvyError, invalidArgType } from './errors.js';
import { finishedThread, type GreenThread, launch } from './greenthread.js';
import { GreenMap } from './greenmap.js';
import { current, reportError } from './runtime.js';
import { Semaphore } from './semaphore.js';
import { checkCount, checkFunction, functionError } from './validate.js';
import { ready, Waiter, WaitList } from './waiter.js';

export class GreenPool {
  private slots: Semaphore;
  private max: number;
  private threads = new Set<GreenThread<any>>();
  private idle = new WaitList();
  /** spawn() calls waiting for a slot: waitall() waits for them too (eventlet: until the balance is full). */
  private queued = 0;
  private readonly onExit = (gt: GreenThread<any>): void => {
    this.threads.delete(gt);
    this.slots.release();
    this.wakeIdle();
  };

  constructor(size = 1000) {
    this.max = checkCount(size, 'size');
    this.slots = new Semaphore(size);
  }

  get size(): number {
    return this.max;
  }

  /** Threads running in the pool. */
  running(): number {
    return this.threads.size;
  }

  /** Slots free now (negative after shrinking below the running count). */
  free(): number {
    return this.slots.counter;
  }

  /** Threads blocked in spawn() waiting for a slot. */
  waiting(): number {
    return this.slots.waiting;
  }

  /** Changes the size; running threads finish, waiting spawns start as slots free up. */
  resize(size: number): void {
    checkCount(size, 'size');
    const delta = size - this.max;
    this.max = size;
    this.slots._adjust(delta);
  }

  /**
   * Spawns `fn(...args)` once a slot is free. From inside one of this pool's own threads, when the pool is
   * full, runs `fn` inline instead (a thread waiting for its own pool would deadlock) and returns it finished.
   */
  spawn<A extends unknown[], T>(fn: (...args: A) => T | PromiseLike<T>, ...args: A): Promise<GreenThread<Awaited<T>>> {
    return this.start(fn, args, false);
  }

  /** As spawn(), without a result: an error is reported to `hub.onError`. */
  async spawnN<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): Promise<void> {
    await this.start(fn, args, true);
  }

  /** Waits until no thread runs in the pool. An error from inside one of its own threads (it would deadlock). */
  waitall(): Promise<void> {
    const t = current();
    if (this.threads.has(t)) {
      return Promise.reject(new EvyError('waitall() called from a thread of the same pool would wait for itself', 'ERR_EVY_WAITALL_IN_POOL'));
    }
    if (this.threads.size === 0 && this.queued === 0) return ready(undefined);
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    return new Waiter<void>(t, 'GreenPool.waitall').park(this.idle);
  }

  /** Kills every thread in the pool; settles once all have finished. */
  async killall(): Promise<void> {
    await Promise.all([...this.threads].map((t) => t.kill()));
  }

  /** Maps `fn` over the zipped iterables with the pool's concurrency; results in input order. */
  imap<A extends unknown[], R>(fn: (...args: A) => R | PromiseLike<R>, ...iterables: { [K in keyof A]: Iterable<A[K]> | AsyncIterable<A[K]> }): GreenMap<Awaited<R>> {
    checkFunction(fn);
    const its = iterables as (Iterable<unknown> | AsyncIterable<unknown>)[];
    const source = zip(its);
    return GreenMap._make(this, fn as any, source, source !== its[0]);
  }

  /** Like imap, with each item of `iterable` an array of arguments. */
  starmap<A extends unknown[], R>(fn: (...args: A) => R | PromiseLike<R>, iterable: Iterable<A> | AsyncIterable<A>): GreenMap<Awaited<R>> {
    checkFunction(fn);
    checkIterable(iterable, 2);
    return GreenMap._make(this, fn as any, iterable, true);
  }

  private start<T>(fn: (...args: any[]) => T | PromiseLike<T>, args: unknown[], report: boolean): Promise<GreenThread<Awaited<T>>> {
    const bad = functionError(fn);
    if (bad !== undefined) return Promise.reject(bad);
    if (this.slots._tryAcquire()) return Promise.resolve(this.launch(fn, args, report));
    if (this.threads.has(current())) return this.runInline(fn, args, report);
    this.queued++;
    return this.slots.acquire().then(
      () => {
        this.queued--;
        return this.launch(fn, args, report);
      },
      (e: unknown) => {
        this.queued--;
        this.wakeIdle();
        throw e;
      },
    );
  }

  private wakeIdle(): void {
    if (this.threads.size === 0 && this.queued === 0) for (const w of this.idle.drain()) w.wake(undefined);
  }

  /** @internal Starts `fn` in a free slot without waiting; null when the pool is full. */
  _tryLaunch<T>(fn: (...args: any[]) => T | PromiseLike<T>, args: unknown[]): GreenThread<Awaited<T>> | null {
    return this.slots._tryAcquire() ? this.launch(fn, args, false) : null;
  }

  /** @internal Whether `t` is one of this pool's threads. */
  _owns(t: GreenThread<any>): boolean {
    return this.threads.has(t);
  }

  private launch<T>(fn: (...args: any[]) => T | PromiseLike<T>, args: unknown[], report: boolean): GreenThread<Awaited<T>> {
    const gt = launch(fn, args, report);
    this.threads.add(gt);
    gt.link(this.onExit);
    return gt;
  }

  private async runInline<T>(fn: (...args: any[]) => T | PromiseLike<T>, args: unknown[], report: boolean): Promise<GreenThread<Awaited<T>>> {
    try {
      return finishedThread(await fn(...args), false);
    } catch (e) {
      if (report) reportError(e, current());
      return finishedThread(e, true);
    }
  }
}

function isAsync(x: Iterable<unknown> | AsyncIterable<unknown>): x is AsyncIterable<unknown> {
  return typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

function checkIterable(it: unknown, position: number): void {
  if (it === null || typeof it !== 'object' || (typeof (it as any)[Symbol.iterator] !== 'function' && !isAsync(it as Iterable<unknown>))) {
    throw invalidArgType(`iterable #${position - 1}`, 'an iterable or async iterable', it);
  }
}

/** Python's zip over sync or async iterables: argument arrays, stopping at the shortest. One iterable is
 *  returned as it is (its items are single arguments). */
function zip(iterables: (Iterable<unknown> | AsyncIterable<unknown>)[]): Iterable<unknown> | AsyncIterable<unknown> {
  iterables.forEach((it, i) => checkIterable(it, i + 2));
  if (iterables.length === 1) return iterables[0]!;
  if (!iterables.some(isAsync)) {
    return {
      *[Symbol.iterator]() {
        const its = iterables.map((it) => (it as Iterable<unknown>)[Symbol.iterator]());
        for (;;) {
          const args: unknown[] = [];
          for (const it of its) {
            const r = it.next();
            if (r.done) return;
            args.push(r.value);
          }
          yield args;
        }
      },
    };
  }
  return {
    async *[Symbol.asyncIterator]() {
      const its = iterables.map((it) => (isAsync(it) ? it[Symbol.asyncIterator]() : it[Symbol.iterator]()));
      for (;;) {
        const args: unknown[] = [];
        for (const it of its) {
          const r = await it.next();
          if (r.done) return;
          args.push(r.value);
        }
        yield args;
      }
    },
  };
}
