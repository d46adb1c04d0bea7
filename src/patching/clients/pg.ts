// node-postgres (`pg` 8.x): pg.Client queues queries in `_queryQueue` and writes the next one from its
// ReadyForQuery handler (`_pulseQueryQueue`); checked-out pg.Pool clients and `pool.query` go through the
// same Client#query. Cancel: PostgreSQL's CancelRequest (the backend's processID and secretKey, which pg
// keeps on the client) on a new connection to the same server, in the connection's TLS mode.
import type { Socket } from 'node:net';
import { disown, own, owningThread } from '../../ownership.js';
import { builtin } from '../state.js';
import { hasMethods, type ClientAdapter, type ClientHooks, type CommandState, type Put } from './adapter.js';
import { answered, asCaller, forCaller, issued, runFor } from './commands.js';

const kPatched = Symbol.for('evy.clients.patched');
/** On a held client: called from its queue pulse once the running query's ReadyForQuery has arrived. */
const kHold = Symbol.for('evy.clients.pg.hold');
/** On a held client: an end() called while the killed query was active, done once the cancel is over. */
const kEndAfter = Symbol('evy.clients.pg.endAfterCancel');

export interface PgClient {
  host?: string;
  port?: number;
  ssl?: unknown;
  pipeline?: boolean;
  processID?: number | null;
  secretKey?: number | Buffer | null;
  readyForQuery?: boolean;
  _connected?: boolean;
  _queryQueue?: PgQuery[];
  queryQueue?: PgQuery[];
  _sentQueryQueue?: PgQuery[];
  _activeQuery?: PgQuery | null;
  connection?: { stream?: Socket };
  query(...a: unknown[]): unknown;
  connect(...a: unknown[]): unknown;
  _pulseQueryQueue(): void;
  _ending?: boolean;
  _queryable?: boolean;
  _Promise?: PromiseConstructor;
  [k: symbol]: unknown;
}

/** pg's Query, or any submittable (pg-cursor, pg-query-stream): what the client drives. */
export interface PgQuery {
  callback?: ((err: unknown, res?: unknown) => void) | undefined;
  submit?: unknown;
  handleError(err: unknown, connection: unknown): void;
  handleReadyForQuery(connection: unknown): void;
  [k: string]: unknown;
}

/** pg 8.20+ keeps the queue in `_queryQueue` (its `queryQueue` getter warns); older 8.x in `queryQueue`. */
function queueOf(c: PgClient): PgQuery[] | undefined {
  const q = '_queryQueue' in c ? c._queryQueue : c.queryQueue;
  return Array.isArray(q) ? q : undefined;
}

function bindCallbacks(args: unknown[], from: number): void {
  for (let i = from; i < args.length; i++) if (typeof args[i] === 'function') args[i] = asCaller(args[i] as (...a: any[]) => unknown);
}

