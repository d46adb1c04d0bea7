// Green timers: a setTimeout/setInterval/setImmediate created in a green thread is owned by it (a timeout
// until it fires or is cleared, an interval until cleared) and cleared when the thread is killed. The
// timers/promises versions reject with the kill error. Outside a thread they are the originals plus one
// check. They always call the ORIGINAL timer functions (ps.orig), so a second copy of evy or a double
// patch never wraps a wrapper; evy itself schedules with rt.timers and is never affected.
import { type GreenThread } from '../greenthread.js';
import { disown, own, owningThread } from '../ownership.js';
import { rt } from '../runtime.js';
import { callWithKillSignal, killSignal, PROMISIFY, ps } from './state.js';

const O = ps.orig.timers;
const OP = ps.orig.timersPromises;
const kOwner = Symbol.for('evy.timer.owner');


interface Rec {
  t: GreenThread;
  cb: (...a: unknown[]) => unknown;
  args: unknown[];
  timer: any;
}

function fireOnce(rec: Rec): unknown {
  disown(rec.timer, rec.t);
  rec.timer[kOwner] = undefined;
  return rec.cb.apply(rec.timer, rec.args);
}

function fireRepeat(rec: Rec): unknown {
  return rec.cb.apply(rec.timer, rec.args);
}

function clearT(timer: any): void {
  O.clearTimeout(timer);
}
function clearI(timer: any): void {
  O.clearInterval(timer);
}
function clearIm(imm: any): void {
  O.clearImmediate(imm);
}

function ownTimer(rec: Rec, destroy: (r: any, e: unknown) => void): any {
  const timer = rec.timer;
  if (own(timer, destroy) !== null) {
    timer[kOwner] = rec.t;
    hookUnref(timer);
  }
  return timer;
}

/**
 * An unref'd timer is housekeeping nobody waits on (a library's heartbeat, idle reaper or timer wheel,
 * often created lazily inside whichever thread first called the library): a thread awaiting it would let
 * the process exit under its feet. So unref() releases it, and a kill of that thread leaves it alone.
 * The hook goes on the Timeout and Immediate prototypes, once, at the first owned timer; for any other
 * timer it is one property read. The prototype keeps its original `unref` descriptor under the marker, so
 * that undo() can put it back (unhookUnref): the next owned timer hooks it again.
 */
function hookUnref(timer: any): void {
  const proto = Object.getPrototypeOf(timer);
  if (proto === null || Object.prototype.hasOwnProperty.call(proto, kUnrefHooked)) return;
  const unref = proto.unref as (this: unknown) => unknown;
  if (typeof unref !== 'function') return;
  Object.defineProperty(proto, kUnrefHooked, { value: Object.getOwnPropertyDescriptor(proto, 'unref') ?? null, configurable: true });
  Object.defineProperty(proto, 'unref', {
    value: function unref_(this: any) {
      if (this[kOwner] !== undefined) release(this);
      return unref.call(this);
    },
    writable: true,
    configurable: true,
  });
  // In rt.ext: the ESM and the CJS build of evy hook the same prototypes.
  ((rt.ext.unrefHooked as Set<object> | undefined) ??= new Set()).add(proto);
}
const kUnrefHooked = Symbol.for('evy.timer.unrefHooked');

/** Puts back the prototypes' own `unref` (monkeyPatch's undo of timers). */
export function unhookUnref(): void {
  const protos = rt.ext.unrefHooked as Set<any> | undefined;
  if (protos === undefined) return;
  for (const proto of protos) {
    const d = Object.getOwnPropertyDescriptor(proto, kUnrefHooked)?.value as PropertyDescriptor | null | undefined;
    if (d === undefined) continue;
    if (d === null) delete proto.unref;
    else Object.defineProperty(proto, 'unref', d);
    delete proto[kUnrefHooked];
  }
  protos.clear();
}

export function setTimeout(this: unknown, callback: any, ms?: number, ...args: unknown[]): NodeJS.Timeout {
  const t = typeof callback === 'function' ? owningThread() : null;
  if (t === null) {
    const timer = (O.setTimeout as any).apply(this, arguments);
    ps.unownedTimer?.(timer);
    return timer;
  }
  const rec: Rec = { t, cb: callback, args, timer: null };
  rec.timer = O.setTimeout(fireOnce, ms, rec);
  return ownTimer(rec, clearT);
}

