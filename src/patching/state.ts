// Shared state of the patching layer: which builtins are patched, the original functions, the hooks
// that are installed. It lives in rt.ext so the ESM and the CJS build of evy see one patch table.
import { type GreenThread } from '../greenthread.js';
import { disown, own } from '../ownership.js';
import { rt } from '../runtime.js';

// Builtins are taken with process.getBuiltinModule, not `import`: an ESM import of a builtin builds its
// ESM facade, which reads every export and so runs the lazy getters (node:fs loads all of streams,
// node:util loads parseArgs and MIME): ~10-30 ms of startup that `--import evy/register` must not pay.
export const builtin = process.getBuiltinModule as <T = any>(id: string) => T;
const timers = builtin<typeof import('node:timers')>('timers');
const timersPromises = builtin<typeof import('node:timers/promises')>('timers/promises');
const fs = builtin<typeof import('node:fs')>('fs');
const { debuglog } = builtin<typeof import('node:util')>('util');
/** util.promisify.custom (a registered symbol: no need to load util's ESM facade). */
export const PROMISIFY = Symbol.for('nodejs.util.promisify.custom');

/** The builtins evy makes cooperative, and `http`: request threads on http(s) servers (src/http/). */
export type ModuleName = 'net' | 'tls' | 'timers' | 'fs' | 'child_process' | 'http';
export const MODULES: readonly ModuleName[] = ['net', 'tls', 'timers', 'fs', 'child_process', 'http'];

export interface PatchState {
  /** Globally patched modules (monkeyPatch): every handle is tracked, not only the green modules' ones. */
  on: Record<ModuleName, boolean>;
  /** Restorers of the slots monkeyPatch replaced, per module. */
  restore: Record<ModuleName, (() => void)[]>;
  /** Uninstallers of the prototype hooks (net, child_process), or null when not installed. */
  netHooks: (() => void) | null;
  cpHooks: (() => void) | null;
  /** The original functions, captured once, before evy replaced anything. */
  orig: {
    timers: OrigTimers;
    timersPromises: OrigTimersPromises;
    fs: Record<string, any>;
    fsp: Record<string, any>;
  };
  registered: string | null;
  /** Told of each timer made outside any green thread (the test adapters keep long-lived ones' creation sites). */
  unownedTimer?: ((timer: any) => void) | null;
}

export interface OrigTimers {
  setTimeout: typeof timers.setTimeout;
  setInterval: typeof timers.setInterval;
  setImmediate: typeof timers.setImmediate;
  clearTimeout: typeof timers.clearTimeout;
  clearInterval: typeof timers.clearInterval;
  clearImmediate: typeof timers.clearImmediate;
}

export interface OrigTimersPromises {
  setTimeout: typeof timersPromises.setTimeout;
  setImmediate: typeof timersPromises.setImmediate;
  setInterval: typeof timersPromises.setInterval;
}

/** The fs and fs.promises functions evy replaces (streams, watchers and FileHandles are owned; signals passed). */
export const FS_FUNCS = ['createReadStream', 'createWriteStream', 'watch'] as const;
export const FSP_FUNCS = ['open', 'readFile', 'writeFile', 'appendFile', 'watch'] as const;

function pick(obj: any, names: readonly string[]): Record<string, any> {
  const out: Record<string, any> = Object.create(null);
  for (const n of names) out[n] = obj[n];
  return out;
}

export const ps: PatchState = ((rt.ext.patch as PatchState | undefined) ??= {
  on: { net: false, tls: false, timers: false, fs: false, child_process: false, http: false },
  restore: { net: [], tls: [], timers: [], fs: [], child_process: [], http: [] },
  netHooks: null,
  cpHooks: null,
  orig: {
    // rt.timers was captured by the runtime before any patching; the rest is taken the first time
    // this module loads (evy is imported before it patches anything).
    timers: {
      setTimeout: rt.timers.setTimeout,
      clearTimeout: rt.timers.clearTimeout,
      setImmediate: rt.timers.setImmediate,
      clearImmediate: rt.timers.clearImmediate,
      setInterval: timers.setInterval,
      clearInterval: timers.clearInterval,
    },
    timersPromises: {
      setTimeout: timersPromises.setTimeout,
      setImmediate: timersPromises.setImmediate,
      setInterval: timersPromises.setInterval,
    },
    fs: pick(fs, FS_FUNCS),
    // fs.promises loads ~2.5 ms of Node internals: taken on first use, which the fs patcher makes sure
    // happens before it replaces anything.
    get fsp(): Record<string, any> {
      const value = pick(fs.promises, FSP_FUNCS);
      Object.defineProperty(this, 'fsp', { value, enumerable: true });
      return value;
    },
  },
  registered: null,
});

/** Set on handles created through an evy/green module: tracked even when nothing is patched globally. */
export const kGreen = Symbol.for('evy.green');
/** Set on handles created inside `unowned()`: no kill ever touches them. */
export const kNever = Symbol.for('evy.unowned');

