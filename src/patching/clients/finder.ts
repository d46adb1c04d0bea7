// Finds the watched clients' files: in the module cache (loaded before patching) and as they load (a
// wrapper on the CommonJS '.js' loader, which the CJS builds of pg and mysql2 go through whether the app
// imports or requires them). Files are matched by path (ClientModule.file), else by what they export
// (ClientModule.looksLike). require-in-the-middle, OpenTelemetry's finder, was measured against this and
// not taken: README "Dependencies and tools".
import { builtin } from '../state.js';
import type { ClientHooks, ClientModule, Put } from './adapter.js';

function patchKnown(modules: readonly ClientModule[], file: string, exports: unknown, put: Put, hooks: ClientHooks): void {
  // By path, or (a vendored or renamed copy) by the shape of its exports. A bundle (esbuild, webpack) hides
  // its modules from any finder: net.ts keeps such clients' connections safe (clients/protocols.ts).
  if (exports === null || (typeof exports !== 'object' && typeof exports !== 'function')) return;
  for (const m of modules) if (m.file.test(file) || m.looksLike(exports)) m.patch(exports, put, hooks);
}

/** Patches `modules` now (module cache) and as they load. */
export function findModules(modules: readonly ClientModule[], put: Put, hooks: ClientHooks): void {
  const Module = builtin<any>('module');
  const cache: Record<string, { exports?: unknown } | undefined> = Module._cache ?? {};
  for (const file of Object.keys(cache)) patchKnown(modules, file, cache[file]?.exports, put, hooks);
  const ext = Module._extensions as Record<string, (m: { exports: unknown }, file: string) => unknown> | undefined;
  const loadJs = ext?.['.js'];
  if (ext === undefined || typeof loadJs !== 'function') return;
  put(ext, '.js', function loadJs_(this: unknown, m: { exports: unknown }, file: string) {
    const r = loadJs.call(this, m, file);
    patchKnown(modules, file, m.exports, put, hooks);
    return r;
  });
}
