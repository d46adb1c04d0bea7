// Requests per second of an unchanged hello-world keep-alive server (node:http, and Express) under
// `node --import evy/register` (request threads on) against the same server without evy, measured in the same
// run: fresh server processes, interleaved, each driven by wrk for a few seconds (req/s, and the server's CPU
// time per request). The server is pinned to CPU 0 and wrk to CPU 1 where taskset exists. Then the request
// thread alone, with no I/O: CPU per emitted request and heap per request held in flight (held over sockets,
// the heap figure drowned in the sockets' own variation: measured without them).
//   npm run bench -- http-server     EVY_BENCH_REPEATS=7 EVY_BENCH_SECONDS=3 EVY_BENCH_CONNS=32
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summary } from './summary.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const REPEATS = Number(process.env.EVY_BENCH_REPEATS ?? 5);
const SECONDS = Number(process.env.EVY_BENCH_SECONDS ?? 3);
const CONNS = Number(process.env.EVY_BENCH_CONNS ?? 32);

if (spawnSync('wrk', ['--version']).error !== undefined) {
  console.log('http-server.bench: wrk not found (apt-get install wrk): skipped');
  process.exit(0);
}
const hasTaskset = process.env.EVY_BENCH_PIN !== '0' && spawnSync('taskset', ['-c', '0', 'true']).status === 0 && cpus().length >= 2;
const pin = (core, cmd, args) => (hasTaskset ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]);

// The servers run from a snapshot inside the repo (bare imports resolve; a rebuild cannot pull files from under them).
const root = join(here, '..');
const snap = join(root, 'node_modules', '.cache', `evy-http-server-bench-${process.pid}`);
if (!existsSync(join(root, 'dist', 'register-esm.js'))) {
  console.log('http-server.bench: dist/ is missing: run `npm run build` (npm run bench does)');
  process.exit(1);
}
mkdirSync(join(snap, 'bench'), { recursive: true });
for (const f of ['package.json', 'register.mjs', 'dist']) cpSync(join(root, f), join(snap, f), { recursive: true });
cpSync(join(here, 'http-server.child.mjs'), join(snap, 'bench', 'http-server.child.mjs'));
cpSync(join(here, 'http-emit.child.mjs'), join(snap, 'bench', 'http-emit.child.mjs'));
process.on('exit', () => rmSync(snap, { recursive: true, force: true }));
const script = join(snap, 'bench', 'http-server.child.mjs');

const serverNode = process.env.EVY_BENCH_NODE ?? process.execPath;
const serverVersion = execFileSync(serverNode, ['--version'], { encoding: 'utf8' }).trim();

const CONFIGS = [
  { name: 'node:http, no evy', kind: 'node', evy: false },
  { name: 'node:http, --import evy/register (request threads)', kind: 'node', evy: true },
  { name: 'node:http, --import evy/register, EVY_PATCH without http', kind: 'node', evy: true, env: { EVY_PATCH: 'net,tls,timers,fs,child_process' } },
  { name: 'Express, no evy', kind: 'express', evy: false },
  { name: 'Express, --import evy/register (request threads)', kind: 'express', evy: true },
];

