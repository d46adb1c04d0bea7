// Ownership of sockets and servers (net, tls, and through them http/https and database clients).
//
// The rule (docs/patching.md): a handle is owned by the thread that awaits the outcome of an operation on
// it, never by the context a callback runs in.
// - Node runs a socket's callbacks ('connect', 'data', 'close'...) in the async context it was connected
//   in. So sockets are connected outside any thread's context: what a library does from their callbacks
//   (write the next queued command, open a socket for a queued request, arm a timer) belongs to no thread.
// - A thread that connects a socket owns it while connecting, and owns what the library writes from the
//   socket's callbacks until a thread's own code first writes a request (the handshake, and a client
//   flushing the commands queued behind its connect). A write from a thread's own code is a request: the
//   thread owns the socket until a reply arrives (data is pushed) or the socket is destroyed.
// - A socket known to serve several threads at once is shared and never destroyed by a kill: a second
//   thread wrote while a first one's request was outstanding, or a library wrote from the socket's own
//   callback while delivering a reply (it is serving a queue whose other entries evy cannot see).
// - http(s) requests are owned one level up, by the thread that made the request (exact: destroying a
//   request is http's own cancellation); an http socket itself is never owned.
//
// The hooks sit on net.Socket.prototype and net.Server.prototype: the lowest layer that net, tls, http,
// https and database drivers all reach (Node 20's http captured net.createConnection before any patch).
import type { Server, Socket } from 'node:net';
import { callbackContext, type GreenThread } from '../greenthread.js';
import { disown, endSolo, own, owningThread, soloUse } from '../ownership.js';
import { current, rt } from '../runtime.js';
import { absorb, inUnowned, kGreen, kNever, ps } from './state.js';
import type { ClientAdapter } from './clients/adapter.js';
import { installClientHooks } from './clients/index.js';
import { adoptSocket, orphanSocket } from '../net/orphan.js';
import { databaseProtocol } from './clients/protocols.js';
import { httpRequestStart } from './http-request-bytes.js';

const kUsers = Symbol.for('evy.net.users');
const kShared = Symbol.for('evy.net.shared');
/** True while a reply is delivered (synchronously: 'data' runs inside push). */
const kInReply = Symbol.for('evy.net.inReply');
/** While a reply is delivered: the thread whose request it answers. */
const kAnswered = Symbol.for('evy.net.answered');
/** Set up by the connecting thread (`kConnector`) until a thread's own code first makes a request on it. */
const kSetup = Symbol.for('evy.net.setup');
const kConnector = Symbol.for('evy.net.connector');
/** The kill error of an abandoned setup, until decided; `kTaken` once another thread made a request. */
const kAbandoned = Symbol.for('evy.net.abandoned');
const kQuiet = Symbol.for('evy.net.quietTimer');
/** On an abandoned setup: what it last wrote has had no answer yet (the peer owes a reply). */
const kOwed = Symbol.for('evy.net.owed');
const kAbandonedAt = Symbol.for('evy.net.abandonedAt');
const kTaken = Symbol('taken');
/** How long an abandoned setup must stay without I/O before it is destroyed. */
export const ABANDON_QUIET_MS = 50;
/** How long an abandoned setup may wait for its peer (a connect, a TLS handshake, an answer) before it is destroyed anyway. */
export const ABANDON_MAX_MS = 5000;
const kHttp = Symbol.for('evy.net.http');
const kReqOwner = Symbol.for('evy.http.owner');
/** The thread an http request serves (null: none), fixed when the request is made. */
const kReqThread = Symbol.for('evy.http.thread');
const kOwner = Symbol.for('evy.net.owner');
const kConns = Symbol.for('evy.net.conns');
const kTracking = Symbol.for('evy.net.tracking');
/** Set by GreenSocket on the socket it wraps: it owns its socket itself, through its evy waits. */
const kGreenSocket = Symbol.for('evy.GreenSocket');
/** The socket of a client whose JavaScript queue evy watches (patching/clients/). */
const kClientQueue = Symbol.for('evy.net.clientQueue');
/** That client (an EventEmitter): it reports the death of the socket evy destroyed as its own 'error'. */
const kClient = Symbol.for('evy.net.client');
/** That client's adapter (patching/clients/adapter.ts). */
const kAdapter = Symbol.for('evy.net.clientAdapter');
/** Set once the socket's first bytes were looked at (firstBytes). */
const kFirst = Symbol.for('evy.net.first');
/** Set on a socket TLS was started on: the TLS socket that carries its connection now. */
const kUpgraded = Symbol.for('evy.net.upgraded');
/** The one thread that has set the socket up or made requests on it so far, or `kMany`. */
const kSolo = Symbol.for('evy.net.solo');
const kMany = Symbol('many');
const kOrphan = Symbol.for('evy.net.orphan');

