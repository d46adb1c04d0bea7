// evy.tpool: blocking or CPU-bound work in worker threads (piscina), parking only the calling green thread.
// eventlet's tpool runs functions in OS threads that share the interpreter; Node workers share nothing, so a
// function travels as source text (it must be self-contained) and its arguments by structured clone.
const { existsSync } = process.getBuiltinModule('fs') as typeof import('node:fs');
const { availableParallelism } = process.getBuiltinModule('os') as typeof import('node:os');
const { fileURLToPath } = process.getBuiltinModule('url') as typeof import('node:url');
import type { Piscina as PiscinaType } from 'piscina';
import { evyFile } from './self.js';
import { EvyError, invalidArgType, outOfRange } from './errors.js';
import { disown, own } from './ownership.js';
import { rt } from './runtime.js';
import { checkCount } from './validate.js';
import { block } from './waiter.js';
import { ERROR_KEY, type ErrorEnvelope, type TpoolTask } from './tpool-worker.js';

/** A module export to run: `{ module: '/abs/path.mjs' | URL | 'package', name: 'exportName' }` (name default 'default'). */
export interface TpoolModuleRef {
  module: string | URL;
  name?: string;
}

interface PoolState {
  size: number | null;
  pool: PiscinaType | null;
  loading: Promise<PiscinaType> | null;
  /** Pools being closed after a resize: destroy() must also wait for them. */
  retiring: Set<PiscinaType>;
}

const state: PoolState = ((rt.ext.tpool as PoolState | undefined) ??= { size: null, pool: null, loading: null, retiring: new Set() });

function defaultSize(): number {
  const env = process.env.EVY_THREADPOOL_SIZE;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (Number.isInteger(n) && n >= 1) return n;
    throw outOfRange('EVY_THREADPOOL_SIZE', 'an integer >= 1', env);
  }
  return availableParallelism();
}

/** Number of worker threads (at most) in the pool: `EVY_THREADPOOL_SIZE`, else the CPU count. */
function size(): number {
  return (state.size ??= defaultSize());
}

// The worker file is always the built one (the tests run src/, whose worker would need a TypeScript loader).
function workerFile(): string {
  const built = evyFile('dist', 'tpool-worker.js');
  if (existsSync(built)) return built;
  throw new EvyError(`evy.tpool: cannot find its worker file (looked for ${built}); build evy first`, 'ERR_EVY_TPOOL_WORKER_FILE');
}

// piscina is loaded on first use: it costs ~40 ms of startup that an app not using tpool should not pay.
function pool(): PiscinaType | Promise<PiscinaType> {
  if (state.pool !== null) return state.pool;
  return (state.loading ??= (async () => {
    try {
      const mod: any = await import('piscina');
      const Piscina = (mod.Piscina ?? mod.default?.Piscina ?? mod.default) as typeof PiscinaType;
      const n = size();
      const p = new Piscina({
        filename: workerFile(),
        minThreads: 0,
        maxThreads: n,
        // Idle workers exit after a while; idle ones are unref'd by piscina, so they never keep the process alive.
        idleTimeout: 30_000,
        concurrentTasksPerWorker: 1,
      });
      state.pool = p;
      return p;
    } finally {
      state.loading = null;
    }
  })());
}

