// Blocking detection: a heartbeat on the main thread, a watchdog worker (watchdog.ts) that reads the main
// thread's stack through the inspector while the loop is blocked, and slow *Sync calls with their call site.
const { syncBuiltinESMExports } = process.getBuiltinModule('module') as typeof import('node:module');
const timers = process.getBuiltinModule('timers') as typeof import('node:timers');
import type { Worker } from 'node:worker_threads';
import { outOfRange } from '../errors.js';
import { unowned } from '../ownership.js';
import { current } from '../runtime.js';
import { evyFile } from '../self.js';
import { checkBoolean, checkFunction, checkObject, checkSeconds } from '../validate.js';
import { builtin, fmtSec, state } from './state.js';

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

export interface BlockingState {
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
    b.worker = new WorkerCtor(evyFile('dist', 'debug', 'watchdog.cjs'), { workerData: { sab, ms, pollMs }, name: 'evy blocking watchdog' });
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
