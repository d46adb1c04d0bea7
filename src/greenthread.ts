// GreenThread: an async function run under evy's scheduler, with eventlet's kill/link/wait semantics.
import { EvyError, GreenletExit, illegalConstructor, invalidArgType } from './errors.js';
import { current, ensureAls, reportError, rt } from './runtime.js';
import { checkFunction, checkSeconds } from './validate.js';
import { block, ready, readyReject, type Waiter, WaitList } from './waiter.js';

const NEW = 0;
const RUNNING = 1;
const FINISHED = 2;

/** How long a killed thread that is parked on a foreign promise gets to settle before it is detached. */
export const KILL_GRACE_MS = 100;
/**
 * How long a killed thread that was parked at an evy wait gets to run its `finally` blocks before it is
 * detached. Bounded, so that a kill never hangs: a wait left parked by `Promise.race([foreign, sleep(s)])`
 * looks parked, yet rejecting it resumes nobody.
 */
export const KILL_FINALLY_GRACE_MS = 2000;

type Link<T> = [cb: (gt: GreenThread<T>, ...args: any[]) => void, args: unknown[]];
/** @internal `rt.ext.onSpawn`: called with each new thread (in the spawning thread's context) when set. */
export type SpawnHook = (t: GreenThread) => void;
/** Destroys one resource that a thread owns, with the kill error. */
export type Destroyer = (resource: any, error: unknown) => void;

/** Rarely used per-thread state, allocated on first use: keeps a parked thread small (1M threads are cheap). */
class Extra {
  parkedMore: Set<Waiter> | null = null;
  owned: Map<object, Destroyer> | null = null;
  /** Resources only this thread has used so far (idle or not), each with what to do with it if the thread is killed. */
  solo: Map<object, Destroyer> | null = null;
  links: Link<any>[] | null = null;
  exitWaiters: WaitList | null = null;
  onExit: (() => void)[] | null = null;
  timer: NodeJS.Timeout | null = null;
  ac: AbortController | null = null;
  name: string | null = null;
}

// Bits of GreenThread._flags.
const STARTED = 1;
const FINISHED_BIT = 2;
const DETACHED = 4;
const SPAWN_N = 8;
const FAILED = 16;
/** The outcome is recorded (state FINISHED); a detached thread's body may still be running. */
const SETTLED = 32;
/** Its body is run by the caller (startedThread): a kill has no body of evy's to wait for. */
const EXTERNAL = 64;

const kMake = Symbol('evy.GreenThread');

export class GreenThread<T = unknown> {
  readonly id: number;
  /** @internal */ _fn: ((...args: any[]) => unknown) | null;
  /** @internal */ _args: unknown[] | null;
  /** @internal */ _flags = 0;
  /** @internal Sticky: once set, every evy wait of this thread throws it. */
  _killError: unknown = undefined;
  /** @internal Timeouts that fired while the thread was not at an evy wait, oldest first (one error, or an array). */
  _pendingThrow: unknown = undefined;
  /** @internal */ _result: unknown = undefined;
  /** @internal The evy wait the thread is parked on (more, under Promise.all, in `_parkedMore`). */
  _parked: Waiter | null = null;
  /** @internal The live-thread list (headed by main; newest first) that evy.debug dumps without setup. */
  _livePrev: GreenThread<any> | null = null;
  /** @internal */ _liveNext: GreenThread<any> | null = null;
  private _x: Extra | null = null;

  /** Threads are made by spawn(), spawnN() and spawnAfter(): one made with `new` would never run. */
  private constructor(token: symbol, fn: ((...args: any[]) => unknown) | null, args: unknown[] | null) {
    if (token !== kMake) throw illegalConstructor('GreenThread', 'spawn(), spawnN() and spawnAfter()');
    this.id = rt.nextId++;
    this._fn = fn;
    this._args = args;
  }

  /** @internal */
  static _make<T>(fn: ((...args: any[]) => unknown) | null, args: unknown[] | null): GreenThread<T> {
    return new GreenThread<T>(kMake, fn, args);
  }

