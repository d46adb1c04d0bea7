// Argument checks. Each `*Error` function returns the error for a bad value (undefined for a good one), so
// a promise-returning API can reject with it and a synchronous one can throw it: the `check*` forms throw.
import { invalidArgType, outOfRange } from './errors.js';

export function functionError(fn: unknown, name = 'fn'): TypeError | undefined {
  return typeof fn === 'function' ? undefined : invalidArgType(name, 'a function', fn);
}

export function secondsError(seconds: unknown, name = 'seconds'): TypeError | RangeError | undefined {
  if (typeof seconds !== 'number') return invalidArgType(name, 'a number of seconds', seconds);
  if (!(seconds >= 0) || seconds === Infinity) return outOfRange(name, 'a finite number >= 0', seconds);
  return undefined;
}

/** `null`/`undefined` (no timeout) are allowed. */
export function optionalSecondsError(seconds: unknown, name = 'timeout'): TypeError | RangeError | undefined {
  return seconds === undefined || seconds === null ? undefined : secondsError(seconds, name);
}

export function booleanError(b: unknown, name: string): TypeError | undefined {
  return typeof b === 'boolean' ? undefined : invalidArgType(name, 'a boolean', b);
}

export function countError(n: unknown, name: string, min = 0): TypeError | RangeError | undefined {
  if (typeof n !== 'number') return invalidArgType(name, 'an integer', n);
  if (!Number.isInteger(n) || n < min) return outOfRange(name, `an integer >= ${min}`, n);
  return undefined;
}

/** Seconds (already checked) to milliseconds; `null`/`undefined` give `undefined`. */
export function toMs(seconds: number | null | undefined): number | undefined {
  return seconds === undefined || seconds === null ? undefined : seconds * 1000;
}

export function checkObject(o: unknown, name = 'options'): void {
  if (o === null || typeof o !== 'object') throw invalidArgType(name, 'an object', o);
}

export function checkFunction(fn: unknown, name = 'fn'): asserts fn is (...args: any[]) => unknown {
  const e = functionError(fn, name);
  if (e !== undefined) throw e;
}

/** Seconds (fractions allowed) to milliseconds. */
export function checkSeconds(seconds: unknown, name = 'seconds'): number {
  const e = secondsError(seconds, name);
  if (e !== undefined) throw e;
  return (seconds as number) * 1000;
}

export function checkOptionalSeconds(seconds: unknown, name = 'timeout'): number | undefined {
  return seconds === undefined || seconds === null ? undefined : checkSeconds(seconds, name);
}

export function checkCount(n: unknown, name: string, min = 0): number {
  const e = countError(n, name, min);
  if (e !== undefined) throw e;
  return n as number;
}

export function checkBoolean(b: unknown, name: string): boolean {
  const e = booleanError(b, name);
  if (e !== undefined) throw e;
  return b as boolean;
}
