import { block } from './waiter.js';

const noop = (): void => {};

/**
 * Awaits a foreign promise in a killable way: a kill or a Timeout of the calling thread rejects at once
 * (the promise's eventual outcome is then ignored). A plain `await promise` cannot be interrupted.
 */
export function until<T>(promise: T | PromiseLike<T>): Promise<Awaited<T>> {
  const w = block<Awaited<T>>('until');
  if (w instanceof Promise) {
    // Thrown at once (a killed thread, a due Timeout), yet the promise is still observed: its later
    // rejection must not surface as an unhandled rejection.
    Promise.resolve(promise).then(undefined, noop);
    return w;
  }
  const p = w.park(null);
  Promise.resolve(promise).then(
    (v) => w.wake(v),
    (e) => w.fail(e),
  );
  return p;
}
