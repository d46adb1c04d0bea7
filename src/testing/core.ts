// What the three test-runner adapters share: a scope per test (the green threads running its body and its
// per-test hooks, and what they created), the kill at the runner's timeout, the leak report at the end of a
// passing test, and the exit explainer.
//
// Two bookkeepings, on purpose. evy's kill ownership follows *use* (a thread owns a socket only while it
// waits on it) and a normal exit drops it: right for kills, useless for "what did this test leave open".
// So each thread of a test gets an owned-map that also records the first time a resource is owned (the
// moment it was created: a connect, a listen, a timer, a spawn, an open), with a stack captured only here.
// The leak report then looks at what the test created and is still open, by kind:
//   - listening servers, intervals, live child processes, open FileHandles/fs streams/watchers: leaks;
//   - sockets: only when still connecting or with an operation of the test outstanding (an idle socket may
//     sit in a pool that a suite fixture shares: closing it would break the next test);
//   - one-shot timeouts: not leaks (they end by themselves), but killed at a timeout and explained at exit.
import { EvyError, invalidArgValue } from '../errors.js';
import { checkObject } from '../validate.js';
import { GreenThread, spawn, type Destroyer, type SpawnHook } from '../greenthread.js';
import { unowned } from '../ownership.js';
import { current, rt } from '../runtime.js';
import { addSpawnHook } from '../spawn-hooks.js';
import { monkeyPatch } from '../patching/monkey-patch.js';
import { isEvyFile } from '../self.js';
import { siteOf } from '../debug/site.js';
import { patchOptionsFromEnv } from '../patching/monkey-patch.js';
import { debug as debugLog, ps } from '../patching/state.js';
import { CHILD_KILL_GRACE_MS, finishTerminationsSync, freezeAllSync, pendingTerminations } from '../patching/child-process.js';
import { guardChild, releaseChild } from './reaper.js';
import { isOrphan } from '../net/orphan.js';


export type LeakPolicy = 'fail' | 'warn' | 'off';

export interface TestingOptions {
  /** What a passing test that left something open gets: `fail` (default), `warn` (a line on stderr), `off`. Env: EVY_LEAKS. */
  leaks?: LeakPolicy;
  /** Print what keeps the process alive this long after the last test ended (ms; 0: off). Env: EVY_EXIT_EXPLAIN_MS. Default 1000. */
  exitExplainMs?: number;
}

interface Settings {
  leaks: LeakPolicy;
  exitExplainMs: number;
  patched: boolean;
}

function envPolicy(): LeakPolicy {
  const v = (process.env.EVY_LEAKS ?? '').trim().toLowerCase();
  if (v === '') return 'fail';
  if (v === 'fail' || v === 'warn' || v === 'off') return v;
  throw new EvyError(`EVY_LEAKS must be fail, warn or off (got ${JSON.stringify(process.env.EVY_LEAKS)})`, 'ERR_EVY_INVALID_LEAK_POLICY');
}

const S: Settings = ((rt.ext.testing as Settings | undefined) ??= {
  leaks: envPolicy(),
  exitExplainMs: Number(process.env.EVY_EXIT_EXPLAIN_MS ?? 1000) || 0,
  patched: false,
});

/** Sets the run's options (the adapters' `configure`). */
export function configure(options: TestingOptions = {}): void {
  checkObject(options);
  if (options.leaks !== undefined) {
    if (options.leaks !== 'fail' && options.leaks !== 'warn' && options.leaks !== 'off') {
      throw invalidArgValue('options.leaks', "must be 'fail', 'warn' or 'off'", options.leaks);
    }
    S.leaks = options.leaks;
  }
  if (options.exitExplainMs !== undefined) S.exitExplainMs = Math.max(0, Number(options.exitExplainMs) || 0);
}

export function settings(): Readonly<Settings> {
  return S;
}

/** Patches net, tls, timers, fs and child_process (once; EVY_PATCH narrows it as for evy/register). */
export function installPatches(): void {
  if (S.patched) return;
  S.patched = true;
  const opts = patchOptionsFromEnv(process.env.EVY_PATCH);
  if (opts !== null) monkeyPatch(opts);
  ps.unownedTimer = siteOutside;
}

