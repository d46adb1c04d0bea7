'use strict';
// importPatched: the decisions shared by both hook flavours. Loaded in-thread by module.registerHooks (Node >= 22.15)
// or on the loader thread by hooks.mjs (module.register, Node 20). Pure functions over URLs: no main-thread state,
// because on Node 20 this file runs in another thread. A tree's configuration travels inside the entry URL.
const { isBuiltin } = require('node:module');
const { pathToFileURL, fileURLToPath } = require('node:url');
const path = require('node:path');

const PKG_ROOT = path.resolve(__dirname, '..');
const LOADER_URL = pathToFileURL(__dirname + path.sep).href;
const DIST_URL = pathToFileURL(path.join(PKG_ROOT, 'dist') + path.sep).href;
const SRC_URL = pathToFileURL(path.join(PKG_ROOT, 'src') + path.sep).href;
/** Every generated module (entry, replacement, sub-path) is this real file plus a query, so it has a file: URL. */
const VIRTUAL = pathToFileURL(path.join(__dirname, 'virtual.mjs')).href;
const TAG = 'evy-green';
const TAG_EQ = TAG + '=';
const ENTRY = VIRTUAL + '?evy-entry=';
const GREEN = ['net', 'tls', 'timers', 'fs', 'child_process'];
/** Builtin sub-paths swapped with their base module: evy's green one, or the replacement's `promises`. */
const SUBS = { 'fs/promises': 'fs', 'timers/promises': 'timers' };
const REG = "globalThis[Symbol.for('evy.runtime')].ext['evy.importPatched']";

/** id -> { id, spec, parent, modules: { [name]: 'green' | { names: string[] } } }, learnt from entry URLs. */
const trees = new Map();

/** evy's green module for `name` ('fs/promises' is dist/green/fs-promises.js). */
function greenUrl(name) {
  return DIST_URL + 'green/' + name.replace('/', '-') + '.js';
}

function isOwnUrl(url) {
  // evy's own files are never re-instantiated: one scheduler, and the green modules must see the real builtins.
  return url.startsWith(DIST_URL) || url.startsWith(LOADER_URL) || url.startsWith(SRC_URL);
}

function entryUrl(config) {
  return ENTRY + encodeURIComponent(JSON.stringify(config));
}

function treeOfUrl(url) {
  if (typeof url !== 'string' || !url.includes(TAG_EQ)) return undefined;
  const id = new URL(url).searchParams.get(TAG);
  return id === null ? undefined : trees.get(id);
}

function tagUrl(url, id) {
  if (!url.startsWith('file:') || isOwnUrl(url)) return url;
  const u = new URL(url);
  u.searchParams.set(TAG, id);
  return u.href;
}

/** The URL a tree sees for a builtin specifier, or undefined for "the real one". */
function builtinUrl(tree, specifier) {
  const name = specifier.startsWith('node:') ? specifier.slice(5) : specifier;
  const mode = tree.modules[name];
  if (mode === 'green') return greenUrl(name);
  if (mode !== undefined) return `${VIRTUAL}?evy-replace=${tree.id}&name=${name}`;
  const base = SUBS[name];
  if (base === undefined || tree.modules[base] === undefined) return undefined;
  if (tree.modules[base] === 'green') return greenUrl(name);
  return `${VIRTUAL}?evy-sub=${tree.id}&name=${name}`;
}

/**
 * What to do with one resolve call:
 * { result } answer directly; { spec, context, tag } call next(spec, context) then tag the answer with tree `tag`
 * (tag undefined: return next's answer as is).
 */
function planResolve(specifier, context) {
  if (specifier.startsWith(ENTRY)) {
    const config = JSON.parse(decodeURIComponent(specifier.slice(ENTRY.length)));
    trees.set(config.id, config);
    if (isBuiltin(config.spec)) return builtinPlan(config, config.spec, context);
    return { spec: config.spec, context: { ...context, parentURL: config.parent }, tag: config.id, entry: true };
  }
  const tree = treeOfUrl(context.parentURL);
  // A require() seen by registerHooks (createRequire in a tagged ESM file) is left alone: Node caches CJS
  // resolutions per directory, so redirecting one would leak the green module to untagged code (feasibility §6).
  if (tree === undefined || (context.conditions !== undefined && context.conditions.includes('require'))) {
    return { spec: specifier, context, tag: undefined };
  }
  if (isBuiltin(specifier)) return builtinPlan(tree, specifier, context);
  return { spec: specifier, context, tag: tree.id };
}

function builtinPlan(tree, specifier, context) {
  const url = builtinUrl(tree, specifier);
  if (url === undefined) return { spec: specifier, context, tag: undefined };
  return { result: { url, format: 'module', shortCircuit: true } };
}

