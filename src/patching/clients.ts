// Clients that queue requests in JavaScript, behind the one in flight (pg.Client, mysql2's connections).
//
// A request queued inside the client writes nothing until the one ahead of it is answered, so at the
// socket it is invisible: killing the thread whose request is in flight would destroy the connection under
// the queued one. Where the client is known, evy sees the queueing itself: a request that another
// thread's (or main's) request is ahead of makes the socket shared (docs/patching.md), as overlapping
// writes do. A thread queueing behind its own request changes nothing.
//
// The client's module is found when it loads (a wrapper on the CommonJS '.js' loader, which the CJS builds
// of pg and mysql2 go through whether the app imports or requires them) or, if it was loaded before
// patching, in the module cache.
import { builtin } from './state.js';

type Put = (obj: any, key: string, value: unknown) => void;
/** What the patchers tell the net layer (patching/net.ts). */
export interface ClientHooks {
  /** A request was queued in the client behind the one in flight on `socket`. */
  queued(socket: unknown): void;
  /** `socket` is `client`'s, a watched client: every request queued on it is reported through `queued`. */
  watched(socket: unknown, client: unknown): void;
  /**
   * The client will start TLS on its socket: load `tls` now, so that evy's `tls.connect` hook is in place
   * when the client calls it (it loads `tls` itself only at that moment, too late for the hook).
   */
  tlsAhead(): void;
}

const kPatched = Symbol.for('evy.clients.patched');

/** pg's Client class, by the file that defines it (pg 8.x). */
const PG_CLIENT = /[\\/]node_modules[\\/]pg[\\/]lib[\\/]client\.js$/;

interface PgClient {
  ssl?: unknown;
  _queryQueue?: unknown[];
  queryQueue?: unknown[];
  connection?: { stream?: unknown };
  query(...a: unknown[]): unknown;
  connect(...a: unknown[]): unknown;
}

function patchPg(Client: unknown, put: Put, hooks: ClientHooks): void {
  const P = (Client as { prototype?: any } | null)?.prototype;
  if (P == null || typeof P.query !== 'function' || typeof P.connect !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const connect = P.connect as PgClient['connect'];
  put(P, 'connect', function connect_(this: PgClient, ...args: unknown[]) {
    hooks.watched(this.connection?.stream, this); // made with the client, connected now
    if (this.ssl) hooks.tlsAhead();
    return connect.apply(this, args);
  });
  const query = P.query as PgClient['query'];
  put(P, 'query', function query_(this: PgClient, ...args: unknown[]) {
    hooks.watched(this.connection?.stream, this); // with ssl, pg has replaced its socket by a TLS one by now
    // pg 8.20+ keeps the queue in `_queryQueue` (its `queryQueue` getter warns); older 8.x in `queryQueue`.
    const q = '_queryQueue' in this ? this._queryQueue : this.queryQueue;
    const before = Array.isArray(q) ? q.length : -1;
    const r = query.apply(this, args);
    if (before >= 0 && q!.length > before) hooks.queued(this.connection?.stream);
    return r;
  });
}

/**
 * mysql2's connection class, by the file that defines its command queue: lib/base/connection.js (3.x), or
 * lib/connection.js (2.x; in 3.x that file only subclasses the base, and is left alone).
 */
const MYSQL2_CONNECTION = /[\\/]node_modules[\\/]mysql2[\\/]lib[\\/](?:base[\\/])?connection\.js$/;

interface Mysql2Connection {
  config?: { ssl?: unknown };
  /** The command in flight; the others wait in `_commands`. */
  _command?: unknown;
  stream?: unknown;
}

function patchMysql2(Connection: unknown, put: Put, hooks: ClientHooks): void {
  const P = (Connection as { prototype?: any } | null)?.prototype;
  if (P == null || !Object.hasOwn(P, 'addCommand') || typeof P.addCommand !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const addCommand = P.addCommand as (this: Mysql2Connection, cmd: unknown) => unknown;
  put(P, 'addCommand', function addCommand_(this: Mysql2Connection, cmd: unknown) {
    // The first command is the handshake, added by the constructor right after it connected the stream.
    hooks.watched(this.stream, this); // again after a TLS upgrade replaced the stream
    if (this.config?.ssl) hooks.tlsAhead();
    const behind = this._command != null; // it waits in mysql2's queue, writing nothing until that one is answered
    const r = addCommand.call(this, cmd);
    if (behind) hooks.queued(this.stream);
    return r;
  });
}

const CLIENTS: [RegExp, (exports: unknown, put: Put, hooks: ClientHooks) => void][] = [
  [PG_CLIENT, patchPg],
  [MYSQL2_CONNECTION, patchMysql2],
];

function patchKnown(file: string, exports: unknown, put: Put, hooks: ClientHooks): void {
  for (const [re, patch] of CLIENTS) if (re.test(file)) patch(exports, put, hooks);
}

/** Finds the known clients now and as they load. */
export function installClientHooks(put: Put, hooks: ClientHooks): void {
  const Module = builtin<any>('module');
  const cache: Record<string, { exports?: unknown } | undefined> = Module._cache ?? {};
  for (const file of Object.keys(cache)) patchKnown(file, cache[file]?.exports, put, hooks);
  const ext = Module._extensions as Record<string, (m: { exports: unknown }, file: string) => unknown> | undefined;
  const loadJs = ext?.['.js'];
  if (ext === undefined || typeof loadJs !== 'function') return;
  put(ext, '.js', function loadJs_(this: unknown, m: { exports: unknown }, file: string) {
    const r = loadJs.call(this, m, file);
    patchKnown(file, m.exports, put, hooks);
    return r;
  });
}