// ---- timers made outside any test ------------------------------------------------------------------
// A module-level setInterval, or one a suite fixture starts, is the usual reason a run does not exit. The
// green timers tell us of every timer made outside a green thread; the long-lived ones get a creation site
// (a stack, ~1-2 µs): intervals, and one-shot timers at least as long as the explainer's delay (a shorter
// one has fired by the time it looks, unless re-armed). Short timeouts, the common case, pay a comparison.

interface Outside {
  res: any;
  where: Error;
}
const outside = new Set<Outside>();
let outsidePruneAt = 1024;

function siteOutside(timer: any): void {
  const explainMs = S.exitExplainMs;
  if (explainMs <= 0 || timer === null || typeof timer !== 'object') return;
  if (!timer._repeat && !(timer._idleTimeout >= explainMs)) return;
  if (outside.size >= outsidePruneAt) {
    for (const o of outside) if (o.res._destroyed === true) outside.delete(o);
    outsidePruneAt = Math.max(1024, 2 * outside.size);
  }
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const where = new Error('created here');
  Error.stackTraceLimit = 8;
  Error.captureStackTrace(where, siteOutside);
  Error.stackTraceLimit = limit;
  outside.add({ res: timer, where });
}

// ---- what a test created ---------------------------------------------------------------------------

type Kind = 'server' | 'socket' | 'timer' | 'immediate' | 'child' | 'filehandle' | 'stream' | 'watcher';

export interface Created {
  res: any;
  kind: Kind;
  destroy: Destroyer;
  /** Formatted only when reported; none for a test's one-shot timers past the first ones (see record()). */
  where: Error | undefined;
  scope: TestScope;
}

const kUsers = Symbol.for('evy.net.users');
/** How many one-shot timers of a test get a creation site. */
const SITED_TIMERS = 64;
const seen = new WeakSet<object>();
const createdBy = new WeakMap<object, Created>();
/** Everything a test created that was still open at its end (for the exit explainer); pruned as it closes. */
const lingering = new Set<Created>();

/** An http(s) ClientRequest (owned by the thread that made it; sockets-like: it has setNoDelay). */
function isClientRequest(r: any): r is { socket?: object | null; method: string; getHeader(n: string): unknown } {
  return typeof r?.getHeader === 'function' && typeof r.method === 'string' && !('connecting' in r);
}

function kindOf(r: any): Kind | null {
  const ctor = r?.constructor?.name;
  if (ctor === 'Timeout') return 'timer';
  if (ctor === 'Immediate') return 'immediate';
  if (ctor === 'FileHandle') return 'filehandle';
  if (ctor === 'FSWatcher' || ctor === 'StatWatcher') return 'watcher';
  if (typeof r.pid === 'number' && typeof r.kill === 'function') return 'child';
  if (typeof r.listen === 'function' && typeof r.address === 'function') return 'server';
  if (typeof r.setNoDelay === 'function' || 'connecting' in r) return 'socket';
  if (ctor === 'ReadStream' || ctor === 'WriteStream') return 'stream';
  return null;
}

/** Called the first time any thread of a test owns `res` (ownership starts at creation for all but sockets). */
function record(scope: TestScope, res: any, destroy: Destroyer): void {
  if (res === null || typeof res !== 'object') return;
  const kind = kindOf(res);
  // An AbortController of an fs/timers promise call; an immediate (never a leak, never keeps the process up,
  // and a loop of them would pay a stack each: 25 µs, 6× what the immediate costs).
  if (kind === null || kind === 'immediate' || seen.has(res)) return;
  seen.add(res);
  // An http request is owned from its creation by the thread that made it (its socket may never be: an
  // agent's sockets are made in no thread's context). Only its creation site is kept, for waitingOn(): the
  // request is no handle (its socket is), so it is neither a leak nor a reason the process stays up.
  const request = isClientRequest(res);
  // A socket first owned at a write existed before (a fixture's connection, an accepted one): not created here.
  if (kind === 'socket' && !request && !(res.connecting === true || res.pending === true)) return;
  // A stack costs ~5 µs under node:test, and a test may make one-shot timers by the thousand: only its first
  // ones get a site (a timer it is stuck on is usually among them; intervals and the rest always do).
  let where: Error | undefined;
  if (kind !== 'timer' || Boolean(res._repeat) || scope.sitedTimers++ < SITED_TIMERS) {
    // From the caller of the owned-map's set: evy's frames above it show nothing. Deep enough to get through
    // http.Agent and driver frames to the test's own line; a timer is made a frame or two below its user.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    where = new Error('created here');
    Error.stackTraceLimit = kind === 'timer' ? 8 : 40;
    Error.captureStackTrace(where, RecordingMap.prototype.set);
    Error.stackTraceLimit = limit;
  }
  const c: Created = { res, kind, destroy, where, scope };
  createdBy.set(res, c);
  if (!request) {
    // What has closed since is forgotten now and then: a long test's timers would pile up otherwise.
    if (scope.created.length >= scope.pruneAt) {
      scope.created = scope.created.filter(isOpen);
      scope.pruneAt = Math.max(1024, 2 * scope.created.length);
    }
    scope.created.push(c);
  }
  if (kind === 'child') {
    watchSignals();
    guardChild(res);
  }
}

