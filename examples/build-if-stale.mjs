// `npm start` runs this first: rebuilds dist/ (quietly) only when a source is newer than the build, so the
// tour's output is not buried under the bundler's. (EVY_BUILD_ROOT and EVY_BUILD_DRY_RUN are for its test.)
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = process.env.EVY_BUILD_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const mtime = (p) => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -1;
  }
};
const newest = (dir) => {
  try {
    return Math.max(-1, ...readdirSync(dir, { recursive: true }).map((f) => mtime(join(dir, String(f)))));
  } catch {
    return -1; // no sources here (an installed copy): the shipped dist/ is the build
  }
};
const built = Math.min(mtime(join(root, 'dist/index.js')), mtime(join(root, 'dist/index.cjs')), mtime(join(root, 'dist/register.js')));
const sources = Math.max(newest(join(root, 'src')), mtime(join(root, 'tsup.config.ts')), mtime(join(root, 'package.json')));
if (built < 0 || sources > built) {
  process.stdout.write('building dist/ (sources changed since the last build)... ');
  if (process.env.EVY_BUILD_DRY_RUN === '1') {
    console.log('done');
    process.exit(0);
  }
  const pkg = createRequire(import.meta.url).resolve('tsup/package.json');
  const bin = join(dirname(pkg), createRequire(import.meta.url)('tsup/package.json').bin.tsup);
  execFileSync(process.execPath, [bin, '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  console.log('done');
}
