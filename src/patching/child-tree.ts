// Terminating a killed thread's child and all its descendants, without blocking the event loop.
//
// exec() runs a shell whose children would outlive it as orphans, and a shell may be forking while we look.
// So the tree is frozen first (SIGSTOP cannot be caught) and collected until a scan finds nothing new while
// every process found is stopped: then every process is known before any of them dies and re-parents its
// children away from us. Only then does each get SIGTERM (or SIGKILL), SIGCONT, and SIGKILL after the grace.
//
// The kill itself only stops the root. The scan/stop/rescan rounds run on later turns of the event loop
// (one round loop for every tree being frozen, each round reading O(tree) small /proc files), so a kill
// never holds up the other requests of a server. When the process is ending, no later turn may come: the
// rounds are then run synchronously (finishTerminationsSync, the test adapters' abortAll, a kill made while
// the process exits, and the first 'exit' listener while any tree is still being frozen).
import type { ChildProcess } from 'node:child_process';
import { rt } from '../runtime.js';

/** How long a killed thread's child gets between SIGTERM and SIGKILL. */
export const CHILD_KILL_GRACE_MS = 1000;

/** How long a tree may take to freeze (a busy machine delivers SIGSTOPs late): then it is signalled anyway. */
const FREEZE_MAX_MS = 500;
/** The steps a tree takes past its deadline at least before it is signalled anyway. */
const MIN_STEPS = 3;
/** Between two rounds while a process found is not yet stopped: long enough to let it run and stop. */
const ROUND_MS = 1;
/** How long one turn of the round loop may run before it leaves the rest of its round to the next turn. */
const TURN_MS = 1;

/** A tree being terminated, from the kill until its last process is gone (or SIGKILLed after the grace). */
interface Termination {
  child: ChildProcess;
  /** Every process found so far, root first. */
  tree: Set<number>;
  /** Each process's start time as first read: a pid that changes it was reused (the process is gone). */
  starts: Map<number, string>;
  /** The freeze ends then (after MIN_STEPS steps past it: a loop blocked until then still gives the tree its steps), frozen or not. */
  deadline: number;
  late: number;
  /** Signalled: the freeze is over. */
  signalled: boolean;
  /** The SIGKILL at the end of the grace (once signalled). */
  timer: ReturnType<typeof setTimeout> | null;
  /** Runs once the tree is gone or SIGKILLed. */
  onGone: () => void;
}

/** Shared by the ESM and CJS builds: either build's finishTerminationsSync sees every tree of the process. */
interface Kills {
  terminations: Set<Termination>;
  /** The next round of the one loop that freezes every tree not yet signalled. */
  round: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | null;
  /** The trees still to take their step in the round under way. */
  pending: Termination[];
  /** The 'exit' listener that finishes the freezes if the process exits in the middle of one. */
  onExit: (() => void) | null;
}
const ks: Kills = ((rt.ext.childKills as Kills | undefined) ??= { terminations: new Set(), round: null, pending: [], onExit: null });
const terminations = ks.terminations;

/**
 * Terminates `c` and its descendants: stops the root now, freezes and signals the tree on later turns.
 * `onGone` runs once the whole tree is gone or SIGKILLed (the parent closes its ends of the pipes there).
 */
export function terminateTree(c: ChildProcess, onGone: () => void): void {
  const root = c.pid;
  if (root === undefined || exited(c) || underWay(root)) return;
  signal(root, 'SIGSTOP');
  const t: Termination = {
    child: c,
    tree: new Set([root]),
    starts: new Map(),
    deadline: Date.now() + FREEZE_MAX_MS,
    late: 0,
    signalled: false,
    timer: null,
    onGone,
  };
  terminations.add(t);
  // Killed while the process exits ('exit' listeners, the test adapters' exit hook): no later turn comes.
  if ((process as { _exiting?: boolean })._exiting === true) return freezeAllSync();
  if (ks.round === null) ks.round = rt.timers.setImmediate(round); // ref'd: the process stays up for it
  // First of the 'exit' listeners: one that throws (a write to a closed stdout pipe, when the process is dying of
  // an uncaught exception) would keep the later ones from running.
  if (ks.onExit === null) process.prependListener('exit', (ks.onExit = freezeAllSync));
}

/** Whether `pid` is already in a tree being terminated. */
export function underWay(pid: number): boolean {
  for (const t of terminations) if (t.tree.has(pid)) return true;
  return false;
}

/** How many killed child trees are not yet gone (freezing, or signalled and within their grace). */
export function pendingTerminations(): number {
  return terminations.size;
}

/**
 * The process is exiting (no timer will fire again): finishes the freezes under way synchronously, waits up
 * to `ms` for the killed trees to die of their SIGTERM, then sends SIGKILL to whatever is left of them.
 */