function patchClient(Client: unknown, put: Put, hooks: ClientHooks): void {
  const P = (Client as { prototype?: any } | null)?.prototype;
  if (P == null || typeof P.query !== 'function' || typeof P.connect !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const connect = P.connect as PgClient['connect'];
  put(P, 'connect', function connect_(this: PgClient, ...args: unknown[]) {
    hooks.watched(this.connection?.stream, this, pgAdapter); // made with the client, connected now
    if (this.ssl) hooks.tlsAhead();
    bindCallbacks(args, 0);
    return connect.apply(this, args);
  });
  const query = P.query as PgClient['query'];
  put(P, 'query', function query_(this: PgClient, ...args: unknown[]) {
    const s = this.connection?.stream;
    hooks.watched(s, this, pgAdapter); // with ssl, pg has replaced its socket by a TLS one by now
    if (this._connected === true) hooks.ready(s);
    const q = queueOf(this);
    const before = q !== undefined ? q.length : -1;
    const active = this._activeQuery;
    const sent = this._sentQueryQueue?.length ?? 0;
    bindCallbacks(args, 1);
    const r = query.apply(this, args);
    // Behind another command (or the connect): not when it waits only for the ReadyForQuery that pg is
    // delivering right now (a query made from the connect callback: pool.query's first query).
    // Or behind a hold (a killed query's cancel not answered yet): it waits for the release to be written.
    if (before >= 0 && q!.length > before && (before > 0 || active != null || this._connected !== true || this[kHold] !== undefined)) hooks.queued(s);
    // The query just issued: at the end of the queue, now running, or sent behind the others (pipeline).
    let cmd: PgQuery | undefined;
    if (before >= 0 && q!.length > before) cmd = q![q!.length - 1];
    else if (this._activeQuery != null && this._activeQuery !== active) cmd = this._activeQuery;
    else if ((this._sentQueryQueue?.length ?? 0) > sent) cmd = this._sentQueryQueue![this._sentQueryQueue!.length - 1];
    if (cmd !== undefined && issued(pgAdapter, this, cmd, hooks)) watchAnswer(cmd);
    return r;
  });
  // end() while a killed query is being cancelled (a killed thread's finally, pg.Pool's release(err)): pg would
  // destroy the socket because a query is active, and the server would run the statement on (it does not notice
  // a vanished client by default), the cancel on its way aborted with the connection. The end waits for the
  // cancel instead: a graceful Terminate once the statement has replied, or the close of the cancel's fallback.
  const end = P.end as ((this: PgClient, ...a: unknown[]) => unknown) | undefined;
  if (typeof end === 'function') {
    put(P, 'end', function end_(this: PgClient, ...args: unknown[]) {
      const con = this.connection as { once?: (ev: string, f: () => void) => void } | undefined;
      const deferred = this[kEndAfter] !== undefined;
      if (!deferred && (this[kHold] === undefined || this._activeQuery == null || this.pipeline === true || this._queryable === false || typeof con?.once !== 'function')) {
        return end.apply(this, args);
      }
      this._ending = true; // as pg's end(): queries issued from now on fail
      if (!deferred) this[kEndAfter] = () => end.call(this);
      const cb = args[0];
      if (typeof cb === 'function') return void con!.once!('end', cb as () => void);
      return new (this._Promise ?? Promise)((resolve) => con!.once!('end', () => resolve(undefined)));
    });
  }
  // The hold (ServerCancel.hold): pg writes the next query only from here.
  const pulse = P._pulseQueryQueue as PgClient['_pulseQueryQueue'];
  if (typeof pulse === 'function') {
    put(P, '_pulseQueryQueue', function pulse_(this: PgClient) {
      const held = this[kHold] as (() => void) | undefined;
      if (held === undefined) return pulse.call(this);
      if (this.readyForQuery === true) held();
    });
  }
}

/** The query's reply has wholly arrived (or it failed): it is nobody's any more. */
function watchAnswer(cmd: PgQuery): void {
  const onError = cmd.handleError;
  const onReady = cmd.handleReadyForQuery;
  if (typeof onError !== 'function' || typeof onReady !== 'function') return;
  cmd.handleError = function (this: PgQuery, err: unknown, con: unknown) {
    answered(this);
    return onError.call(this, err, con);
  };
  cmd.handleReadyForQuery = function (this: PgQuery, con: unknown) {
    answered(this);
    return onReady.call(this, con);
  };
}

interface PgPool {
  Promise?: PromiseConstructor;
  _pendingQueue?: { callback: unknown }[];
}
type Checkout = (err?: unknown, client?: { release?: (err?: unknown) => void }, release?: (err?: unknown) => void) => unknown;

/**
 * pg-pool's checkout (`pool.connect`, and `pool.query` through it). The callback runs as the caller: pg-pool
 * calls it from wherever a client became free (a socket's callback, another thread's release). A caller
 * killed while it waits gets the kill error at once when its request is still in the pool's queue, and a
 * client that reaches a killed caller anyway goes back to the pool unused: a dead thread's query never starts.
 */
function patchPool(Pool: unknown, put: Put): void {
  const P = (Pool as { prototype?: any } | null)?.prototype;
  if (P == null || typeof P.connect !== 'function' || typeof P._acquireClient !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const connect = P.connect as (this: PgPool, cb?: unknown) => unknown;
  put(P, 'connect', function connect_(this: PgPool, cb?: unknown) {
    const t = owningThread();
    if (t === null || t._killError !== undefined) return connect.call(this, typeof cb === 'function' ? asCaller(cb as Checkout) : cb);
    let settle: Checkout;
    let result: Promise<unknown> | undefined;
    if (typeof cb === 'function') settle = asCaller(cb as Checkout);
    else {
      result = new (this.Promise ?? Promise)((resolve, reject) => {
        settle = (err, client) => (err ? reject(err) : resolve(client));
      });
    }
    const token = {};
    let done = false;
    const ours: Checkout = (err, client, release) => {
      if (done) return;
      done = true;
      disown(token, t);
      if (err == null && client != null && t._killError !== undefined) {
        (release ?? client.release)?.call(client);
        return settle(t._killError);
      }
      return settle(err, client, release);
    };
    forCaller(ours, t);
    own(token, (_token: object, killErr: unknown) => {
      const q = this._pendingQueue;
      const i = q?.findIndex((p) => p.callback === ours) ?? -1;
      if (i < 0 || done) return; // being connected for it, or behind pg-pool's own timeout wrapper: settled on arrival
      q!.splice(i, 1);
      done = true;
      settle(killErr);
    }, t);
    connect.call(this, ours);
    return result;
  });
  // A client made for a queued caller (from another client's release, or a failed connect): the caller's.
  const newClient = P.newClient as ((this: unknown, item: { callback?: unknown }) => unknown) | undefined;
  if (typeof newClient === 'function') {
    put(P, 'newClient', function newClient_(this: unknown, item: { callback?: unknown }) {
      return runFor(item?.callback, () => newClient.call(this, item));
    });
  }
}

/** Settles a query that will not run with `err`, as pg settles its own errors: on the next tick. */
function fail(c: PgClient, cmd: PgQuery, err: unknown): void {
  process.nextTick(() => cmd.handleError(err, c.connection));
}

const CANCEL_REQUEST = 80877102;
const SSL_REQUEST = 80877103;

function cancelPacket(pid: number, key: number | Buffer): Buffer {
  const k = typeof key === 'number' ? null : key;
  const b = Buffer.alloc(12 + (k === null ? 4 : k.length));
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(CANCEL_REQUEST, 4);
  b.writeInt32BE(pid, 8);
  if (k === null) b.writeInt32BE(key as number, 12);
  else k.copy(b, 12);
  return b;
}

/** pg's own TLS options for `host` (connection.js upgradeToSSL): the same certificate checks. */
function tlsOptions(c: PgClient, socket: Socket): Record<string, unknown> {
  const ssl = c.ssl;
  const o: Record<string, unknown> = { socket, host: c.host };
  if (ssl !== true && ssl !== null && typeof ssl === 'object') {
    Object.assign(o, ssl);
    if ('key' in ssl) o.key = (ssl as { key?: unknown }).key; // pg makes it non-enumerable
  }
  const net = builtin<typeof import('node:net')>('net');
  if (typeof c.host === 'string' && net.isIP(c.host) === 0) o.servername = c.host;
  o.socket = socket;
  return o;
}

/** Sends a CancelRequest for `c`'s backend, as ServerCancel.send describes. */
function sendCancel(c: PgClient, done: (outcome: 'landed' | 'not-sent') => void): () => void {
  const pid = c.processID;
  const key = c.secretKey;
  const stream = c.connection?.stream;
  if (typeof pid !== 'number' || key == null || typeof c.host !== 'string' || stream == null) {
    process.nextTick(done, 'not-sent');
    return noop;
  }
  const net = builtin<typeof import('node:net')>('net');
  const encrypted = (stream as { encrypted?: boolean }).encrypted === true;
  const raw = c.host.startsWith('/') ? net.connect(`${c.host}/.s.PGSQL.${c.port}`) : net.connect(Number(c.port), c.host);
  raw.setNoDelay(true);
  let sock: Socket = raw;
  let written = false;
  let over = false;
  const finish = (): void => {
    if (over) return;
    over = true;
    done(written ? 'landed' : 'not-sent');
  };
  const send = (): void => {
    written = true;
    sock.write(cancelPacket(pid, key));
  };
  // The server closes the connection once it has signalled the backend (PostgreSQL's postmaster does kill()
  // before it exits): that close is the "landed".
  raw.on('error', noop);
  raw.on('close', finish);
  raw.once('connect', () => {
    if (!encrypted) return send();
    const req = Buffer.alloc(8);
    req.writeInt32BE(8, 0);
    req.writeInt32BE(SSL_REQUEST, 4);
    raw.write(req);
    raw.once('data', (d: Buffer) => {
      if (d[0] !== 0x53) return raw.destroy(); // 'N': no TLS for the cancel, while the connection has it: not sent
      const tls = builtin<typeof import('node:tls')>('tls');
      const t = tls.connect(tlsOptions(c, raw) as import('node:tls').ConnectionOptions, send);
      sock = t;
      t.on('error', noop);
      t.on('close', finish);
      t.resume();
    });
  });
  raw.resume();
  return () => {
    over = true;
    sock.destroy();
    raw.destroy();
  };
}

/**
 * The killed (running) query's error is told at its ReadyForQuery, as pg tells a result, not at its
 * ErrorResponse: PostgreSQL sends the error before it aborts the statement's transaction (its locks still
 * held, the backend still 'active' in pg_stat_activity), and the killed thread's Timeout comes from this
 * error. Told at once if the connection closes first. Returns what tells it (called from the hold).
 */
function deferError(c: PgClient): () => void {
  const cmd = c._activeQuery;
  const stream = c.connection?.stream;
  if (cmd == null || stream == null || typeof cmd.handleError !== 'function') return noop;
  const own = Object.hasOwn(cmd, 'handleError');
  const handleError = cmd.handleError;
  let pending: [unknown, unknown] | null = null;
  cmd.handleError = (err: unknown, con: unknown): void => {
    pending = [err, con];
  };
  const tell = (): void => {
    stream.removeListener('close', tell);
    if (own) cmd.handleError = handleError;
    else delete (cmd as { handleError?: unknown }).handleError; // back to the prototype's
    if (pending === null) return;
    const [err, con] = pending;
    pending = null;
    handleError.call(cmd, err, con);
  };
  stream.once('close', tell);
  return tell;
}

export const pgAdapter: ClientAdapter<PgClient, PgQuery> = {
  name: 'pg',
  modules: [
    {
      file: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]client\.js$/,
      looksLike: (e) => hasMethods(e, ['query', 'connect', '_pulseQueryQueue', '_handleReadyForQuery']),
      patch: patchClient,
    },
    {
      file: /[\\/]node_modules[\\/]pg-pool[\\/]index\.js$/,
      looksLike: (e) => hasMethods(e, ['connect', 'query', '_acquireClient', '_pulseQueue']),
      patch: (exports, put) => patchPool(exports, put),
    },
  ],

  socketOf: (c) => c.connection?.stream ?? null,
  busy: (c) => c._activeQuery != null || (queueOf(c)?.length ?? 0) > 0 || (c._sentQueryQueue?.length ?? 0) > 0,

  state(c, cmd): CommandState {
    if (queueOf(c)?.includes(cmd)) return 'queued';
    const sent = c._sentQueryQueue ?? [];
    if (c._activeQuery === cmd) return sent.length === 0 ? 'running' : 'pipelined';
    return sent.includes(cmd) ? 'pipelined' : 'done';
  },

  dequeue(c, cmd, err) {
    const q = queueOf(c);
    const i = q?.indexOf(cmd) ?? -1;
    if (i < 0) return;
    q!.splice(i, 1);
    fail(c, cmd, err);
  },

  drop(c, cmd, err) {
    // Its reply still comes, in order: every handler pg calls on it becomes a no-op once it has failed.
    const handleError = cmd.handleError;
    for (const k of ['handleRowDescription', 'handleDataRow', 'handleCommandComplete', 'handleEmptyQuery', 'handlePortalSuspended', 'handleError', 'handleReadyForQuery']) {
      cmd[k] = noop;
    }
    process.nextTick(() => handleError.call(cmd, err, c.connection));
  },

  cancel: {
    send: sendCancel,
    hold(c, replied) {
      let once = false;
      const tell = deferError(c);
      const held = (): void => {
        if (once) return;
        once = true;
        tell();
        replied();
      };
      c[kHold] = held;
      return () => {
        if (c[kHold] !== held) return;
        c[kHold] = undefined;
        const endNow = c[kEndAfter] as (() => void) | undefined;
        if (endNow !== undefined) {
          c[kEndAfter] = undefined;
          return void endNow();
        }
        // Ended meanwhile (after the reply): nothing more is written.
        if (c._ending !== true) c._pulseQueryQueue();
      };
    },
  },
};

function noop(): void {}
