// Ownership of sockets and servers (net, tls, and through them http/https and database clients).
//
// The rule (docs/patching.md): a socket is owned by the green threads that have an operation outstanding
// on it. Connecting or writing starts one; it ends when a reply arrives (data is pushed to the socket),
// when the socket is handed back to an http.Agent ('free'), or when the socket is destroyed. While an
// http request or response is attached (`_httpMessage`), incoming data does not end it: the exchange is
// over when the agent frees the socket. An idle socket has no owner, so a kill never touches it. A kill
// destroys a socket only when no other live thread is also waiting on it.
//
// The hooks sit on net.Socket.prototype and net.Server.prototype: the lowest layer that net, tls, http,
// https and database drivers all reach (Node 20's http captured net.createConnection before any patch).
import type { Server, Socket } from 'node:net';
import { disown, own, type GreenThread } from './greenthread.js';
import { current, rt } from './runtime.js';
import { absorb, inUnowned, kGreen, kNever, ps } from './ownership-state.js';

const kUsers = Symbol.for('evy.net.users');
const kFreeHooked = Symbol.for('evy.net.freeHooked');
const kOwner = Symbol.for('evy.net.owner');
const kConns = Symbol.for('evy.net.conns');

type AnySock = Socket & Record<symbol, any> & { _httpMessage?: unknown; encrypted?: boolean; _isStdio?: boolean };
type AnyServer = Server & Record<symbol, any> & { closeAllConnections?: () => void; addContext?: unknown };

/** Is this socket tracked: created through a green module, or net/tls patched globally? */
function trackedSocket(s: AnySock): boolean {
  if (s[kGreen] === true) return true;
  return s.encrypted === true ? ps.on.tls : ps.on.net;
}

function trackedServer(s: AnyServer): boolean {
  if (s[kGreen] === true) return true;
  return typeof s.addContext === 'function' ? ps.on.tls : ps.on.net;
}

/** The current thread starts an operation on `s`: it owns the socket until the operation ends. */
export function useSocket(s: AnySock, t: GreenThread): void {
  // process.stdout/stderr are net.Sockets when piped: a thread's console.log must not make them its own.
  if (s[kNever] === true || s.destroyed || s._isStdio === true) return;
  if (s._httpMessage != null && s[kFreeHooked] !== true) {
    // An http.Agent socket: the exchange ends when the agent takes the socket back.
    s[kFreeHooked] = true;
    s.on('free', onFree);
  }
  let users: GreenThread[] | undefined = s[kUsers];
  if (users === undefined) users = s[kUsers] = [];
  else if (users.includes(t)) return;
  if (own(s, destroySocket) === null) return; // a killed thread: the socket was destroyed at once
  users.push(t);
}

function onFree(this: AnySock): void {
  releaseSocket(this);
}

/** Every outstanding operation on `s` ended: it is idle and has no owner. */
export function releaseSocket(s: AnySock): void {
  const users: GreenThread[] | undefined = s[kUsers];
  if (users === undefined || users.length === 0) return;
  for (const u of users) disown(s, u);
  users.length = 0;
}

function destroySocket(s: AnySock, err: unknown): void {
  const users: GreenThread[] | undefined = s[kUsers];
  if (users !== undefined) {
    // Threads killed in this same sweep (or dead) no longer count; a live one still waiting keeps it alive.
    const live = users.filter((u) => u._killError === undefined && !u.dead);
    users.length = 0;
    users.push(...live);
    if (live.length > 0) return;
  }
  if (s.destroyed) return;
  absorb(s);
  absorb(s._httpMessage);
  s.destroy(err as Error);
}

/** A server is owned by the thread that made it listen, until it is closed. */
export function ownServer(srv: AnyServer, t: GreenThread): void {
  if (srv[kNever] === true || srv[kOwner] !== undefined) return;
  if (own(srv, destroyServer) === null) return;
  srv[kOwner] = t;
  srv[kConns] = new Set<Socket>();
  srv.on('connection', trackConn);
}

function trackConn(this: AnyServer, sock: Socket): void {
  const conns: Set<Socket> | undefined = this[kConns];
  if (conns === undefined) return;
  conns.add(sock);
  sock.once('close', () => conns.delete(sock));
}

function destroyServer(srv: AnyServer, err: unknown): void {
  srv[kOwner] = undefined;
  absorb(srv);
  srv.close();
  const conns: Set<AnySock> | undefined = srv[kConns];
  srv[kConns] = undefined;
  if (conns !== undefined) {
    for (const c of conns) {
      absorb(c);
      absorb(c._httpMessage);
      c.destroy(err as Error);
    }
  }
  // http.Server tracks its own connections (idle keep-alive ones included).
  if (typeof srv.closeAllConnections === 'function') srv.closeAllConnections();
}

