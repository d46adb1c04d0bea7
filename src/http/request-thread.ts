// Request threads: each 'request' of an http(s) server runs its listeners in a new green thread, started at
// once (inside the emit, as Node calls listeners), named after the request. What the handler starts is that
// thread's by the ownership rules (docs/patching.md). The thread lives until the app ends the response; if
// the response closes before that (the client went away, or the server dropped the connection), it is killed.
//
// The hook is net.Server.prototype.emit: the one layer http.Server, https.Server (a tls.Server) and every
// framework on them reach (_http_server calls server.emit('request', req, res)); nothing else is loaded for it.
import type { GreenThread } from '../greenthread.js';
import { startedThread } from '../greenthread.js';
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
  const VP = builtin<typeof import('node:net')>('net').Server.prototype as any;
  const wasOwn = Object.prototype.hasOwnProperty.call(VP, 'emit');
  const emit = VP.emit as Emit;
  const hooked = function emit_(this: HttpServer, type: string | symbol, a?: any, b?: any): boolean {
    if (type === 'request' || type === 'checkContinue' || type === 'checkExpectation') {
      // A checkContinue listener that emits 'request' itself for the same response stays in that thread.
      if (hs.on && b != null && b[kThread] === undefined && typeof b.assignSocket === 'function' && this[kNever] !== true) {
        return runRequest(this, emit, arguments, a, b);
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

function runRequest(server: HttpServer, emit: Emit, args: IArguments, req: any, res: Res): boolean {
  const t = startedThread(req);
  res[kThread] = t;
  if (server[kKnown] !== true) know(server);
  if (hs.draining) res.shouldKeepAlive = false;
  const deadline = deadlineOf(server);
  // With a deadline, where each owned handle was made is kept for the line a deadline kill prints.
  if (deadline > 0) t._owned = new SiteMap();
  try {
    return rt.als!.run(t, callListeners, server, emit, args);
  } finally {
    if (res.writableEnded) {
      t._finish(undefined, false); // answered synchronously: nothing is left to kill
    } else if (!t.dead) {
      res[kStart] = performance.now(); // (the listeners ran synchronously: within microseconds of the start)
      hs.inflight.add(res);
      res.on('close', onResClose);
      if (deadline > 0) armDeadline(res, deadline);
    }
  }
}

/** Calls the listeners as EventEmitter#emit does, keeping what they return (an async handler's promise). */
function callListeners(server: HttpServer, emit: Emit, args: IArguments): boolean {
  const type = args[0] as string;
  const handler = (server as any)._events?.[type];
  if (handler === undefined || (kCapture !== undefined && server[kCapture] === true)) return emit.apply(server, args as unknown as [string]);
  const req = args[1];
  const res = args[2];
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
