// Thread dumps: every live green thread with its state, what it is parked on, what it owns and (with
// tracking on) its age and spawn site; eventlet's hub listing; a dump on a signal.
import type { GreenThread } from '../greenthread.js';
import { invalidArgType } from '../errors.js';
import { current, rt } from '../runtime.js';
import { isEvyFile } from '../self.js';
import { checkBoolean, checkObject } from '../validate.js';
import { countActive, fmtSec, state, sweep, syncHook, type ThreadInfo } from './state.js';

/** The live spawned threads, oldest first (the core's list is newest first). */
function liveThreads(): GreenThread[] {
  const out: GreenThread[] = [];
  for (let t = rt.main!._liveNext; t !== null; t = t._liveNext) out.push(t);
  return out.reverse();
}

/**
 * Turns spawn-site tracking on or off. Every live thread is listed by `threads()`/`formatThreads()` without
 * it; while on, each spawn also records its time, parent and (when `stacks`, the default) its spawn site,
 * shown as age, "spawned by" and "spawned at". Costs roughly one stack capture per spawn; nothing when off.
 */
export function trackThreads(on = true, options: { stacks?: boolean } = {}): void {
  checkBoolean(on, 'on');
  checkObject(options);
  if (on && !state.tracking) state.trackingSince = performance.now();
  state.tracking = on;
  if (options.stacks !== undefined) state.stacks = checkBoolean(options.stacks, 'options.stacks');
  if (!on) state.registry.clear();
  syncHook();
}

export interface ThreadReport {
  id: number;
  name: string;
  /** 'running', 'ready', 'scheduled', 'parked', 'foreign' (a plain await), 'dying', or 'idle' (main, nothing to do). */
  state: string;
  /** What it is parked on (Waiter labels: 'Queue.get', 'sleep', 'GreenSocket.recv', 'tpool.execute', ...). */
  parkedOn: string[];
  /** Seconds since spawn, when tracking was on at spawn. */
  age: number | null;
  owned: string[];
  spawnSite: string | null;
  parent: string | null;
}

/** The live green threads, as plain objects (main first, then in spawn order). No setup needed. */
export function threads(): ThreadReport[] {
  sweep();
  const list: GreenThread[] = [rt.main!];
  const cur = current();
  const live = liveThreads();
  if (cur !== rt.main && !live.includes(cur)) list.push(cur);
  for (const t of live) list.push(t);
  const now = performance.now();
  return list.map((t) => describeThread(t, state.registry.get(t) ?? null, now, cur));
}

function describeThread(t: GreenThread, info: ThreadInfo | null, now: number, cur: GreenThread): ThreadReport {
  const parkedOn: string[] = [];
  if (t._parked !== null) parkedOn.push(t._parked.label);
  const more = t._parkedMore;
  if (more !== null) for (const w of more) parkedOn.push(w.label);
  let st: string;
  if (t === cur && (t !== rt.main || parkedOn.length === 0)) st = 'running';
  else if (t._killError !== undefined) st = 'dying';
  else if (t._state === 0) st = t._timer !== null ? 'scheduled' : 'ready';
  else if (parkedOn.length > 0) st = 'parked';
  else if (t === rt.main) st = 'idle';
  else st = 'foreign';
  const owned: string[] = [];
  const o = t._owned;
  if (o !== null) for (const r of o.keys()) owned.push(describeResource(r));
  return {
    id: t.id,
    name: t.name,
    state: st,
    parkedOn,
    age: info === null ? null : (now - info.born) / 1000,
    owned,
    spawnSite: info?.site ? userFrames(info.site.stack ?? '', 3) : null,
    parent: info?.parent ? info.parent.name : null,
  };
}

const STATE_TEXT: Record<string, string> = {
  running: 'running',
  ready: 'ready (spawned, not started yet)',
  scheduled: 'scheduled (spawnAfter, timer pending)',
  parked: 'parked on',
  foreign: 'awaiting a foreign promise (a plain await: not interruptible; use evy.until)',
  dying: 'killed, finishing',
  idle: 'idle (the event loop)',
};

/** A thread dump for people: name, state (parked on what), age, owned resources, spawn site. */
export function formatThreads(): string {
  const list = threads();
  const lines: string[] = [];
  const since = state.tracking
    ? `spawn sites tracked for ${fmtSec((performance.now() - state.trackingSince) / 1000)}`
    : 'spawn sites and ages: call evy.debug.trackThreads()';
  lines.push(`evy: ${list.length} live green thread${list.length === 1 ? '' : 's'} (${since})`);
  for (const t of list) {
    let head = `${t === list[0] ? '*' : '-'} ${t.name} [#${t.id}] ${STATE_TEXT[t.state] ?? t.state}`;
    if (t.parkedOn.length > 0) head += (t.state === 'parked' ? ' ' : ', parked on ') + t.parkedOn.join(' + ');
    if (t.age !== null) head += `, age ${fmtSec(t.age)}`;
    if (t.parent !== null) head += `, spawned by ${t.parent}`;
    lines.push(head);
    for (const r of t.owned) lines.push(`    owns ${r}`);
    if (t.spawnSite) for (const f of t.spawnSite.split('\n')) lines.push(`    spawned ${f.trim()}`);
  }
  return lines.join('\n');
}


