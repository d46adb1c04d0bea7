// importPatched: eventlet's import_patched. The mechanism lives in loader/ (plain JS, loaded on the first call
// only, so a process that never calls importPatched pays nothing); this file validates and words the errors.
const { createRequire } = process.getBuiltinModule('module') as typeof import('node:module');
const path = process.getBuiltinModule('path') as typeof import('node:path');
const { fileURLToPath, pathToFileURL } = process.getBuiltinModule('url') as typeof import('node:url');
import { EvyError, invalidArgType, invalidArgValue } from '../errors.js';
import { evyFile, isEvyFile } from '../self.js';

/** The builtins importPatched can swap for evy's green modules. */
export type GreenModuleName = 'net' | 'tls' | 'timers' | 'fs' | 'child_process';
type Key = GreenModuleName | `node:${GreenModuleName}`;

/**
 * Which builtins the tree sees swapped: a list narrows (`['net', 'timers']`: those get evy's green modules, the
 * others stay real); an object maps a name to `true` (evy's green module) or to the object to use instead
 * (`{ net: myNet }`). Default: all five green modules.
 */
export type ImportPatchedModules = readonly Key[] | { readonly [K in Key]?: boolean | object };

export interface ImportPatchedOptions {
  /** What a relative or bare specifier resolves against: pass `import.meta.url` (or a file path). Default: the caller's file. */
  parent?: string | URL;
}

interface Impl {
  importPatched(spec: string, parent: string, modules: Record<string, unknown>, replacements: Record<string, object>): Promise<object>;
  Failure: new (...a: never[]) => { notFound: boolean; cause: unknown };
  GREEN: readonly GreenModuleName[];
  PKG_ROOT: string;
}

let impl: Impl | null = null;

function load(): Impl {
  return (impl ??= createRequire(evyFile('package.json'))('./loader/index.cjs') as Impl);
}

/**
 * A fresh instance of the module `specifier` whose whole tree (ESM and CommonJS, packages under node_modules, a
 * dynamic `import()` inside it) sees evy's green `net`, `tls`, `timers`, `fs`, `child_process` (or the ones given
 * in `modules`), while every other importer keeps the real ones.
 */
export function importPatched<T = any>(
  specifier: string | URL,
  modules?: ImportPatchedModules,
  options?: ImportPatchedOptions,
): Promise<T> {
  // Everything that can fail synchronously is checked before the first await, and the caller's file is read from
  // the stack while the caller is still on it.
  let spec: string;
  let parent: string;
  let config: { modules: Record<string, unknown>; replacements: Record<string, object> };
  let im: Impl;
  try {
    if (specifier instanceof URL) spec = specifier.href;
    else if (typeof specifier === 'string' && specifier !== '') spec = specifier;
    else throw invalidArgType('specifier', 'a non-empty string or a URL', specifier);
    // An absolute file path (C:\x on Windows is not a URL to import()).
    if (!spec.startsWith('file:') && path.isAbsolute(spec)) spec = pathToFileURL(spec).href;
    im = load();
    config = normalizeModules(modules, im.GREEN);
    parent = parentOf(spec, options);
  } catch (error) {
    return Promise.reject(error);
  }
  return im.importPatched(spec, parent, config.modules, config.replacements).catch((failure: unknown) => {
    if (!(failure instanceof im.Failure)) throw failure;
    const cause = failure.cause;
    const why = cause instanceof Error ? cause.message : String(cause);
    if (failure.notFound) {
      throw withCause(
        new EvyError(
          `importPatched: cannot resolve '${spec}' from ${displayParent(parent)}: ${why}. A relative specifier ` +
            'resolves against options.parent (pass import.meta.url), else against the calling file, else (node -e, the ' +
            'REPL) the working directory.',
          'ERR_MODULE_NOT_FOUND',
        ),
        cause,
      );
    }
    throw withCause(
      new EvyError(
        `importPatched('${spec}') failed while loading the module tree: ${why}. The process's own modules are ` +
          'unaffected; fix the cause (error.cause) and call importPatched again (each call loads a fresh instance).',
        'ERR_EVY_IMPORT_PATCHED_LOAD',
      ),
      cause,
    );
  }) as Promise<T>;
}

