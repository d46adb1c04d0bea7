// Ownership of child processes: a child is owned by the thread that spawned it until it exits. A kill
// sends SIGTERM, then SIGKILL after CHILD_KILL_GRACE_MS: no orphan outlives the kill by more than that.
//
// The hook sits on ChildProcess.prototype.spawn: spawn, exec, execFile and fork all reach it, while
// exec/execFile do not call the exported spawn.
import type { ChildProcess } from 'node:child_process';
import { invalidArgType } from '../errors.js';
import { type GreenThread } from '../greenthread.js';
import { disown, own } from '../ownership.js';
import { current, rt } from '../runtime.js';
import { absorb, builtin, inUnowned, kGreen, kNever, PROMISIFY, ps } from './state.js';
import { until } from '../until.js';
import { checkInterrupt } from '../waiter.js';

/** How long a killed thread's child gets between SIGTERM and SIGKILL. */
export const CHILD_KILL_GRACE_MS = 1000;

const kOwner = Symbol.for('evy.child.owner');
type AnyChild = ChildProcess & Record<symbol, any>;

function procError(proc: unknown): TypeError | undefined {
  const Child = builtin<typeof import('node:child_process')>('child_process').ChildProcess;
  return proc instanceof Child ? undefined : invalidArgType('proc', 'a ChildProcess', proc);
}

function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

/** Records that thread `t` owns `child` (idempotent); released when the child exits. */
export function ownChild(child: ChildProcess, t: GreenThread): void {
  const c = child as AnyChild;
  if (c[kNever] === true || c[kOwner] !== undefined || exited(c) || c.pid === undefined) return;
  if (own(c, terminate) === null) return; // killed thread: terminated at once
  c[kOwner] = t;
  c.once('exit', onExit);
}

function onExit(this: AnyChild): void {
  const o: GreenThread | undefined = this[kOwner];
  this[kOwner] = undefined;
  if (o !== undefined) disown(this, o);
}

/** A tree being terminated: its pids, and the timer that sends SIGKILL to what is left after the grace. */
interface Termination {
  tree: number[];
  timer: ReturnType<typeof setTimeout>;
}

/** Trees killed and not yet gone (shared by the ESM and CJS builds): the test adapters wait on them before the process dies. */
const terminations: Set<Termination> = ((rt.ext.childTerminations as Set<Termination> | undefined) ??= new Set());

function terminate(c: AnyChild, _err: unknown): void {
  c[kOwner] = undefined;
  if (exited(c)) return;
  absorb(c);
  for (const s of [c.stdin, c.stdout, c.stderr]) absorb(s);
  // exec() runs a shell whose children would outlive it as orphans, and a shell may be forking while we look:
  // freeze the tree first (SIGSTOP cannot be caught), collecting it until a scan finds nothing new, so every
  // process is known before any of them dies and re-parents its children away from us.
  const tree = c.pid === undefined ? [] : freeze(c.pid);
  // A process that blocks SIGTERM would act on it only later, and could fork meanwhile: the child Node has
  // just forked and not yet exec'd is one (libuv blocks every signal around the fork). It gets SIGKILL.
  for (const pid of tree) signal(pid, blocksSigterm(pid) ? 'SIGKILL' : 'SIGTERM');
  for (const pid of tree) signal(pid, 'SIGCONT'); // a stopped process acts on SIGTERM only once continued
  // Ref'd on purpose: the parent stays up until the children are gone, so no orphan is left behind.
  const t: Termination = {
    tree,
    timer: rt.timers.setTimeout(() => {
      terminations.delete(t);
      for (const pid of tree) signal(pid, 'SIGKILL');
      closeStdio(c);
    }, CHILD_KILL_GRACE_MS),
  };
  terminations.add(t);
  // Descendants die a moment after the root (they got SIGTERM too): look again shortly rather than keep the
  // process up for the whole grace.
  const check = (): void => {
    if (!terminations.has(t)) return;
    if (tree.some(isAlive)) {
      rt.timers.setTimeout(check, 10).unref();
      return;
    }
    terminations.delete(t);
    rt.timers.clearTimeout(t.timer);
    closeStdio(c);
  };
  c.once('exit', check);
}

// A kill runs it after the thread's other destroyers (GreenThread._destroyOwned): freezing a tree takes time.
(terminate as { last?: boolean }).last = true;

/** Terminates a child and its tree as a kill of its owner would (shutdown: children no request thread owns). */
export function terminateChild(c: ChildProcess): void {
  for (const t of terminations) if (c.pid !== undefined && t.tree.includes(c.pid)) return; // under way
  terminate(c as AnyChild, undefined);
}

/** How many killed child trees still have a live process (each is SIGKILLed at the end of its grace). */
export function pendingTerminations(): number {
  return terminations.size;
}

/**
 * The process is exiting (no timer will fire again): waits up to `ms`, synchronously, for the killed trees
 * to die of their SIGTERM, then sends SIGKILL to whatever is left of them.
 */
