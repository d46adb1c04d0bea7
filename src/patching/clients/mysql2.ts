// mysql2 (2.x, 3.x): a connection queues commands (query, execute, prepare, ping...) in `_commands` behind
// `_command`, the one in flight, and starts the next from the reply handler; the promise API, pools and pool
// connections all go through `addCommand`. Cancel: `KILL QUERY <threadId>` on a side connection to the same
// server with the connection's own options (one per server and credentials, made on demand, closed when idle).
import type { Socket } from 'node:net';
import { rt } from '../../runtime.js';
import { hasMethods, type ClientAdapter, type ClientHooks, type CommandState, type Put } from './adapter.js';
import { owningThread } from '../../ownership.js';
import { answered, asCaller, boundToCaller, forCaller, issued, runFor } from './commands.js';

const kPatched = Symbol.for('evy.clients.patched');

/** mysql2's RingQueue (3.x) or denque (2.x): both have these. */
interface CommandQueue {
  length: number;
  shift(): Mysql2Command | undefined;
  push(c: Mysql2Command): unknown;
  unshift(c: Mysql2Command): unknown;
  peekAt(i: number): Mysql2Command | undefined;
}

interface Mysql2Config {
  ssl?: unknown;
  host?: string;
  port?: number;
  socketPath?: string;
  user?: string;
  password?: string;
  database?: string;
  stream?: unknown;
}

export interface Mysql2Connection {
  config?: Mysql2Config;
  /** The command in flight; the others wait in `_commands`. */
  _command?: Mysql2Command | null;
  _commands?: CommandQueue;
  stream?: Socket;
  threadId?: number | null;
  _handshakePacket?: unknown;
  sequenceId?: number;
  compressedSequenceId?: number;
  handlePacket?(packet?: unknown): void;
  destroy?(): void;
  query?(sql: string, cb: (err: unknown) => void): unknown;
  on?(ev: string, fn: (...a: unknown[]) => void): unknown;
}

export interface Mysql2Command {
  onResult?: ((err: unknown, ...a: unknown[]) => void) | null;
  emit(ev: string, ...a: unknown[]): boolean;
  once(ev: string, fn: () => void): unknown;
  listenerCount(ev: string): number;
}