  private get x(): Extra {
    return (this._x ??= new Extra());
  }

  /** @internal NEW (0), RUNNING (1) or FINISHED (2): read by evy.debug. */
  get _state(): number {
    const f = this._flags;
    return f & SETTLED ? FINISHED : f & STARTED ? RUNNING : NEW;
  }
  /** @internal The body has returned or thrown (a detached thread may be dead before that). */
  get _finished(): boolean {
    return (this._flags & FINISHED_BIT) !== 0;
  }
  /** @internal Killed on a foreign await and given up on: reported dead before its body ended. */
  get _detached(): boolean {
    return (this._flags & DETACHED) !== 0;
  }
  /** @internal The outcome is an error (`_result` is what was thrown). */
  get _failed(): boolean {
    return (this._flags & FAILED) !== 0;
  }
  /** @internal */
  get _parkedMore(): Set<Waiter> | null {
    return this._x?.parkedMore ?? null;
  }
  /** @internal */
  set _parkedMore(v: Set<Waiter> | null) {
    this.x.parkedMore = v;
  }
  /** @internal Resources this thread is using (ownership follows use): destroyed when it is killed. */
  get _owned(): Map<object, Destroyer> | null {
    return this._x?.owned ?? null;
  }
  /** @internal */
  set _owned(v: Map<object, Destroyer> | null) {
    if (v !== null || this._x !== null) this.x.owned = v;
  }
  /** @internal Resources only this thread has used so far: handed to their orphaner when it is killed. */
  get _solo(): Map<object, Destroyer> | null {
    return this._x?.solo ?? null;
  }
  /** @internal */
  set _solo(v: Map<object, Destroyer> | null) {
    if (v !== null || this._x !== null) this.x.solo = v;
  }
  /** @internal spawnAfter's timer. */
  get _timer(): NodeJS.Timeout | null {
    return this._x?.timer ?? null;
  }
  /** @internal */
  set _timer(v: NodeJS.Timeout | null) {
    if (v !== null || this._x !== null) this.x.timer = v;
  }

  get name(): string {
    const n = this._x?.name;
    if (n != null) return n;
    // An external thread keeps what its name is made from in `_args` (a request: `METHOD url`), made on demand.
    if (this._flags & EXTERNAL && this._args !== null) {
      const r = this._args as unknown as { method?: string; url?: string };
      return `${r.method} ${r.url}`;
    }
    return this === rt.main ? 'MainThread' : `GreenThread-${this.id}`;
  }

  set name(value: string) {
    this.x.name = String(value);
  }

  /** True once the thread has finished, was killed before it started, or was detached after a kill. */
  get dead(): boolean {
    return (this._flags & (FINISHED_BIT | DETACHED)) !== 0;
  }

  /** Aborted (with the kill error as reason) when the thread is killed; never on a normal exit. */
  get signal(): AbortSignal {
    const x = this.x;
    if (x.ac === null) {
      x.ac = new AbortController();
      if (this._killError !== undefined) x.ac.abort(this._killError);
    }
    return x.ac.signal;
  }

  /** The thread's result; rethrows its error (a killed thread's: the kill error). An evy wait. */
  wait(): Promise<T> {
    if (this.dead) return this._failed ? readyReject(this._result) : ready(this._result as T);
    if (this === current()) return Promise.reject(new EvyError('a green thread cannot wait() for itself', 'ERR_EVY_SELF_WAIT'));
    const w = block<T>('GreenThread.wait');
    return w instanceof Promise ? w : w.park((this.x.exitWaiters ??= new WaitList()));
  }