export function finishTerminationsSync(ms: number): void {
  if (terminations.size === 0) return;
  const deadline = Date.now() + ms;
  const pids = (): number[] => [...terminations].flatMap((t) => t.tree).filter(isAlive);
  while (pids().length > 0 && Date.now() < deadline) Atomics.wait(pause, 0, 0, 5);
  for (const pid of pids()) signal(pid, 'SIGKILL');
  for (const t of terminations) rt.timers.clearTimeout(t.timer);
  terminations.clear();
}

/** Our ends of the child's pipes: an orphan that kept the other end must not keep them open here. */
function closeStdio(c: ChildProcess): void {
  for (const s of c.stdio) if (s !== null && s !== undefined && !s.destroyed) s.destroy();
}

/** How long freeze() may block, at most, waiting for a busy machine to deliver its SIGSTOPs. */
const FREEZE_MAX_MS = 500;

/**
 * Stops `root` and all its descendants. A signal is delivered when its process next runs, so one not yet
 * stopped can still fork: the scan repeats until every process found is stopped (or gone) and a scan finds
 * nothing new. On a loaded machine that takes more than one round (a single ~20 ms wait let a shell that
 * had not been scheduled yet fork after the last scan: its child was orphaned). Returns root first.
 */
function freeze(root: number): number[] {
  signal(root, 'SIGSTOP');
  const seen = new Set<number>([root]);
  const deadline = Date.now() + FREEZE_MAX_MS;
  for (;;) {
    const settled = awaitStopped([...seen], deadline);
    let fresh = false;
    for (const pid of descendants(root, seen)) {
      if (seen.has(pid)) continue;
      seen.add(pid);
      signal(pid, 'SIGSTOP');
      fresh = true;
    }
    if ((settled && !fresh) || Date.now() >= deadline) return [...seen];
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Waits (synchronously, until `deadline`) until each of `pids` is stopped or gone; whether they all are. */
function awaitStopped(pids: number[], deadline: number): boolean {
  for (;;) {
    if (pids.every(stoppedOrGone)) return true;
    if (Date.now() >= deadline) return false;
    Atomics.wait(pause, 0, 0, 0.2);
  }
}

/** Whether `pid` has SIGTERM blocked (Linux: the SigBlk mask in /proc/<pid>/status). */
function blocksSigterm(pid: number): boolean {
  if (process.platform !== 'linux') return false;
  const fs = process.getBuiltinModule('fs') as typeof import('node:fs');
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return false;
  }
  const m = /\nSigBlk:\s*([0-9a-f]+)/.exec(status);
  return m !== null && (BigInt(`0x${m[1]}`) & SIGTERM_BIT) !== 0n;
}

const SIGTERM_BIT = 1n << 14n; // signal 15

function stoppedOrGone(pid: number): boolean {
  const fs = process.getBuiltinModule('fs') as typeof import('node:fs');
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return true;
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state === 'T' || state === 't' || state === 'Z' || state === 'X';
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Whether `pid` is still running: a zombie (dead, its exit status not yet collected) is not. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !(process.platform === 'linux' && zombie(pid));
}

function zombie(pid: number): boolean {
  const fs = process.getBuiltinModule('fs') as typeof import('node:fs');
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'Z' || state === 'X';
  } catch {
    return true; // gone between the two looks
  }
}

/**
 * The descendants of `pid` (and of every pid in `known`), from the parent links in /proc/<pid>/stat (Linux;
 * elsewhere none: only the direct child is signalled).
 */
function descendants(pid: number, known: Set<number> = new Set()): number[] {
  if (process.platform !== 'linux') return [];
  const fs = process.getBuiltinModule('fs') as typeof import('node:fs');
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so parse after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ', 2)[1]);
    let list = children.get(ppid);
    if (list === undefined) children.set(ppid, (list = []));
    list.push(Number(name));
  }
  const out: number[] = [];
  const queue = [pid, ...known];
  while (queue.length > 0) {
    const kids = children.get(queue.shift()!);
    if (kids === undefined) continue;
    out.push(...kids);
    queue.push(...kids);
  }
  return out;
}

/** The thread a child spawned now belongs to, or null (main thread; inside unowned() it is marked). */
export function childOwner(child: ChildProcess): GreenThread | null {
  if (rt.als === null) return null;
  const t = current();
  if (t !== rt.main) return t;
  if (inUnowned()) (child as AnyChild)[kNever] = true;
  return null;
}

export function installChildHooks(): void {
  if (ps.cpHooks !== null) return;
  const cp = process.getBuiltinModule('child_process') as typeof import('node:child_process');
  const P = cp.ChildProcess.prototype as any;
  const hadOwn = Object.prototype.hasOwnProperty.call(P, 'spawn');
  const spawn = P.spawn as (...a: unknown[]) => unknown;
  P.spawn = function spawn_(this: AnyChild, ...args: unknown[]) {
    const r = spawn.apply(this, args);
    if (ps.on.child_process || this[kGreen] === true) {
      const t = childOwner(this);
      if (t !== null) ownChild(this, t);
    }
    return r;
  };
  ps.cpHooks = () => {
    if (hadOwn) P.spawn = spawn;
    else delete P.spawn;
  };
}