/** The owned-map of a test's threads: records creations, otherwise evy's ordinary owned map. */
class RecordingMap extends Map<object, Destroyer> {
  constructor(readonly scope: TestScope) {
    super();
  }
  override set(res: object, destroy: Destroyer): this {
    record(this.scope, res, destroy);
    return super.set(res, destroy);
  }
}

function isOpen(c: Created): boolean {
  const r = c.res;
  try {
    switch (c.kind) {
      case 'server':
        return r.listening === true;
      case 'socket':
        return r.destroyed !== true;
      case 'timer':
        return r._destroyed !== true;
      case 'immediate':
        return r._destroyed !== true && r._onImmediate != null;
      case 'child':
        return r.exitCode === null && r.signalCode === null;
      case 'filehandle':
        return typeof r.fd === 'number' && r.fd >= 0;
      case 'stream':
        return r.destroyed !== true && r.closed !== true;
      case 'watcher':
        return r._handle != null;
    }
  } catch {
    return false;
  }
}

function refd(r: any): boolean {
  if (typeof r.hasRef === 'function') return r.hasRef() !== false;
  // A socket has no hasRef(): its handle has (a TLS socket's TCP handle is the one the event loop counts).
  const h = r._handle?._parent ?? r._handle;
  return typeof h?.hasRef !== 'function' || h.hasRef() !== false;
}

/** Is `c` still in use by a live thread that is not this test's (then it is never closed for this test)? */
function usedElsewhere(c: Created): boolean {
  const users: GreenThread[] | undefined = c.res[kUsers];
  return users !== undefined && users.some((u) => !u.dead && !c.scope.threads.has(u));
}

/** What a passing test must not leave behind. */
function isLeak(c: Created): boolean {
  if (!isOpen(c) || usedElsewhere(c)) return false;
  const r = c.res;
  switch (c.kind) {
    case 'timer':
      return Boolean(r._repeat) && refd(r);
    case 'immediate':
      return false;
    case 'socket': {
      if (r.connecting === true) return true;
      const users: GreenThread[] | undefined = r[kUsers];
      return users !== undefined && users.some((u) => c.scope.threads.has(u));
    }
    default:
      return true;
  }
}

// ---- describing resources for people ---------------------------------------------------------------

function addr(a: any): string {
  if (a === null || a === undefined) return '?';
  if (typeof a === 'string') return a;
  return `${a.address}:${a.port}`;
}

export function describeCreated(c: { kind: Kind; res: any }): string {
  const r = c.res;
  try {
    switch (c.kind) {
      case 'server':
        return `listening server on ${addr(r.address())}`;
      case 'socket': {
        const req = isClientRequest(r) ? r : r._httpMessage;
        const remote = r.remoteAddress !== undefined ? `${r.remoteAddress}:${r.remotePort}` : (r._host ?? r._pendingPath ?? '?');
        if (req != null && typeof req.getHeader === 'function') {
          const host = req.getHeader('host') ?? remote;
          return `http request ${req.method ?? ''} to ${host}${req.path && req.path !== '/' ? req.path : ''}`.replace('  ', ' ');
        }
        return r.connecting === true ? `connecting socket to ${remote}` : `socket to ${remote}`;
      }
      case 'timer':
        return r._repeat ? `setInterval ${r._repeat} ms` : `setTimeout ${r._idleTimeout} ms`;
      case 'immediate':
        return 'setImmediate';
      case 'child':
        return `child process pid ${r.pid} (${(r.spawnargs ?? [r.spawnfile]).join(' ')})`;
      case 'filehandle':
        return `FileHandle fd ${r.fd}`;
      case 'stream':
        return `fs stream ${r.path ?? ''}`.trim();
      case 'watcher':
        return 'fs watcher';
    }
  } catch {
    // describing is best effort
  }
  return c.kind;
}

