// Ownership of child processes: a child is owned by the thread that spawned it until it exits. A kill
// terminates the child's whole tree (child-tree.ts): SIGTERM, then SIGKILL after CHILD_KILL_GRACE_MS.
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
import { terminateTree } from './child-tree.js';

export { CHILD_KILL_GRACE_MS, finishTerminationsSync, freezeAllSync, pendingTerminations } from './child-tree.js';

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

function terminate(c: AnyChild, _err: unknown): void {
  c[kOwner] = undefined;
  if (exited(c)) return;
  absorb(c);
  for (const s of [c.stdin, c.stdout, c.stderr]) absorb(s);
  // Stops the child now; its tree is frozen and signalled on later turns (child-tree.ts).
  terminateTree(c, () => closeStdio(c));
}

// A kill runs it after the thread's other destroyers (GreenThread._destroyOwned): a kill's sockets and timers
// come first, and in a killBatch every tree joins the same freeze round.
(terminate as { last?: boolean }).last = true;

/** Terminates a child and its tree as a kill of its owner would (shutdown: children no request thread owns). */
export function terminateChild(c: ChildProcess): void {
  terminate(c as AnyChild, undefined);
}

/** Our ends of the child's pipes: an orphan that kept the other end must not keep them open here. */
function closeStdio(c: ChildProcess): void {
  for (const s of c.stdio) if (s !== null && s !== undefined && !s.destroyed) s.destroy();
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