function toTask(target: unknown, args: unknown[]): TpoolTask {
  if (typeof target === 'function') {
    const src = Function.prototype.toString.call(target);
    if (/\{\s*\[native code\]\s*\}\s*$/.test(src)) {
      throw new EvyError(
        `evy.tpool.execute: ${target.name || 'the function'} is native or bound and cannot be sent to a worker thread; pass a plain function or { module, name }`,
        'ERR_EVY_TPOOL_FUNCTION',
      );
    }
    return { src, name: target.name, args };
  }
  let module: unknown;
  let name: unknown = 'default';
  if (typeof target === 'string' || target instanceof URL) {
    module = target;
  } else if (target !== null && typeof target === 'object' && 'module' in target) {
    module = (target as TpoolModuleRef).module;
    name = (target as TpoolModuleRef).name ?? 'default';
  } else {
    throw invalidArgType('fnOrModule', 'a function, a module path or URL, or { module, name }', target);
  }
  if (typeof name !== 'string') throw invalidArgType('fnOrModule.name', 'a string', name);
  let spec: string;
  if (module instanceof URL) {
    if (module.protocol !== 'file:') throw new EvyError(`evy.tpool.execute: only file: URLs can be loaded in a worker, got ${module.href}`, 'ERR_EVY_TPOOL_MODULE');
    spec = fileURLToPath(module);
  } else if (typeof module === 'string') {
    spec = module;
    // 'path#export' shorthand.
    const hash = spec.lastIndexOf('#');
    if (typeof target === 'string' && hash > 0) {
      name = spec.slice(hash + 1);
      spec = spec.slice(0, hash);
    }
    if (spec.startsWith('file:')) spec = fileURLToPath(spec);
    if (spec.startsWith('.')) {
      throw new EvyError(
        `evy.tpool.execute: relative module path "${spec}" is ambiguous in a worker; pass an absolute path or new URL('${spec}', import.meta.url)`,
        'ERR_EVY_TPOOL_MODULE',
      );
    }
  } else {
    throw invalidArgType('fnOrModule.module', 'a path, a file: URL or a package name', module);
  }
  // A bare package name resolves from evy's own location inside the worker: prefer absolute paths.
  return { mod: spec, name: name as string, args };
}

/** A task a green thread is waiting on: shown in its owned resources in a thread dump; a kill cancels it. */
class TpoolTaskHandle {
  constructor(
    readonly what: string,
    readonly ac: AbortController,
  ) {}
  [Symbol.for('evy.describe')](): string {
    return `tpool task ${this.what}`;
  }
}

function abortHandle(h: TpoolTaskHandle, error: unknown): void {
  h.ac.abort(error);
}

const ERROR_CLASSES: Record<string, ErrorConstructor> = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

/** The worker's error, rebuilt: same class (for the standard ones), name, message, worker-side stack, and primitive own props (code, errno, ...). */
function revive(d: ErrorEnvelope): unknown {
  if (!d.isError) return d.value;
  const Ctor = ERROR_CLASSES[d.name ?? 'Error'] ?? Error;
  const e = new Ctor(d.message);
  if (e.name !== d.name) Object.defineProperty(e, 'name', { value: d.name, writable: true, configurable: true });
  if (d.stack !== undefined) e.stack = d.stack;
  Object.assign(e, d.props);
  return e;
}

/** Which argument failed to clone (only computed on that error path). */
function badArgument(args: unknown[]): string {
  for (let i = 0; i < args.length; i++) {
    try {
      structuredClone(args[i]);
    } catch {
      const a = args[i];
      const kind = typeof a === 'function' ? 'a function' : a !== null && typeof a === 'object' ? `an instance of ${a.constructor?.name ?? 'Object'}` : typeof a;
      return `argument ${i} (${kind})`;
    }
  }
  return 'an argument';
}

/** The worker could not post the result back: the DataCloneError thrown there reaches us as `{}` (Node 20) or as an Error with an empty message and the original stack (Node 24). */
function isResultCloneFailure(e: unknown): boolean {
  if (e === null || typeof e !== 'object') return false;
  if (!(e instanceof Error)) return Object.keys(e).length === 0;
  return e.name !== 'DataCloneError' && /could not be cloned/.test(e.stack ?? '') && !/could not be cloned/.test(e.message);
}

function translate(e: unknown, what: string, args: unknown[]): unknown {
  if (isResultCloneFailure(e)) {
    return new EvyError(
      `evy.tpool.execute(${what}): its result cannot be sent back from the worker thread (structured clone: no functions, sockets, class instances with private state)`,
      'ERR_EVY_TPOOL_CLONE',
    );
  }
  if (e instanceof Error) {
    const msg = e.message;
    // Sending the task failed here, on the main thread: an argument.
    if (e.name === 'DataCloneError') {
      const err = new EvyError(
        `evy.tpool.execute(${what}): ${badArgument(args)} cannot be sent to a worker thread (structured clone: no functions, sockets, or objects holding them): ${msg}`,
        'ERR_EVY_TPOOL_CLONE',
      );
      err.cause = e;
      return err;
    }
    if (msg === 'Terminating worker thread') {
      const err = new EvyError(`evy.tpool.execute(${what}): tpool.destroy() was called while it was queued or running`, 'ERR_EVY_TPOOL_DESTROYED');
      err.cause = e;
      return err;
    }
    if (/^worker exited with code/.test(msg)) {
      const err = new EvyError(`evy.tpool.execute(${what}): the worker thread died while running it (${msg}); the pool replaces it`, 'ERR_EVY_TPOOL_WORKER_EXIT');
      err.cause = e;
      return err;
    }
  }
  return e; // the function's own error, as thrown in the worker (name, message, stack; code kept by piscina's clone)
}