function withSite(c: Created): string {
  const site = siteOf(c.where);
  return site === '' ? describeCreated(c) : `${describeCreated(c)} (${site})`;
}

// ---- scopes -----------------------------------------------------------------------------------------

const threadScope = new WeakMap<GreenThread, TestScope>();
let running = 0;

export class TestScope {
  readonly threads = new Set<GreenThread>();
  created: Created[] = [];
  /** The length of `created` at which closed entries are dropped. */
  pruneAt = 1024;
  /** One-shot timers of this test that got a creation site. */
  sitedTimers = 0;
  /** Set once the runner gave up on the test (timeout, abort): its threads are killed, later hooks too. */
  killed: unknown = undefined;
  ended = false;
  /** A body or per-test hook of the test threw: no leak report (the test failed anyway), only the cleanup. */
  failed = false;

  constructor(
    readonly name: string,
    readonly file: string | null = null,
  ) {}

  /** Runs `fn` (with `thisArg` and `args`) in a new green thread of this test; resolves with its result. */
  run<T>(fn: (...a: any[]) => T | PromiseLike<T>, thisArg: unknown, args: unknown[], label = this.name): Promise<Awaited<T>> {
    const gt = spawn(() => fn.apply(thisArg, args));
    gt.name = label;
    adopt(this, gt);
    if (this.killed !== undefined) void gt.kill(this.killed);
    running++;
    disarmExit();
    const done = (): void => {
      if (--running === 0) armExit();
    };
    // Waited for from the main thread: the caller may be running in the context of a killed test's thread
    // (a runner's timer armed from inside a test body), whose evy waits all throw its kill error.
    return unowned(() => gt.wait()).then(
      (v) => {
        done();
        // A body killed while parked on a foreign promise may still return normally (the child it waited
        // on exited of the kill): a test the runner gave up on never passes.
        if (this.killed !== undefined) {
          this.failed = true;
          throw this.killed;
        }
        return v;
      },
      (e) => {
        done();
        this.failed = true;
        throw e;
      },
    );
  }

  /**
   * The runner gave up (timeout, abort, bail): says what the test was waiting on, then kills its threads and
   * closes what it created (all but idle sockets, which a shared pool may hold). Synchronous: runners move on
   * without awaiting anything, and the handles must be gone before the next test starts.
   */
  abort(reason?: unknown): string {
    if (this.killed !== undefined) return '';
    const waiting = this.waitingOn();
    const err = new EvyError(`test "${this.name}" was stopped by the test runner${reason instanceof Error ? `: ${reason.message}` : ''}`, 'ERR_EVY_TEST_KILLED');
    this.killed = err;
    // What the kill destroys may make a library emit 'error' on an emitter of its own that has no listener
    // (pg.Client: "Connection terminated unexpectedly"): thrown from inside the handle's event dispatch, it
    // would land in the runner as an uncaught exception blamed on a later test. Absorbed there instead.
    for (const t of this.threads) if (!t.dead && t._owned !== null) for (const r of t._owned.keys()) guardEmit(r);
    for (const c of this.created) guardEmit(c.res);
    for (const t of this.threads) if (!t.dead) void t.kill(err);
    for (const c of this.created) {
      if (!isOpen(c) || usedElsewhere(c)) continue;
      if (c.kind === 'socket' && !isLeak(c)) continue;
      close(c, err);
    }
    return waiting;
  }

