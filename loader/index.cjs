'use strict';
// importPatched, main-thread side. Loaded on the first importPatched call only (evy's startup never touches it).
// - Registers the ESM hooks once: module.registerHooks where Node has it (>= 22.15; in-thread, ~1 ms), else
//   module.register (Node 20; an off-thread loader, ~40 ms, hence lazily).
// - Loads the CommonJS modules of a patched tree: fresh Module instances whose `require` is their own, so their
//   builtins are swapped for as long as they live (a `require` at call time too), and nothing process-wide is
//   hooked at any moment (docs/import-patched.md explains why not require-in-the-middle).
// Plain CommonJS so the ESM and the CJS build of evy load this one file (one state), and so test runners that
// transform sources (vitest) cannot reroute the `import()` below around Node's loader.
const Module = require('node:module');
const path = require('node:path');
const fs = require('node:fs');
const { pathToFileURL } = require('node:url');
const { AsyncResource } = require('node:async_hooks');
const core = require('./core.cjs');

const KEY = Symbol.for('evy.runtime');

function state() {
  const rt = globalThis[KEY];
  // evy creates the runtime before this file can be reached; the fallback only serves direct use of the loader.
  const ext = rt !== undefined ? rt.ext : (globalThis[Symbol.for('evy.importPatched.ext')] ??= Object.create(null));
  let st = ext['evy.importPatched'];
  if (st === undefined) {
    st = {
      nextId: 1,
      /** id -> { modules, replacements, mods: Map<filename, Module>, errors: Map<filename, error>, scope } */
      trees: new Map(),
      hooks: null,
      /** Read by the generated replacement modules. */
      replacement(id, name) {
        return st.trees.get(id).replacements[name];
      },
      /** Read by the ESM facade of a CommonJS module: its fresh exports (read at evaluation, after the load). */
      cjs(id, filename) {
        return st.trees.get(id).mods.get(filename).exports;
      },
    };
    ext['evy.importPatched'] = st;
  }
  return st;
}

const st = state();

function ensureHooks() {
  if (st.hooks !== null) return;
  if (typeof Module.registerHooks === 'function') {
    st.hooks = Module.registerHooks(core.syncHooks(cjsInfo));
    return;
  }
  const { MessageChannel } = require('node:worker_threads');
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (m) => {
    // Run the module's top-level code in the async context of the importPatched call (the green thread that asked),
    // as the in-thread hooks do, not in that of whichever call happened to create this port.
    const tree = st.trees.get(m.id);
    const info = tree.scope.runInAsyncScope(cjsInfo, null, m.id, m.filename);
    port1.postMessage(info.error ? { seq: m.seq, error: true, message: info.message } : { seq: m.seq, names: info.names });
  });
  port1.unref();
  Module.register(pathToFileURL(path.join(__dirname, 'hooks.mjs')).href, {
    data: { port: port2 },
    transferList: [port2],
  });
  st.hooks = 'module.register';
}

/** Loads the fresh instance behind an ESM facade: its export names, or the error it threw (kept for importPatched). */
function cjsInfo(id, filename) {
  const tree = st.trees.get(id);
  try {
    const exports = loadCjs(tree, filename);
    const names = exports !== null && (typeof exports === 'object' || typeof exports === 'function') ? Object.keys(exports) : [];
    return { names };
  } catch (error) {
    tree.errors.set(filename, error);
    // The in-thread hook rethrows `cause` itself; across threads only the message travels (the main thread
    // swaps the original back in, see importPatched).
    return { error: true, cause: error, message: String(error && error.message) };
  }
}

/** evy's green CommonJS build of `name` ('fs/promises' is dist/green/fs-promises.cjs). */
function greenCjs(name) {
  return path.join(core.PKG_ROOT, 'dist', 'green', `${name.replace('/', '-')}.cjs`);
}