type AnySock = Socket & Record<symbol, any> & { _httpMessage?: unknown; encrypted?: boolean; _isStdio?: boolean };
type AnyServer = Server & Record<symbol, any> & { closeAllConnections?: () => void; addContext?: unknown };
type AnyReq = Record<symbol, any> & {
  socket?: AnySock | null;
  res?: unknown;
  destroyed?: boolean;
  destroy(err?: unknown): void;
  once(ev: string, fn: () => void): void;
};

/** Is this socket tracked: created through a green module, or net/tls patched globally? */
function trackedSocket(s: AnySock): boolean {
  if (s[kGreen] === true) return true;
  return s.encrypted === true ? ps.on.tls : ps.on.net;
}

function trackedServer(s: AnyServer): boolean {
  if (s[kGreen] === true) return true;
  return typeof s.addContext === 'function' ? ps.on.tls : ps.on.net;
}

/** Sockets whose ownership is decided elsewhere: by a GreenSocket's waits, an http request, or the TLS socket started on it. */
function ownedElsewhere(s: AnySock): boolean {
  return s[kGreenSocket] !== undefined || s[kHttp] === true || s._httpMessage != null || s[kUpgraded] !== undefined;
}

/** Thread `t` starts a request on `s`: it owns the socket until the reply (or the socket's end). */
export function useSocket(s: AnySock, t: GreenThread): void {
  // process.stdout/stderr are net.Sockets when piped: a thread's console.log must not make them its own.
  if (s[kNever] === true || s[kShared] === true || s.destroyed || s._isStdio === true) return;
  let users: GreenThread[] | undefined = s[kUsers];
  if (users === undefined) users = s[kUsers] = [];
  else if (users.includes(t)) return;
  else if (users.length > 0) {
    // Two threads' requests outstanding at once: a connection several threads share.
    markShared(s);
    return;
  }
  if (t._killError !== undefined) {
    // A killed thread's code still running (detached) makes no new claims; a socket it is setting up is
    // abandoned, unless another thread turns out to be waiting on it.
    if (s[kSetup] === true && s[kConnector] === t) abandon(s, t._killError);
    return;
  }
  if (own(s, destroySocket, t) === null) return; // a finished thread
  users.push(t);
  noteUse(s, t);
}

/**
 * Who has used `s` so far: one thread alone (its private connection, orphaned if it is killed: orphan.ts),
 * or several (`t === null`: main's own code, which holds it somewhere a kill cannot reach).
 */
function noteUse(s: AnySock, t: GreenThread | null): void {
  const solo = s[kSolo];
  if (solo === t || solo === kMany) return;
  if (solo === undefined && t !== null) {
    s[kSolo] = t;
    soloUse(s, t, orphanIdle);
    return;
  }
  s[kSolo] = kMany;
  if (solo !== undefined) endSolo(s, solo);
}

/**
 * The code writing on `s` is that of the one thread that has used it, killed: its detached body or its finally
 * blocks (which `owningThread()` reports as no thread once it has been reported dead). Still its private
 * connection, not main's.
 */
function killedSoloWriting(s: AnySock): boolean {
  const solo = s[kSolo];
  if (solo === undefined || solo === kMany || (solo as GreenThread)._killError === undefined) return false;
  return rt.als?.getStore() === solo;
}

/** Its only user was killed and it is idle (or was kept by a cancel and has gone idle since). */
function soloKilled(s: AnySock): boolean {
  const solo = s[kSolo];
  return solo !== undefined && solo !== kMany && (solo as GreenThread)._killError !== undefined;
}