  /** What the test's live threads are parked on and what they own, with creation sites. */
  waitingOn(): string {
    const out: string[] = [];
    const add = (s: string): void => {
      if (!out.includes(s)) out.push(s);
    };
    const order: Kind[] = ['socket', 'child', 'filehandle', 'stream', 'server', 'watcher', 'timer', 'immediate'];
    const owned: Created[] = [];
    for (const t of this.threads) {
      if (t.dead) continue;
      const o = t._owned;
      if (o !== null) {
        for (const owned_ of o.keys()) {
          // An http request is owned itself, not its socket: shown once, with its socket's record if the test made one.
          const sock = isClientRequest(owned_) ? owned_.socket : null;
          const r = sock != null && createdBy.has(sock) ? sock : owned_;
          const c = createdBy.get(r) ?? (kindOf(r) !== null ? ({ res: r, kind: kindOf(r)!, where: undefined } as Created) : null);
          if (c !== null && isOpen(c)) owned.push(c);
        }
      }
    }
    owned.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
    for (const c of owned) add(c.where === undefined ? describeCreated(c) : withSite(c));
    for (const t of this.threads) {
      if (t.dead) continue;
      if (t._parked !== null) add(`evy ${t._parked.label}`);
      for (const w of t._parkedMore ?? []) add(`evy ${w.label}`);
    }
    // Open things it created that no thread owns any more (an interval started from a callback, a listening server).
    for (const c of this.created) if (isLeak(c)) add(withSite(c));
    return out.length === 0 ? 'a plain await on a promise evy does not track (nothing the test created is open)' : out.join(', ');
  }

  /**
   * The end of the test (after its per-test hooks): what it left open. When `close`, those resources are
   * closed (with the leak error); the rest it created that is still open is remembered for the exit explainer.
   */
  /** Where the first leak of the last finish() was created (the stack a leak failure points at). */
  firstLeakAt: Error | null = null;

  finish(close_ = true): string[] {
    if (this.ended) return [];
    this.ended = true;
    const leaks: string[] = [];
    let err: EvyError | undefined; // made only for a leak: most tests have none
    for (const c of this.created) {
      if (isLeak(c)) {
        this.firstLeakAt ??= c.where ?? null;
        leaks.push(withSite(c));
        if (close_) close(c, (err ??= new EvyError(`test "${this.name}" left it open`, 'ERR_EVY_TEST_LEAK')));
        else lingering.add(c);
      } else if (isOpen(c)) {
        lingering.add(c);
      }
    }
    return leaks;
  }
}

const kGuarded = Symbol('evy.testing.guarded');

/** Errors thrown by listeners while a destroyed handle dispatches its last events are absorbed (NODE_DEBUG=evy shows them). */
function guardEmit(r: any): void {
  if (r === null || typeof r !== 'object' || typeof r.emit !== 'function' || r[kGuarded] === true) return;
  const kind = kindOf(r);
  if (kind !== 'socket' && kind !== 'child' && kind !== 'stream' && kind !== 'server') return;
  r[kGuarded] = true;
  const emit = r.emit;
  r.emit = function guardedEmit(this: unknown, ...args: unknown[]) {
    try {
      return emit.apply(this, args);
    } catch (e) {
      debugLog('absorbed an error thrown while a killed test\'s handle emitted %s: %o', args[0], e);
      return false;
    }
  };
}

function close(c: Created, err: unknown): void {
  guardEmit(c.res);
  lingering.delete(c);
  try {
    c.destroy(c.res, err);
  } catch {
    // best effort
  }
  // A child's tree is signalled by evy's destroyer; a FileHandle closes asynchronously.
}

function adopt(scope: TestScope, t: GreenThread): void {
  threadScope.set(t, scope);
  scope.threads.add(t);
  t._owned = new RecordingMap(scope);
}

/** Threads spawned by a test's threads belong to the test too. */
const onSpawn: SpawnHook = (t) => {
  const parent = current();
  const scope = threadScope.get(parent);
  if (scope !== undefined) adopt(scope, t);
};
if (rt.ext.testingSpawnHook === undefined) {
  rt.ext.testingSpawnHook = onSpawn;
  addSpawnHook(onSpawn);
}

/** The error a passing test that leaked gets (policy `fail`). */
export class TestLeakError extends EvyError {
  readonly leaks: string[];
  constructor(testName: string, leaks: string[]) {
    super(`test "${testName}" left ${leaks.length} resource${leaks.length === 1 ? '' : 's'} open (evy closed ${leaks.length === 1 ? 'it' : 'them'}):\n${leaks.map((l) => `  - ${l}`).join('\n')}`, 'ERR_EVY_TEST_LEAK');
    this.name = 'TestLeakError';
    this.leaks = leaks;
  }
}