export function finishTerminationsSync(ms: number): void {
  if (terminations.size === 0) return;
  freezeAllSync();
  const deadline = Date.now() + ms;
  const pids = (): number[] => [...terminations].flatMap((t) => [...t.tree]).filter(isAlive);
  while (pids().length > 0 && Date.now() < deadline) Atomics.wait(pause, 0, 0, 5);
  for (const pid of pids()) signal(pid, 'SIGKILL');
  for (const t of terminations) if (t.timer !== null) rt.timers.clearTimeout(t.timer);
  terminations.clear();
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs the freeze rounds now, blocking, until every tree is signalled (each is bounded by its deadline): for
 * a process about to end, which may die without another turn or an 'exit' event (the test adapters when a
 * run is interrupted).
 */
export function freezeAllSync(): void {
  stopRounds();
  for (let trees = freezing(); trees.length > 0; trees = freezing()) {
    step(trees);
    if (freezing().length > 0) Atomics.wait(pause, 0, 0, 0.2);
  }
}

function stopRounds(): void {
  const r = ks.round;
  ks.round = null;
  ks.pending = [];
  if (r !== null) {
    rt.timers.clearTimeout(r as ReturnType<typeof setTimeout>);
    rt.timers.clearImmediate(r as ReturnType<typeof setImmediate>);
  }
  if (ks.onExit !== null) {
    process.removeListener('exit', ks.onExit);
    ks.onExit = null;
  }
}

function freezing(): Termination[] {
  const out: Termination[] = [];
  for (const t of terminations) if (!t.signalled) out.push(t);
  return out;
}

/**
 * One turn of the round loop. A round takes a step for every tree being frozen; a turn ends after
 * TURN_MS, so a round over many trees spreads over several turns (the rest on the next turn).
 */
function round(): void {
  ks.round = null;
  if (ks.pending.length === 0) ks.pending = freezing();
  if (ks.pending.length === 0) return stopRounds();
  const end = performance.now() + TURN_MS;
  do {
    // Without children files, each step scans all of /proc: one step for every tree of the round.
    step(childrenFiles() ? [ks.pending.shift()!] : ks.pending.splice(0));
  } while (ks.pending.length > 0 && performance.now() < end);
  if (ks.pending.length > 0) ks.round = rt.timers.setImmediate(round);
  else if (freezing().length > 0) ks.round = rt.timers.setTimeout(round, ROUND_MS);
  else stopRounds();
}

/**
 * A step for each of `trees`. A process not yet stopped can still fork, so a tree is complete only when
 * every process of it was stopped (or gone) before its children were read and none was new: each step looks
 * at the states first, then reads the children and stops the new ones. Complete (or past its deadline), a
 * tree is signalled.
 */
function step(trees: Termination[]): void {
  const now = Date.now();
  const looks = trees.map((t) => (t.signalled || !terminations.has(t) ? null : look(t)));
  const parents = childrenFiles() ? null : scanProc(); // made after the looks
  trees.forEach((t, i) => {
    const l = looks[i];
    if (l === null || l === undefined) return;
    const fresh = stopChildren(t, l.threads, parents);
    if ((l.stopped && !fresh) || (now >= t.deadline && ++t.late >= MIN_STEPS)) signalTree(t);
  });
}

interface Look {
  /** Every process of the tree is stopped, a zombie, or gone. */
  stopped: boolean;
  /** The live processes, with their thread counts. */
  threads: Map<number, number>;
}

/** Reads the state of each process of the tree, dropping those that are gone. */
function look(t: Termination): Look {
  let stopped = true;
  const threads = new Map<number, number>();
  // The root is our child: once reaped (its 'exit'), its pid is no longer ours.
  if (exited(t.child)) t.tree.delete(t.child.pid!);
  for (const pid of t.tree) {
    const s = readStat(pid);
    const start = t.starts.get(pid);
    if (s === null || (start !== undefined && start !== s.start)) {
      t.tree.delete(pid); // gone (its pid may even be someone else's by now)
      continue;
    }
    if (start === undefined) t.starts.set(pid, s.start);
    threads.set(pid, s.threads);
    if (s.state !== 'T' && s.state !== 't' && s.state !== 'Z' && s.state !== 'X') stopped = false;
  }
  return { stopped, threads };
}

/** Adds the children of the tree's processes that it did not have yet, and stops them; whether any was new. */
function stopChildren(t: Termination, threads: Map<number, number>, parents: Map<number, number[]> | null): boolean {
  let fresh = false;
  for (const [pid, n] of threads) {
    for (const kid of parents === null ? childrenOf(pid, n) : (parents.get(pid) ?? [])) {
      if (t.tree.has(kid)) continue;
      t.tree.add(kid);
      signal(kid, 'SIGSTOP');
      fresh = true;
    }
  }
  return fresh;
}

/** Sends each process of a frozen tree its SIGTERM (or SIGKILL) and SIGCONT, and starts its grace. */
function signalTree(t: Termination): void {
  t.signalled = true;
  const tree = [...t.tree];
  // A process that blocks SIGTERM would act on it only later, and could fork meanwhile: the child Node has
  // just forked and not yet exec'd is one (libuv blocks every signal around the fork). It gets SIGKILL.
  for (const pid of tree) signal(pid, blocksSigterm(pid) ? 'SIGKILL' : 'SIGTERM');
  for (const pid of tree) signal(pid, 'SIGCONT'); // a stopped process acts on SIGTERM only once continued
  const done = (): void => {
    if (!terminations.has(t)) return;
    terminations.delete(t);
    if (t.timer !== null) rt.timers.clearTimeout(t.timer);
    t.onGone();
  };
  // Ref'd on purpose: the parent stays up until the children are gone, so no orphan is left behind.
  t.timer = rt.timers.setTimeout(() => {
    for (const pid of tree) signal(pid, 'SIGKILL');
    done();
  }, CHILD_KILL_GRACE_MS);
  // Descendants die a moment after the root (they got SIGTERM too): look again shortly rather than keep the
  // process up for the whole grace.
  const check = (): void => {
    if (!terminations.has(t)) return;
    if (tree.some(isAlive)) rt.timers.setTimeout(check, 10).unref();
    else done();
  };
  if (exited(t.child)) check();
  else t.child.once('exit', check);
}

function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

// ---- /proc -------------------------------------------------------------------------------------------

const fs = (): typeof import('node:fs') => process.getBuiltinModule('fs') as typeof import('node:fs');

let buf: Buffer | null = null;

/**
 * The text of a small /proc file, or null if it cannot be read (the process is gone). Not readFileSync: a
 * /proc file reports size 0, so readFileSync reads it into a fresh 64 KiB buffer: 50-90 us of CPU per file
 * on the project machine, against ~12 us for the open, read and close.
 */
function readProc(path: string): string | null {
  const f = fs();
  let fd: number;
  try {
    fd = f.openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    buf ??= Buffer.allocUnsafe(4096);
    let text = '';
    for (;;) {
      const n = f.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) return text;
      text += buf.toString('latin1', 0, n);
    }
  } catch {
    return null;
  } finally {
    f.closeSync(fd);
  }
}