/** At the kill of the thread that alone used `s`: idle, it is orphaned; one in use is decided by its owner's kill. */
function orphanIdle(s: AnySock): void {
  if (s.destroyed || s[kAbandoned] !== undefined || (s[kUsers]?.length ?? 0) > 0) return;
  if (s[kUpgraded] !== undefined || s[kGreenSocket] !== undefined || s[kShared] === true || s[kNever] === true) return;
  // A watched client's kill leaves its socket without users while the killed statement is being cancelled:
  // the reply still to come (and anything queued behind it) must keep the process alive. Orphaned once idle:
  // looked at again at its next reply, at the end of the cancel, and (whatever the client does in between)
  // every IDLE_RECHECK_MS until then.
  if (clientBusy(s)) {
    if (s[kRecheck] === undefined) s[kRecheck] = rt.timers.setTimeout(recheck, IDLE_RECHECK_MS, s).unref();
    return;
  }
  orphanSocket(s);
}

const kRecheck = Symbol('evy.net.idleRecheck');
const IDLE_RECHECK_MS = 50;

function recheck(s: AnySock): void {
  s[kRecheck] = undefined;
  idleAgain(s);
}

function clientBusy(s: AnySock): boolean {
  const adapter: ClientAdapter | undefined = s[kAdapter];
  return adapter?.busy !== undefined && s[kClient] != null && adapter.busy(s[kClient]);
}

/** `s` went idle (a reply; for a watched client also the end of a cancel): as at the kill of its only user. */
function idleAgain(s: AnySock): void {
  if (soloKilled(s) && (s[kUsers]?.length ?? 0) === 0) orphanIdle(s);
}

/**
 * A client queued a request in JavaScript behind the one in flight on `s` (patching/clients/): unless
 * that is the queueing thread's own request, `s` serves several callers at once.
 */
function queuedBehind(s: AnySock | null | undefined): void {
  if (s == null || typeof s !== 'object' || s[kShared] === true || s[kNever] === true) return;
  // The killed owner's own code still running (detached, or a finally block) queues behind its killed command: still
  // its private connection, as its writes are (killedSoloWriting).
  if (killedSoloWriting(s)) return;
  const t = owningThread();
  if (s[kSetup] === true && s[kConnector] === t) return; // behind its own connect
  // Queued from the socket's own callbacks during setup: what was waiting on the connect (pg.Pool hands a new
  // connection to the query that made it from pg's connect callback), as a write from there would be.
  if (s[kSetup] === true && t === null && rt.als?.getStore() === callbackContext) return;
  const users: GreenThread[] | undefined = s[kUsers];
  if (users !== undefined && users.length === 1 && users[0] === t) return;
  markShared(s);
}

/**
 * `s` belongs to a client whose queue evy watches (patching/clients/): any command another thread queues
 * on it is reported, so what the client writes while a reply is delivered continues the request answered
 * (a password exchange, MySQL's answer to the server's greeting, a prepared statement's execute after its
 * prepare) or is that thread's next queued one, never a command of someone else.
 */
function watchedQueue(s: AnySock | null | undefined, client: object, adapter: ClientAdapter): void {
  if (s == null || typeof s !== 'object') return;
  s[kClientQueue] = true;
  s[kClient] = client;
  s[kAdapter] = adapter;
}

/**
 * A watched client's connection is set up and a command is issued on it: the commands are owned from now on
 * (patching/clients/commands.ts). The command may be written later from the client's own callback (pg sends
 * a query issued while it delivers ReadyForQuery from that handler): a live thread issuing it takes an
 * abandoned setup over here, as its own write would.
 */
function clientReady(s: AnySock | null | undefined): void {
  if (s == null || typeof s !== 'object') return;
  const abandoned = s[kAbandoned];
  if (abandoned !== undefined && abandoned !== kTaken) {
    const w = owningThread();
    if (w === null || w._killError !== undefined) return; // the abandonment decides
    taken(s);
  }
  if (s[kSetup] === true) s[kSetup] = false;
}

function markShared(s: AnySock): void {
  s[kShared] = true;
  noteUse(s, null);
  releaseSocket(s);
}