/** Keeps the first `max` frames that are not evy's own nor node internals. */
export function userFrames(stack: string, max: number): string {
  const out: string[] = [];
  for (const line of stack.split('\n')) {
    const l = line.trim();
    if (!l.startsWith('at ')) continue;
    if (isEvyFile(l) || l.includes('node:internal') || l.includes('(node:') || l.includes(' node:')) continue;
    out.push(l);
    if (out.length >= max) break;
  }
  return out.join('\n');
}

/** A one-line description of a resource (socket, server, child process, timer, ...). */
export function describeResource(r: any): string {
  try {
    if (r === null || typeof r !== 'object') return String(r);
    const custom = r[Symbol.for('evy.describe')];
    if (typeof custom === 'function') return String(custom.call(r));
    const ctor = r.constructor?.name ?? 'Object';
    // A wrapper (GreenSocket, SocketFile): describe what it wraps.
    if (r.raw !== undefined && r.raw !== r && typeof r.raw === 'object') return `${ctor}(${describeResource(r.raw)})`;
    if (typeof r.pid === 'number' && typeof r.kill === 'function') {
      return `${ctor} pid ${r.pid} (${r.spawnfile ?? '?'})`;
    }
    if (typeof r.listen === 'function' && typeof r.address === 'function') {
      const a = r.address();
      return `${ctor} listening on ${a === null ? '(not listening)' : typeof a === 'string' ? a : `${a.address}:${a.port}`}`;
    }
    if ('remoteAddress' in r || 'connecting' in r) {
      const local = r.localAddress ? `${r.localAddress}:${r.localPort}` : '?';
      const remote = r.remoteAddress ? `${r.remoteAddress}:${r.remotePort}` : r.connecting ? '(connecting)' : '?';
      return `${ctor} ${local} -> ${remote}`;
    }
    if (ctor === 'Timeout' || ctor === 'Immediate') {
      const cb = r._onTimeout ?? r._onImmediate;
      const what = r._repeat ? `interval ${r._repeat}ms` : ctor === 'Timeout' ? `${r._idleTimeout}ms` : '';
      return `${ctor} ${what} ${cb?.name ? `-> ${cb.name}()` : ''}`.replace(/\s+/g, ' ').trim();
    }
    if (typeof r.fd === 'number') return `${ctor} fd ${r.fd}`;
    if (typeof r.path === 'string') return `${ctor} ${r.path}`;
    return ctor;
  } catch {
    return 'resource';
  }
}

/**
 * eventlet's format_hub_listeners / format_hub_timers, the Node way: what the event loop is waiting on (libuv
 * handles and requests by type: sockets, servers, timers, child processes, fs requests) and evy's ready queue.
 */
export function formatHub(): string {
  const counts = countActive();
  const ready = rt.ready.filter((t) => t !== undefined).length;
  const kinds = Object.keys(counts).sort();
  const lines = [`evy hub: ${ready} green thread${ready === 1 ? '' : 's'} ready to start; the event loop is waiting on ${kinds.length === 0 ? 'nothing' : ''}`.trimEnd()];
  for (const k of kinds) lines.push(`  ${k} x${counts[k]}`);
  return lines.join('\n');
}

// ---- thread dump on a signal ----------------------------------------------------------------------

/**
 * Writes `formatThreads()` to stderr each time `signal` arrives (default SIGUSR2: SIGUSR1 is Node's
 * inspector). Turns tracking on. `on = false` removes the handler. The dump runs on the event loop, so a
 * blocked loop delays it: that is what `blockingDetection` is for.
 */
export function dumpOnSignal(signal: NodeJS.Signals = 'SIGUSR2', on = true): void {
  if (typeof signal !== 'string') throw invalidArgType('signal', 'a signal name', signal);
  checkBoolean(on, 'on');
  const old = state.signals.get(signal);
  if (old !== undefined) {
    process.removeListener(signal, old);
    state.signals.delete(signal);
  }
  if (!on) return;
  trackThreads(true);
  const handler = (): void => {
    process.stderr.write(`${formatThreads()}\n${formatHub()}\n`);
  };
  process.on(signal, handler);
  state.signals.set(signal, handler);
}
