// The one piece of mutable process state. It lives on globalThis under a registered symbol so that
// the ESM and the CJS build of evy, if an app loads both, share one scheduler, one ALS and one patch table.
import type { AsyncLocalStorage as ALS } from 'node:async_hooks';
import type { GreenThread } from './greenthread.js';

// getBuiltinModule, not `import`: an ESM import of node:util builds its ESM facade, which runs every lazy
// getter (parseArgs, MIME): ~1.5-2 ms that `node --import evy/register` would add to every app's startup.
const { AsyncLocalStorage } = process.getBuiltinModule('async_hooks') as typeof import('node:async_hooks');
const timers = process.getBuiltinModule('timers') as typeof import('node:timers');
const { inspect } = process.getBuiltinModule('util') as typeof import('node:util');

export interface Hub {
  /** Called with errors nobody else will see (a `spawnN` body that threw, a throwing `link` callback). Default: print to stderr. */
  onError: ((error: unknown, thread: GreenThread | null) => void) | null;
}

/** The timer functions evy itself schedules with, captured before any patching or fake timers. */
export interface RawTimers {
  setTimeout: typeof timers.setTimeout;
  clearTimeout: typeof timers.clearTimeout;
  setImmediate: typeof timers.setImmediate;
  clearImmediate: typeof timers.clearImmediate;
}

export interface Runtime {
  readonly version: 1;
  /** Created on the first spawn: on Node 20 any ALS use taxes every await in the process. */
  als: ALS<GreenThread> | null;
  main: GreenThread | null;
  nextId: number;
  /** Threads waiting for their first run, drained by one microtask per batch. */
  ready: (GreenThread | undefined)[];
  drainScheduled: boolean;
  hub: Hub;
  timers: RawTimers;
  /** Free-form slots for the other parts of evy (patch table, debug hooks, loader state). */
  ext: Record<string, unknown>;
}

const KEY = Symbol.for('evy.runtime');
const g = globalThis as typeof globalThis & { [KEY]?: Runtime };

export const rt: Runtime = (g[KEY] ??= {
  version: 1,
  als: null,
  main: null,
  nextId: 1,
  ready: [],
  drainScheduled: false,
  hub: { onError: null },
  timers: {
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    setImmediate: timers.setImmediate,
    clearImmediate: timers.clearImmediate,
  },
  ext: Object.create(null),
});

export function ensureAls(): ALS<GreenThread> {
  return (rt.als ??= new AsyncLocalStorage<GreenThread>());
}

/** The running green thread: a spawned thread whose body has not finished, else the main thread. */
export function current(): GreenThread {
  const als = rt.als;
  if (als !== null) {
    const t = als.getStore();
    // Callbacks registered by a thread keep its context after it ended: they belong to main.
    if (t !== undefined && !t._finished) return t;
  }
  return rt.main!;
}

export function reportError(error: unknown, thread: GreenThread | null): void {
  const handler = rt.hub.onError;
  if (handler !== null) {
    try {
      handler(error, thread);
      return;
    } catch (handlerError) {
      error = handlerError;
    }
  }
  const who = thread === null ? '' : ` in ${thread.name}`;
  process.stderr.write(`evy: unhandled error${who}:\n${inspect(error)}\n`);
}