export function setInterval(this: unknown, callback: any, ms?: number, ...args: unknown[]): NodeJS.Timeout {
  const t = typeof callback === 'function' ? owningThread() : null;
  if (t === null) {
    const timer = (O.setInterval as any).apply(this, arguments);
    ps.unownedTimer?.(timer);
    return timer;
  }
  const rec: Rec = { t, cb: callback, args, timer: null };
  rec.timer = O.setInterval(fireRepeat, ms, rec);
  return ownTimer(rec, clearI);
}

export function setImmediate(this: unknown, callback: any, ...args: unknown[]): NodeJS.Immediate {
  const t = typeof callback === 'function' ? owningThread() : null;
  if (t === null) return (O.setImmediate as any).apply(this, arguments);
  const rec: Rec = { t, cb: callback, args, timer: null };
  rec.timer = O.setImmediate(fireOnce, rec);
  return ownTimer(rec, clearIm);
}

function release(timer: any): void {
  if (timer !== null && typeof timer === 'object') {
    const o: GreenThread | undefined = timer[kOwner];
    if (o !== undefined) {
      timer[kOwner] = undefined;
      disown(timer, o);
    }
  }
}

export function clearTimeout(timer: any): void {
  release(timer);
  O.clearTimeout(timer);
}

export function clearInterval(timer: any): void {
  release(timer);
  O.clearInterval(timer);
}

export function clearImmediate(immediate: any): void {
  release(immediate);
  O.clearImmediate(immediate);
}

// ---- timers/promises -------------------------------------------------------------------------------

/** Runs an original timers/promises call with a signal the thread's kill aborts; maps that abort to the kill error. */
function owned<T>(t: GreenThread, options: any, call: (opts: any) => Promise<T>): Promise<T> {
  if (t._killError !== undefined) return Promise.reject(t._killError);
  if (options !== undefined && (options === null || typeof options !== 'object')) return call(options); // Node validates
  if (options?.signal?.aborted) return call(options);
  return callWithKillSignal(t, options ?? {}, call);
}

function pSetTimeout<T = void>(delay?: number, value?: T, options?: any): Promise<T> {
  const t = owningThread();
  if (t === null) return OP.setTimeout(delay, value, options);
  return owned(t, options, (o) => OP.setTimeout(delay, value, o));
}

function pSetImmediate<T = void>(value?: T, options?: any): Promise<T> {
  const t = owningThread();
  if (t === null) return OP.setImmediate(value, options);
  return owned(t, options, (o) => OP.setImmediate(value, o));
}

function pSetInterval<T = void>(delay?: number, value?: T, options?: any): AsyncIterableIterator<T> {
  const t = owningThread();
  if (t === null) return OP.setInterval(delay, value, options);
  if (t._killError !== undefined || (options !== undefined && (options === null || typeof options !== 'object')) || options?.signal?.aborted) {
    return OP.setInterval(delay, value, t._killError !== undefined ? { ...options, signal: AbortSignal.abort(t._killError) } : options);
  }
  const ks = killSignal(t, options?.signal);
  const it = OP.setInterval(delay, value, { ...options, signal: ks.signal });
  const done = ks.release;
  const mapErr = (e: unknown): never => {
    done();
    throw ks.error(e);
  };
  const wrapped: AsyncIterableIterator<T> = {
    next: () =>
      it.next().then((r) => {
        if (r.done) done();
        return r;
      }, mapErr),
    return: (v?: any) => {
      done();
      return it.return ? it.return(v) : Promise.resolve({ done: true, value: v });
    },
    [Symbol.asyncIterator]() {
      return wrapped;
    },
  };
  return wrapped;
}

export const promises = {
  setTimeout: pSetTimeout as typeof OP.setTimeout,
  setImmediate: pSetImmediate as typeof OP.setImmediate,
  setInterval: pSetInterval as typeof OP.setInterval,
};

// util.promisify(setTimeout) / (setImmediate) give the green promise versions, as Node's do the originals.
Object.defineProperty(setTimeout, PROMISIFY, { enumerable: true, value: promises.setTimeout });
Object.defineProperty(setImmediate, PROMISIFY, { enumerable: true, value: promises.setImmediate });
