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

/**
 * Records that `resource` has served only `t` so far (a connection it made and alone used): if `t` is killed,
 * `orphan(resource, killError)` runs after what it owns was destroyed (patching/orphan.ts: such a connection,
 * idle, is one nobody else can reach unless the thread published it). Ends with `endSolo` when another thread
 * uses it, or it closes; a normal exit of `t` drops the record.
 */
export function soloUse(resource: object, t: GreenThread, orphan: Destroyer): void {
  if (t === rt.main || t._finished || t._killError !== undefined) return;
  (t._solo ??= new Map()).set(resource, orphan);
}

/** `resource` no longer serves `t` alone (or is gone). */
export function endSolo(resource: object, t: GreenThread): void {
  t._solo?.delete(resource);
}