/** Applies the leak policy to a finished passing test: returns the error to fail it with, or null. */
export function leakVerdict(scope: TestScope): TestLeakError | null {
  if (S.leaks === 'off') {
    scope.finish(false);
    return null;
  }
  const leaks = scope.finish(true);
  noteOrphans(scope);
  if (leaks.length === 0) return null;
  const err = new TestLeakError(scope.name, leaks);
  // The stack points at the line that created the (first) leaked resource, not into evy.
  const frames = (scope.firstLeakAt?.stack ?? '').split('\n').filter((l) => l.trim().startsWith('at ') && !isEvyFile(l) && !l.includes('node:'));
  err.stack = `${err.name}: ${err.message}\n${frames.join('\n')}`;
  if (S.leaks === 'fail') return err;
  process.stderr.write(`evy: warning: ${err.message}\n`);
  return null;
}

/**
 * A killed thread's private connection the test made, still open: not a leak (an idle socket, like those a
 * shared pool holds, and it keeps nothing alive), but named, since it closes only once it is collected.
 */
function noteOrphans(scope: TestScope): void {
  for (const c of scope.created) {
    if (c.kind !== 'socket' || !isOpen(c) || !isOrphan(c.res)) continue;
    process.stderr.write(`evy: note: test "${scope.name}" left a killed thread's private connection open: ${withSite(c)}; it keeps nothing alive and closes once nothing can reach it\n`);
  }
}

/** Text appended to a runner's timeout message. */
export function timeoutSuffix(waiting: string): string {
  return waiting === '' ? '' : ` while waiting on: ${waiting}`;
}

/** Runs a suite-level fixture (before/beforeAll/after/afterAll): shared by the suite's tests, so no kill ever touches what it creates. */
export function runFixture<T>(fn: (...a: any[]) => T, thisArg: unknown, args: unknown[]): T {
  return unowned(() => fn.apply(thisArg, args));
}

// ---- exit explainer -------------------------------------------------------------------------------

let exitTimer: NodeJS.Timeout | null = null;
let explained = false;

function disarmExit(): void {
  if (exitTimer !== null) {
    rt.timers.clearTimeout(exitTimer);
    exitTimer = null;
  }
}

/** Called when no test thread is running: if the process is still up a while later, say why. */
export function armExit(): void {
  if (S.exitExplainMs <= 0 || explained) return;
  disarmExit();
  exitTimer = rt.timers.setTimeout(() => {
    exitTimer = null;
    if (running > 0) return;
    const text = explainExit();
    if (text !== '') {
      explained = true;
      process.stderr.write(text);
    }
  }, S.exitExplainMs);
  exitTimer.unref();
}

function isStdio(h: any): boolean {
  return h?._isStdio === true || h?.fd === 0 || h?.fd === 1 || h?.fd === 2 || h === process.stdin || h === process.stdout || h === process.stderr;
}