function patchConnection(Connection: unknown, put: Put, hooks: ClientHooks): void {
  const P = (Connection as { prototype?: any } | null)?.prototype;
  if (P == null || !Object.hasOwn(P, 'addCommand') || typeof P.addCommand !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const addCommand = P.addCommand as (this: Mysql2Connection, cmd: Mysql2Command) => unknown;
  put(P, 'addCommand', function addCommand_(this: Mysql2Connection, cmd: Mysql2Command) {
    // The first command is the handshake, added by the constructor right after it connected the stream.
    hooks.watched(this.stream, this, mysql2Adapter); // again after a TLS upgrade replaced the stream
    if (this._handshakePacket != null) hooks.ready(this.stream);
    if (this.config?.ssl) hooks.tlsAhead();
    const behind = this._command != null; // it waits in mysql2's queue, writing nothing until that one is answered
    // Its callback runs as the thread that issued it (a callback-style chain of queries stays that thread's).
    if (cmd != null && typeof cmd.onResult === 'function') cmd.onResult = asCaller(cmd.onResult);
    const r = addCommand.call(this, cmd);
    if (behind) hooks.queued(this.stream);
    // Not the handshake: a kill during setup is the socket's (docs/patching.md, the setup row).
    if (behind || this._handshakePacket != null) track(this, cmd, hooks);
    return r;
  });
  if (Object.hasOwn(P, 'connect') && typeof P.connect === 'function') {
    const connect = P.connect as (this: unknown, cb?: unknown) => unknown;
    put(P, 'connect', function connect_(this: unknown, cb?: unknown) {
      return connect.call(this, typeof cb === 'function' ? asCaller(cb as (...a: any[]) => unknown) : cb);
    });
  }
}

function track(conn: Mysql2Connection, cmd: Mysql2Command, hooks: ClientHooks): void {
  if (cmd == null || typeof cmd.once !== 'function' || !issued(mysql2Adapter, conn, cmd, hooks)) return;
  cmd.once('end', () => answered(cmd));
  const onResult = cmd.onResult;
  if (typeof onResult === 'function') {
    cmd.onResult = function (this: unknown, ...a: unknown[]) {
      answered(cmd);
      return onResult.apply(this, a as [unknown]);
    };
  }
}

type GetConnectionCb = (err: unknown, conn?: { release?: () => void }) => unknown;

/**
 * `cb`, run as the calling thread; a connection that reaches it once that thread has been killed goes back to
 * the pool unused and the callback gets the kill error: a killed thread's `pool.query` never starts (it used to
 * run, unowned, when the kill came while the pool connected for it: its statement ran on the server to its end).
 */
function forLiveCaller(cb: GetConnectionCb): GetConnectionCb {
  const t = owningThread();
  const bound = asCaller(cb);
  if (t === null) return bound;
  const guarded: GetConnectionCb = function (this: unknown, err, conn) {
    if (err == null && conn != null && t._killError !== undefined) {
      conn.release?.();
      return bound.call(this, t._killError);
    }
    return bound.call(this, err, conn);
  };
  forCaller(guarded, t);
  return guarded;
}

/** The pool hands a connection to `getConnection`'s callback from wherever one became free: run it as the caller. */
function patchPool(Pool: unknown, put: Put): void {
  const P = (Pool as { prototype?: any } | null)?.prototype;
  if (P == null || !Object.hasOwn(P, 'getConnection') || typeof P.getConnection !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const getConnection = P.getConnection as (this: unknown, cb?: unknown) => unknown;
  put(P, 'getConnection', function getConnection_(this: unknown, cb?: unknown) {
    // The pool calls getConnection again for a queued caller when a connection is released (from the releasing
    // thread's tick): the connection it may make then is the queued caller's, not the releaser's.
    if (typeof cb !== 'function') return getConnection.call(this, cb);
    if (boundToCaller(cb)) return runFor(cb, () => getConnection.call(this, cb));
    return getConnection.call(this, forLiveCaller(cb as GetConnectionCb));
  });
}

function indexIn(q: CommandQueue | undefined, cmd: Mysql2Command): number {
  if (q === undefined) return -1;
  for (let i = 0; i < q.length; i++) if (q.peekAt(i) === cmd) return i;
  return -1;
}

/** Settles a command that will not run with `err`, as mysql2 settles its own (callback, else an 'error' event). */
function fail(cmd: Mysql2Command, err: unknown): void {
  const onResult = cmd.onResult;
  cmd.onResult = null;
  process.nextTick(() => {
    if (typeof onResult === 'function') onResult(err);
    else if (cmd.listenerCount('error') > 0) cmd.emit('error', err);
    cmd.emit('end');
  });
}

/** The class whose prototype this file patched (lib/base/connection.js): what side connections are made of. */
function baseClassOf(c: Mysql2Connection): (new (opts: { config: unknown }) => Mysql2Connection) | null {
  for (let p = Object.getPrototypeOf(c); p !== null; p = Object.getPrototypeOf(p)) {
    if (Object.hasOwn(p, kPatched)) return p.constructor;
  }
  return null;
}

/** How long a side connection stays open unused (it is unref'd: it never keeps the process alive). */
const SIDE_IDLE_MS = 10_000;

interface Side {
  conn: Mysql2Connection;
  connected: boolean;
  dead: boolean;
  timer: NodeJS.Timeout | null;
}

/** One side connection per server and credentials (TLS options by identity). */
const sides = new Map<string, Side>();
const sslIds = new WeakMap<object, number>();
let nextSslId = 1;

function sideKey(cfg: Mysql2Config): string {
  const ssl = cfg.ssl;
  let sslId: unknown = ssl ?? null;
  if (ssl !== null && typeof ssl === 'object') {
    sslId = sslIds.get(ssl);
    if (sslId === undefined) sslIds.set(ssl, (sslId = nextSslId++));
  }
  return JSON.stringify([cfg.host, cfg.port, cfg.socketPath, cfg.user, cfg.password, cfg.database, sslId]);
}

function sideFor(c: Mysql2Connection): Side | null {
  const cfg = c.config;
  const Base = baseClassOf(c);
  // A stream the app handed over (not a factory) carries one connection only: no side connection to make.
  if (cfg == null || Base === null || (cfg.stream != null && typeof cfg.stream !== 'function')) return null;
  const key = sideKey(cfg);
  let side = sides.get(key);
  if (side !== undefined && !side.dead) return side;
  // The same options, on a copy (mysql2's pool does the same: a connection may mutate its config).
  const copy = Object.create(Object.getPrototypeOf(cfg), Object.getOwnPropertyDescriptors(cfg));
  const conn = new Base({ config: copy });
  const s: Side = { conn, connected: false, dead: false, timer: null };
  sides.set(key, s);
  conn.stream?.unref();
  const gone = (): void => {
    s.dead = true;
    if (s.timer !== null) rt.timers.clearTimeout(s.timer);
    if (sides.get(key) === s) sides.delete(key);
  };
  conn.on?.('connect', () => (s.connected = true));
  conn.on?.('error', gone); // its commands get the error through their callbacks
  conn.on?.('end', gone);
  side = s;
  return side;
}

/** KILL QUERY for `c`'s server thread, as ServerCancel.send describes. */
function sendKill(c: Mysql2Connection, done: (outcome: 'landed' | 'not-sent') => void): () => void {
  const id = c.threadId;
  const side = typeof id === 'number' ? sideFor(c) : null;
  if (side === null) {
    process.nextTick(done, 'not-sent');
    return noop;
  }
  let over = false;
  if (side.timer !== null) rt.timers.clearTimeout(side.timer);
  side.timer = null;
  side.conn.query!(`KILL QUERY ${id}`, (err: unknown) => {
    if (!side.dead && side.timer === null) {
      side.timer = rt.timers.setTimeout(() => {
        side.dead = true;
        if (sides.get(sideKey(side.conn.config!)) === side) sides.delete(sideKey(side.conn.config!));
        side.conn.destroy?.();
      }, SIDE_IDLE_MS);
      side.timer.unref();
    }
    if (over) return;
    over = true;
    // An answer, OK or an SQL error (an unknown thread: the connection is gone), means the server acted on it.
    // The side connection failing before it was ever connected: the KILL never left. After that: unknown.
    if (err == null || !(err as { fatal?: boolean }).fatal) done('landed');
    else if (!side.connected) done('not-sent');
  });
  return () => {
    // Never answered: that side connection is stuck (or swallowed); the next cancel makes a new one.
    over = true;
    side.dead = true;
    if (sides.get(sideKey(side.conn.config!)) === side) sides.delete(sideKey(side.conn.config!));
    if (side.timer !== null) rt.timers.clearTimeout(side.timer);
    side.conn.stream?.destroy();
  };
}

/** In `_command`'s place once the killed command is done: mysql2 starts nothing else until it is released. */
interface Gate extends Mysql2Command {
  execute(packet: unknown, conn: unknown): boolean;
  _commandName: string;
  stateName(): string;
}

function holdConnection(c: Mysql2Connection, replied: () => void): () => void {
  let started = false;
  const gate = {
    _commandName: 'EvyCancelHold',
    stateName: () => 'hold',
    // No reply is expected while it stands (nothing was written): it only tells that the one before it ended.
    execute(): boolean {
      if (!started) {
        started = true;
        replied();
      }
      return false;
    },
    // The connection died while held: mysql2 tells the command in flight; nothing to tell here.
    onResult: noop,
    emit: () => false,
    listenerCount: () => 0,
    once: () => gate,
  } as unknown as Gate;
  c._commands?.unshift(gate);
  return () => {
    if (c._command === gate) {
      // What mysql2 does when a command ends: the next one starts.
      c._command = c._commands?.shift() ?? null;
      if (c._command != null) {
        c.sequenceId = 0;
        c.compressedSequenceId = 0;
        c.handlePacket?.();
      }
    } else {
      const q = c._commands;
      const i = indexIn(q, gate);
      if (i >= 0) mysql2Adapter.dequeue(c, gate, undefined);
    }
  };
}

export const mysql2Adapter: ClientAdapter<Mysql2Connection, Mysql2Command> = {
  name: 'mysql2',
  modules: [
    // The class that defines the command queue: lib/base/connection.js (3.x), or lib/connection.js (2.x; in
    // 3.x that file only subclasses the base, and is left alone by the patch).
    {
      file: /[\\/]node_modules[\\/]mysql2[\\/]lib[\\/](?:base[\\/])?connection\.js$/,
      looksLike: (e) => hasMethods(e, ['addCommand', 'handlePacket', 'writePacket']),
      patch: patchConnection,
    },
    // The pool's getConnection, likewise in lib/base/pool.js (3.x) or lib/pool.js (2.x).
    {
      file: /[\\/]node_modules[\\/]mysql2[\\/]lib[\\/](?:base[\\/])?pool\.js$/,
      looksLike: (e) => hasMethods(e, ['getConnection', 'releaseConnection', '_removeConnection']),
      patch: (exports, put) => patchPool(exports, put),
    },
  ],

  socketOf: (c) => c.stream ?? null,
  busy: (c) => c._command != null || (c._commands?.length ?? 0) > 0,

  state(c, cmd): CommandState {
    if (c._command === cmd) return 'running';
    return indexIn(c._commands, cmd) >= 0 ? 'queued' : 'done';
  },

  dequeue(c, cmd, err) {
    const q = c._commands;
    const i = indexIn(q, cmd);
    if (i < 0) return;
    // Neither queue can remove from the middle: take them all out and put the others back, in order.
    const rest: Mysql2Command[] = [];
    for (let n = q!.length; n > 0; n--) rest.push(q!.shift()!);
    for (const c2 of rest) if (c2 !== cmd) q!.push(c2);
    fail(cmd, err);
  },

  // mysql2 writes one command at a time: none is ever pipelined.
  drop(_c, cmd, err) {
    fail(cmd, err);
  },

  // A PoolConnection leaves its pool at once (else the pool may hand it out again before it sees the socket
  // die: "Can't add new command when connection is in closed state").
  destroy(c) {
    c.destroy?.();
  },

  cancel: { send: sendKill, hold: holdConnection },
};

function noop(): void {}