function notMain(): GreenThread | null {
  if (rt.als === null) return null; // no thread was ever spawned: the cheapest pass-through
  const t = current();
  return t === rt.main ? null : t;
}

/** Installs the prototype hooks once (idempotent). They stay inert for untracked handles. */
export function installNetHooks(): void {
  if (ps.netHooks !== null) return;
  const net = process.getBuiltinModule('net') as typeof import('node:net');
  const SP = net.Socket.prototype as any;
  const VP = net.Server.prototype as any;
  const saved: [obj: any, key: string, own: boolean, value: unknown][] = [];
  const put = (obj: any, key: string, value: unknown): void => {
    saved.push([obj, key, Object.prototype.hasOwnProperty.call(obj, key), obj[key]]);
    obj[key] = value;
  };

  const connect = SP.connect as (...a: unknown[]) => unknown;
  put(SP, 'connect', function connect_(this: AnySock, ...args: unknown[]) {
    const r = connect.apply(this, args);
    const t = notMain();
    if (t !== null) {
      if (trackedSocket(this)) useSocket(this, t);
    } else if (rt.als !== null && inUnowned()) {
      this[kNever] = true;
    }
    return r;
  });

  const write = SP.write as (...a: unknown[]) => boolean;
  put(SP, 'write', function write_(this: AnySock, chunk: unknown, encoding?: unknown, cb?: unknown) {
    const r = write.call(this, chunk, encoding, cb);
    // Only a socket that can still receive is waited on after a write: no reply comes on a write-only
    // one (a child's stdin, a piped stdout) or one whose peer has ended, so a write there owns nothing.
    // A shared worker process's stdin must not die with the last thread that wrote a job to it.
    if (rt.als !== null && this.readable) {
      const t = notMain();
      if (t !== null && trackedSocket(this)) useSocket(this, t);
    }
    return r;
  });

  const push = SP.push as (chunk: unknown, encoding?: unknown) => boolean;
  put(SP, 'push', function push_(this: AnySock, chunk: unknown, encoding?: unknown) {
    // A reply arrived: the operations waiting on it are over (unless an http exchange is still attached).
    const users = this[kUsers];
    if (users !== undefined && users.length !== 0 && this._httpMessage == null) releaseSocket(this);
    return push.call(this, chunk, encoding);
  });

  const destroy_ = SP._destroy as (...a: unknown[]) => unknown;
  put(SP, '_destroy', function _destroy(this: AnySock, ...args: unknown[]) {
    releaseSocket(this);
    return destroy_.apply(this, args);
  });

  const listen = VP.listen as (...a: unknown[]) => unknown;
  put(VP, 'listen', function listen_(this: AnyServer, ...args: unknown[]) {
    const r = listen.apply(this, args);
    const t = notMain();
    if (t !== null) {
      if (trackedServer(this)) ownServer(this, t);
    } else if (rt.als !== null && inUnowned()) {
      this[kNever] = true;
    }
    return r;
  });

  const close = VP.close as (...a: unknown[]) => unknown;
  put(VP, 'close', function close_(this: AnyServer, ...args: unknown[]) {
    const o: GreenThread | undefined = this[kOwner];
    if (o !== undefined) {
      this[kOwner] = undefined;
      disown(this, o);
    }
    return close.apply(this, args);
  });

  ps.netHooks = () => {
    for (let i = saved.length - 1; i >= 0; i--) {
      const [obj, key, wasOwn, value] = saved[i]!;
      if (wasOwn) obj[key] = value;
      else delete obj[key];
    }
  };
}

export function uninstallNetHooks(): void {
  const un = ps.netHooks;
  if (un === null) return;
  ps.netHooks = null;
  un();
}

/** Marks a socket or server made by a green module, and starts tracking it if made inside a thread. */
export function greenSocket<S extends Socket>(s: S): S {
  installNetHooks();
  const a = s as unknown as AnySock;
  a[kGreen] = true;
  const t = notMain();
  if (t !== null) useSocket(a, t); // it is connecting: an operation outstanding
  else if (rt.als !== null && inUnowned()) a[kNever] = true;
  return s;
}

function markGreen(sock: AnySock): void {
  sock[kGreen] = true;
}

export function greenServer<S extends Server>(srv: S): S {
  installNetHooks();
  const a = srv as unknown as AnyServer;
  a[kGreen] = true;
  // Accepted sockets of a green server are green too (also the TLS sockets of a tls.Server).
  srv.prependListener('connection', markGreen);
  srv.prependListener('secureConnection', markGreen);
  return srv;
}