/** True inside `unowned(fn)` (the store is the main thread explicitly), not merely outside any thread. */
export function inUnowned(): boolean {
  const als = rt.als;
  return als !== null && als.getStore() === rt.main;
}

/** NODE_DEBUG=evy shows the errors evy absorbed after destroying a killed thread's handles. */
export const debug = debuglog('evy');

function swallow(this: unknown, err: unknown): void {
  debug('absorbed an error caused by destroying a killed thread\'s handle: %o', err);
}

const kShielded = Symbol.for('evy.shielded');

/** True when `e` is `err` or was caused by it (a library wrapping the kill error). */
function causedBy(e: unknown, err: unknown): boolean {
  for (let i = 0; i < 8 && e !== null && typeof e === 'object'; i++) {
    if (e === err) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return e === err;
}

/**
 * Destroying a killed thread's handle must not crash the process with an unhandled 'error'. An emitter
 * that has no 'error' listener gets one that absorbs (and, with NODE_DEBUG=evy, prints) the error. With
 * `err`, the kill error the handle is destroyed with: a library may re-emit it on an emitter of its own
 * that has no listener (pg's Client re-emits its socket's error), which throws out of the handle's own
 * 'error' event; that throw is absorbed too, and any other error still propagates.
 */
export function absorb(emitter: any, err?: unknown): void {
  if (emitter == null || typeof emitter.listenerCount !== 'function') return;
  if (emitter.listenerCount('error') === 0) emitter.on('error', swallow);
  if (err === undefined || emitter[kShielded] === true || typeof emitter.emit !== 'function') return;
  emitter[kShielded] = true;
  const emit = emitter.emit;
  emitter.emit = function shieldedEmit(this: unknown, type: unknown, ...args: unknown[]) {
    if (type !== 'error') return emit.call(this, type, ...args);
    try {
      return emit.call(this, type, ...args);
    } catch (e) {
      if (!causedBy(e, err)) throw e;
      debug('absorbed an error rethrown from a killed thread\'s handle: %o', e);
      return true;
    }
  };
}

/**
 * The default export of a green module: every property of the builtin (accessors copied as accessors, so
 * nothing lazy is loaded early) with `overrides` defined as plain values on top.
 */
export function greenDefault<T extends object>(base: T, overrides: Record<string, unknown>): T {
  const out = Object.defineProperties({}, Object.getOwnPropertyDescriptors(base)) as Record<string, unknown>;
  for (const [k, v] of Object.entries(overrides)) {
    Object.defineProperty(out, k, { value: v, enumerable: true, configurable: true, writable: true });
  }
  return out as T;
}

/**
 * The CJS build (tsup's ESM-to-CJS step) first defines every name of `export * from 'node:x'` as a
 * getter-only property and assigns a green module's own exports at the very end, which would throw
 * for the names the green module overrides. Called from the module body (before those assignments)
 * with the CJS `module`, it turns the overridden names into plain data properties. No-op in ESM.
 */
export function cjsOverrides(mod: { exports?: unknown } | undefined, overrides: Record<string, unknown>): void {
  const e = mod?.exports as Record<string, unknown> | undefined;
  if (e === undefined || e === null || typeof e !== 'object') return;
  for (const [k, v] of Object.entries(overrides)) {
    Object.defineProperty(e, k, { value: v, enumerable: true, configurable: true, writable: true });
  }
}

function abortController(ac: AbortController, err: unknown): void {
  ac.abort(err);
}

/**
 * An AbortSignal that a kill of `t` aborts (with the kill error), chained to the caller's own `user`
 * signal. `t` owns it until `release()`. `error(e)` turns the abort our kill caused back into the kill error.
 */
export function killSignal(t: GreenThread, user: AbortSignal | undefined): { signal: AbortSignal; release(): void; error(e: unknown): unknown } {
  const ac = new AbortController();
  const onUser = user === undefined ? null : (): void => ac.abort(user.reason);
  if (onUser !== null) user!.addEventListener('abort', onUser, { once: true });
  own(ac, abortController);
  return {
    signal: ac.signal,
    release() {
      if (onUser !== null) user!.removeEventListener('abort', onUser);
      disown(ac, t);
    },
    error(e) {
      const k = t._killError;
      return k !== undefined && ac.signal.reason === k ? k : e;
    },
  };
}

/** Calls `call` with `opts` whose signal a kill of `t` aborts; rejects with the kill error when it did. */
export function callWithKillSignal<T>(t: GreenThread, opts: Record<string, any>, call: (opts: any) => Promise<T>): Promise<T> {
  const ks = killSignal(t, opts.signal);
  return call({ ...opts, signal: ks.signal }).then(
    (v) => {
      ks.release();
      return v;
    },
    (e) => {
      ks.release();
      throw ks.error(e);
    },
  );
}
