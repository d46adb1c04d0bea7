// Startup of a 50-module ESM app: plain `node app.mjs` vs `node --import evy/register app.mjs`, measured in
// the same run, interleaved (so machine noise hits both alike). Target: register adds <= 3 ms.
// Also shown: EVY_PATCH=none (the cost of loading evy's register entry alone).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summary } from './summary.mjs';

// EVY_ROOT: measure another checkout or a snapshot of the build (default: this one).
const ROOT = process.env.EVY_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 21);
// What `--import evy/register` resolves to through the package's exports map (the app here sits outside the package).
const REGISTER = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).exports['./register'].import.default);
const dir = mkdtempSync(join(tmpdir(), 'evy-startup-'));

// 50 small modules, each importing a builtin, and an entry that imports them all (and node:http, as a
// typical server does: it loads net, which register defers to the first spawn).
for (let i = 0; i < 50; i++) {
  writeFileSync(join(dir, `m${i}.mjs`), `import { join } from 'node:path';\nexport const v${i} = join('a', '${i}').length + ${i};\n`);
}
writeFileSync(
  join(dir, 'app.mjs'),
  `import 'node:http';\n${Array.from({ length: 50 }, (_, i) => `import { v${i} } from './m${i}.mjs';`).join('\n')}\n` +
    `const sum = ${Array.from({ length: 50 }, (_, i) => `v${i}`).join(' + ')};\nif (sum < 0) console.log(sum);\n`,
);

writeFileSync(join(dir, 'empty.mjs'), '');
// What the full patch makes Node load that this app does not (the app's node:http already loads net).
writeFileSync(join(dir, 'builtins.mjs'), "for (const m of ['net', 'fs/promises', 'child_process', 'timers/promises', 'module']) process.getBuiltinModule(m);\n");
// Node's on-disk compile cache (22.1+), the user's choice: evy never turns it on for an app.
const cacheDir = join(dir, 'compile-cache');
const hasCompileCache = typeof process.getBuiltinModule('module').enableCompileCache === 'function';
const configs = [
  ['node app.mjs', [], {}],
  ['node --import ./empty.mjs app.mjs (floor of any --import)', ['--import', join(dir, 'empty.mjs')], {}],
  ['node --import evy/register app.mjs', ['--import', REGISTER], {}],
  ['same, EVY_PATCH=none', ['--import', REGISTER], { EVY_PATCH: 'none' }],
  ...(hasCompileCache
    ? [
        ['node app.mjs, NODE_COMPILE_CACHE', [], { NODE_COMPILE_CACHE: cacheDir }],
        ['node --import evy/register app.mjs, NODE_COMPILE_CACHE', ['--import', REGISTER], { NODE_COMPILE_CACHE: cacheDir }],
      ]
    : []),
];
const times = configs.map(() => []);
const cpu = configs.map(() => []);
// CPU time (user + system) of the child, from GNU time when present: far less sensitive than wall time
// to other work on a shared machine.
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function once(args, env, c) {
  const cmd = TIME ?? process.execPath;
  const argv = TIME ? ['-f', 'EVYCPU %U %S', process.execPath, ...args, join(dir, 'app.mjs')] : [...args, join(dir, 'app.mjs')];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { env: { ...process.env, NODE_OPTIONS: '', ...env }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  if (c !== undefined) {
    times[c].push(ms);
    const m = /EVYCPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
    if (m) cpu[c].push((Number(m[1]) + Number(m[2])) * 1000);
  }
}

for (const [, args, env] of configs) once(args, env); // warm the file cache
for (let r = 0; r < RUNS; r++) {
  for (let c = 0; c < configs.length; c++) once(configs[c][1], configs[c][2], c);
}
// The register entry's own cost, timed inside the process between two preloads (far less exposed to
// scheduling noise than a whole process): `--import t0 --import <entry> --import t1`.
writeFileSync(join(dir, 't0.mjs'), 'globalThis.__evyT0 = performance.now();\n');
writeFileSync(join(dir, 't1.mjs'), "process.stdout.write('EVYT ' + (performance.now() - globalThis.__evyT0) + '\\n');\n");
const inner = [
  ['--import ./empty.mjs', join(dir, 'empty.mjs'), {}],
  ['--import evy/register', REGISTER, {}],
  ['--import evy/register, EVY_PATCH=none', REGISTER, { EVY_PATCH: 'none' }],
  ['--import ./builtins.mjs (only the builtins the full patch loads)', join(dir, 'builtins.mjs'), {}],
];
const innerTimes = inner.map(() => []);
for (let r = 0; r < RUNS; r++) {
  inner.forEach(([, entry, env], c) => {
    const res = spawnSync(process.execPath, ['--import', join(dir, 't0.mjs'), '--import', entry, '--import', join(dir, 't1.mjs'), join(dir, 'app.mjs')], {
      env: { ...process.env, NODE_OPTIONS: '', ...env },
      encoding: 'utf8',
    });
    innerTimes[c].push(Number(/EVYT ([\d.]+)/.exec(res.stdout)[1]));
  });
}
rmSync(dir, { recursive: true, force: true });

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
function table(title, data) {
  const base = stats(data[0]);
  console.log(`\n${title}`);
  console.log('| configuration | min | median | + ms (min) | + ms (median) | ratio (min) | ratio (median) |');
  console.log('|---|---|---|---|---|---|---|');
  configs.forEach(([name], c) => {
    const s = stats(data[c]);
    const d = (x) => (c === 0 ? '-' : (x >= 0 ? '+' : '') + x.toFixed(1));
    console.log(
      `| ${name} | ${s.min.toFixed(1)} | ${s.median.toFixed(1)} | ${d(s.min - base.min)} | ${d(s.median - base.median)} | ` +
        `${(s.min / base.min).toFixed(3)} | ${(s.median / base.median).toFixed(3)} |`,
    );
  });
}
console.log(`Node ${process.version}, ${RUNS} interleaved runs of each configuration`);
table('Wall time per process, spawn to exit (ms)', times);
if (cpu[0].length > 0) table('CPU time per process, user + system (ms; GNU time, 10 ms resolution)', cpu);
{
  const base = stats(innerTimes[0]);
  console.log('\nThe preload alone, timed inside the process from the preload before it to the one after it (ms)');
  console.log('| preload | min | median | + ms (min) | + ms (median) |');
  console.log('|---|---|---|---|---|');
  inner.forEach(([name], c) => {
    const s = stats(innerTimes[c]);
    const d = (x) => (c === 0 ? '-' : (x >= 0 ? '+' : '') + x.toFixed(2));
    console.log(`| ${name} | ${s.min.toFixed(2)} | ${s.median.toFixed(2)} | ${d(s.min - base.min)} | ${d(s.median - base.median)} |`);
  });
}
{
  const plain = stats(times[0]);
  const reg = stats(times[2]);
  const d = reg.median - plain.median;
  summary({ figure: 'startup, --import evy/register vs plain node (wall, ms)', target: '<= +3 ms', min: reg.min - plain.min, median: d, met: d <= 3, unit: 'ms' });
}
