// Echo round trips per second: an evy server (serve + recv/sendall) against a raw `net` echo server,
// measured in the same run, driven by bench/loadgen.c (one epoll loop in C, so the client is not the
// bottleneck). Servers run pinned to one core and the load generator to another where taskset exists.
// Then: 10,000 idle connections held by each server, heap bytes per connection.
//   npm run bench -- echo            EVY_BENCH_REPEATS=5 EVY_BENCH_SECONDS=2 to change the run length
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summary } from './summary.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const REPEATS = Number(process.env.EVY_BENCH_REPEATS ?? 5);
const SECONDS = Number(process.env.EVY_BENCH_SECONDS ?? 2);
const IDLE = Number(process.env.EVY_BENCH_IDLE ?? 10000);

// EVY_BENCH_PIN=0 leaves placement to the scheduler (better on a machine busy with other work).
const hasTaskset = process.env.EVY_BENCH_PIN !== '0' && spawnSync('taskset', ['-c', '0', 'true']).status === 0 && cpus().length >= 2;
const pin = (core, cmd, args) => (hasTaskset ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]);

// The servers run from a snapshot of dist/ (inside the repo, so bare imports resolve): a rebuild of dist/
// during the run must not pull the files from under them.
const snap = join(here, '..', 'node_modules', '.cache', `evy-echo-bench-${process.pid}`);
if (!existsSync(join(here, '..', 'dist', 'index.js'))) {
  console.log('echo.bench: dist/ is missing: run `npm run build` (npm run bench does)');
  process.exit(1);
}
mkdirSync(join(snap, 'bench'), { recursive: true });
writeFileSync(join(snap, 'package.json'), '{ "type": "module" }\n');
cpSync(join(here, '..', 'dist'), join(snap, 'dist'), { recursive: true });
cpSync(join(here, 'echo-server.child.mjs'), join(snap, 'bench', 'echo-server.child.mjs'));
process.on('exit', () => {
  rmSync(snap, { recursive: true, force: true });
  rmSync(build, { recursive: true, force: true });
});
const childScript = join(snap, 'bench', 'echo-server.child.mjs');

const build = mkdtempSync(join(tmpdir(), 'evy-bench-'));
const loadgen = join(build, 'loadgen');
try {
  execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', loadgen, join(here, 'loadgen.c')], { stdio: 'inherit' });
} catch {
  console.log('echo.bench: no C compiler (cc) found: install gcc (listed in .ci/packages.txt) to run this benchmark');
  process.exit(1);
}

// EVY_BENCH_NODE=/path/to/node runs the servers on another Node (e.g. 24, where ALS costs no promise hooks).
const serverNode = process.env.EVY_BENCH_NODE ?? process.execPath;
const serverVersion = execFileSync(serverNode, ['--version'], { encoding: 'utf8' }).trim();

function startServer(kind) {
  const child = fork(childScript, [kind], { execArgv: ['--expose-gc'], execPath: serverNode, stdio: 'inherit' });
  // fork() cannot go through taskset: pin the forked process (all its threads) afterwards.
  if (hasTaskset) spawnSync('taskset', ['-a', '-cp', '0', String(child.pid)], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: m.port, kind }));
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
}

const stats = (server) => ask(server, 'stats');

function ask(server, what) {
  return new Promise((resolve) => {
    server.child.once('message', resolve);
    server.child.send(what);
  });
}

/** One run: round trips/s seen by the client, and the server's CPU microseconds per round trip. */
async function runLoad(server, conns, size) {
  const [cmd, args] = pin(1, loadgen, ['rr', '127.0.0.1', String(server.port), String(conns), String(size), String(SECONDS)]);
  const c0 = await ask(server, 'cpu');
  const out = JSON.parse(execFileSync(cmd, args, { encoding: 'utf8' }));
  const c1 = await ask(server, 'cpu');
  return { rate: out.rate, cpu: (c1.cpu - c0.cpu) / out.total, user: (c1.user - c0.user) / out.total, sys: (c1.system - c0.system) / out.total };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x) => Math.round(x).toLocaleString('en-US');
const pct = (x) => `${(x * 100).toFixed(1)}%`;

console.log(`servers on node ${serverVersion}, ${cpus().length} cpus, ${hasTaskset ? 'servers on cpu 0, load generator on cpu 1' : 'no taskset: unpinned'}`);
console.log(`${REPEATS} repeats x ${SECONDS}s per cell, raw and evy alternating (same run); load average ${loadavg()[0].toFixed(1)} at start\n`);

const raw = await startServer('raw');
const evy = await startServer('evy');
const rows = [];
// EVY_BENCH_CELLS=100x64,1x64 runs only those cells.
const CELLS = process.env.EVY_BENCH_CELLS
  ? process.env.EVY_BENCH_CELLS.split(',').map((c) => c.split('x').map(Number))
  : [
      [1, 64],
      [100, 64],
      [1, 16384],
      [100, 16384],
    ];