export function uninstallChildHooks(): void {
  const un = ps.cpHooks;
  if (un === null) return;
  ps.cpHooks = null;
  un();
}

// ---- blocking-style helpers and the green functions ------------------------------------------------

/** A child with eventlet's blocking-style helpers. */
export interface GreenChildProcess extends ChildProcess {
  /** Waits (killably) until the child exits: its exit code, or minus the signal number (Python's returncode). */
  wait(): Promise<number>;
  /** Writes `input` to stdin, closes it, and collects stdout and stderr until the child exits (subprocess's communicate). */
  communicate(input?: string | Uint8Array): Promise<[stdout: Buffer | null, stderr: Buffer | null]>;
}

function returncode(c: ChildProcess): number {
  if (c.exitCode !== null) return c.exitCode;
  const sig = c.signalCode;
  const signals = builtin<typeof import('node:os')>('os').constants.signals as Record<string, number>;
  return sig === null ? -1 : -(signals[sig] ?? 0);
}

/** Waits until `proc` has exited (an evy wait: a kill or a Timeout interrupts it). Python's returncode. */
export function wait(proc: ChildProcess): Promise<number> {
  const bad = procError(proc);
  if (bad !== undefined) return Promise.reject(bad);
  if (exited(proc)) return until(returncode(proc));
  return until(
    new Promise<number>((resolve) => {
      proc.once('exit', () => resolve(returncode(proc)));
      // A child that could not be spawned (ENOENT) never exits: its 'error' ends the wait.
      proc.once('error', () => {
        if (proc.pid === undefined) resolve(-1);
      });
    }),
  );
}

function collect(stream: NodeJS.ReadableStream | null): Promise<Buffer | null> {
  if (stream === null) return Promise.resolve(null);
  // Already read to the end (or destroyed) before communicate(): 'end'/'close' will not come again.
  const r = stream as import('node:stream').Readable;
  if (r.readableEnded || r.destroyed) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer | string) => chunks.push(typeof c === 'string' ? Buffer.from(c) : c));
    const end = (): void => resolve(Buffer.concat(chunks));
    stream.once('end', end);
    stream.once('close', end);
    stream.once('error', end);
  });
}

/** Sends `input`, closes stdin, reads stdout and stderr to the end and waits for the exit. */
export async function communicate(proc: ChildProcess, input?: string | Uint8Array): Promise<[Buffer | null, Buffer | null]> {
  const bad = procError(proc);
  if (bad !== undefined) throw bad;
  if (input !== undefined && typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw invalidArgType('input', 'a string, Buffer or Uint8Array', input);
  }
  checkInterrupt();
  const out = collect(proc.stdout);
  const err = collect(proc.stderr);
  if (proc.stdin !== null) {
    proc.stdin.on('error', () => {}); // EPIPE when the child exits without reading: Python ignores it too
    if (input !== undefined) proc.stdin.end(input);
    else proc.stdin.end();
  }
  const [o, e] = await until(Promise.all([out, err]));
  await wait(proc);
  return [o, e];
}

function addHelpers(c: ChildProcess): GreenChildProcess {
  const g = c as GreenChildProcess;
  if (!Object.prototype.hasOwnProperty.call(g, 'wait')) {
    Object.defineProperty(g, 'wait', { value: () => wait(g), configurable: true, writable: true });
    Object.defineProperty(g, 'communicate', {
      value: (input?: string | Uint8Array) => communicate(g, input),
      configurable: true,
      writable: true,
    });
  }
  return g;
}

/** Owned by the calling thread (if any) and given the helpers. */
function adopt(c: ChildProcess): GreenChildProcess {
  const t = childOwner(c);
  if (t !== null) ownChild(c, t);
  return addHelpers(c);
}

type Fn = (...a: any[]) => any;

/** spawn/exec/execFile/fork over the given originals: the child is owned by the calling thread and has wait()/communicate(). */
export function greenChildFunctions(O: { spawn: Fn; exec: Fn; execFile: Fn; fork: Fn }) {
  const spawn = function spawn(...args: unknown[]): GreenChildProcess {
    return adopt(O.spawn(...args));
  };
  const exec = function exec(...args: unknown[]): GreenChildProcess {
    return adopt(O.exec(...args));
  };
  const execFile = function execFile(...args: unknown[]): GreenChildProcess {
    return adopt(O.execFile(...args));
  };
  const fork = function fork(...args: unknown[]): GreenChildProcess {
    return adopt(O.fork(...args));
  };
  // util.promisify(exec) uses the original's custom form (it resolves {stdout, stderr}, with .child).
  for (const [g, o] of [
    [exec, O.exec],
    [execFile, O.execFile],
  ] as const) {
    const custom = (o as any)[PROMISIFY] as Fn | undefined;
    if (typeof custom === 'function') {
      Object.defineProperty(g, PROMISIFY, {
        enumerable: true,
        value(...args: unknown[]) {
          const p = custom(...args);
          if (p?.child) adopt(p.child);
          return p;
        },
      });
    }
  }
  return { spawn, exec, execFile, fork };
}
