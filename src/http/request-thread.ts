// Request threads: each 'request' of an http(s) server runs its listeners in a new green thread, started at
// once (inside the emit, as Node calls listeners), named after the request. What the handler starts is that
// thread's by the ownership rules (docs/patching.md). The thread lives until the app ends the response; if
// the response closes before that (the client went away, or the server dropped the connection), it is killed.
//
// The hook is net.Server.prototype.emit: the one layer http.Server, https.Server (a tls.Server) and every
// framework on them reach (_http_server calls server.emit('request', req, res)); nothing else is loaded for it.
import type { GreenThread } from '../greenthread.js';
import { endedExternal, startedThread } from '../greenthread.js';
import { rt } from '../runtime.js';
import { absorb, builtin, debug, kNever } from '../patching/state.js';
import { armDeadline, deadlineOf } from './deadline.js';
import { requestExit } from './stop.js';
import { SiteMap } from './waiting.js';
import { hs, kKnown, kStart, kThread, kTimer, type HttpServer, type Res } from './state.js';

type Emit = (this: unknown, type: string | symbol, ...args: unknown[]) => boolean;

/** EventEmitter's captureRejections flag (an internal symbol): with it on, Node's emit handles rejections. */
const kCapture: symbol | undefined = (() => {
  const { EventEmitter } = builtin<typeof import('node:events')>('events');
  return Object.getOwnPropertySymbols(EventEmitter.prototype).find((s) => s.description === 'kCapture');
})();

/** Installs the emit hook once (idempotent). */
export function installRequestThreads(): void {
  hs.on = true;
  if (hs.uninstall !== null) return;
  framesAls = probeFrames();
  const VP = builtin<typeof import('node:net')>('net').Server.prototype as any;
  const wasOwn = Object.prototype.hasOwnProperty.call(VP, 'emit');
  const emit = VP.emit as Emit;
  const hooked = function emit_(this: HttpServer, type: string | symbol, a?: any, b?: any): boolean {
    if (type === 'request' || type === 'checkContinue' || type === 'checkExpectation') {
      // A checkContinue listener that emits 'request' itself for the same response stays in that thread.
      // (Node emits these with exactly (req, res): runRequest takes them as arguments, no arguments object.)
      if (hs.on && b != null && b[kThread] === undefined && typeof b.assignSocket === 'function' && this[kNever] !== true) {
        return runRequest(this, emit, type, a, b);
      }
    } else if (type === 'listening') {
      if (typeof this.closeIdleConnections === 'function') know(this);
    } else if (type === 'close') {
      if (this[kKnown] === true) {
        this[kKnown] = false;
        hs.servers.delete(this);
      }
    }
    return emit.apply(this, arguments as unknown as [string]);
  };
  VP.emit = hooked;
  hs.uninstall = () => {
    if (VP.emit !== hooked) return; // replaced after us: leave theirs
    if (wasOwn) VP.emit = emit;
    else delete VP.emit;
  };
}

export function uninstallRequestThreads(): void {
  hs.on = false;
  const un = hs.uninstall;
  hs.uninstall = null;
  un?.();
}

/** A server shutdown() must stop: seen listening (or serving, if it listened before the patch). */
function know(srv: HttpServer): void {
  if (srv[kKnown] === true) return;
  srv[kKnown] = true;
  hs.servers.add(srv);
}

