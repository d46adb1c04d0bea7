import { invalidArgType, outOfRange } from './errors.js';

export function checkFunction(fn: unknown, name = 'fn'): asserts fn is (...args: any[]) => unknown {
  if (typeof fn !== 'function') throw invalidArgType(name, 'a function', fn);
}

/** Seconds (fractions allowed) to milliseconds. `null`/`undefined` give `undefined` where allowed. */
export function checkSeconds(seconds: unknown, name = 'seconds'): number {
  if (typeof seconds !== 'number') throw invalidArgType(name, 'a number of seconds', seconds);
  if (!(seconds >= 0) || seconds === Infinity) throw outOfRange(name, 'a finite number >= 0', seconds);
  return seconds * 1000;
}

export function checkOptionalSeconds(seconds: unknown, name = 'timeout'): number | undefined {
  return seconds === undefined || seconds === null ? undefined : checkSeconds(seconds, name);
}

export function checkCount(n: unknown, name: string, min = 0): number {
  if (typeof n !== 'number') throw invalidArgType(name, 'an integer', n);
  if (!Number.isInteger(n) || n < min) throw outOfRange(name, `an integer >= ${min}`, n);
  return n;
}

export function checkBoolean(b: unknown, name: string): boolean {
  if (typeof b !== 'boolean') throw invalidArgType(name, 'a boolean', b);
  return b;
}