for (const [conns, size] of CELLS) {
  const runs = { raw: [], evy: [] };
  for (let i = 0; i < REPEATS; i++) {
    // alternate the order so that drift in machine load hits both sides alike
    for (const s of i % 2 === 0 ? [raw, evy] : [evy, raw]) runs[s.kind].push(await runLoad(s, conns, size));
  }
  const r = runs.raw.map((x) => x.rate);
  const e = runs.evy.map((x) => x.rate);
  const ratios = e.map((x, i) => x / r[i]);
  const cpuR = runs.raw.map((x) => x.cpu);
  const cpuE = runs.evy.map((x) => x.cpu);
  rows.push({ conns, size, r, e, ratios, cpuR, cpuE });
}

console.log('Round trips per second (client side), and the server CPU it took:');
console.log('| connections x message | raw net rt/s median (min) | evy rt/s median (min) | evy / raw median (min of paired runs) | server CPU µs per round trip raw / evy (median) |');
console.log('|---|---|---|---|---|');
for (const { conns, size, r, e, ratios, cpuR, cpuE } of rows) {
  const label = `${conns} x ${size >= 1024 ? `${size / 1024} KiB` : `${size} B`}`;
  console.log(
    `| ${label} | ${fmt(median(r))} (${fmt(Math.min(...r))}) | ${fmt(median(e))} (${fmt(Math.min(...e))}) | ` +
      `${pct(median(ratios))} (${pct(Math.min(...ratios))}) | ${median(cpuR).toFixed(1)} / ${median(cpuE).toFixed(1)} |`,
  );
}
const target = rows.find((x) => x.conns === 100 && x.size === 64);
if (target !== undefined) {
  const ok = median(target.ratios) >= 0.95;
  console.log(`\ntarget: evy >= 95% of raw at 100 x 64 B: ${ok ? 'met' : 'NOT met'} (median of paired ratios ${pct(median(target.ratios))})`);
  summary({ figure: 'echo 100 x 64 B, evy / raw net', target: '>= 0.95x', min: Math.min(...target.ratios), median: median(target.ratios), met: ok, unit: 'x' });
}

// ---- where the CPU goes (EVY_BENCH_BASELINES=0 skips) -----------------------------------------------
// The same blocking style written by hand (an async loop per connection, no evy), without and with an
// AsyncLocalStorage: separates the cost of promises/await and of ALS from evy's own bookkeeping.
if (process.env.EVY_BENCH_BASELINES !== '0') {
  const extra = [await startServer('async'), await startServer('async-als')];
  const all = [raw, extra[0], extra[1], evy];
  const res = new Map(all.map((s) => [s.kind, []]));
  for (let i = 0; i < REPEATS; i++) for (const s of i % 2 ? [...all].reverse() : all) res.get(s.kind).push(await runLoad(s, 100, 64));
  const rawRates = res.get('raw').map((x) => x.rate);
  console.log('\nThe blocking style without evy, at 100 x 64 B (an async loop per connection awaiting one promise per read):');
  console.log('| server | rt/s median (min) | / raw, median of paired runs | server CPU µs per round trip, min (median) | of which user / system (median) |');
  console.log('|---|---|---|---|---|');
  for (const s of all) {
    const r = res.get(s.kind);
    const rates = r.map((x) => x.rate);
    const cpu = r.map((x) => x.cpu);
    const name = { raw: 'raw net', async: 'async loop', 'async-als': 'async loop in ALS', evy: 'evy' }[s.kind];
    console.log(
      `| ${name} | ${fmt(median(rates))} (${fmt(Math.min(...rates))}) | ${pct(median(rates.map((x, i) => x / rawRates[i])))} | ${Math.min(...cpu).toFixed(1)} (${median(cpu).toFixed(1)}) | ` +
        `${median(r.map((x) => x.user)).toFixed(2)} / ${median(r.map((x) => x.sys)).toFixed(2)} |`,
    );
  }
  for (const s of extra) s.child.disconnect();
}

// ---- idle connections ----------------------------------------------------------------------------
async function idle(server) {
  const before = await stats(server);
  const [cmd, args] = pin(1, loadgen, ['idle', '127.0.0.1', String(server.port), String(IDLE)]);
  const lg = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    lg.stdout.on('data', (d) => String(d).includes('connected') && resolve());
    lg.once('exit', (code) => reject(new Error(`loadgen idle exited with ${code}`)));
  });
  let s = await stats(server);
  for (let i = 0; i < 200 && s.conns < IDLE; i++) {
    await new Promise((r) => setTimeout(r, 50));
    s = await stats(server);
  }
  lg.stdin.end();
  await new Promise((r) => lg.once('exit', r));
  return { conns: s.conns, heap: (s.heapUsed - before.heapUsed) / s.conns, rss: (s.rss - before.rss) / s.conns };
}

if (IDLE > 0) {
  console.log(`\n${IDLE.toLocaleString('en-US')} idle connections held by one server (after a full GC):`);
  console.log('| server | connections held | heap bytes / connection | RSS bytes / connection |');
  console.log('|---|---|---|---|');
  for (const server of [raw, evy]) {
    const x = await idle(server);
    console.log(`| ${server.kind === 'raw' ? 'raw net' : 'evy serve + recv'} | ${x.conns.toLocaleString('en-US')} | ${fmt(x.heap)} | ${fmt(x.rss)} |`);
  }
}

console.log(`\nload average ${loadavg()[0].toFixed(1)} at the end (other work on the machine makes every figure noisier)`);
for (const s of [raw, evy]) s.child.disconnect();
