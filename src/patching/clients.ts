// Clients that queue requests in JavaScript, behind the one in flight (pg.Client).
//
// A request queued inside the client writes nothing until the one ahead of it is answered, so at the
// socket it is invisible: killing the thread whose request is in flight would destroy the connection under
// the queued one. Where the client is known, evy sees the queueing itself: a request that another
// thread's (or main's) request is ahead of makes the socket shared (docs/patching.md), as overlapping
// writes do. A thread queueing behind its own request changes nothing.
//
// The client's module is found when it loads (a wrapper on the CommonJS '.js' loader, which the CJS build
// of pg goes through whether the app imports or requires it) or, if it was loaded before patching, in the
// module cache.
import { builtin } from './state.js';

type Put = (obj: any, key: string, value: unknown) => void;
type Queued = (socket: unknown) => void;

/** pg's Client class, by the file that defines it (pg 8.x). */
const PG_CLIENT = /[\\/]node_modules[\\/]pg[\\/]lib[\\/]client\.js$/;
const kPatched = Symbol.for('evy.clients.patched');

interface PgClient {
  _queryQueue?: unknown[];
  queryQueue?: unknown[];
  connection?: { stream?: unknown };
  query(...a: unknown[]): unknown;
}

function patchPg(Client: unknown, put: Put, queued: Queued): void {
  const P = (Client as { prototype?: any } | null)?.prototype;
  if (P == null || typeof P.query !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const query = P.query as PgClient['query'];
  put(P, 'query', function query_(this: PgClient, ...args: unknown[]) {
    // pg 8.20+ keeps the queue in `_queryQueue` (its `queryQueue` getter warns); older 8.x in `queryQueue`.
    const q = '_queryQueue' in this ? this._queryQueue : this.queryQueue;
    const before = Array.isArray(q) ? q.length : -1;
    const r = query.apply(this, args);
    if (before >= 0 && q!.length > before) queued(this.connection?.stream);
    return r;
  });
}

/** Finds the known clients now and as they load; `queued(socket)` is told of each request queued behind another. */
export function installClientHooks(put: Put, queued: Queued): void {
  const Module = builtin<any>('module');
  const cache: Record<string, { exports?: unknown } | undefined> = Module._cache ?? {};
  for (const file of Object.keys(cache)) {
    if (PG_CLIENT.test(file)) patchPg(cache[file]?.exports, put, queued);
  }
  const ext = Module._extensions as Record<string, (m: { exports: unknown }, file: string) => unknown> | undefined;
  const loadJs = ext?.['.js'];
  if (ext === undefined || typeof loadJs !== 'function') return;
  put(ext, '.js', function loadJs_(this: unknown, m: { exports: unknown }, file: string) {
    const r = loadJs.call(this, m, file);
    if (PG_CLIENT.test(file)) patchPg(m.exports, put, queued);
    return r;
  });
}
