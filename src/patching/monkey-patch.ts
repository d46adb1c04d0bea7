// monkeyPatch: makes the builtins cooperative for the whole process (eventlet's monkey_patch).
//
// Where it patches (the lowest layer node's own callers reach; docs/patching.md "Where the patches go"):
// - timers: the six functions on `timers` AND on globalThis (independent slots), and timers/promises.
// - fs: fs.createReadStream/createWriteStream/watch and fs.promises.open/readFile/writeFile/appendFile/watch.
// - net, tls: hooks on net.Socket.prototype and net.Server.prototype (TLSSocket and tls.Server inherit
//   them; http/https reach them even though Node 20's http captured net.createConnection).
// - child_process: a hook on ChildProcess.prototype.spawn (exec/execFile bypass the exported spawn), plus
//   spawn/exec/execFile/fork replaced by versions whose children have wait()/communicate().
// - http: request threads on http(s) servers, a hook on net.Server.prototype.emit (src/http/install.ts).
// Then module.syncBuiltinESMExports(), so ESM named imports bound earlier see the change.
//
// Everything is patched at once, net and child_process included, so that the module objects the app
// sees hold what isMonkeyPatched says from its first line (a CJS `const { spawn } = require(...)` at the
// top of a file gets the green spawn). Deferring them to the first spawn saved ~1-3 ms of startup but
// left the app's early copies unpatched. tls is not loaded for this: its sockets inherit net.Socket's
// prototype hooks (loading node:tls alone costs 3-19 ms). Measured in README "Benchmarks".
import { invalidArgType, invalidArgValue } from '../errors.js';
import { builtin, FS_FUNCS, FSP_FUNCS, MODULES, ps, type ModuleName } from './state.js';
import { installNetHooks, uninstallNetHooks } from './net.js';
import { greenChildFunctions, installChildHooks, uninstallChildHooks } from './child-process.js';
import {
  clearImmediate,
  clearInterval,
  clearTimeout,
  promises as greenTimerPromises,
  setImmediate,
  setInterval,
  setTimeout,
  unhookUnref,
} from './timers.js';
import { fsFunctions, promiseFunctions } from './fs.js';
import { installServers } from '../http/install.js';

export type PatchName = ModuleName;

const { syncBuiltinESMExports } = builtin<typeof import('node:module')>('module');
const timers = builtin<typeof import('node:timers')>('timers');
const timersPromises = builtin<typeof import('node:timers/promises')>('timers/promises');
const fs = builtin<typeof import('node:fs')>('fs');

/** eventlet's keyword arguments: no key patches them all; naming some with `true` patches only those. */
export interface MonkeyPatchOptions {
  all?: boolean;
  net?: boolean;
  tls?: boolean;
  timers?: boolean;
  fs?: boolean;
  child_process?: boolean;
  /** Request threads on http(s) servers, with EVY_REQUEST_DEADLINE and EVY_SHUTDOWN_DRAIN (docs/servers.md). */
  http?: boolean;
  /** net + tls (eventlet's socket). */
  socket?: boolean;
  /** timers (eventlet's time). */
  time?: boolean;
  /** fs + child_process (eventlet's os). */
  os?: boolean;
  /** Accepted for eventlet compatibility; Node has no such module: does nothing. */
  select?: boolean;
  /** Accepted for eventlet compatibility; Node has no such module: does nothing. */
  thread?: boolean;
}

export interface PatchHandle {
  /** Restores the originals of what this call patched (idempotent), and syncs the ESM bindings. */
  undo(): void;
}

// The keys monkeyPatch accepts (besides `all`) and the modules each selects: one entry adds a key.
const ALIASES: Record<string, readonly ModuleName[]> = {
  net: ['net'],
  tls: ['tls'],
  timers: ['timers'],
  fs: ['fs'],
  child_process: ['child_process'],
  http: ['http'],
  socket: ['net', 'tls'],
  time: ['timers'],
  os: ['fs', 'child_process'],
  select: [],
  thread: [],
};

const PATCH_NAMES = ['all', ...Object.keys(ALIASES)].join(', ');

function unknownName(argument: string, name: string, names = PATCH_NAMES): TypeError {
  return invalidArgValue(argument, `must name a module: one of ${names}`, name);
}

