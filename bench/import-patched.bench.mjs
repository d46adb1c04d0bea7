// importPatched vs a plain import() of the same 50-module tree, measured in the same run, in fresh processes:
// - first: the first load in a process (for importPatched this includes registering the hooks),
// - later: a second, distinct copy of the tree in the same process (a plain import of files already loaded costs
//   nothing, so the later plain import is of a copy too: each importPatched call loads a fresh instance anyway).
// And the startup of a program that loads evy but never calls importPatched (target: nothing added).
// `node bench/import-patched.bench.mjs [repeats]`
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPEATS = Number(process.argv[2] ?? 15);
const N = 50;
const dir = mkdtempSync(path.join(tmpdir(), 'evy-bench-ip-'));
// A snapshot of the built package (dist/, loader/): a rebuild of dist/ during the run cannot break it.
const ROOT = fileURLToPath(new URL('..', import.meta.url));
for (let attempt = 0; ; attempt++) {
  rmSync(path.join(dir, 'evy'), { recursive: true, force: true });
  for (const f of ['dist', 'loader', 'package.json']) cpSync(path.join(ROOT, f), path.join(dir, 'evy', f), { recursive: true });
  const complete = ['index.js', 'index.cjs', 'green/net.js', 'green/net.cjs'].every((f) => existsSync(path.join(dir, 'evy', 'dist', f)));
  if (complete) break;
  if (attempt === 10) throw new Error('dist/ is incomplete: run `npx tsup` first');
  await new Promise((r) => setTimeout(r, 2000)); // a build in progress
}
const EVY = pathToFileURL(path.join(dir, 'evy', 'dist', 'index.js')).href;

// Two copies of an ESM tree and of a CommonJS tree: main + 49 modules, each importing net and path.
for (const copy of ['a', 'b']) {
  const d = path.join(dir, copy);
  mkdirSync(d);
  const esm = [];
  const cjs = [];
  for (let i = 1; i < N; i++) {
    writeFileSync(path.join(d, `m${i}.mjs`), `import net from 'node:net';\nimport { join } from 'node:path';\nexport const v = typeof net.connect + join('${i}', 'x');\n`);
    writeFileSync(path.join(d, `m${i}.cjs`), `const net = require('node:net');\nconst { join } = require('node:path');\nexports.v = typeof net.connect + join('${i}', 'x');\n`);
    esm.push(`import { v as v${i} } from './m${i}.mjs';`);
    cjs.push(`require('./m${i}.cjs').v`);
  }
  writeFileSync(path.join(d, 'main.mjs'), `${esm.join('\n')}\nexport const all = [${Array.from({ length: N - 1 }, (_, i) => `v${i + 1}`)}];\n`);
  writeFileSync(path.join(d, 'main.cjs'), `exports.all = [${cjs.join(', ')}];\n`);
}

// One child process: load evy, then time two loads (copy a, then copy b).
const CHILD = `
const { importPatched } = await import(${JSON.stringify(EVY)});
const [mode, ext] = process.argv.slice(1);
const modules = process.env.EVY_BENCH_MODULES === 'replacement' ? { net: { ...(await import('node:net')).default } } : ['net'];
if (mode === 'noop') {
  // Node's own floor: the same kind of hook importPatched registers, doing nothing.
  const m = await import('node:module');
  if (typeof m.registerHooks === 'function') m.registerHooks({ resolve: (s, c, n) => n(s, c), load: (u, c, n) => n(u, c) });
  else m.register('data:text/javascript,export const resolve=(s,c,n)=>n(s,c);export const load=(u,c,n)=>n(u,c);');
}
const load = mode === 'patched' ? (f) => importPatched(f, modules) : (f) => import(f);
const out = [];
for (const copy of ['a', 'b']) {
  const f = ${JSON.stringify(pathToFileURL(dir).href)} + '/' + copy + '/main.' + ext;
  const t0 = performance.now();
  const ns = await load(f);
  out.push(performance.now() - t0);
  if (ns.all.length !== ${N - 1}) throw new Error('bad tree');
}
console.log(JSON.stringify(out));
`;