function startServer(c) {
  const args = [...(c.evy ? ['--import', join(snap, 'register.mjs')] : []), '--expose-gc', script, c.kind];
  const [cmd, argv] = pin(0, serverNode, args);
  const proc = spawn(cmd, argv, { cwd: snap, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...(c.env ?? {}) } });
  return new Promise((resolve, reject) => {
    proc.stdout.once('data', (d) => resolve({ proc, port: Number(String(d).trim()) }));
    proc.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
}

async function stop(s) {
  s.proc.kill('SIGKILL');
  await new Promise((r) => s.proc.once('exit', r));
}

/** utime + stime of a process, in ms (/proc; 10 ms ticks): CPU time is what contention on a shared machine distorts least. */
function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

function wrk(port, seconds, pid) {
  const [cmd, argv] = pin(1, 'wrk', ['-t1', `-c${CONNS}`, `-d${seconds}s`, `http://127.0.0.1:${port}/`]);
  const cpu0 = cpuMs(pid);
  const out = execFileSync(cmd, argv, { encoding: 'utf8' });
  const cpu = cpuMs(pid) - cpu0;
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const n = /(\d+) requests in/.exec(out);
  if (m === null || n === null) throw new Error(`wrk said:\n${out}`);
  return { rps: Number(m[1]), cpuUs: (cpu * 1000) / Number(n[1]) };
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const rps = new Map(CONFIGS.map((c) => [c.name, []]));
const cpu = new Map(CONFIGS.map((c) => [c.name, []]));
console.log(`Requests per second, hello world, keep-alive, wrk -c${CONNS} for ${SECONDS} s (${REPEATS} rounds, interleaved), ${serverVersion}, ${hasTaskset ? 'server on CPU 0, wrk on CPU 1' : 'not pinned'}, load average ${loadavg()[0].toFixed(1)}`);
for (let r = 0; r < REPEATS; r++) {
  // Every other round in reverse order: a load that drifts during a round weighs on both ends alike.
  for (const c of r % 2 === 0 ? CONFIGS : [...CONFIGS].reverse()) {
    const s = await startServer(c);
    wrk(s.port, 1, s.proc.pid); // warm-up
    const r = wrk(s.port, SECONDS, s.proc.pid);
    rps.get(c.name).push(r.rps);
    cpu.get(c.name).push(r.cpuUs);
    await stop(s);
  }
}
console.log(`(load average at the end of the rounds: ${loadavg()[0].toFixed(1)})`);
const f = (n) => Math.round(n).toLocaleString('en-US');
// The ratio uses rounds, not pooled figures: round r of evy against round r of its baseline (adjacent in time).
const ratios = (evy, base) => rps.get(evy).map((v, i) => v / rps.get(base)[i]);
console.log('| configuration | min | median | ratio to no evy (min / median of per-round ratios) |');
console.log('|---|---|---|---|');
const baseOf = (c) => (c.kind === 'node' ? CONFIGS[0].name : CONFIGS[3].name);
for (const c of CONFIGS) {
  const v = rps.get(c.name);
  const rr = c.evy ? ratios(c.name, baseOf(c)) : null;
  console.log(`| ${c.name} | ${f(Math.min(...v))} | ${f(median(v))} | ${rr === null ? '-' : `${Math.min(...rr).toFixed(3)} / ${median(rr).toFixed(3)}`} |`);
}
console.log(`\nServer CPU time per request, µs (user + system, /proc; the figure contention distorts least): min / median`);
console.log('| configuration | min | median | requests per CPU second, ratio to no evy (min / median of per-round ratios) |');
console.log('|---|---|---|---|');
// Requests per CPU second is the inverse of CPU per request: a ratio >= 0.95 means evy costs <= ~5% more CPU.
const cpuRatios = (evy, base) => cpu.get(evy).map((v, i) => cpu.get(base)[i] / v);
for (const c of CONFIGS) {
  const v = cpu.get(c.name);
  const rr = c.evy ? cpuRatios(c.name, baseOf(c)) : null;
  console.log(`| ${c.name} | ${Math.min(...v).toFixed(1)} | ${median(v).toFixed(1)} | ${rr === null ? '-' : `${Math.min(...rr).toFixed(3)} / ${median(rr).toFixed(3)}`} |`);
}
for (const [evy, base, label] of [[CONFIGS[1].name, CONFIGS[0].name, 'node:http'], [CONFIGS[4].name, CONFIGS[3].name, 'Express']]) {
  const rr = ratios(evy, base);
  summary({ figure: `${label} hello world req/s, request threads / no evy`, target: '>= 0.95x', min: Math.min(...rr), median: median(rr), met: median(rr) >= 0.95, unit: 'x' });
  const cr = cpuRatios(evy, base);
  summary({ figure: `${label} hello world requests per CPU second, request threads / no evy`, target: '>= 0.95x', min: Math.min(...cr), median: median(cr), met: median(cr) >= 0.95, unit: 'x' });
}

// ---- the request thread alone: 'request' emitted with no I/O ----
{
  const emitScript = join(snap, 'bench', 'http-emit.child.mjs');
  const run = (mode) => execFileSync(...pin(0, serverNode, ['--expose-gc', emitScript, mode, join(snap, 'dist', 'index.js')]), { encoding: 'utf8' }).trim().split(' ').map(Number);
  const plain = [];
  const threads = [];
  const heapPlain = [];
  const heapThreads = [];
  for (let r = 0; r < REPEATS; r++) {
    const [a, ha] = run('plain');
    const [b, hb] = run('evy');
    plain.push(a);
    threads.push(b);
    heapPlain.push(ha);
    heapThreads.push(hb);
  }
  console.log(`\nCPU µs per 'request' emitted in a loop with no I/O (answered synchronously), ${REPEATS} processes each, interleaved: min / median`);
  console.log('| configuration | min | median | + µs (min / median) |');
  console.log('|---|---|---|---|');
  console.log(`| no evy | ${Math.min(...plain).toFixed(2)} | ${median(plain).toFixed(2)} | - |`);
  console.log(`| request threads | ${Math.min(...threads).toFixed(2)} | ${median(threads).toFixed(2)} | +${(Math.min(...threads) - Math.min(...plain)).toFixed(2)} / +${(median(threads) - median(plain)).toFixed(2)} |`);
  console.log(`\nHeap per request held in flight (20,000 emitted, never answered; no sockets), bytes, median of ${REPEATS}: no evy ${f(median(heapPlain))}, request threads ${f(median(heapThreads))}: a request thread costs ${f(median(heapThreads) - median(heapPlain))} B`);
  summary({ figure: 'heap per in-flight request thread', target: 'reported', min: median(heapThreads) - median(heapPlain), median: median(heapThreads) - median(heapPlain), met: true, unit: 'B' });
}