function withCause<E extends Error>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true });
  return error;
}

function displayParent(parent: string): string {
  return parent === cwdParent() ? `the working directory (${process.cwd()})` : parent.startsWith('file:') ? fileURLToPath(parent) : parent;
}

/** What a specifier resolves against when no file called importPatched. */
function cwdParent(): string {
  return pathToFileURL(path.join(process.cwd(), 'noop.js')).href;
}

function normalizeModules(
  modules: ImportPatchedModules | undefined,
  green: readonly GreenModuleName[],
): { modules: Record<string, unknown>; replacements: Record<string, object> } {
  const out: Record<string, unknown> = {};
  const replacements: Record<string, object> = {};
  if (modules === undefined || modules === null) {
    for (const name of green) out[name] = 'green';
    return { modules: out, replacements };
  }
  const nameOf = (key: unknown): GreenModuleName => {
    const bare = typeof key === 'string' && key.startsWith('node:') ? key.slice(5) : key;
    if (typeof bare === 'string' && (green as readonly string[]).includes(bare)) return bare as GreenModuleName;
    throw invalidArgValue(
      'modules',
      `names a builtin evy has no green module for. The swappable builtins are ${green.join(', ')} (eventlet's ` +
        "'socket' is ['net', 'tls'], 'time' is ['timers'], 'os' is ['fs', 'child_process']). Other builtins are " +
        'always the real ones; pass { name: yourObject } only for these',
      key,
    );
  };
  if (Array.isArray(modules)) {
    for (const key of modules) out[nameOf(key)] = 'green';
    return { modules: out, replacements };
  }
  if (typeof modules !== 'object') throw invalidArgType('modules', 'an array of module names or an object', modules);
  for (const [key, value] of Object.entries(modules)) {
    const name = nameOf(key);
    if (value === true) out[name] = 'green';
    else if (value === false || value === undefined) delete out[name];
    else if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
      replacements[name] = value;
      // The generated module exports the object's own keys, read when the tree is loaded.
      out[name] = { names: Object.keys(value) };
    } else throw invalidArgType(`modules.${key}`, 'true, false, or the module object to use', value);
  }
  return { modules: out, replacements };
}

function parentOf(spec: string, options: ImportPatchedOptions | undefined): string {
  if (options !== undefined && options !== null && typeof options !== 'object') {
    throw invalidArgType('options', 'an object', options);
  }
  const given = options?.parent;
  if (given !== undefined) {
    if (given instanceof URL) return given.href;
    if (typeof given !== 'string' || given === '') throw invalidArgType('options.parent', 'a URL or a file path', given);
    if (/^[a-z][a-z0-9+.-]*:/i.test(given) && !/^[a-z]:[\\/]/i.test(given)) return given; // a URL (not C:\)
    return pathToFileURL(path.resolve(given)).href;
  }
  const caller = callerFile();
  if (caller !== null) return pathToFileURL(caller).href;
  // No file called us (node -e, the REPL, a callback the runtime calls directly): resolve against the working
  // directory, as import() and require() do there.
  return cwdParent();
}

/** The first file on the stack outside evy itself (src/, dist/, loader/). */
function callerFile(): string | null {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  let sites: NodeJS.CallSite[] = [];
  try {
    Error.stackTraceLimit = 30;
    Error.prepareStackTrace = (_e, s) => s;
    sites = new Error().stack as unknown as NodeJS.CallSite[];
  } finally {
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
  }
  for (const site of sites) {
    let file = site.getFileName();
    if (file === undefined || file === null || file.startsWith('node:')) continue;
    if (file.startsWith('file:')) file = fileURLToPath(file);
    if (!path.isAbsolute(file) || isEvyFile(file)) continue;
    if (/^\[eval\d*\]$/.test(path.basename(file))) return null; // `node --input-type=module -e`: no file
    return file;
  }
  return null;
}
