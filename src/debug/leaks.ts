// Leak reports: what a piece of code (and the threads it spawned) left open, with the creating thread and
// call site, through an async hook scoped to the scan.
import type { AsyncHook } from 'node:async_hooks';
const { createHook } = process.getBuiltinModule('async_hooks') as typeof import('node:async_hooks');
const { readdirSync, readlinkSync } = process.getBuiltinModule('fs') as typeof import('node:fs');
const timers = process.getBuiltinModule('timers') as typeof import('node:timers');
import { EvyError } from '../errors.js';
import { callbackContext, type GreenThread, spawn } from '../greenthread.js';
import { rt } from '../runtime.js';
import { checkFunction, checkObject, checkSeconds } from '../validate.js';
import { isOrphan } from '../net/orphan.js';
import { builtin, countActive, state, syncHook } from './state.js';
import { userFrames } from './threads.js';

export interface Leak {
  /** For people: 'tcp socket', 'tcp server', 'timer', 'interval', 'child process', 'file handle', 'file descriptor', ... */
  kind: string;
  /** The async_hooks type ('TCPWRAP', 'Timeout', ...) or 'fd'. */
  type: string;
  /** Socket addresses, timer delay, pid, file path. */
  detail: string;
  /** The green thread that created it. */
  thread: string | null;
  /** The first frame outside evy and node internals where it was created. */
  site: string | null;
  /** More of the creation stack. */
  stack: string | null;
}

export interface LeakReport {
  ok: boolean;
  leaked: Leak[];
  /** `process.getActiveResourcesInfo()` counts that grew while `fn` ran (type -> extra count). */
  activeDiff: Record<string, number>;
  /** What `fn` returned, or the error it threw. */
  result: unknown;
  error: unknown;
  /** The report as text, one line per leak. */
  summary: string;
  /** Closes, clears or kills what was leaked (so a test of a leaky library does not leak itself); settles once closed. */
  cleanup: () => Promise<void>;
}

export interface LeaksOptions {
  /** How long to let closes settle after `fn` ends before declaring leaks (default 0.3 s). */
  grace?: number;
  /** Name of the green thread `fn` runs in (default 'leaks'). */
  name?: string;
}

const KINDS: Record<string, string> = {
  TCPWRAP: 'tcp socket',
  TCPSERVERWRAP: 'tcp server',
  PIPEWRAP: 'pipe or unix socket',
  PIPESERVERWRAP: 'unix socket server',
  TLSWRAP: 'tls socket',
  UDPWRAP: 'udp socket',
  PROCESSWRAP: 'child process',
  Timeout: 'timer',
  Immediate: 'immediate',
  FILEHANDLE: 'file handle',
  FSEVENTWRAP: 'fs watcher',
  STATWATCHER: 'fs.watchFile watcher',
  SIGNALWRAP: 'signal listener',
  TTYWRAP: 'tty',
  WORKER: 'worker thread',
  HTTPPARSER: 'http parser',
};

interface Creator {
  id: number;
  type: string;
  thread: GreenThread;
  trigger: number;
  stack: string;
}

function captureStack(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder);
  Error.stackTraceLimit = limit;
  return holder.stack ?? '';
}

/** The first stack along the trigger chain that shows user code. */
function siteOf(id: number, creators: Map<number, Creator>): string {
  for (let c = creators.get(id), hops = 0; c !== undefined && hops < 20; c = creators.get(c.trigger), hops++) {
    const frames = userFrames(c.stack, 4);
    if (frames !== '') return frames;
  }
  return '';
}

interface Tracked {
  id: number;
  type: string;
  resource: any;
  thread: GreenThread | undefined;
  stack: string;
}

function ownerOf(res: any): any {
  if (res === null || typeof res !== 'object') return null;
  for (const sym of Object.getOwnPropertySymbols(res)) {
    if (sym.description === 'owner_symbol') return res[sym];
  }
  return res.owner ?? null;
}

function stillOpen(t: Tracked): boolean {
  const r = t.resource;
  if (t.type === 'Timeout') return !r._destroyed;
  if (t.type === 'Immediate') return !r._destroyed && r._onImmediate !== null;
  if (t.type === 'FILEHANDLE') return typeof r.fd !== 'number' || r.fd >= 0;
  return true; // handles: removed by the destroy hook when closed
}

