// evy.debug: see what green threads are doing (thread dump), what blocks the loop (a watchdog that reads the
// main thread's stack while it is blocked), and what a piece of code left open (leak report).
// Everything here is opt-in: with nothing enabled, the only trace in the hot paths is one unset slot read per
// spawn (rt.ext.onSpawn).
import type { AsyncHook } from 'node:async_hooks';
const { createHook } = process.getBuiltinModule('async_hooks') as typeof import('node:async_hooks');
const { readdirSync, readlinkSync } = process.getBuiltinModule('fs') as typeof import('node:fs');
const { syncBuiltinESMExports } = process.getBuiltinModule('module') as typeof import('node:module');
const timers = process.getBuiltinModule('timers') as typeof import('node:timers');
import type { Worker } from 'node:worker_threads';
import { EvyError, invalidArgType, outOfRange } from './errors.js';
import { callbackContext, GreenThread, spawn, unowned, type SpawnHook } from './greenthread.js';
import { current, rt } from './runtime.js';
import { isEvyFile } from './self.js';
import { addSpawnHook, removeSpawnHook } from './spawn-hooks.js';
import { checkBoolean, checkFunction, checkObject, checkSeconds } from './validate.js';

// ---- shared state (one per process, shared by the ESM and CJS builds) -------------------------------

interface ThreadInfo {
  born: number;
  /** Captured at spawn (an Error whose stack is formatted only when someone reads it). */
  site: Error | null;
  parent: GreenThread | null;
}

interface DebugState {
  tracking: boolean;
  trackingSince: number;
  stacks: boolean;
  /** Spawn time, site and parent of the threads spawned while tracking was on (the live ones are on the core's list). */
  registry: Map<GreenThread, ThreadInfo>;
  sweepAt: number;
  /** Roots of running leaks() scans: threads spawned under them are added. */
  scopes: Set<Set<GreenThread>>;
  signals: Map<string, () => void>;
  blocking: BlockingState | null;
}

const state: DebugState = ((rt.ext.debug as DebugState | undefined) ??= {
  tracking: false,
  trackingSince: 0,
  stacks: true,
  registry: new Map(),
  sweepAt: 1024,
  scopes: new Set(),
  signals: new Map(),
  blocking: null,
});

// Builtins by name (process.getBuiltinModule: the same objects `require('node:fs')` returns, in ESM and CJS).
const builtin = (name: string): any => process.getBuiltinModule(name);

// ---- thread tracking --------------------------------------------------------------------------------

// The list of live threads is the core's (greenthread.ts keeps every spawned thread on a list headed by main
// until it settles): a dump lists them all with no setup. This hook, opt-in, adds spawn time, site and parent.
const onSpawn: SpawnHook = (t) => {
  const parent = current();
  if (state.tracking) {
    const reg = state.registry;
    reg.set(t, { born: performance.now(), site: state.stacks ? captureSite() : null, parent });
    if (reg.size >= state.sweepAt) sweep();
  }
  if (state.scopes.size > 0) {
    // The raw store: a thread spawned from a callback of a scope thread that has ended is still in scope.
    const raw = rt.als?.getStore() ?? parent;
    for (const scope of state.scopes) if (scope.has(raw)) scope.add(t);
  }
};

function captureSite(): Error {
  return new Error('spawned here'); // formatted lazily, only if a dump reads it
}

/** Drops dead threads; amortised so that a long run with tracking on does not grow without bound. */
function sweep(): void {
  const reg = state.registry;
  for (const t of reg.keys()) if (t.dead) reg.delete(t);
  state.sweepAt = Math.max(1024, reg.size * 2);
}

function syncHook(): void {
  if (state.tracking || state.scopes.size > 0) addSpawnHook(onSpawn);
  else removeSpawnHook(onSpawn);
}

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

function fmtSec(s: number): string {
  return s < 1 ? `${(s * 1000).toFixed(1)}ms` : `${s.toFixed(2)}s`;
}