  /**
   * Kills the thread: its pending evy waits reject with `error` (default GreenletExit), the resources it
   * owns are destroyed, `signal` aborts. Settles once the thread has finished; a thread parked on a
   * foreign promise gets a short grace and is then detached. No-op on a dead thread.
   */
  kill(error?: unknown): Promise<void> {
    if (this.dead) return Promise.resolve();
    if (this === rt.main) return Promise.reject(new EvyError('the main green thread cannot be killed', 'ERR_EVY_KILL_MAIN'));
    if (this._killError !== undefined) return this._whenExited(); // already dying
    const err = error === undefined ? new GreenletExit() : error;
    this._killError = err;
    this._x?.ac?.abort(err);
    if ((this._flags & STARTED) === 0) {
      if (this._timer !== null) rt.timers.clearTimeout(this._timer);
      this._timer = null;
      this._fn = null;
      this._args = null;
      this._flags |= FINISHED_BIT;
      this._settle(err, true);
      return Promise.resolve();
    }
    this._destroyOwned(err);
    const parked = this._interrupt(err);
    // Its code runs on callbacks evy did not start: nothing to wait for. Detached now, it stays killed for
    // that code (every evy wait throws, whatever it makes is destroyed at once).
    if (this._flags & EXTERNAL) detachIfAlive(this);
    if (this === current()) {
      // Killing yourself: the caller is the thread, so it throws now (eventlet raises in place).
      const p = Promise.reject(err);
      p.catch(() => {});
      return p;
    }
    if (this._flags & EXTERNAL) return Promise.resolve();
    const done = this._whenExited();
    // Parked at an evy wait: it resumes with the kill error and its finally blocks run (up to
    // KILL_FINALLY_GRACE_MS). Otherwise it may sit on a foreign promise forever: a short grace, then detach.
    // The grace timer is cleared when the body finishes (no stray timer in getActiveResourcesInfo()).
    this._timer = rt.timers.setTimeout(detachIfAlive, parked ? KILL_FINALLY_GRACE_MS : KILL_GRACE_MS, this);
    return done;
  }

  /** Kills the thread only if it has not started yet. */
  cancel(error?: unknown): void {
    if ((this._flags & STARTED) === 0 && !this.dead) void this.kill(error);
  }

  /** Calls `cb(gt, ...args)` when the thread exits (at once if it already has), in registration order. */
  link<A extends unknown[]>(cb: (gt: GreenThread<T>, ...args: A) => void, ...args: A): void {
    checkFunction(cb, 'cb');
    if (this.dead) {
      runLink(this, cb, args);
      return;
    }
    (this.x.links ??= []).push([cb, args]);
  }

  /** Removes the first link registered with `cb`; returns whether one was removed. */
  unlink(cb: (gt: GreenThread<T>, ...args: any[]) => void): boolean {
    const links = this._x?.links ?? null;
    if (links === null) return false;
    const i = links.findIndex((l) => l[0] === cb);
    if (i < 0) return false;
    links.splice(i, 1);
    return true;
  }

  /** @internal Rejects every evy wait the thread is parked on. Returns whether there was one. */
  _interrupt(error: unknown): boolean {
    let any = false;
    const w = this._parked;
    if (w !== null) {
      any = true;
      w.interrupt(error);
    }
    const more = this._parkedMore;
    if (more !== null && more.size > 0) {
      any = true;
      for (const m of [...more]) m.interrupt(error);
    }
    return any;
  }

  /** @internal The error the thread's next evy wait must throw, if any. */
  _takeInterrupt(): unknown {
    if (this._killError !== undefined) return this._killError;
    const e = this._pendingThrow;
    if (e === undefined) return undefined;
    if (!(e instanceof PendingThrows)) {
      this._pendingThrow = undefined;
      return e;
    }
    const first = e.shift();
    if (e.length === 0) this._pendingThrow = undefined;
    return first;
  }

  /** @internal Queues a fired Timeout's error for the thread's next evy wait (none is ever lost). */
  _queueThrow(error: unknown): void {
    const e = this._pendingThrow;
    if (e === undefined) this._pendingThrow = error;
    else if (e instanceof PendingThrows) e.push(error);
    else this._pendingThrow = new PendingThrows(e, error);
  }

