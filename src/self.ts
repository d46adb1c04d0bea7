// Where evy is installed: the one place that knows. Read from the stack, once, when first asked
// (`import.meta.url` would be a syntax error in the CJS build): this file runs bundled somewhere under dist/
// (a root chunk or an entry in a subfolder) or from src/ under the tests, so the package root is found by
// walking up to the folder whose package.json is evy's, not by assuming a depth.
const { existsSync, readFileSync } = process.getBuiltinModule('fs') as typeof import('node:fs');
const path = process.getBuiltinModule('path') as typeof import('node:path');
const { fileURLToPath } = process.getBuiltinModule('url') as typeof import('node:url');

let root: string | undefined;
let own: string[] | undefined;

function thisFile(): string | undefined {
  const prepare = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_e, sites: NodeJS.CallSite[]) => sites[0]?.getFileName();
    const file = new Error().stack as unknown as string | null | undefined;
    if (typeof file !== 'string') return undefined;
    return file.startsWith('file:') ? fileURLToPath(file) : file;
  } finally {
    Error.prepareStackTrace = prepare;
  }
}

function isEvyPackage(dir: string): boolean {
  const pj = path.join(dir, 'package.json');
  if (!existsSync(pj)) return false;
  try {
    return (JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name === 'evy';
  } catch {
    return false;
  }
}

/** evy's package root (the folder holding its package.json, dist/, loader/), or '' if it cannot be told. */
export function evyRoot(): string {
  if (root !== undefined) return root;
  const file = thisFile();
  root = '';
  if (file === undefined || !path.isAbsolute(file)) return root;
  for (let dir = path.dirname(file); ; ) {
    if (isEvyPackage(dir)) return (root = dir);
    const up = path.dirname(dir);
    if (up === dir) return root;
    dir = up;
  }
}

/** A file of the installed package, e.g. `evyFile('dist', 'tpool-worker.js')`. */
export function evyFile(...parts: string[]): string {
  return path.join(evyRoot(), ...parts);
}

/** Whether a file (or a stack line naming one) is evy's own code: src/, dist/ or loader/ of the package. */
export function isEvyFile(fileOrLine: string): boolean {
  const r = evyRoot();
  if (r === '') return false;
  own ??= ['src', 'dist', 'loader'].map((d) => path.join(r, d) + path.sep);
  return own.some((d) => fileOrLine.includes(d));
}