/** Keeps the first `max` frames that are not evy's own nor node internals. */
function userFrames(stack: string, max: number): string {
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

// ---- blocking detection ---------------------------------------------------------------------------

export interface BlockReport {
  /** 'loop' (seen by the watchdog while the loop was blocked) or 'sync-call' (a *Sync call that took too long). */
  kind: 'loop' | 'sync-call';
  /** How long the loop was blocked, in seconds (the watchdog's estimate is within one heartbeat). */
  seconds: number;
  /** Name of the green thread that was running. */
  thread: string;
  /** For 'sync-call': the call, e.g. `child_process.execFileSync("sleep")`. */
  call?: string;
  /** Where it blocked: `at fn (file:line:col)` lines, innermost first. */
  stack: string;
}

export interface BlockingOptions {
  /** Receives each report (default: print it to stderr). */
  report?: ((r: BlockReport) => void) | null;
  /** Wrap the `*Sync` functions of fs and child_process to report slow calls with their call site (default true). */
  syncCalls?: boolean;
}

interface BlockingState {
  ms: number;
  beatMs: number;
  worker: Worker;
  beat: Float64Array;
  interval: NodeJS.Timeout;
  report: ((r: BlockReport) => void) | null;
  wrapped: [mod: any, key: string, orig: Function, wrapper: Function][];
  /** End times (ms, timeOrigin-based) of sync-call reports: the watchdog's report of the same block is dropped. */
  syncBlocks: [start: number, end: number][];
  /** Blocks the watchdog reported (with a stack): the heartbeat's own lag report of the same block is dropped. */
  reported: [start: number, end: number][];
}

function overlaps(list: [number, number][], start: number, end: number): boolean {
  return list.some(([s, e]) => s < end && e > start);
}

function remember(list: [number, number][], start: number, end: number): void {
  list.push([start, end]);
  if (list.length > 16) list.shift();
}

/** A block the heartbeat saw but the watchdog did not catch in the act (it ended between two checks). */
function lagOnly(b: BlockingState, start: number, end: number, seconds: number): void {
  if (state.blocking !== b || overlaps(b.reported, start, end) || overlaps(b.syncBlocks, start, end)) return;
  deliver(b, { kind: 'loop', seconds, thread: '?', stack: '    (stack not captured: the block ended before the watchdog looked)' });
}

const now = (): number => performance.timeOrigin + performance.now();

// The watchdog runs in a worker thread: it watches the heartbeat the main thread writes into shared memory,
// and when the beat is older than the threshold it asks the main thread's V8 inspector to pause (that works
// while JS is busy: inspector messages run as V8 interrupts), reads the call frames and the current green
// thread's name, resumes at once, and posts the report when the loop is free again. The inspector session and
// its Debugger domain exist only for that moment: left enabled, the Debugger made promise-heavy code 2-3x slower.
const WATCHDOG = `
const { parentPort, workerData } = require('node:worker_threads');
const inspector = require('node:inspector');
const beat = new Float64Array(workerData.sab);
const { ms, pollMs } = workerData;
const stuckMs = Math.max(1000, 10 * ms);
const now = () => performance.timeOrigin + performance.now();
// Evaluated on the paused frame: node's internal modules have no Symbol global (primordials), hence globalThis.Symbol.
const WHO = "(() => { try { const r = globalThis[globalThis.Symbol.for('evy.runtime')]; const t = r && r.als && r.als.getStore(); return t && !t._finished ? t.name : (r && r.main ? r.main.name : 'MainThread'); } catch (e) { return '?'; } })()";
let pausing = null;
// The inspector session exists only while a block is being caught (an idle connected session is not free
// either). Connecting, enabling and pausing all work while the main thread is busy.
function catchBlock(p) {
  const s = new inspector.Session();
  s.connectToMainThread();
  // CallFrame.url is empty for ES modules on some versions: map scriptId -> url from scriptParsed (sent on enable).
  const urls = new Map();
  s.on('Debugger.scriptParsed', (m) => { if (m.params.url) urls.set(m.params.scriptId, m.params.url); });
  const done = () => {
    p.done = true;
    s.post('Debugger.resume', () => s.post('Debugger.disable', () => s.disconnect()));
  };
  s.on('Debugger.paused', (m) => {
    const frames = m.params.callFrames;
    if (p.frames !== null) { s.post('Debugger.resume'); return; } // a 'debugger;' statement: not ours
    // The loop beat again before the pause landed: these frames are later code, not the block.
    if (beat[0] !== p.before) { p.frames = ''; done(); return; }
    p.frames = frames.map((f) => '    at ' + (f.functionName || '<anonymous>') + ' (' + (f.url || urls.get(f.location.scriptId) || '<unknown>') + ':' + (f.location.lineNumber + 1) + ':' + (f.location.columnNumber + 1) + ')').join('\\n');
    const id = frames.length > 0 ? frames[0].callFrameId : null;
    if (id === null) { done(); return; }
    s.post('Debugger.evaluateOnCallFrame', { callFrameId: id, expression: WHO, silent: true }, (err, r) => {
      if (!err && r && r.result && typeof r.result.value === 'string' && r.result.value !== '?') {
        p.thread = r.result.value;
        done();
        return;
      }
      // Some frames (native trampolines) cannot evaluate: the global scope sees the same async context.
      s.post('Runtime.evaluate', { expression: WHO, silent: true }, (err2, r2) => {
        p.thread = !err2 && r2 && r2.result && typeof r2.result.value === 'string' ? r2.result.value : '?';
        done();
      });
    });
  });
  // Back to back, not pause-after-enable: both run in the same interrupt, so a loop stuck in a native call
  // pauses at the first JS instruction after it returns (still in the caller), not somewhere later.
  s.post('Debugger.enable');
  s.post('Debugger.pause');
}
parentPort.postMessage({ ready: true });
setInterval(() => {
  const b = beat[0];
  const t = now();
  if (beat[1] === 1) return; // off
  if (pausing === null) {
    if (t - b > ms) {
      pausing = { before: b, frames: null, thread: null, done: false, stuck: false };
      try { catchBlock(pausing); } catch (e) { pausing.done = true; pausing.frames = '    (stack not captured: ' + e.message + ')'; }
    }
  } else if (b === pausing.before && pausing.done && !pausing.stuck && t - b > stuckMs) {
    // Still blocked long after the catch (an endless loop?): the main thread cannot take a report, and a
    // worker's process.stderr goes through it, so write straight to fd 2.
    pausing.stuck = true;
    try {
      require('node:fs').writeSync(2, 'evy: event loop blocked for ' + ((t - b) / 1000).toFixed(1) + 's so far in green thread "' + (pausing.thread || '?') + '"\\n' + (pausing.frames || '    (stack not captured)') + '\\n');
    } catch {}
  } else if (b !== pausing.before && (pausing.done || t - b > 1000)) {
    const p = pausing;
    pausing = null;
    parentPort.postMessage({ before: p.before, after: b, frames: p.frames || '    (stack not captured: the block ended before the pause landed)', thread: p.thread || '?' });
  }
}, pollMs);
`;

/**
 * Reports each time the event loop stays blocked longer than `seconds`: the green thread that was running
 * and the stack where it blocked (read by a watchdog worker through the inspector while the block lasts).
 * With `syncCalls` (default), `*Sync` calls of fs and child_process that block past the threshold are
 * reported with their call site. Off by default; `blockingDetection(false)` removes everything it installed.
 */
export function blockingDetection(on = true, seconds = 0.1, options: BlockingOptions = {}): void {
  checkBoolean(on, 'on');
  checkObject(options);
  if (!on) return stopBlocking();
  // Checked before the running detection stops: a bad argument changes nothing.
  const ms = checkSeconds(seconds);
  if (ms <= 0) throw outOfRange('seconds', 'a number of seconds > 0', seconds);
  const report = options.report ?? null;
  if (report !== null) checkFunction(report, 'options.report');
  stopBlocking();
  // Heartbeat every threshold/5 (2..50 ms), watchdog check every threshold/4: ~50 + 40 wakeups a second at
  // 0.1 s, enough for a precision of about one heartbeat.
  const beatMs = Math.min(50, Math.max(2, ms / 5));
  const pollMs = Math.max(1, ms / 4);
  const sab = new SharedArrayBuffer(16);
  const beat = new Float64Array(sab);
  beat[0] = now();
  const b: BlockingState = { ms, beatMs, worker: null!, beat, interval: null!, report, wrapped: [], syncBlocks: [], reported: [] };
  // Created outside any green thread: a kill of the caller must not clear the heartbeat.
  unowned(() => {
    // Loaded here, not at import: node:worker_threads costs ~4 ms of startup that evy users without detection should not pay.
    const { Worker: WorkerCtor } = builtin('worker_threads') as typeof import('node:worker_threads');
    b.worker = new WorkerCtor(WATCHDOG, { eval: true, workerData: { sab, ms, pollMs }, name: 'evy blocking watchdog' });
    b.interval = timers.setInterval(() => {
      const t = now();
      const gap = t - beat[0];
      beat[0] = t;
      // Every block is seen here, after the fact; the watchdog usually has its stack already (or soon).
      if (gap - beatMs / 2 > ms) {
        const start = t - gap + beatMs / 2;
        timers.setTimeout(lagOnly, pollMs * 2 + 20, b, start, t, (gap - beatMs / 2) / 1000).unref();
      }
    }, beatMs);
    b.interval.unref();
  });
  b.worker.on('message', (m: any) => {
    if (m.ready || state.blocking !== b) return;
    const start = m.before + beatMs / 2;
    const end = m.after;
    // A *Sync call already reported this block with its call site.
    if (overlaps(b.syncBlocks, m.before, m.after)) return;
    remember(b.reported, m.before, m.after);
    deliver(b, { kind: 'loop', seconds: Math.max(0, end - start) / 1000, thread: m.thread ?? '?', stack: m.frames });
  });
  const worker = b.worker;
  worker.on('error', (e) => reportBlockingError(e));
  worker.unref(); // after the listener: adding a 'message' listener refs the worker again
  state.blocking = b;
  if (options.syncCalls !== false) wrapSyncCalls(b);
}

function stopBlocking(): void {
  const b = state.blocking;
  if (b === null) return;
  state.blocking = null;
  b.beat[1] = 1;
  timers.clearInterval(b.interval);
  void b.worker.terminate();
  for (const [mod, key, orig, wrapper] of b.wrapped) if (mod[key] === wrapper) mod[key] = orig;
  if (b.wrapped.length > 0) syncBuiltinESMExports();
  b.wrapped.length = 0;
}

function reportBlockingError(e: unknown): void {
  process.stderr.write(`evy: blocking watchdog failed: ${String(e)}\n`);
}

function deliver(b: BlockingState, r: BlockReport): void {
  if (b.report !== null) {
    try {
      b.report(r);
    } catch (e) {
      reportBlockingError(e);
    }
    return;
  }
  const what = r.kind === 'sync-call' ? `${r.call} blocked the event loop` : 'event loop blocked';
  process.stderr.write(`evy: ${what} for ${fmtSec(r.seconds)} in green thread "${r.thread}"\n${r.stack}\n`);
}

let syncDepth = 0;

function wrapSyncCalls(b: BlockingState): void {
  for (const modName of ['fs', 'child_process'] as const) {
    const mod = builtin(modName);
    for (const key of Object.keys(mod)) {
      const orig = mod[key];
      if (!key.endsWith('Sync') || typeof orig !== 'function') continue;
      const label = `${modName}.${key}`;
      const wrapper = function (this: unknown, ...args: unknown[]): unknown {
        // Only the outermost call reports (readFileSync calls openSync, ...).
        if (syncDepth > 0) return Reflect.apply(orig, this, args);
        syncDepth++;
        const t0 = performance.now();
        try {
          return Reflect.apply(orig, this, args);
        } finally {
          syncDepth--;
          const dt = performance.now() - t0;
          if (dt >= b.ms && state.blocking === b) {
            const t1 = now();
            reportSync(b, label, args, t1 - dt, t1, wrapper);
          }
        }
      };
      Object.defineProperty(wrapper, 'name', { value: key });
      Object.defineProperty(wrapper, 'length', { value: orig.length });
      mod[key] = wrapper;
      b.wrapped.push([mod, key, orig, wrapper]);
    }
  }
  syncBuiltinESMExports();
}

function reportSync(b: BlockingState, label: string, args: unknown[], t0: number, t1: number, wrapper: Function): void {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, wrapper);
  remember(b.syncBlocks, t0, t1);
  const first = args[0];
  const arg = typeof first === 'string' ? JSON.stringify(first.length > 60 ? `${first.slice(0, 57)}...` : first) : typeof first === 'number' ? String(first) : '';
  const stack = (holder.stack ?? '').split('\n').slice(1).join('\n');
  deliver(b, { kind: 'sync-call', seconds: (t1 - t0) / 1000, thread: current().name, call: `${label}(${arg})`, stack });
}

/** Whether blocking detection is on, and its threshold in seconds. */
export function blockingDetectionStatus(): { on: boolean; seconds: number | null } {
  const b = state.blocking;
  return { on: b !== null, seconds: b === null ? null : b.ms / 1000 };
}

// ---- leak report ------------------------------------------------------------------------------------

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

function countActive(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of process.getActiveResourcesInfo()) out[k] = (out[k] ?? 0) + 1;
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

/** The debug namespace: `evy.debug`. */
export const debug = {
  blockingDetection,
  blockingDetectionStatus,
  formatThreads,
  formatHub,
  threads,
  trackThreads,
  dumpOnSignal,
  leaks,
  assertNoLeaks,
  describeResource,
};