/**
 * Which modules `opts` selects, with eventlet's rules. A value counts as what Boolean() makes of it (`{ net: 1 }`
 * names net as `true` does, `0`/`null`/`''` exclude as `false` does); an undefined value is an absent key.
 */
function select(opts: unknown): ModuleName[] {
  if (opts === undefined) return [...MODULES];
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalidArgType('opts', 'an object', opts);
  const on: Partial<Record<ModuleName, boolean>> = {};
  let all: boolean | undefined;
  let anyTrue = false;
  for (const [key, value] of Object.entries(opts as Record<string, unknown>)) {
    if (value === undefined) continue;
    if (key === 'all') {
      all = Boolean(value);
      continue;
    }
    const mods = ALIASES[key];
    if (mods === undefined) throw unknownName('opts', key);
    const v = Boolean(value);
    if (v) anyTrue = true;
    for (const m of mods) on[m] = v;
  }
  const dflt = all ?? !anyTrue;
  return MODULES.filter((m) => on[m] ?? dflt);
}

/** Replaces obj[key]; the restorer puts the original back only if the slot still holds ours. */
function slot(list: (() => void)[], obj: any, key: string, value: unknown): void {
  const wasOwn = Object.prototype.hasOwnProperty.call(obj, key);
  const old = obj[key];
  obj[key] = value;
  list.push(() => {
    if (obj[key] !== value) return; // someone replaced it after us (e.g. fake timers): leave theirs
    if (wasOwn) obj[key] = old;
    else delete obj[key];
  });
}

const TIMER_NAMES = ['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate'] as const;
// A plain object, not a namespace import (see layer.ts: no `__export` chunk at startup).
const greenTimers = { setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate, promises: greenTimerPromises };

const patchers: Record<ModuleName, (undo: (() => void)[]) => void> = {
  timers(undo) {
    undo.push(unhookUnref); // hooked at the first owned timer; runs last
    for (const n of TIMER_NAMES) {
      slot(undo, timers, n, greenTimers[n]);
      slot(undo, globalThis, n, greenTimers[n]);
    }
    for (const n of ['setTimeout', 'setImmediate', 'setInterval'] as const) slot(undo, timersPromises, n, greenTimers.promises[n]);
  },
  fs(undo) {
    void ps.orig.fsp; // capture the originals before replacing them
    for (const n of FS_FUNCS) slot(undo, fs, n, fsFunctions[n]);
    for (const n of FSP_FUNCS) slot(undo, fs.promises, n, promiseFunctions[n]);
  },
  net(undo) {
    netLike(undo, 'net');
  },
  tls(undo) {
    netLike(undo, 'tls');
  },
  child_process(undo) {
    ps.on.child_process = true;
    const install = (): void => {
      if (!ps.on.child_process) return;
      installChildHooks();
      const cp = process.getBuiltinModule('child_process') as any;
      const originals = { spawn: cp.spawn, exec: cp.exec, execFile: cp.execFile, fork: cp.fork };
      (ps.orig as any).cp ??= originals;
      const g = greenChildFunctions(originals);
      const list: (() => void)[] = [];
      for (const n of ['spawn', 'exec', 'execFile', 'fork'] as const) slot(list, cp, n, g[n]);
      // (monkeyPatch syncs the ESM bindings once, after every module: each sync walks every loaded builtin)
      undo.push(() => {
        for (let i = list.length - 1; i >= 0; i--) list[i]!();
      });
    };
    install();
    undo.push(() => {
      ps.on.child_process = false;
      uninstallChildHooks();
    });
  },
  http(undo) {
    undo.push(installServers());
  },
};

function netLike(undo: (() => void)[], name: 'net' | 'tls'): void {
  ps.on[name] = true;
  const install = (): void => {
    if (ps.on.net || ps.on.tls) installNetHooks();
  };
  install();
  undo.push(() => {
    ps.on[name] = false;
    if (!ps.on.net && !ps.on.tls) uninstallNetHooks();
  });
}

/**
 * Makes the selected builtins cooperative for the whole process: handles a green thread uses are owned
 * by it and destroyed when it is killed (docs/patching.md). Idempotent: an already patched module is
 * left alone. Returns a handle whose `undo()` restores what this call patched.
 */
