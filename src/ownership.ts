// Ownership: which green thread a handle belongs to, so that a kill destroys exactly what its thread is
// using and nothing another thread is (docs/patching.md states the rule per module). GreenThread.kill runs
// the destroyers recorded here; the patching layer and the GreenSockets decide when to record them.
import type { Destroyer, GreenThread } from './greenthread.js';
import { current, ensureAls, rt } from './runtime.js';
import { checkFunction } from './validate.js';

/**
 * The thread a handle made or used right now belongs to: the running green thread, or null in the main thread
 * (and in callbacks of finished threads or of no thread, where current() is main).
 */
export function owningThread(): GreenThread | null {
  if (rt.als === null) return null; // no thread was ever spawned: the cheapest pass-through
  const t = current();
  return t === rt.main ? null : t;
}

/** Runs `fn` outside any green thread's ownership: what it creates is never destroyed by a kill. */
export function unowned<A extends unknown[], T>(fn: (...args: A) => T, ...args: A): T {
  checkFunction(fn);
  return ensureAls().run(rt.main!, fn, ...args);
}

/**
 * Records that the current thread (or `t`) is using `resource` (ownership follows use): if the thread is killed
 * while it owns it, `destroy(resource, killError)` runs. Returns the owner, to pass to `disown`.
 */
export function own(resource: object, destroy: Destroyer, t: GreenThread = current()): GreenThread | null {
  checkFunction(destroy, 'destroy');
  if (t === rt.main || t._finished) return null;
  if (t._killError !== undefined) {
    destroy(resource, t._killError);
    return null;
  }
  (t._owned ??= new Map()).set(resource, destroy);
  return t;
}

/** Ends `owner`'s ownership of `resource` (its operation completed; the handle is idle). */
export function disown(resource: object, owner: GreenThread | null): void {
  owner?._owned?.delete(resource);
}