/** The handles keeping the process alive, grouped by the test that created them (empty when nothing does). */
export function explainExit(): string {
  const groups = new Map<string, string[]>();
  const push = (who: string, what: string): void => {
    let l = groups.get(who);
    if (l === undefined) groups.set(who, (l = []));
    l.push(what);
  };
  const known = new Set<any>();
  let knownTimers = 0;
  for (const c of lingering) {
    if (!isOpen(c)) {
      lingering.delete(c);
      continue;
    }
    if (!refd(c.res) || c.kind === 'immediate') continue;
    known.add(c.res);
    if (c.kind === 'timer') knownTimers++;
    push(`test "${c.scope.name}"${c.scope.file ? ` (${c.scope.file})` : ''}`, withSite(c));
  }
  const getHandles = (process as unknown as { _getActiveHandles?: () => any[] })._getActiveHandles;
  const handles = typeof getHandles === 'function' ? getHandles.call(process) : [];
  for (const h of handles) {
    if (known.has(h) || isStdio(h) || !refd(h)) continue;
    const c = createdBy.get(h);
    if (c !== undefined) {
      push(`test "${c.scope.name}"`, withSite(c));
      continue;
    }
    const kind = kindOf(h);
    push('created outside any test', kind === null ? (h?.constructor?.name ?? 'handle') : describeCreated({ kind, res: h }));
  }
  for (const o of outside) {
    if (o.res._destroyed === true) {
      outside.delete(o);
      continue;
    }
    if (!refd(o.res)) continue;
    knownTimers++;
    const site = siteOf(o.where);
    const what = describeCreated({ kind: 'timer', res: o.res });
    push('created outside any test', site === '' ? what : `${what} (${site})`);
  }
  const timers = process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length - knownTimers;
  if (timers > 0) push('created outside any test', `${timers} timer${timers === 1 ? '' : 's'} (setTimeout/setInterval)`);
  if (groups.size === 0) return '';
  const lines = [`evy: the process is still running ${S.exitExplainMs} ms after the last test; what keeps it alive:`];
  const entries = [...groups].sort(([a], [b]) => (a.startsWith('created outside') ? 1 : 0) - (b.startsWith('created outside') ? 1 : 0));
  for (const [who, what] of entries) {
    lines.push(`  ${who}:`);
    for (const w of what) lines.push(`    - ${w}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Kills every test still running (the run was interrupted); returns how many. */
export function abortAll(reason?: unknown): number {
  const scopes = new Set<TestScope>();
  for (const s of liveScopes) if (!s.ended && s.killed === undefined) scopes.add(s);
  for (const s of scopes) s.abort(reason);
  // The run is ending: the process may die before another turn, with no 'exit' event (a runner that killed
  // it, an uncaught EPIPE once the runner is gone). The killed children's trees are frozen and signalled now.
  freezeAllSync();
  return scopes.size;
}

const liveScopes = new Set<TestScope>();

/** A new scope for one test (registered for abortAll until it ends). */
export function newScope(name: string, file: string | null = null): TestScope {
  const s = new TestScope(name, file);
  liveScopes.add(s);
  const finish = s.finish.bind(s);
  s.finish = (c?: boolean) => {
    liveScopes.delete(s);
    const leaks = finish(c);
    for (const x of s.created) if (x.kind === 'child') releaseChild(x.res.pid);
    if (![...liveScopes].some((o) => o.created.some((x) => x.kind === 'child' && isOpen(x)))) unwatchSignals();
    return leaks;
  };
  return s;
}

// ---- the process ends while a test runs -------------------------------------------------------------
// An interrupted run (Ctrl-C; node --test and vitest stop the process running a file with SIGTERM; a vitest
// worker whose parent is gone calls process.exit) would end the process with a test still running. Its
// sockets and servers die with the process, but its child processes would live on as orphans: so the
// running tests are killed first (children: SIGTERM, then SIGKILL for what is left).
//
// The signal listeners are there only while a test has a live child: a JavaScript listener replaces the
// default action, and a test stuck in a synchronous loop could then no longer be stopped with Ctrl-C.

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let watching = false;

function watchSignals(): void {
  if (watching) return;
  watching = true;
  for (const sig of SIGNALS) process.on(sig, onSignal);
}

function unwatchSignals(): void {
  if (!watching) return;
  watching = false;
  for (const sig of SIGNALS) process.off(sig, onSignal);
}

function onSignal(sig: NodeJS.Signals): void {
  unwatchSignals();
  abortAll(new EvyError(`the test run was interrupted (${sig})`, 'ERR_EVY_RUN_INTERRUPTED'));
  if (process.listenerCount(sig) > 0) return; // the runner handles it and decides when to exit
  // Nobody else listens: die of the signal as the process would have, once the killed children are gone.
  // A second signal meanwhile gets the default action.
  whenChildrenGone(() => process.kill(process.pid, sig));
}

/**
 * Calls `fn` once the child trees killed so far are gone (at most the SIGKILL grace). Ref'd, so that the
 * process cannot end some other way in between.
 */
export function whenChildrenGone(fn: () => void): void {
  const deadline = Date.now() + CHILD_KILL_GRACE_MS + 100;
  const check = (): void => {
    if (pendingTerminations() > 0 && Date.now() < deadline) rt.timers.setTimeout(check, 10);
    else fn();
  };
  check();
}

if (rt.ext.testingExitHook === undefined) {
  rt.ext.testingExitHook = true;
  process.on('exit', () => {
    // No timer fires any more: children get their SIGTERM now and, 250 ms later, SIGKILL.
    abortAll(new EvyError('the process exited while the test ran', 'ERR_EVY_RUN_INTERRUPTED'));
    finishTerminationsSync(250);
  });
}
