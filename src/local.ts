import { type GreenThread } from './greenthread.js';
import { current } from './runtime.js';

/**
 * Evy's corolocal: returns an object whose properties are per green thread. A property set in one thread
 * is invisible in the others; values go away with their thread (held weakly).
 */
export function local<T extends object = Record<string, any>>(): T {
  const slots = new WeakMap<GreenThread, Record<PropertyKey, unknown>>();
  const own = (): Record<PropertyKey, unknown> => {
    const t = current();
    let o = slots.get(t);
    if (o === undefined) slots.set(t, (o = Object.create(null) as Record<PropertyKey, unknown>));
    return o;
  };
  return new Proxy({} as T, {
    get: (_, key) => slots.get(current())?.[key as string],
    set: (_, key, value) => {
      own()[key as string] = value;
      return true;
    },
    has: (_, key) => {
      const o = slots.get(current());
      return o !== undefined && key in o;
    },
    deleteProperty: (_, key) => {
      const o = slots.get(current());
      if (o !== undefined) delete o[key as string];
      return true;
    },
    ownKeys: () => Reflect.ownKeys(slots.get(current()) ?? {}),
    getOwnPropertyDescriptor: (_, key) => {
      const o = slots.get(current());
      if (o === undefined || !(key in o)) return undefined;
      return { value: o[key as string], writable: true, enumerable: true, configurable: true };
    },
  });
}