/** What `require(id)` of a builtin gives inside the tree, or undefined for the real module. */
function builtinFor(tree, id) {
  const name = id.startsWith('node:') ? id.slice(5) : id;
  const mode = tree.modules[name];
  if (mode === 'green') return require(greenCjs(name));
  if (mode !== undefined) return tree.replacements[name];
  const base = core.SUBS[name];
  if (base === undefined || tree.modules[base] === undefined) return undefined;
  if (tree.modules[base] === 'green') return require(greenCjs(name));
  const swapped = tree.replacements[base];
  return (swapped && swapped.promises) || require(`node:${name}`);
}

const typeCache = new Map();
/** Package "type" of the nearest package.json (Node's rule for .js). */
function packageType(dir) {
  const hit = typeCache.get(dir);
  if (hit !== undefined) return hit;
  let type = 'commonjs';
  try {
    type = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).type === 'module' ? 'module' : 'commonjs';
  } catch (e) {
    const up = path.dirname(dir);
    if (e.code === 'ENOENT' && up !== dir) type = packageType(up);
  }
  typeCache.set(dir, type);
  return type;
}

function isCjsFile(filename) {
  const ext = path.extname(filename);
  if (ext === '.cjs') return true;
  if (ext === '.js') return packageType(path.dirname(filename)) === 'commonjs';
  return false;
}

function isOwnFile(filename) {
  return core.isOwnUrl(pathToFileURL(filename).href);
}

function loadCjs(tree, filename, parent) {
  const cached = tree.mods.get(filename);
  if (cached !== undefined) {
    if (parent !== undefined && !parent.children.includes(cached)) parent.children.push(cached);
    return cached.exports;
  }
  // `parent` as Node sets it (old code tests `!module.parent` for "run as a script"); the tree's entry has none,
  // like any CommonJS module imported from ESM.
  const m = new Module(filename, parent);
  m.filename = filename;
  m.paths = Module._nodeModulePaths(path.dirname(filename));
  // The module's own require (Node's `require` inside it calls mod.require): swapped builtins and fresh children,
  // for as long as the instance lives.
  m.require = function require(id) {
    return treeRequire(tree, this, id);
  };
  tree.mods.set(filename, m); // before load: a require cycle gets the partial exports, as in Node
  try {
    m.load(filename);
  } catch (error) {
    tree.mods.delete(filename);
    throw error;
  }
  return m.exports;
}

function treeRequire(tree, parent, id) {
  if (typeof id === 'string' && id !== '') {
    if (Module.isBuiltin(id)) {
      const swapped = builtinFor(tree, id);
      if (swapped !== undefined) return swapped;
    } else {
      const filename = Module._resolveFilename(id, parent, false);
      if (path.isAbsolute(filename) && isCjsFile(filename) && !isOwnFile(filename)) return loadCjs(tree, filename, parent);
    }
  }
  // Builtins not swapped, JSON, addons, ESM (require(esm) gives the shared instance), evy itself, bad ids.
  return Module.prototype.require.call(parent, id);
}

/** A failed importPatched: `notFound` (the specifier itself cannot be resolved) or a failure while loading. */
class Failure {
  constructor(notFound, cause) {
    this.notFound = notFound;
    this.cause = cause;
  }
}

/**
 * Loads `spec` (resolved against `parentUrl`) as a fresh tree. `modules`: { name: 'green' | { names } };
 * `replacements`: { name: object }. Rejects with a Failure.
 */
async function importPatched(spec, parentUrl, modules, replacements) {
  ensureHooks();
  const id = String(st.nextId++);
  const tree = { modules, replacements, mods: new Map(), errors: new Map(), scope: new AsyncResource('evy.importPatched') };
  st.trees.set(id, tree);
  try {
    return await import(core.entryUrl({ id, spec, parent: parentUrl, modules }));
  } catch (error) {
    if (error instanceof Error && error.message.startsWith(core.ENTRY_ERROR)) {
      error.message = error.message.slice(core.ENTRY_ERROR.length);
      throw new Failure(true, error);
    }
    // A CommonJS module of the tree threw: hand back its own error object (on Node 20 the one that reached
    // here is a copy made on the loader thread).
    const first = tree.errors.values().next();
    throw new Failure(false, first.done ? error : first.value);
  }
}

module.exports = { importPatched, Failure, loadCjs, state: st, GREEN: core.GREEN, PKG_ROOT: core.PKG_ROOT };
