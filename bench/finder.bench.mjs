// How evy finds the database clients as they load (issue 22, "Shape"): what each way costs at startup, in
// bench/startup.bench.mjs's way (fresh processes, interleaved; the preload timed inside the process too).
// The app loads pg, mysql2 and ioredis (CommonJS: 183 files, 476 require() calls), as a CJS app and as an
// ESM app. The finders, each installed alone by a preload, watching the same files:
// - ext: evy's, a wrapper on the CommonJS '.js' loader (Module._extensions['.js']) testing each file's path;
// - ritm: require-in-the-middle 8 (OpenTelemetry's), a Hook on 'pg', 'mysql2' and 'ioredis' with internals.
// Beside them: an empty preload (the floor of any --import) and the whole `--import evy/register`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = process.env.EVY_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 21);
const REGISTER = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).exports['./register'].import.default);
const req = createRequire(join(ROOT, 'package.json'));
const dir = mkdtempSync(join(tmpdir(), 'evy-finder-'));
const q = (p) => JSON.stringify(p);

// The app: loads the three clients, and reports how long that took (the finders' per-file cost lands here).
const libs = ['pg', 'mysql2', 'ioredis'].map((m) => req.resolve(m));
const report = "process.stdout.write('EVYAPP ' + (performance.now() - t) + ' ' + cpu(c) + '\\n');";
const cpuFn = 'const cpu = (c) => { const u = process.cpuUsage(c); return (u.user + u.system) / 1000; };';
writeFileSync(join(dir, 'app.cjs'), `${cpuFn}\nconst t = performance.now();\nconst c = process.cpuUsage();\n${libs.map((l) => `require(${q(l)});`).join('\n')}\n${report}\n`);
writeFileSync(
  join(dir, 'app.mjs'),
  `${cpuFn}\nconst t = performance.now();\nconst c = process.cpuUsage();\n${libs.map((l, i) => `const m${i} = await import(${q(pathToFileURL(l).href)});`).join('\n')}\n${report}\n`,
);
writeFileSync(join(dir, 'empty.mjs'), '');
// The same path tests evy makes, through each mechanism; the patch itself is left out (the same for both).
const FILES = String.raw`/[\\/]node_modules[\\/](?:pg[\\/]lib[\\/]client|mysql2[\\/]lib[\\/](?:base[\\/])?connection|ioredis[\\/]built[\\/](?:Redis|Pipeline))\.js$/`;
writeFileSync(
  join(dir, 'ext.mjs'),
  `const Module = process.getBuiltinModule('module');\nconst re = ${FILES};\nlet seen = 0;\nconst loadJs = Module._extensions['.js'];\n` +
    `Module._extensions['.js'] = function (m, file) { const r = loadJs.call(this, m, file); if (re.test(file)) seen++; return r; };\n`,
);
writeFileSync(
  join(dir, 'ritm.mjs'),
  `import { createRequire } from 'node:module';\nconst { Hook } = createRequire(${q(join(ROOT, 'package.json'))})('require-in-the-middle');\nconst re = ${FILES};\nlet seen = 0;\n` +
    `new Hook(['pg', 'mysql2', 'ioredis'], { internals: true }, (exports, name, basedir) => { if (re.test(basedir + '/' + name.split('/').slice(1).join('/'))) seen++; return exports; });\n`,
);
writeFileSync(join(dir, 't0.mjs'), 'globalThis.__evyT0 = performance.now();\nglobalThis.__evyC0 = process.cpuUsage();\n');
writeFileSync(
  join(dir, 't1.mjs'),
  "const u = process.cpuUsage(globalThis.__evyC0);\nprocess.stdout.write('EVYT ' + (performance.now() - globalThis.__evyT0) + ' ' + (u.user + u.system) / 1000 + '\\n');\n",
);

const configs = [
  ['--import ./empty.mjs (floor)', join(dir, 'empty.mjs')],
  ['--import ext.mjs (the .js loader wrapper alone)', join(dir, 'ext.mjs')],
  ['--import ritm.mjs (require-in-the-middle alone)', join(dir, 'ritm.mjs')],
  ['--import evy/register (ext inside)', REGISTER],
];
const apps = ['app.cjs', 'app.mjs'];
// [app][config] -> wall time of the process, the preload alone and the app's loading of the clients (elapsed
// and CPU, timed inside the process: CPU time is the least exposed to a loaded machine)
const data = apps.map(() => configs.map(() => ({ wall: [], preload: [], load: [], preloadCpu: [], loadCpu: [] })));

function once(a, c, record) {
  const args = ['--import', join(dir, 't0.mjs'), '--import', configs[c][1], '--import', join(dir, 't1.mjs'), join(dir, apps[a])];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: '' }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  if (!record) return;
  const d = data[a][c];
  d.wall.push(ms);
  const p = /EVYT ([\d.]+) ([\d.]+)/.exec(r.stdout);
  const l = /EVYAPP ([\d.]+) ([\d.]+)/.exec(r.stdout);
  d.preload.push(Number(p[1]));
  d.preloadCpu.push(Number(p[2]));
  d.load.push(Number(l[1]));
  d.loadCpu.push(Number(l[2]));
}

for (let a = 0; a < apps.length; a++) for (let c = 0; c < configs.length; c++) once(a, c, false); // warm the file cache
for (let r = 0; r < RUNS; r++) for (let a = 0; a < apps.length; a++) for (let c = 0; c < configs.length; c++) once(a, c, true);
rmSync(dir, { recursive: true, force: true });

const stats = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
console.log(`Node ${process.version}, ${RUNS} interleaved runs; ms, min / median`);
const f = (x) => `${x.min.toFixed(2)} / ${x.median.toFixed(2)}`;
const plus = (x, b) => {
  const g = (v) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
  return `${g(x.min - b.min)} / ${g(x.median - b.median)}`;
};
for (let a = 0; a < apps.length; a++) {
  console.log(`\n${apps[a]}: loads pg, mysql2 and ioredis. Elapsed and CPU (user + system) timed inside the process; "+" is over the empty preload`);
  console.log('| preload | preload alone | clients loading | preload + loading | + elapsed | CPU: preload + loading | + CPU | whole process |');
  console.log('|---|---|---|---|---|---|---|---|');
  const both = (d, k1, k2) => stats(d[k1].map((v, i) => v + d[k2][i]));
  const base = data[a][0];
  configs.forEach(([name], c) => {
    const d = data[a][c];
    const el = both(d, 'preload', 'load');
    const cpu = both(d, 'preloadCpu', 'loadCpu');
    const pl = c === 0 ? '-' : plus(el, both(base, 'preload', 'load'));
    const pc = c === 0 ? '-' : plus(cpu, both(base, 'preloadCpu', 'loadCpu'));
    console.log(`| ${name} | ${f(stats(d.preload))} | ${f(stats(d.load))} | ${f(el)} | ${pl} | ${f(cpu)} | ${pc} | ${f(stats(d.wall))} |`);
  });
}
