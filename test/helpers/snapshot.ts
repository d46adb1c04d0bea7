// A copy of the built package inside node_modules/.cache, made once per test file: programs run from it
// resolve `evy`, `evy/register` (self-reference) and dev dependencies like `pg` as an app would, and a
// rebuild of dist/ while the tests run cannot pull files from under a running program.
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Copies package.json, the register entries, dist/ and `extra` (paths relative to the repo); returns the copy's root. */
export async function snapshotPackage(tag: string, extra: string[]): Promise<string> {
  for (let i = 0; !(existsSync(path.join(REPO, 'dist', 'index.js')) && existsSync(path.join(REPO, 'dist', 'register.js'))); i++) {
    if (i === 100) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    await new Promise((r) => setTimeout(r, 100));
  }
  const dir = path.join(REPO, 'node_modules', '.cache', `${tag}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  for (const f of ['package.json', 'register.mjs', 'register.cjs', 'dist', ...extra]) {
    cpSync(path.join(REPO, f), path.join(dir, f), { recursive: true });
  }
  return dir;
}

export function removeSnapshot(dir: string | null): void {
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
}