/** A database connection whose client evy does not watch (a bundled one) is shared: clients/protocols.ts. */
function firstBytes(s: AnySock, chunk: unknown, fromServer: boolean): void {
  s[kFirst] = true;
  if (s[kClientQueue] === true || s[kNever] === true || s[kShared] === true || ownedElsewhere(s)) return;
  if (databaseProtocol(chunk, fromServer) !== null) markShared(s);
}

/** A write from the socket's own callbacks (no thread's code): whose it is depends on when it happens. */
function fromCallback(s: AnySock): void {
  if (s[kInReply] === true) {
    if (s[kClientQueue] === true) useSocket(s, s[kAnswered]); // see watchedQueue
    else markShared(s); // a reply to one request, and at once a write for another: a queue
  } else if (s[kSetup] === true) {
    useSocket(s, s[kConnector]); // the handshake and what was queued behind the connect
  } else if ((s[kUsers]?.length ?? 0) > 0) {
    markShared(s); // pipelined behind a thread's request
  }
}

/** Every outstanding request on `s` ended: it is idle and has no owner. */
export function releaseSocket(s: AnySock): void {
  const users: GreenThread[] | undefined = s[kUsers];
  if (users === undefined || users.length === 0) return;
  for (const u of users) disown(s, u);
  users.length = 0;
}

function destroySocket(s: AnySock, err: unknown): void {
  if (s[kUpgraded] !== undefined) return; // owned through its TLS socket now
  s[kUsers] = undefined;
  if (s[kSetup] === true) abandon(s, err);
  // A watched client's connection, set up: the kill acts on the killed thread's own commands (cancelled on
  // the server, taken out of the client's queue: patching/clients/commands.ts), not on the connection.
  else if (s[kClientQueue] !== true) destroyNow(s, err);
}

function destroyNow(s: AnySock, err: unknown, force = false): boolean {
  // A GreenSocket's socket dies through the GreenSocket's own ownership (its waits), not here. One made inside
  // unowned() is no kill's to destroy (its queue may hold others' commands: queuedBehind does not look at it),
  // but for a cancel's give-up (force), which could otherwise land on someone else's statement.
  if (s.destroyed || ((s[kShared] === true || s[kNever] === true) && !force) || s[kGreenSocket] !== undefined) return false;
  absorb(s, err);
  const client = s[kClient];
  absorb(client); // pg's Client emits 'error' when its connection dies: not a crash of evy's making
  // The client's own destroy first (a mysql2 PoolConnection leaves its pool at once), then the socket's.
  const adapter: ClientAdapter | undefined = s[kAdapter];
  if (adapter?.destroy !== undefined && client != null) adapter.destroy(client, err);
  s.destroy(err as Error);
  return true;
}

/**
 * The connecting thread was killed while setting the socket up. Others may be waiting on that setup (a
 * client created lazily by whichever thread came first, a pool connecting for a queued caller), and evy
 * cannot see them: so the socket is destroyed only once its setup has gone quiet for ABANDON_QUIET_MS without
 * another thread starting a request on it. A peer that is slow to answer (a connect, a TLS handshake, the
 * server's side of a password exchange on a loaded machine) is not quiet: the wait for it is bounded by
 * ABANDON_MAX_MS instead.
 */
function abandon(s: AnySock, err: unknown): void {
  if (s[kAbandoned] !== undefined) return;
  s[kAbandoned] = err;
  s[kAbandonedAt] = performance.now();
  // Unref'd: a connect in progress keeps the process up by its own handle; one that never gets that far (a
  // lookup that never answers) must not be kept alive by evy's looking at it.
  s[kQuiet] = rt.timers.setTimeout(decideAbandoned, ABANDON_QUIET_MS, s);
  s[kQuiet].unref();
}

/** Some I/O on an abandoned socket: its setup is still going on, wait for quiet again. */
function stirred(s: AnySock, owed: boolean): void {
  const timer = s[kQuiet];
  if (timer === undefined) return;
  s[kOwed] = owed;
  timer.refresh();
}