// evy's green net is what importPatched(['net']) swaps in; while a green build fails to load, measure the mechanism
// with a replacement object instead (same hooks, no green module to load) and say so.
let MODULES = 'green';
try {
  createRequire(import.meta.url)(path.join(dir, 'evy', 'dist', 'green', 'net.cjs'));
  await import(pathToFileURL(path.join(dir, 'evy', 'dist', 'green', 'net.js')).href);
} catch (e) {
  MODULES = 'replacement';
  console.log(`(dist/green/net failed to load: ${e.message}; measuring with { net: { ...net } } instead)`);
}

function child(mode, ext) {
  const env = { ...process.env, EVY_BENCH_MODULES: MODULES };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, mode, ext], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

// Startup of a tiny program: performance.now() at its end, i.e. ms since the process started (less noisy than
// the wall time of the spawn, which adds fork/exec and teardown).
function startup(code) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `${code};console.log(performance.now())`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout.trim().split('\n').pop());
}

const samples = {};
const add = (k, v) => (samples[k] ??= []).push(v);
const tiny = path.join(dir, 'a', 'm1.mjs');
for (let r = 0; r < REPEATS; r++) {
  // Interleaved so that drift (other load on the machine) hits every row alike.
  for (const ext of ['mjs', 'cjs']) {
    const [pf, pl] = child('plain', ext);
    const [xf, xl] = child('patched', ext);
    const [nf, nl] = child('noop', ext);
    add(`${ext} first plain, no-op hook`, nf);
    add(`${ext} later plain, no-op hook`, nl);
    add(`${ext} first plain`, pf);
    add(`${ext} first importPatched`, xf);
    add(`${ext} later plain`, pl);
    add(`${ext} later importPatched`, xl);
  }
  add('startup: empty program', startup('0'));
  add('startup: import evy (importPatched never called)', startup(`await import(${JSON.stringify(EVY)})`));
  add('startup: import evy + one importPatched of 1 module', startup(
    `const { importPatched } = await import(${JSON.stringify(EVY)}); await importPatched(${JSON.stringify(pathToFileURL(tiny).href)}, { net: {} })`,
  ));
}
rmSync(dir, { recursive: true, force: true });

const min = (a) => Math.min(...a);
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x) => x.toFixed(1).padStart(7);
console.log(`Node ${process.version}, ${N}-module tree, importPatched(tree, ${MODULES === 'green' ? "['net']" : '{ net: {...net} }'}), ${REPEATS} fresh processes per row, ms (min / median)\n`);
const hookKind = typeof (await import('node:module')).registerHooks === 'function' ? 'registerHooks' : 'module.register';
console.log(`| tree | load | plain import() | importPatched | ratio (min / median) | plain import() under a no-op ${hookKind} hook |`);
console.log('|---|---|---|---|---|---|');
for (const ext of ['mjs', 'cjs']) {
  for (const when of ['first', 'later']) {
    const p = samples[`${ext} ${when} plain`];
    const x = samples[`${ext} ${when} importPatched`];
    const n = samples[`${ext} ${when} plain, no-op hook`];
    console.log(`| ${ext === 'mjs' ? 'ESM' : 'CommonJS'} | ${when} | ${f(min(p))} / ${f(median(p))} | ${f(min(x))} / ${f(median(x))} | ${(min(x) / min(p)).toFixed(2)}x / ${(median(x) / median(p)).toFixed(2)}x | ${f(min(n))} / ${f(median(n))} |`);
  }
}
console.log('\n| process startup (ms from process start to the end of the program) | ms (min / median) | vs empty program (median) |');
console.log('|---|---|---|');
const base = samples['startup: empty program'];
for (const k of Object.keys(samples).filter((k) => k.startsWith('startup'))) {
  const s = samples[k];
  console.log(`| ${k.slice(9)} | ${f(min(s))} / ${f(median(s))} | +${(median(s) - median(base)).toFixed(1)} |`);
}
