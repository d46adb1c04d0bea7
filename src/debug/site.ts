// Where a handle was made, for people: the first frame of the app's own code in a captured stack (shared by
// the test runners' timeout message and the request deadline line).
import { isEvyFile } from '../self.js';

const { relative, sep } = process.getBuiltinModule('path') as typeof import('node:path');
const { fileURLToPath } = process.getBuiltinModule('url') as typeof import('node:url');

const CWD = process.cwd();

function frameFile(line: string): { file: string; line: string } | null {
  // "at fn (file:///x/y.js:41:7)" or "at file:///x/y.js:41:7" or "at /x/y.js:41:7"
  const m = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):\d+\)?$/.exec(line.trim());
  if (m === null) return null;
  let file = m[1]!;
  if (file.startsWith('file://')) {
    try {
      file = fileURLToPath(file);
    } catch {
      return null;
    }
  }
  return { file, line: m[2]! };
}

/** `path/to/file.js:41`, relative to the working directory: the first frame in user code. */
export function siteOf(err: Error | undefined, skip: (file: string) => boolean = () => false): string {
  const stack = err?.stack;
  if (typeof stack !== 'string') return '';
  let fallback = '';
  for (const raw of stack.split('\n').slice(1)) {
    const l = raw.trim();
    if (!l.startsWith('at ') || l.includes('node:') || l.includes('(native)')) continue;
    const f = frameFile(l);
    if (f === null || isEvyFile(f.file) || skip(f.file)) continue;
    const rel = relative(CWD, f.file);
    const shown = `${rel.startsWith('..') ? f.file : rel}:${f.line}`;
    if (!f.file.includes(`${sep}node_modules${sep}`)) return shown;
    if (fallback === '') fallback = shown;
  }
  return fallback;
}