  /** @internal Drops a queued Timeout error that was cancelled before delivery. */
  _dropThrow(error: unknown): void {
    const e = this._pendingThrow;
    if (e === error) this._pendingThrow = undefined;
    else if (e instanceof PendingThrows) {
      const i = e.indexOf(error);
      if (i >= 0) e.splice(i, 1);
      if (e.length === 0) this._pendingThrow = undefined;
    }
  }

  /** @internal */
  _whenExited(): Promise<void> {
    return new Promise((resolve) => (this.x.onExit ??= []).push(resolve));
  }

  /**
   * @internal Destroys what the thread is using, then hands what only it ever used (idle now, or kept by a
   * cancel) to its orphaner: see ownership.ts.
   */
  _destroyOwned(err: unknown): void {
    const owned = this._owned;
    const solo = this._solo;
    this._owned = this._solo = null;
    // Destroyers marked `last` (a child tree is frozen before it is signalled, which takes a while) run after
    // the others, so that a kill's sockets and timers are not kept waiting behind them (in a killBatch, after
    // every kill of the batch).
    let later: [object, Destroyer][] | null = null;
    if (owned !== null) later = this._runDestroyers(owned, err, later);
    if (solo !== null) later = this._runDestroyers(solo, err, later);
    if (later === null) return;
    if (batch !== null) for (const [res, destroy] of later) batch.push(() => this._destroyOne(res, destroy, err));
    else for (const [res, destroy] of later) this._destroyOne(res, destroy, err);
  }

  private _runDestroyers(map: Map<object, Destroyer>, err: unknown, later: [object, Destroyer][] | null): [object, Destroyer][] | null {
    for (const [res, destroy] of map) {
      if ((destroy as { last?: boolean }).last === true) (later ??= []).push([res, destroy]);
      else this._destroyOne(res, destroy, err);
    }
    return later;
  }

  private _destroyOne(res: object, destroy: Destroyer, err: unknown): void {
    try {
      destroy(res, err);
    } catch (e) {
      reportError(e, this);
    }
  }

  /** @internal The body returned or threw. */
  _finish(value: unknown, failed: boolean): void {
    if (this._flags & FINISHED_BIT) return;
    this._flags |= FINISHED_BIT | STARTED | SETTLED;
    this._owned = this._solo = null; // a normal exit releases, never destroys
    const grace = this._timer; // a kill's grace timer (spawnAfter's is null once started)
    if (grace !== null) {
      rt.timers.clearTimeout(grace);
      this._timer = null;
    }
    if (this._flags & DETACHED) return; // already reported dead; the late result is discarded
    // A killed thread that failed died of the kill, whatever secondary error the kill provoked on its way out
    // (a destroyed socket's ECONNRESET, exec's "Command failed"); one that caught it and returned keeps its value.
    if (failed && this._killError !== undefined) value = this._killError;
    if (failed && this._flags & SPAWN_N && !(value === this._killError)) reportError(value, this);
    this._settle(value, failed);
  }

  /** @internal Records the outcome and tells everyone waiting. */
  _settle(value: unknown, failed: boolean): void {
    unlinkLive(this);
    if (this._flags & EXTERNAL && this._args !== null) {
      // A request thread's name is copied out of its request: what the handler left in the thread's context
      // (a timer, a pending promise) must not keep the request, and its socket, alive once it has ended.
      const r = this._args as unknown as { method?: string; url?: string };
      this._args = { method: r.method, url: r.url } as unknown as unknown[];
    }
    this._flags |= failed ? STARTED | SETTLED | FAILED : STARTED | SETTLED;
    this._result = value;
    const x = this._x;
    if (x === null) return;
    const waiters = x.exitWaiters;
    if (waiters !== null) {
      x.exitWaiters = null;
      for (const w of waiters.drain()) failed ? w.fail(value) : w.wake(value);
    }
    const links = x.links;
    if (links !== null) {
      x.links = null;
      for (const [cb, args] of links) runLink(this, cb, args);
    }
    const onExit = x.onExit;
    if (onExit !== null) {
      x.onExit = null;
      for (const resolve of onExit) resolve();
    }
  }
}