/** Still waiting on its peer: connecting, in a TLS handshake, or owed the answer to what it last wrote. */
function awaitingPeer(s: AnySock): boolean {
  return s.connecting || s[kOwed] === true || (s.encrypted === true && (s as { _secureEstablished?: boolean })._secureEstablished !== true);
}

function decideAbandoned(s: AnySock): void {
  const err = s[kAbandoned];
  if (err === kTaken) return;
  if (awaitingPeer(s) && performance.now() - s[kAbandonedAt] < ABANDON_MAX_MS) {
    s[kQuiet].refresh();
    return;
  }
  destroyAbandoned(s);
}

/** Gives up on an abandoned setup: its timer stopped, the socket destroyed with the connector's kill error. */
function destroyAbandoned(s: AnySock): void {
  const err = s[kAbandoned];
  if (s[kQuiet] !== undefined) rt.timers.clearTimeout(s[kQuiet]);
  s[kAbandoned] = s[kQuiet] = s[kOwed] = undefined;
  destroyNow(s, err);
}

/**
 * The first bytes written on an abandoned setup are an HTTP/1 request (undici writes the request it connected
 * for from the connect callback): unless a live thread writes them, that is the killed connector's request,
 * and the peer would answer it, not finish a setup. Destroyed before they go out.
 */
function abandonedRequest(s: AnySock): void {
  const w = owningThread();
  if (w !== null && w._killError === undefined) return; // a live thread's own request: the write hook's taken()
  destroyAbandoned(s);
}

/** Another thread starts a request on an abandoned socket: it lives on, as theirs. */
function taken(s: AnySock): void {
  const timer = s[kQuiet];
  if (timer !== undefined) rt.timers.clearTimeout(timer);
  s[kAbandoned] = kTaken;
  s[kQuiet] = undefined;
}

/** A killed thread's http request: http's own cancellation, with the errors it causes absorbed. */
function destroyRequest(req: AnyReq, err: unknown): void {
  req[kReqOwner] = undefined;
  if (req.destroyed === true) return;
  absorb(req, err);
  absorb(req.res, err);
  absorb(req.socket, err);
  req.destroy(err);
}

function releaseRequest(this: AnyReq): void {
  const o: GreenThread | undefined = this[kReqOwner];
  this[kReqOwner] = undefined;
  if (o !== undefined) disown(this, o);
}

/** The thread `req` serves owns it until it closes (response consumed, or request destroyed). */
function ownRequest(req: AnyReq, t: GreenThread): void {
  if (req[kReqOwner] !== undefined) return;
  req[kReqOwner] = t;
  req.once('close', releaseRequest);
  if (own(req, destroyRequest, t) === null) req[kReqOwner] = undefined; // a killed or finished thread
}

/** A server is owned by the thread that made it listen, until it is closed. */
export function ownServer(srv: AnyServer, t: GreenThread): void {
  if (srv[kNever] === true || srv[kOwner] !== undefined) return;
  if (own(srv, destroyServer) === null) return;
  srv[kOwner] = t;
  srv[kConns] = new Set<Socket>();
  // Once per server: a server listened on again and again (a fixture of every test) would pile up trackers.
  if (srv[kTracking] !== true) {
    srv[kTracking] = true;
    srv.on('connection', trackConn);
  }
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
      absorb(c, err);
      absorb(c._httpMessage, err);
      c.destroy(err as Error);
    }
  }
  // http.Server tracks its own connections (idle keep-alive ones included).
  if (typeof srv.closeAllConnections === 'function') srv.closeAllConnections();
}


/** Runs `fn` with no thread's context: the handles it creates call back into no thread. */
function neutral<R>(fn: (...a: any[]) => R, self: unknown, args: unknown[]): R {
  // evy.debug.leaks still attributes what is made here to the thread whose code made it.
  const ext = rt.ext;
  const before = ext.neutralFor;
  ext.neutralFor = current();
  try {
    return rt.als!.run(callbackContext, () => fn.apply(self, args));
  } finally {
    ext.neutralFor = before;
  }
}

/**
 * `tls.connect` (or any socket factory) whose socket must call back into no thread: a TLSSocket's TLS layer
 * is made in its constructor, before the connect hook runs, and its callbacks keep that context. A TLS socket
 * started on a connected one (`{ socket }`) takes that socket's place (adoptUpgrade).
 */