function runRequest(server: HttpServer, emit: Emit, type: string, req: any, res: Res): boolean {
  const t = startedThread(req);
  res[kThread] = t;
  if (server[kKnown] !== true) know(server);
  if (hs.draining) res.shouldKeepAlive = false;
  const deadline = deadlineOf(server);
  // With a deadline, where each owned handle was made is kept for the line a deadline kill prints.
  if (deadline > 0) t._owned = new SiteMap();
  const als = rt.als!;
  if (!framesAls) {
    // Node 20 (and 22 without --experimental-async-context-frame): run() sets and restores a field of the
    // running async resource, nothing more.
    try {
      return als.run(t, callListeners, server, emit, type, req, res);
    } finally {
      afterListeners(t, res, deadline);
    }
  }
  // Node 24+: the store lives in a context frame (a Map), and run() makes two of them per call: the
  // thread's, and a copy of it to restore the caller's store, which costs more than the first (a Map
  // subclass copied through the generic iterator path). Here the thread's frame is entered, and the
  // caller's store is put back only when it matters. A thread that ended within the emit (answered
  // synchronously, the common case) may leave its frame to the rest of the caller's synchronous code, where
  // it reads as no thread (current() is main for an ended thread, as in the callbacks of any thread that
  // ended): so it stays when what it replaces read as no thread either, no store (Node's own callback of the
  // socket) or another ended request thread (pipelined requests, or emits in a loop). Anything else (a
  // thread's or unowned() store, a callback of a socket evy connected) is restored, as run() would.
  const prior = als.getStore();
  als.enterWith(t);
  try {
    return callListeners(server, emit, type, req, res);
  } finally {
    afterListeners(t, res, deadline);
    if (!t._finished || (prior !== undefined && !endedExternal(prior))) als.enterWith(prior!);
  }
}

function afterListeners(t: GreenThread, res: Res, deadline: number): void {
  if (res.writableEnded) {
    t._finish(undefined, false); // answered synchronously: nothing is left to kill
  } else if (!t.dead) {
    res[kStart] = performance.now(); // (the listeners ran synchronously: within microseconds of the start)
    hs.inflight.add(res);
    res.on('close', onResClose);
    if (deadline > 0) armDeadline(res, deadline);
  }
}

/**
 * Does this Node keep AsyncLocalStorage stores in context frames (Node 24+: AsyncContextFrame)? There a
 * resource captures the frame current when it is made, so a store entered inside its scope is gone at the
 * next entry; with the async_hooks implementation (Node 20) the store is set on the resource itself.
 */
let framesAls = false;

function probeFrames(): boolean {
  const { AsyncLocalStorage, AsyncResource } = builtin<typeof import('node:async_hooks')>('async_hooks');
  const probe = new AsyncLocalStorage<number>();
  const r = new AsyncResource('evy.probe');
  r.runInAsyncScope(() => probe.enterWith(1));
  const seen = r.runInAsyncScope(() => probe.getStore());
  probe.disable();
  return seen === undefined;
}

/** Calls the listeners as EventEmitter#emit does, keeping what they return (an async handler's promise). */
function callListeners(server: HttpServer, emit: Emit, type: string, req: any, res: Res): boolean {
  const handler = (server as any)._events?.[type];
  if (handler === undefined || (kCapture !== undefined && server[kCapture] === true)) return emit.call(server, type, req, res);
  if (typeof handler === 'function') {
    watch(handler.call(server, req, res));
  } else {
    for (const l of handler.slice()) watch(l.call(server, req, res));
  }
  return true;
}

/** An async listener whose request was killed rejects with what the kill caused: not an unhandled rejection. */
function watch(r: any): void {
  if (r !== undefined && r !== null && typeof r.then === 'function') r.then(undefined, listenerRejected);
}

function listenerRejected(e: unknown): void {
  // The reaction runs in the context `then` was called in: the request's thread.
  const t = rt.als!.getStore();
  if (t !== undefined && t._killError !== undefined) {
    debug('absorbed the rejection of a killed request\'s listener (%s): %o', t.name, e);
    return;
  }
  throw e; // as before: an unhandled rejection
}

function onResClose(this: Res): void {
  hs.inflight.delete(this);
  const timer = this[kTimer];
  if (timer !== undefined) {
    rt.timers.clearTimeout(timer);
    this[kTimer] = undefined;
  }
  const t: GreenThread = this[kThread];
  if (t.dead) return;
  if (this.writableEnded) {
    t._finish(undefined, false);
    return;
  }
  // Closed before the app ended it: nobody is waiting for this response any more.
  absorb(this);
  void t.kill(requestExit(t, 'the client closed the connection'));
}