/** Several fired Timeouts waiting for delivery (a distinct class: a user's error may itself be an array). */
class PendingThrows extends Array<unknown> {
  static override get [Symbol.species]() {
    return Array;
  }
}

function runLink<T>(gt: GreenThread<T>, cb: (gt: GreenThread<T>, ...args: any[]) => void, args: unknown[]): void {
  try {
    cb(gt, ...args);
  } catch (e) {
    reportError(e, gt);
  }
}

function detachIfAlive(t: GreenThread): void {
  t._timer = null;
  if (t.dead) return;
  t._flags |= DETACHED;
  t._owned = t._solo = null;
  t._settle(t._killError, true);
}

rt.main ??= GreenThread._make(null, null);

/**
 * @internal The async context evy gives the handles it makes outside any thread (a socket connected from a
 * thread): their callbacks belong to no thread (current() is main there, as for a finished thread), yet evy
 * can tell a library acting from a callback apart from the main thread's own code.
 */
export const callbackContext: GreenThread = ((rt.ext.callbackContext as GreenThread | undefined) ??= (() => {
  const t = GreenThread._make(null, null);
  t.name = 'callbacks';
  t._flags |= FINISHED_BIT; // current() treats it as the main thread
  return t;
})());

rt.main._flags |= STARTED;

// Every spawned thread is on a list headed by main until it settles: two field writes at spawn and at exit
// (a Set costs 70-300 ns per insert in identity hashing), so a dump needs no opt-in (evy.debug.threads()).
function linkLive(t: GreenThread<any>): void {
  const head = rt.main!;
  const next = head._liveNext;
  t._livePrev = head;
  t._liveNext = next;
  if (next !== null) next._livePrev = t;
  head._liveNext = t;
}

function unlinkLive(t: GreenThread<any>): void {
  const prev = t._livePrev;
  if (prev === null) return;
  const next = t._liveNext;
  prev._liveNext = next;
  if (next !== null) next._livePrev = prev;
  t._livePrev = t._liveNext = null;
}

/** The destroyers marked `last` of the kills made inside killBatch(), run when it ends. */
let batch: (() => void)[] | null = null;

/** @internal Runs `fn`, which kills threads: the destroyers marked `last` of all its kills run after it. */
export function killBatch(fn: () => void): void {
  const outer = batch;
  const mine: (() => void)[] = (batch = outer ?? []);
  try {
    fn();
  } finally {
    if (outer === null) {
      batch = null;
      for (const run of mine) run();
    }
  }
}

// ---- scheduling ----------------------------------------------------------------------------------

function schedule(t: GreenThread): void {
  rt.ready.push(t);
  if (!rt.drainScheduled) {
    rt.drainScheduled = true;
    queueMicrotask(drain);
  }
}

function drain(): void {
  const als = ensureAls();
  const ready = rt.ready;
  // Threads spawned while draining join this batch (the loop re-reads the length). enterWith, not run: on
  // Node 24+ run() builds a second context frame per thread only to restore the previous one (~150 ns), and
  // the context this microtask leaves behind ends with it (test/greenthread.test.ts checks that nothing sees it).
  for (let i = 0; i < ready.length; i++) {
    const t = ready[i]!;
    ready[i] = undefined;
    if ((t._flags & STARTED) === 0 && t._killError === undefined) {
      als.enterWith(t);
      start(t);
    }
  }
  ready.length = 0;
  rt.drainScheduled = false;
}

function start(t: GreenThread): void {
  t._flags |= STARTED;
  const fn = t._fn!;
  const args = t._args;
  t._fn = null;
  t._args = null;
  let r: unknown;
  try {
    r = args === null ? fn() : fn(...args);
  } catch (e) {
    t._finish(e, true);
    return;
  }
  if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
    // The reactions run in the thread's async context, so they find their thread without a closure.
    (r as PromiseLike<unknown>).then(finishOk, finishErr);
  } else {
    t._finish(r, false);
  }
}

function finishOk(v: unknown): void {
  rt.als!.getStore()!._finish(v, false);
}

