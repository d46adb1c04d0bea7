// node-postgres (`pg` 8.x): pg.Client queues queries in `_queryQueue` and writes the next one from its
// ReadyForQuery handler; checked-out pg.Pool clients and `pool.query` go through the same Client#query.
import type { Socket } from 'node:net';
import type { ClientAdapter, ClientHooks, CommandState, Put } from './adapter.js';

const kPatched = Symbol.for('evy.clients.patched');

export interface PgClient {
  ssl?: unknown;
  pipeline?: boolean;
  _queryQueue?: PgQuery[];
  queryQueue?: PgQuery[];
  _sentQueryQueue?: PgQuery[];
  _activeQuery?: PgQuery | null;
  connection?: { stream?: Socket };
  query(...a: unknown[]): unknown;
  connect(...a: unknown[]): unknown;
}

/** pg's Query, or any submittable (pg-cursor, pg-query-stream): what the client drives. */
export interface PgQuery {
  callback?: ((err: unknown, res?: unknown) => void) | undefined;
  handleError(err: unknown, connection: unknown): void;
  [k: string]: unknown;
}

/** pg 8.20+ keeps the queue in `_queryQueue` (its `queryQueue` getter warns); older 8.x in `queryQueue`. */
function queueOf(c: PgClient): PgQuery[] | undefined {
  const q = '_queryQueue' in c ? c._queryQueue : c.queryQueue;
  return Array.isArray(q) ? q : undefined;
}

function patchClient(Client: unknown, put: Put, hooks: ClientHooks): void {
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
    const q = queueOf(this);
    const before = q !== undefined ? q.length : -1;
    const r = query.apply(this, args);
    if (before >= 0 && q!.length > before) hooks.queued(this.connection?.stream);
    return r;
  });
}

/** Settles a query that will not run (or whose reply is dropped) with `err`, as pg settles its own errors: on the next tick. */
function fail(c: PgClient, cmd: PgQuery, err: unknown): void {
  process.nextTick(() => cmd.handleError(err, (c as { connection?: unknown }).connection));
}

export const pgAdapter: ClientAdapter<PgClient, PgQuery> = {
  name: 'pg',
  modules: [{ file: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]client\.js$/, patch: patchClient }],

  socketOf: (c) => c.connection?.stream ?? null,

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
};

function noop(): void {}