export function neutralFactory<F extends (...a: any[]) => any>(factory: F): F {
  return function (this: unknown, ...args: unknown[]) {
    const t = owningThread();
    let made: unknown;
    if (t === null) {
      made = factory.apply(this, args);
    } else {
      // The socket it connects is still set up by `t` (see the connect hook).
      const before = factoryThread;
      factoryThread = t;
      try {
        made = neutral(factory, this, args);
      } finally {
        factoryThread = before;
      }
    }
    const under = upgradedSocket(args);
    if (under !== null && made !== under && made !== null && typeof made === 'object') adoptUpgrade(under, made as AnySock);
    return made;
  } as F;
}

/** `tls.connect({ socket })`: the connected socket that TLS is started on (STARTTLS: pg, mysql2 with ssl). */
function upgradedSocket(args: unknown[]): AnySock | null {
  for (const a of args) {
    const s = a !== null && typeof a === 'object' ? (a as { socket?: unknown }).socket : undefined;
    if (s !== null && typeof s === 'object' && typeof (s as AnySock).write === 'function') return s as AnySock;
  }
  return null;
}

/**
 * TLS was started on `raw`: from now on the TLS socket carries the connection. Its TLS layer reads and writes
 * raw's handle directly, so raw's own methods see no request again, and who uses the connection is decided
 * on the TLS socket. It takes raw's state (setup by its connector, a watched client, shared, never owned) and
 * raw's users; raw is owned by no thread again (destroying the TLS socket destroys it).
 */
function adoptUpgrade(raw: AnySock, tls: AnySock): void {
  // Not a socket evy follows (one whose connector was killed during setup is, though its users are gone).
  if (raw[kUsers] === undefined && raw[kNever] !== true && raw[kAbandoned] === undefined) return;
  for (const k of [kSetup, kConnector, kClientQueue, kClient, kAdapter, kShared, kNever]) {
    if (raw[k] !== undefined && tls[k] === undefined) tls[k] = raw[k];
  }
  const users: GreenThread[] = [...(raw[kUsers] ?? [])];
  releaseSocket(raw);
  raw[kUpgraded] = tls;
  const solo = raw[kSolo];
  if (solo !== undefined && solo !== kMany) {
    endSolo(raw, solo);
    if (tls[kSolo] === undefined) noteUse(tls, solo);
  }
  raw[kSolo] = kMany;
  const abandoned = raw[kAbandoned];
  if (abandoned !== undefined) {
    // Its connector was killed during setup: the TLS socket's own quiet decides now.
    if (raw[kQuiet] !== undefined) rt.timers.clearTimeout(raw[kQuiet]);
    raw[kAbandoned] = raw[kQuiet] = undefined;
    if (abandoned !== kTaken) abandon(tls, abandoned);
  }
  for (const u of users) useSocket(tls, u);
}

