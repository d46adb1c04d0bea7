import { EvyError } from './errors.js';
import { expiredTimeout } from './timeout.js';
import { optionalSecondsError, toMs } from './validate.js';
import { block, ready, readyReject, type Waiter, WaitList } from './waiter.js';

const EMPTY = 0;
const VALUE = 1;
const EXCEPTION = 2;

/** A single-shot result (or error) that any number of green threads can wait for. */
export class Event<T = unknown> {
  private state = EMPTY;
  private value: unknown = undefined;
  private waiters = new WaitList();

  /** Stores `value` and wakes every waiter. Never blocks. Sending twice without `reset()` is an error. */
  send(value?: T): void {
    this.settle(value, VALUE);
  }

  /** Makes every waiter, and every later `wait()`, throw `error`. */
  sendException(error: unknown): void {
    this.settle(error, EXCEPTION);
  }

  /** Waits for the value; throws a sent exception, or `Timeout` when nothing came within `timeout` seconds. */
  wait(timeout?: number | null): Promise<T> {
    const bad = optionalSecondsError(timeout);
    if (bad !== undefined) return Promise.reject(bad);
    if (this.state === VALUE) return ready(this.value as T);
    if (this.state === EXCEPTION) return readyReject(this.value);
    const w = block<T>('Event.wait');
    if (w instanceof Promise) return w;
    w.value = timeout; // for the Timeout's message
    return w.park(this.waiters, toMs(timeout), failTimeout);
  }

  ready(): boolean {
    return this.state !== EMPTY;
  }

  hasValue(): boolean {
    return this.state === VALUE;
  }

  hasException(): boolean {
    return this.state === EXCEPTION;
  }

  /** Makes the event waitable again. A no-op on an event that was never sent. */
  reset(): void {
    this.state = EMPTY;
    this.value = undefined;
  }

  private settle(value: unknown, state: number): void {
    if (this.state !== EMPTY) {
      throw new EvyError('Event was already sent; call reset() before sending again', 'ERR_EVY_EVENT_ALREADY_SENT');
    }
    this.state = state;
    this.value = value;
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) {
      if (state === VALUE) w.wake(value);
      else w.fail(value);
    }
  }
}

function failTimeout(w: Waiter): void {
  w.fail(expiredTimeout(w.value as number));
}