function leakDetail(t: Tracked): string {
  const r = t.resource;
  try {
    if (t.type === 'Timeout') return (r._repeat ? `setInterval ${r._repeat}ms` : `setTimeout ${r._idleTimeout}ms`) + (r._onTimeout?.name ? ` -> ${r._onTimeout.name}()` : '') + (r.hasRef?.() === false ? ' (unref)' : '');
    if (t.type === 'Immediate') return r._onImmediate?.name ? `setImmediate -> ${r._onImmediate.name}()` : 'setImmediate';
    if (t.type === 'PROCESSWRAP') return `pid ${r.pid}`;
    if (t.type === 'FILEHANDLE') return `fd ${r.fd}`;
    const out: Record<string, unknown> = {};
    if (typeof r.getsockname === 'function') {
      const a: any = {};
      r.getsockname(a);
      let s = a.address !== undefined ? `${a.address}:${a.port}` : '';
      if (typeof r.getpeername === 'function') {
        const p: any = {};
        r.getpeername(p);
        if (p.address !== undefined) s += ` -> ${p.address}:${p.port}`;
      }
      const sock = ownerOf(r);
      if (sock !== null && typeof sock === 'object' && isOrphan(sock)) s += " (a killed thread's private connection: closes once unreachable)";
      if (s) return s;
    }
    const owner = ownerOf(r);
    if (owner && typeof owner.path === 'string') return owner.path;
    void out;
  } catch {
    // describing is best effort
  }
  return '';
}

function leakKind(t: Tracked): string {
  if (t.type === 'Timeout' && t.resource._repeat) return 'interval';
  return KINDS[t.type] ?? t.type;
}

function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  if (process.platform !== 'linux') return out;
  try {
    for (const name of readdirSync('/proc/self/fd')) {
      try {
        out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
      } catch {
        // closed while listing
      }
    }
  } catch {
    // no /proc
  }
  return out;
}


const settle = (ms: number): Promise<void> => new Promise((r) => rt.timers.setTimeout(r, ms));
const turn = (): Promise<void> => new Promise((r) => rt.timers.setImmediate(r));

/**
 * Runs `fn` in a green thread and reports what it (and the threads it spawned) left open after it ended:
 * sockets, servers, timers, intervals, child processes, file handles and (on Linux) file descriptors, each
 * with its kind, the creating thread and the call site. For tests: `expect((await evy.debug.leaks(fn)).leaked).toEqual([])`,
 * or `await evy.debug.assertNoLeaks(fn)`.
 */