export function monkeyPatch(opts?: MonkeyPatchOptions): PatchHandle {
  const names = select(opts);
  const mine: ModuleName[] = [];
  for (const name of names) {
    if (isPatched(name)) continue;
    const undo = ps.restore[name];
    patchers[name](undo);
    ps.on[name] = true;
    mine.push(name);
  }
  if (mine.length > 0) syncBuiltinESMExports();
  let undone = false;
  return {
    undo() {
      if (undone) return;
      undone = true;
      for (const name of mine) {
        const list = ps.restore[name];
        for (let i = list.length - 1; i >= 0; i--) list[i]!();
        list.length = 0;
        ps.on[name] = false;
      }
      if (mine.length > 0) syncBuiltinESMExports();
    },
  };
}

function isPatched(name: ModuleName): boolean {
  return ps.on[name];
}

/** Whether `name` (a module, or eventlet's socket/time/os alias) is patched process-wide. */
export function isMonkeyPatched(name: string): boolean {
  if (typeof name !== 'string') throw invalidArgType('name', 'a string', name);
  const key = name.startsWith('node:') ? name.slice(5) : name;
  const mods = key === 'timers/promises' ? ['timers' as const] : key === 'fs/promises' ? ['fs' as const] : ALIASES[key];
  if (mods === undefined) throw unknownName('name', name);
  return mods.length > 0 && mods.every(isPatched);
}

function withOriginals(base: object, originals: Record<string, unknown>, extra?: Record<string, unknown>): any {
  const o = Object.create(base);
  // defineProperty, not assignment: `promises` is an accessor on the timers module.
  for (const [k, v] of Object.entries({ ...originals, ...extra })) Object.defineProperty(o, k, { value: v, enumerable: true });
  return Object.freeze(o);
}

/**
 * The builtin module with its original (unpatched) functions: an object whose own properties are the
 * originals of what evy replaces and whose prototype is the builtin module (for everything else).
 */
export function original(name: string): any {
  if (typeof name !== 'string') throw invalidArgType('name', 'a string', name);
  const key = name.startsWith('node:') ? name.slice(5) : name;
  const o = ps.orig as typeof ps.orig & { cp?: Record<string, unknown> };
  switch (key) {
    case 'timers':
      return withOriginals(timers, { ...o.timers }, { promises: withOriginals(timersPromises, { ...o.timersPromises }) });
    case 'timers/promises':
      return withOriginals(timersPromises, { ...o.timersPromises });
    case 'fs':
      return withOriginals(fs, { ...o.fs }, { promises: withOriginals(fs.promises, { ...o.fsp }) });
    case 'fs/promises':
      return withOriginals(fs.promises, { ...o.fsp });
    case 'child_process':
      return withOriginals(process.getBuiltinModule('child_process'), { ...(o.cp ?? {}) });
    case 'net':
    case 'tls':
    case 'http':
      // Their exported functions are never replaced (the hooks are on the prototypes).
      return process.getBuiltinModule(key);
    default:
      throw unknownName('name', name, 'timers, timers/promises, fs, fs/promises, child_process, net, tls, http');
  }
}

/** Parses EVY_PATCH into monkeyPatch options; null for `none`. */
export function patchOptionsFromEnv(value: string | undefined): MonkeyPatchOptions | null {
  const v = (value ?? '').trim();
  if (v === '' || v === 'all') return {};
  if (v === 'none') return null;
  const opts: Record<string, boolean> = {};
  for (const part of v.split(',')) {
    const name = part.trim();
    if (name !== '') opts[name] = true;
  }
  return opts;
}

/** Patches once per process; a second registration (ESM + CJS, or twice on the command line) warns and does nothing. */
export function register(how: 'import' | 'require'): void {
  if (ps.registered !== null) {
    process.emitWarning(`evy/register was loaded twice (first with --${ps.registered}, now with --${how}); the second is ignored`, {
      code: 'EVY_REGISTER_TWICE',
    });
    return;
  }
  ps.registered = how;
  let opts: MonkeyPatchOptions | null;
  try {
    opts = patchOptionsFromEnv(process.env.EVY_PATCH);
    if (opts !== null) select(opts);
  } catch (e) {
    // A typo in EVY_PATCH must not silently run the app unpatched.
    (e as Error).message = `EVY_PATCH=${process.env.EVY_PATCH}: ${(e as Error).message}`;
    throw e;
  }
  // (A bad EVY_REQUEST_DEADLINE or EVY_SHUTDOWN_DRAIN throws here, naming itself.)
  if (opts !== null) monkeyPatch(opts);
}