function finishErr(e: unknown): void {
  rt.als!.getStore()!._finish(e, true);
}

// ---- public spawning API ---------------------------------------------------------------------------

/** @internal Creates and schedules a thread; `report` marks a spawnN thread (errors go to hub.onError). */
export function launch<T>(fn: (...args: any[]) => T | PromiseLike<T>, args: unknown[], report: boolean): GreenThread<Awaited<T>> {
  checkFunction(fn);
  ensureAls();
  const t = GreenThread._make<Awaited<T>>(fn as any, args.length === 0 ? null : args);
  if (report) t._flags |= SPAWN_N;
  linkLive(t);
  // Opt-in debug hook (evy.debug thread tracking): one slot read per spawn when off.
  const hook = rt.ext.onSpawn as SpawnHook | undefined;
  if (hook !== undefined) hook(t);
  schedule(t);
  return t;
}

/**
 * @internal A thread that is running already and whose code the caller runs, synchronously, inside
 * `rt.als.run(t, ...)` (a server's 'request' listeners, called as Node calls them: no scheduler turn). It ends
 * when the caller calls `t._finish(value, failed)`, or when it is killed (then at once: see kill()). Its name
 * is `request.method request.url`, made when read (no string or extra object per request).
 */
export function startedThread(request: { method?: string; url?: string } | null = null): GreenThread {
  ensureAls();
  const t = GreenThread._make(null, request as unknown as unknown[] | null);
  t._flags |= STARTED | EXTERNAL;
  linkLive(t);
  const hook = rt.ext.onSpawn as SpawnHook | undefined;
  if (hook !== undefined) hook(t);
  return t;
}

/**
 * @internal A startedThread that has ended (not merely detached by a kill): its context reads as no thread's,
 * as an absent store does (see http/request-thread.ts).
 */
export function endedExternal(t: GreenThread): boolean {
  return (t._flags & (EXTERNAL | FINISHED_BIT)) === (EXTERNAL | FINISHED_BIT);
}

/** @internal A thread that already finished with this outcome (a pool's inline run). */
export function finishedThread<T>(value: unknown, failed: boolean): GreenThread<T> {
  const t = GreenThread._make<T>(null, null);
  t._flags |= FINISHED_BIT;
  t._settle(value, failed);
  return t;
}

/** Starts `fn(...args)` in a new green thread at the next scheduler turn. */
export function spawn<A extends unknown[], T>(fn: (...args: A) => T | PromiseLike<T>, ...args: A): GreenThread<Awaited<T>> {
  return launch(fn, args, false);
}

/** Like spawn, without a result: an error is reported to `hub.onError` (default: stderr), never lost. */
export function spawnN<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): void {
  launch(fn, args, true);
}

/** Spawns `fn(...args)` after `seconds`; `gt.cancel()` before then prevents the call. */
export function spawnAfter<A extends unknown[], T>(seconds: number, fn: (...args: A) => T | PromiseLike<T>, ...args: A): GreenThread<Awaited<T>> {
  const ms = checkSeconds(seconds);
  checkFunction(fn);
  ensureAls();
  const t = GreenThread._make<Awaited<T>>(fn as any, args.length === 0 ? null : args);
  t._timer = rt.timers.setTimeout(scheduleLater, ms, t);
  linkLive(t);
  const hook = rt.ext.onSpawn as SpawnHook | undefined;
  if (hook !== undefined) hook(t);
  return t;
}

function scheduleLater(t: GreenThread): void {
  t._timer = null;
  if (t._killError === undefined) schedule(t);
}

/** The running green thread (the main thread outside spawned ones). */
export function getcurrent(): GreenThread {
  return current();
}

/** Same as `gt.kill(error)`. */
export function kill(gt: GreenThread<any>, error?: unknown): Promise<void> {
  if (typeof (gt as GreenThread | null)?.kill !== 'function') return Promise.reject(invalidArgType('gt', 'a GreenThread', gt));
  return gt.kill(error);
}