/**
 * Runs `fn(...args)` (a self-contained function: it is sent as source text) or a module export
 * (`{ module, name }`, `'/abs/path.mjs#name'`, a file: URL) in a worker thread, and parks only the calling
 * green thread until it returns. Arguments and the result travel by structured clone.
 *
 * Killing the caller (or a Timeout firing in it) cancels the work: a queued task is dropped; a running one has
 * its worker terminated (piscina), which stops the JS at its next instruction boundary; a native call in
 * progress (a blocking syscall) finishes first. The caller gets the kill error at once.
 */
export function execute<A extends unknown[], R>(fnOrModule: ((...args: A) => R) | TpoolModuleRef | string | URL, ...args: A): Promise<Awaited<R>> {
  let task: TpoolTask;
  try {
    task = toTask(fnOrModule, args);
  } catch (e) {
    return Promise.reject(e); // a promise API: a bad argument rejects, and nothing was queued
  }
  const what = task.src !== undefined ? `${task.name || 'anonymous'}()` : `${task.mod}#${task.name}`;
  const w = block<Awaited<R>>('tpool.execute');
  if (w instanceof Promise) return w;
  const ac = new AbortController();
  const handle = new TpoolTaskHandle(what, ac);
  let settled = false;
  const p = w.park(null);
  const owner = own(handle, abortHandle);
  const run = (pl: PiscinaType): void => {
    if (ac.signal.aborted) return;
    let started: Promise<unknown>;
    try {
      started = pl.run(task, { signal: ac.signal });
    } catch (e) {
      started = Promise.reject(e);
    }
    started.then(
      (v) => {
        settled = true;
        disown(handle, owner);
        if (v !== null && typeof v === 'object' && Object.hasOwn(v, ERROR_KEY)) w.fail(revive((v as Record<string, ErrorEnvelope>)[ERROR_KEY]!));
        else w.wake(v as Awaited<R>);
      },
      (e) => {
        settled = true;
        disown(handle, owner);
        w.fail(translate(e, what, args));
      },
    );
  };
  const pl = pool();
  if (pl instanceof Promise) {
    pl.then(run, (e) => {
      settled = true;
      disown(handle, owner);
      w.fail(e);
    });
  } else {
    run(pl);
  }
  return p.catch((e: unknown) => {
    // Interrupted (kill, Timeout): drop or stop the work nobody waits for any more.
    if (!settled) {
      disown(handle, owner);
      ac.abort(e);
    }
    throw e;
  });
}

/** Sets the number of worker threads. Running and queued tasks finish on the old pool; new ones use the new size. */
export function resize(n: number): void {
  checkCount(n, 'n', 1);
  state.size = n;
  const old = state.pool;
  if (old === null) return;
  state.pool = null;
  state.retiring.add(old);
  void old.close().finally(() => state.retiring.delete(old));
}

/**
 * Stops every worker thread: tasks still queued or running are rejected (their callers get
 * ERR_EVY_TPOOL_DESTROYED). The next `execute` starts a fresh pool. Call it in test teardown or before exit
 * if tasks may still be running (idle workers never keep the process alive).
 */
export async function destroy(): Promise<void> {
  const loading = state.loading;
  if (loading !== null) await loading.catch(() => {});
  const pools = [...state.retiring];
  if (state.pool !== null) pools.push(state.pool);
  state.pool = null;
  state.retiring.clear();
  await Promise.all(pools.map((p) => p.destroy()));
}

/** Pool figures: configured size, live worker threads, queued tasks, tasks completed. */
export function stats(): { size: number; threads: number; queued: number; completed: number } {
  const p = state.pool;
  return { size: size(), threads: p?.threads.length ?? 0, queued: p?.queueSize ?? 0, completed: p?.completed ?? 0 };
}

/** The tpool namespace: `evy.tpool`. */
export const tpool = {
  execute,
  resize,
  destroy,
  stats,
  get size(): number {
    return size();
  },
};