export async function leaks<T>(fn: () => T | PromiseLike<T>, options: LeaksOptions = {}): Promise<LeakReport> {
  checkFunction(fn);
  checkObject(options);
  const graceMs = checkSeconds(options.grace ?? 0.3, 'options.grace');
  const scope = new Set<GreenThread>();
  const tracked = new Map<number, Tracked>();
  const creators = new Map<number, Creator>();
  const fdsBefore = openFds();
  const activeBefore = countActive();
  const hook: AsyncHook = createHook({
    init(id, type, trigger, resource) {
      if (type === 'PROMISE') return;
      // The raw store: callbacks of a thread that ended still count as its own.
      // A socket evy connected outside the thread's context (so its callbacks are no thread's) was still
      // made by the thread whose code ran then: that is its trigger.
      let store = rt.als?.getStore();
      if (store === callbackContext) store = (rt.ext.neutralFor as GreenThread | undefined) ?? creators.get(trigger)?.thread;
      else if (store === undefined) store = creators.get(trigger)?.thread;
      let stack: string | undefined;
      if (store === undefined && type === 'FILEHANDLE') {
        // fsp.open's FileHandle is created natively, outside any JS context (trigger 0, no store): it belongs
        // to the latest fs.promises request of the scope still pending (the open), whose stack is the site.
        const req = [...creators.values()].filter((c) => c.type === 'FSREQPROMISE').pop();
        if (req !== undefined) [store, stack, trigger] = [req.thread, req.stack, req.id];
      }
      if (store === undefined || !scope.has(store)) return;
      stack ??= captureStack();
      // Every resource of the scope is remembered while it lives: a handle created from internal code only
      // (server.listen after a dns lookup) takes its call site from the request that led to it.
      if (type in KINDS) {
        // The trigger chain is alive now (we run inside its callback), not necessarily at report time. The
        // site is kept for its own children too (a server's accepted sockets point at the listen).
        const site = userFrames(stack, 4) || siteOf(trigger, creators);
        creators.set(id, { id, type, thread: store, trigger, stack: site });
        tracked.set(id, { id, type, resource, thread: store, stack: site });
      } else {
        creators.set(id, { id, type, thread: store, trigger, stack });
      }
    },
    destroy(id) {
      tracked.delete(id);
      creators.delete(id);
    },
  });
  state.scopes.add(scope);
  syncHook();
  hook.enable();
  let result: unknown;
  let error: unknown;
  try {
    const gt = spawn(fn);
    gt.name = options.name ?? 'leaks';
    scope.add(gt);
    try {
      result = await gt.wait();
    } catch (e) {
      error = e;
    }
    // Let closes started at the end of fn complete (close callbacks run on later loop turns).
    await turn();
    await turn();
    const deadline = performance.now() + graceMs;
    while ([...tracked.values()].some(stillOpen) && performance.now() < deadline) await settle(10);
  } finally {
    hook.disable();
    state.scopes.delete(scope);
    syncHook();
  }
  const open = [...tracked.values()].filter(stillOpen);
  const leaked: Leak[] = open.map((t) => {
    const stack = t.stack;
    return { kind: leakKind(t), type: t.type, detail: leakDetail(t), thread: t.thread?.name ?? null, site: stack.split('\n')[0] || null, stack: stack || null };
  });
  // Raw file descriptors (fs.open, fs streams) have no async resource: diff /proc/self/fd for files.
  const handleFds = new Set(open.filter((t) => t.type === 'FILEHANDLE').map((t) => t.resource.fd));
  const fdsAfter = openFds();
  const newFds: [number, string][] = [];
  for (const [fd, target] of fdsAfter) {
    // /dev/null: what a child's ignored stdio holds open; reported as the child process itself.
    if (fdsBefore.get(fd) === target || handleFds.has(fd) || !target.startsWith('/') || target === '/dev/null') continue;
    newFds.push([fd, target]);
    leaked.push({ kind: 'file descriptor', type: 'fd', detail: `fd ${fd} ${target}`, thread: null, site: null, stack: null });
  }
  const activeAfter = countActive();
  const activeDiff: Record<string, number> = {};
  for (const [k, n] of Object.entries(activeAfter)) if (n > (activeBefore[k] ?? 0)) activeDiff[k] = n - (activeBefore[k] ?? 0);
  const summary =
    leaked.length === 0
      ? 'no leaks'
      : `${leaked.length} resource${leaked.length === 1 ? '' : 's'} left open:\n` +
        leaked.map((l) => `  - ${l.kind}${l.detail ? ` ${l.detail}` : ''}${l.thread ? ` (thread ${l.thread})` : ''}${l.site ? `\n      created ${l.site}` : ''}`).join('\n');
  const cleanup = async (): Promise<void> => {
    const exits: Promise<unknown>[] = [];
    for (const t of open) {
      const done = closeTracked(t);
      if (done !== undefined) exits.push(done);
    }
    await Promise.all(exits);
    // Handles finish closing on a later loop turn.
    await turn();
    await turn();
    for (const [fd] of newFds) {
      try {
        builtin('fs').closeSync(fd);
      } catch {
        // already closed
      }
    }
  };
  return { ok: leaked.length === 0, leaked, activeDiff, result, error, summary, cleanup };
}

/** Closes one leaked resource; for a child process, returns a promise of its exit (bounded wait). */
function closeTracked(t: Tracked): Promise<unknown> | undefined {
  const r = t.resource;
  try {
    if (t.type === 'Timeout') return void timers.clearTimeout(r);
    if (t.type === 'Immediate') return void timers.clearImmediate(r);
    const owner = ownerOf(r);
    if (t.type === 'FILEHANDLE') return (owner ?? r).close?.()?.catch?.(() => {});
    if (t.type === 'PROCESSWRAP' && owner && typeof owner.kill === 'function') {
      if (owner.exitCode !== null || owner.signalCode !== null) return undefined;
      const exited = new Promise<void>((resolve) => {
        const timer = rt.timers.setTimeout(resolve, 2000);
        owner.once('exit', () => {
          rt.timers.clearTimeout(timer);
          resolve();
        });
      });
      owner.kill('SIGKILL');
      return exited;
    }
    if (owner && typeof owner.destroy === 'function') return void owner.destroy();
    if (owner && typeof owner.close === 'function') return void owner.close();
    if (typeof r.close === 'function') r.close();
  } catch {
    // best effort
  }
  return undefined;
}

/** Runs `fn` like `leaks` and throws an EvyError (code ERR_EVY_LEAKS) listing what it left open (cleaned up first). */
export async function assertNoLeaks<T>(fn: () => T | PromiseLike<T>, options?: LeaksOptions): Promise<T> {
  const r = await leaks(fn, options);
  if (!r.ok) {
    await r.cleanup();
    const err = new EvyError(`evy.debug.assertNoLeaks: ${r.summary}`, 'ERR_EVY_LEAKS');
    (err as EvyError & { leaked: Leak[] }).leaked = r.leaked;
    throw err;
  }
  if (r.error !== undefined) throw r.error;
  return r.result as T;
}