/** The target itself cannot be resolved: mark the error so the caller can tell it from a failure inside the tree
 * (the mark is in the message because, on Node 20, the error crosses a thread boundary). */
const ENTRY_ERROR = 'evy-import-patched-entry: ';
function entryFailed(plan, error) {
  if (plan.entry === true && error instanceof Error) error.message = ENTRY_ERROR + error.message;
  return error;
}

function finishResolve(plan, resolved) {
  if (plan.tag === undefined || resolved.format === 'builtin') return resolved;
  const url = tagUrl(resolved.url, plan.tag);
  return url === resolved.url ? resolved : { ...resolved, url };
}

/**
 * What to do with one load call: { result } (generated source), { cjs: { id, filename } } (call next, and if the
 * format is commonjs serve a facade over a fresh instance), or undefined (pass through).
 */
function planLoad(url) {
  if (url.startsWith(VIRTUAL + '?')) return { result: { format: 'module', source: virtualSource(url), shortCircuit: true } };
  if (!url.includes(TAG_EQ)) return undefined;
  const id = new URL(url).searchParams.get(TAG);
  if (id === null) return undefined;
  return { cjs: { id, filename: fileURLToPath(url) } };
}

function exportLines(names) {
  // Arbitrary export names (`export { x as "a-b" }`) so any own key of an object can be exported.
  let out = '';
  let i = 0;
  for (const name of names) {
    // `default` is the object itself; a string with a lone surrogate cannot be an export name.
    if (name === 'default' || typeof name !== 'string' || !name.isWellFormed()) continue;
    out += `const __${i} = __m[${JSON.stringify(name)}];\nexport { __${i} as ${JSON.stringify(name)} };\n`;
    i++;
  }
  return out;
}

function virtualSource(url) {
  const q = new URL(url).searchParams;
  const replace = q.get('evy-replace');
  if (replace !== null) {
    const tree = trees.get(replace);
    const name = q.get('name');
    return `const __m = ${REG}.replacement(${JSON.stringify(replace)}, ${JSON.stringify(name)});\n` +
      `export default __m;\n${exportLines(tree.modules[name].names)}`;
  }
  const sub = q.get('evy-sub');
  if (sub !== null) {
    const tree = trees.get(sub);
    const name = q.get('name');
    const base = SUBS[name];
    // The sub-path exports what the real one does; values come from the replacement's `promises` when it has one.
    const names = Object.keys(require('node:' + name));
    return `const __base = ${REG}.replacement(${JSON.stringify(sub)}, ${JSON.stringify(base)});\n` +
      `import __real from ${JSON.stringify('node:' + name)};\n` +
      `const __m = (__base && __base.promises) || __real;\nexport default __m;\n${exportLines(names)}`;
  }
  // The bare virtual file (never imported on purpose).
  return 'export {};\n';
}

/** ESM facade over a CommonJS module of a patched tree: the main thread has loaded a fresh instance already. */
function cjsFacade(id, filename, info) {
  return `const __m = ${REG}.cjs(${JSON.stringify(id)}, ${JSON.stringify(filename)});\n` +
    `export default __m;\n${exportLines(info.names)}`;
}

/** The CommonJS module threw while loading (asked across threads: only its message came back). */
function cjsFailed(info) {
  const error = new Error(info.message);
  error.code = 'ERR_EVY_IMPORT_PATCHED_CJS';
  return error;
}

/** Hooks for module.registerHooks (synchronous, in-thread). `cjsInfo(id, filename)` loads the fresh CJS instance. */
function syncHooks(cjsInfo) {
  return {
    resolve(specifier, context, next) {
      const plan = planResolve(specifier, context);
      if (plan.result !== undefined) return plan.result;
      if (plan.tag === undefined) return next(plan.spec, plan.context);
      let resolved;
      try {
        resolved = next(plan.spec, plan.context);
      } catch (error) {
        throw entryFailed(plan, error);
      }
      return finishResolve(plan, resolved);
    },
    load(url, context, next) {
      const plan = planLoad(url);
      if (plan === undefined) return next(url, context);
      if (plan.result !== undefined) return plan.result;
      const loaded = next(url, context);
      if (loaded.format !== 'commonjs') return loaded;
      const { id, filename } = plan.cjs;
      const info = cjsInfo(id, filename);
      if (info.error) throw info.cause;
      return { format: 'module', source: cjsFacade(id, filename, info), shortCircuit: true };
    },
  };
}

module.exports = {
  PKG_ROOT,
  GREEN,
  SUBS,
  greenUrl,
  TAG,
  ENTRY_ERROR,
  entryFailed,
  entryUrl,
  isOwnUrl,
  planResolve,
  finishResolve,
  planLoad,
  cjsFacade,
  cjsFailed,
  syncHooks,
};