/** The thread whose tls.connect (through neutralFactory) is running, if any. */
let factoryThread: GreenThread | null = null;

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
    if (greenMaking > 0) this[kGreen] = true; // connected by an evy/green module: tracked like any under the hook
    if (rt.als === null) return connect.apply(this, args);
    if (lazyPending) installLazyHooks(put);
    const t = owningThread() ?? factoryThread;
    if (t === null) {
      if (inUnowned()) this[kNever] = true;
      return connect.apply(this, args);
    }
    const r = neutral(connect, this, args);
    if (trackedSocket(this) && !ownedElsewhere(this) && this[kUsers] === undefined) {
      this[kSetup] = true;
      this[kConnector] = t;
      useSocket(this, t);
    }
    return r;
  });

  const write = SP.write as (...a: unknown[]) => boolean;
  put(SP, 'write', function write_(this: AnySock, chunk: unknown, encoding?: unknown, cb?: unknown) {
    // Used again: whoever writes holds it. Not its killed owner's own code still running (detached, or a finally
    // block): that code is all that reaches it, and once it ends the connection is garbage as before.
    if (this[kOrphan] !== undefined && !killedSoloWriting(this)) adoptSocket(this);
    if (this[kFirst] !== true) {
      firstBytes(this, chunk, false);
      if (this[kAbandoned] !== undefined && this[kAbandoned] !== kTaken && httpRequestStart(chunk)) abandonedRequest(this);
    }
    const r = write.call(this, chunk, encoding, cb);
    if (this[kAbandoned] !== undefined && this[kAbandoned] !== kTaken) {
      const w = owningThread();
      if (w !== null && w._killError === undefined) taken(this);
      else stirred(this, true);
    }
    // Only a socket that can still receive is waited on after a write: no reply comes on a write-only
    // one (a child's stdin, a piped stdout) or one whose peer has ended, so a write there owns nothing.
    // A shared worker process's stdin must not die with the last thread that wrote a job to it.
    // A socket carrying an http message is owned through its request (ownedElsewhere): tested first, it
    // is the one check a server's response writes pay.
    if (rt.als !== null && this._httpMessage == null && this.readable && this[kShared] !== true && trackedSocket(this)) {
      // An http socket its request let go of (an 'upgrade', a CONNECT tunnel): a thread's own code writing
      // on it now (a WebSocket's send) makes requests on a plain socket, under the socket rules.
      if (this[kHttp] === true && this._httpMessage == null && owningThread() !== null) this[kHttp] = false;
      if (!ownedElsewhere(this)) {
        const t = owningThread();
        if (t !== null) {
          this[kSetup] = false; // a thread's own request: whatever came before it was setup
          useSocket(this, t);
        } else if (rt.als.getStore() === callbackContext) fromCallback(this);
        else if (this[kSolo] !== undefined && !killedSoloWriting(this)) noteUse(this, null); // main's own code uses it too
      }
    }
    return r;
  });

  const push = SP.push as (chunk: unknown, encoding?: unknown) => boolean;
  put(SP, 'push', function push_(this: AnySock, chunk: unknown, encoding?: unknown) {
    // A reply arrived: the requests waiting on it are over. What a library writes while it delivers
    // that reply ('data' runs inside push) it writes for another caller: see the write hook.
    if (this[kQuiet] !== undefined) stirred(this, false);
    if (this[kFirst] !== true && chunk != null) firstBytes(this, chunk, true);
    const users: GreenThread[] | undefined = this[kUsers];
    if (this[kInReply] === true) return push.call(this, chunk, encoding);
    if (users === undefined || users.length === 0) {
      const r = push.call(this, chunk, encoding);
      if (this[kClientQueue] === true) idleAgain(this); // a reply the killed owner's cancel waited for
      return r;
    }
    this[kAnswered] = users[0]; // one user: a second one makes the socket shared
    releaseSocket(this);
    this[kInReply] = true;
    try {
      return push.call(this, chunk, encoding);
    } finally {
      this[kInReply] = this[kAnswered] = undefined;
      // Idle now, and its only user was killed (a reply that a cancel let through): as at the kill.
      idleAgain(this);
    }
  });

  const destroy_ = SP._destroy as (...a: unknown[]) => unknown;
  put(SP, '_destroy', function _destroy(this: AnySock, ...args: unknown[]) {
    releaseSocket(this);
    if (this[kOrphan] !== undefined) adoptSocket(this); // closing the normal way
    const solo = this[kSolo];
    if (solo !== undefined && solo !== kMany) endSolo(this, solo);
    return destroy_.apply(this, args);
  });

  const listen = VP.listen as (...a: unknown[]) => unknown;
  put(VP, 'listen', function listen_(this: AnyServer, ...args: unknown[]) {
    const r = listen.apply(this, args);
    const t = owningThread();
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

  lazyPending = true;
  installLazyHooks(put);
  installClientHooks(put, {
    queued: queuedBehind as (s: unknown) => void,
    watched: watchedQueue as (s: unknown, client: object, adapter: ClientAdapter) => void,
    ready: clientReady as (s: unknown) => void,
    idle: (s) => s != null && typeof s === 'object' && idleAgain(s as AnySock),
    destroy: (s, err, force) => s != null && typeof s === 'object' && destroyNow(s as AnySock, err, force),
    tlsAhead() {
      if (tlsDone) return;
      process.getBuiltinModule('tls');
      installLazyHooks(put);
    },
  });

  ps.netHooks = () => {
    lazyPending = httpDone = tlsDone = false;
    loadCount = -1;
    for (let i = saved.length - 1; i >= 0; i--) {
      const [obj, key, wasOwn, value] = saved[i]!;
      if (wasOwn) obj[key] = value;
      else delete obj[key];
    }
  };
}

// ---- http(s) ---------------------------------------------------------------------------------------

/**
 * The http and tls hooks wait until those modules are loaded (loading them for an app that never uses them
 * costs startup): checked whenever the list of loaded builtins has grown, at the next socket connect.
 */
let lazyPending = false;
let loadCount = -1;
let httpDone = false;
let tlsDone = false;

function installLazyHooks(put: (obj: any, key: string, value: unknown) => void): void {
  const list = (process as NodeJS.Process & { moduleLoadList: string[] }).moduleLoadList;
  if (list.length === loadCount) return;
  loadCount = list.length;
  if (!tlsDone && list.includes('NativeModule tls')) {
    tlsDone = true;
    const tls = process.getBuiltinModule('tls') as any;
    put(tls, 'connect', neutralFactory(tls.connect));
    (process.getBuiltinModule('module') as typeof import('node:module')).syncBuiltinESMExports();
  }
  if (!httpDone && list.includes('NativeModule _http_client')) {
    httpDone = true;
    installHttpHooks(put);
  }
  lazyPending = !(tlsDone && httpDone);
}

function installHttpHooks(put: (obj: any, key: string, value: unknown) => void): void {
  const http = process.getBuiltinModule('http') as typeof import('node:http');
  const AP = http.Agent.prototype as any;
  const RP = http.ClientRequest.prototype as any;

  // Called in the requesting thread's code (the ClientRequest constructor): the request is that thread's.
  // The agent creates sockets here (neutral: their callbacks are no thread's) or queues the request.
  const addRequest = AP.addRequest as (...a: unknown[]) => unknown;
  put(AP, 'addRequest', function addRequest_(this: unknown, req: AnyReq, ...rest: unknown[]) {
    const t = owningThread();
    req[kReqThread] = t;
    if (t === null) return addRequest.call(this, req, ...rest);
    const r = neutral(addRequest, this, [req, ...rest]);
    ownRequest(req, t);
    return r;
  });

  // The agent hands a socket to a request from wherever it is (another request's 'free', a socket's
  // 'close'): the request's own work from here on (writing it, its response callbacks) runs as its thread.
  const onSocket = RP.onSocket as (...a: unknown[]) => unknown;
  put(RP, 'onSocket', function onSocket_(this: AnyReq, socket: AnySock | null, ...rest: unknown[]) {
    if (socket != null && typeof socket === 'object') socket[kHttp] = true;
    if (rt.als === null) return onSocket.call(this, socket, ...rest);
    let t: GreenThread | null | undefined = this[kReqThread];
    if (t === undefined) {
      // No agent: called from the constructor, in the requesting thread's code.
      t = this[kReqThread] = owningThread();
      if (t !== null) ownRequest(this, t);
    }
    if (t === null || t.dead) return neutral(onSocket, this, [socket, ...rest]);
    return rt.als.run(t, () => onSocket.call(this, socket, ...rest));
  });
}

export function uninstallNetHooks(): void {
  const un = ps.netHooks;
  if (un === null) return;
  ps.netHooks = null;
  un();
}

/** Sockets connected while this is above 0 are made by a green module (see the connect hook). */
let greenMaking = 0;

/**
 * Calls a green module's socket factory (`net.connect`, `tls.connect`...): the socket is marked as its own
 * before it connects, so the connect hook tracks it as it tracks every socket under the hook (the selective
 * path follows the same rules).
 */
export function greenConnect<S extends Socket>(factory: (...a: any[]) => S, args: unknown[]): S {
  installNetHooks();
  greenMaking++;
  let s: S;
  try {
    s = factory(...args);
  } finally {
    greenMaking--;
  }
  const a = s as unknown as AnySock;
  a[kGreen] = true;
  if (rt.als !== null && inUnowned()) a[kNever] = true;
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
