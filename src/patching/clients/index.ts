// Clients that queue requests in JavaScript, behind the one in flight (pg.Client, mysql2's connections, ioredis).
//
// A request queued inside the client writes nothing until the one ahead of it is answered, so at the
// socket it is invisible: killing the thread whose request is in flight would destroy the connection under
// the queued one. Where the client is known, evy sees the queueing itself: a request that another
// thread's (or main's) request is ahead of makes the socket shared (docs/patching.md), as overlapping
// writes do. A thread queueing behind its own request changes nothing.
//
// One file per client library, each exporting a ClientAdapter (adapter.ts: the shape); this list is all of them.
import type { ClientAdapter, ClientHooks, Put } from './adapter.js';
import { findModules } from './finder.js';
import { ioredisAdapter } from './ioredis.js';
import { mysql2Adapter } from './mysql2.js';
import { pgAdapter } from './pg.js';

export type { ClientHooks } from './adapter.js';

export const ADAPTERS: readonly ClientAdapter[] = [pgAdapter, mysql2Adapter, ioredisAdapter];

/** Finds the known clients now and as they load. */
export function installClientHooks(put: Put, hooks: ClientHooks): void {
  findModules(ADAPTERS.flatMap((a) => a.modules), put, hooks);
}
