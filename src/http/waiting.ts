// What a request's thread is waiting on, for the line a deadline or drain kill prints: the handles it owns
// (an upstream request, a database query, a child, a timer) with the app's line that made them, and the
// evy waits it is parked on. The same facts evy.debug.formatThreads() and the test runners' timeout message show.
import type { Destroyer, GreenThread } from '../greenthread.js';
import { siteOf } from '../debug/site.js';

const kClient = Symbol.for('evy.net.client');

function remote(s: any): string {
  return s.remoteAddress !== undefined ? `${s.remoteAddress}:${s.remotePort}` : (s._host ?? '?');
}

/** One handle, as people name it. */
function describe(r: any): string {
  try {
    // An http(s) request (owned itself, one level above its socket).
    if (typeof r.getHeader === 'function' && typeof r.method === 'string' && !('connecting' in r)) {
      return `http request ${r.method} ${r.protocol ?? 'http:'}//${r.getHeader('host') ?? r.host ?? '?'}${r.path ?? ''}`;
    }
    const client = r[kClient];
    if (client != null && typeof client === 'object') {
      if (client.connectionParameters !== undefined) {
        // pg 8.20+ keeps it in `_activeQuery` (its `activeQuery` getter warns); older 8.x in `activeQuery`.
        const q = ('_activeQuery' in client ? client._activeQuery : client.activeQuery)?.text;
        return `pg query${typeof q === 'string' ? ` "${q.length > 60 ? `${q.slice(0, 57)}...` : q}"` : ''} on ${remote(r)}`;
      }
      const cmd = client._command?.sql;
      return `mysql query${typeof cmd === 'string' ? ` "${cmd.length > 60 ? `${cmd.slice(0, 57)}...` : cmd}"` : ''} on ${remote(r)}`;
    }
    if (typeof r.pid === 'number' && typeof r.kill === 'function') return `child process pid ${r.pid} (${(r.spawnargs ?? [r.spawnfile]).join(' ')})`;
    const ctor = r.constructor?.name;
    if (ctor === 'Timeout') return r._repeat ? `setInterval ${r._repeat} ms` : `setTimeout ${r._idleTimeout} ms`;
    if (ctor === 'AbortController') return 'a timers/promises or fs.promises call';
    if ('connecting' in r && typeof r.write === 'function') return r.connecting === true ? `connecting socket to ${r._host ?? '?'}` : `socket to ${remote(r)}`;
  } catch {
    // best effort
  }
  return r?.constructor?.name ?? 'a handle';
}

/** A file of an installed package (node_modules/<name>/, pnpm's too); not a dot-folder such as node_modules/.cache. */
const LIBRARY = /[\\/]node_modules[\\/](?:@[^\\/]+[\\/])?[^.\\/][^\\/]*[\\/]/;

function inLibrary(file: string): boolean {
  return LIBRARY.test(file);
}

/** What `t` is waiting on, one phrase per handle or wait, comma-separated. */
export function waitingOn(t: GreenThread): string {
  const out: string[] = [];
  const owned = t._owned;
  if (owned !== null) {
    const sites = owned instanceof SiteMap ? owned.sites : null;
    for (const r of owned.keys()) {
      // An agent's socket being set up for an owned request: the request says it.
      const req = (r as { _httpMessage?: unknown })._httpMessage;
      if (req != null && owned.has(req)) continue;
      // The app's own line only: a site inside a library (pg connects from its callbacks) says nothing.
      const site = sites === null ? '' : siteOf(sites.get(r), inLibrary);
      const s = site === '' ? describe(r) : `${describe(r)} (${site})`;
      if (!out.includes(s)) out.push(s);
    }
  }
  if (t._parked !== null) out.push(`evy ${t._parked.label}`);
  for (const w of t._parkedMore ?? []) out.push(`evy ${w.label}`);
  return out.length === 0 ? 'a plain await on a promise evy does not track' : out.join(', ');
}

/**
 * The owned-map of a request thread that has a deadline: keeps where each handle was made (its first owner's
 * stack), so that the deadline line can point at the app's line. Costs a stack capture per handle owned.
 */
export class SiteMap extends Map<object, Destroyer> {
  readonly sites = new Map<object, Error>();
  override set(res: object, destroy: Destroyer): this {
    if (!this.sites.has(res)) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      const where = new Error('made here');
      Error.stackTraceLimit = 40;
      Error.captureStackTrace(where, SiteMap.prototype.set);
      Error.stackTraceLimit = limit;
      this.sites.set(res, where);
    }
    return super.set(res, destroy);
  }
}