interface Stat {
  state: string;
  threads: number;
  start: string;
}

/** State, thread count and start time from /proc/<pid>/stat (Linux), or null if the process is gone. */
function readStat(pid: number): Stat | null {
  if (process.platform !== 'linux') return isAlive(pid) ? { state: 'T', threads: 1, start: '' } : null;
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // "pid (comm) state ppid ... num_threads(20) itrealvalue starttime(22) ...": comm may contain spaces and
  // parentheses, so split after the last ')'. Index 0 is field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 20);
  return { state: f[0]!, threads: Number(f[17]), start: f[19]! };
}

let hasChildrenFiles: boolean | null = null;

/** Whether the kernel lists each task's children (/proc/<pid>/task/<tid>/children: CONFIG_PROC_CHILDREN). */
function childrenFiles(): boolean {
  if (hasChildrenFiles === null) {
    hasChildrenFiles = process.platform === 'linux' && fs().existsSync(`/proc/${process.pid}/task/${process.pid}/children`);
  }
  return hasChildrenFiles;
}

/** The children of `pid` (which has `threads` threads: each lists the children it forked itself). */
function childrenOf(pid: number, threads: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = threads === 1 ? [String(pid)] : fs().readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // gone
  }
  for (const tid of tids) {
    const list = readProc(`/proc/${pid}/task/${tid}/children`);
    if (list === null) continue; // that thread (or the process) is gone
    for (const s of list.split(' ')) if (s !== '' && s !== '\n') out.push(Number(s));
  }
  return out;
}

/**
 * Every process's children, from the parent links in /proc/<pid>/stat: O(all processes), for a kernel without
 * children files (Linux only; elsewhere none are found and only the direct child is signalled).
 */
function scanProc(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  if (process.platform !== 'linux') return children;
  let entries: string[];
  try {
    entries = fs().readdirSync('/proc');
  } catch {
    return children;
  }
  for (const name of entries) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const stat = readProc(`/proc/${name}/stat`);
    if (stat === null) continue; // exited meanwhile
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ', 2)[1]);
    let list = children.get(ppid);
    if (list === undefined) children.set(ppid, (list = []));
    list.push(Number(name));
  }
  return children;
}

/** Whether `pid` has SIGTERM blocked (Linux: the SigBlk mask in /proc/<pid>/status). */
function blocksSigterm(pid: number): boolean {
  if (process.platform !== 'linux') return false;
  const status = readProc(`/proc/${pid}/status`);
  if (status === null) return false;
  const m = /\nSigBlk:\s*([0-9a-f]+)/.exec(status);
  return m !== null && (BigInt(`0x${m[1]}`) & SIGTERM_BIT) !== 0n;
}

const SIGTERM_BIT = 1n << 14n; // signal 15

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
  if (process.platform !== 'linux') return true;
  const s = readStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
}
