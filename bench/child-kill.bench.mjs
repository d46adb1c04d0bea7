// Killing threads that own child process trees: how long the event loop is blocked, and how long until every
// process of the trees is gone. N threads (1, 4, 16) each own `sh -c 'sleep M & sleep M'` (a shell with two
// children) and are killed together. Beside it, in the same run and the same process, the baseline: the
// freeze evy used before (copied below, unchanged in what it does: a synchronous freeze that scans all of
// /proc with readFileSync and busy-waits until each process is stopped), applied to the same trees.
//
// The loop is measured by a 1 ms timer chain (a drift probe): the longest gap between two of its turns (wall)
// and the most CPU time the process spent between two of them (what a machine's load does not inflate). The
// process runs on CPU 0 and the trees on CPU 1 where taskset exists. Interleaved rounds; min and median.
import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import childProcess from 'node:child_process';
import fs from 'node:fs';
import { cpus, loadavg } from 'node:os';
import * as evy from '../dist/index.js';
import { summary } from './summary.mjs';

const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return cpus().length > 1;
  } catch {
    return false;
  }
})();
async function main() {
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
  const SIZES = (process.env.BENCH_TREES ?? '1,4,16').split(',').map(Number);
  evy.monkeyPatch({ child_process: true });
  const procs = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).length;
  console.log(
    `Killing N threads that each own sh -c 'sleep M & sleep M', Node ${process.version}, ${hasTaskset ? 'bench on CPU 0, trees on CPU 1' : 'no taskset: unpinned'}, ` +
      `${ROUNDS} interleaved rounds, ${procs} processes in /proc, load average ${loadavg()[0].toFixed(1)} at start\n`,
  );
  const rows = [];
  for (const n of SIZES) {
    const res = { old: [], evy: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const kind of r % 2 === 0 ? ['old', 'evy'] : ['evy', 'old']) res[kind].push(await once(kind, n, `3${r}.${n}${kind === 'old' ? 1 : 2}${process.pid}`));
    }
    rows.push([n, res]);
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const mm = (xs) => `${Math.min(...xs).toFixed(1)} / ${median(xs).toFixed(1)}`;
  console.log('| threads killed | freeze | longest loop block, wall (ms) | most CPU in one turn (ms) | kill() call (ms) | until every process is gone (ms) | processes left |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [n, res] of rows) {
    for (const kind of ['old', 'evy']) {
      const xs = res[kind];
      const name = kind === 'old' ? 'before (synchronous, full /proc scans)' : 'evy (rounds on later turns)';
      console.log(`| ${n} | ${name} | ${mm(xs.map((x) => x.gap))} | ${mm(xs.map((x) => x.cpu))} | ${mm(xs.map((x) => x.kill))} | ${mm(xs.map((x) => x.gone))} | ${xs.reduce((a, x) => a + x.left, 0)} |`);
    }
  }
  console.log('(min / median)');
  for (const [n, res] of rows) {
    const gap = res.evy.map((x) => x.gap);
    const cpu = res.evy.map((x) => x.cpu);
    summary({ figure: `kill of ${n} threads owning a shell tree: longest loop block (wall ms)`, target: 'a few ms', min: Math.min(...gap), median: median(gap), met: median(cpu) <= 5, unit: 'ms' });
    const ratio = res.evy.map((x, i) => x.gone / res.old[i].gone);
    summary({ figure: `kill of ${n} threads owning a shell tree: time until gone, evy / before`, target: '<= 1x', min: Math.min(...ratio), median: median(ratio), met: median(ratio) <= 1.1, unit: 'x' });
  }
  process.exit(0);
}

/** One measurement: N trees started, then killed (evy: through their threads; old: the copied freeze). */
async function once(kind, n, mark) {
  const threads = [];
  const children = [];
  for (let i = 0; i < n; i++) {
    threads.push(
      evy.spawn(async () => {
        const args = ['sh', '-c', `sleep ${mark} & sleep ${mark}`];
        const start = () => (hasTaskset ? childProcess.spawn('taskset', ['-c', '1', ...args]) : childProcess.spawn(args[0], args.slice(1)));
        children.push(kind === 'old' ? evy.unowned(start) : start());
        await evy.sleep(60);
      }),
    );
  }
  // Every tree complete (both sleeps running) before the kill.
  const pids = () => children.flatMap((c) => [c.pid, ...kidsOf(c.pid)]);
  for (const t0 = performance.now(); pids().length < 3 * n; await evy.sleep(0.005)) {
    if (performance.now() - t0 > 10_000) throw new Error(`only ${pids().length} of ${3 * n} processes started`);
  }
  const all = pids();
  await evy.sleep(0.03);

  const probe = startProbe();
  await evy.sleep(0.02);
  const t0 = performance.now();
  if (kind === 'old') {
    for (const t of threads) t.kill();
    for (const c of children) oldTerminate(c);
  } else {
    for (const t of threads) t.kill();
  }
  const kill = performance.now() - t0;
  while (all.some(running) && performance.now() - t0 < 5000) await evy.sleep(0.002);
  const gone = performance.now() - t0;
  await evy.sleep(0.01); // one more turn of the probe after the last look
  const { gap, cpu } = probe.stop();
  const left = all.filter(running);
  for (const pid of left) signal(pid, 'SIGKILL');
  await evy.sleep(0.05);
  return { gap, cpu, kill, gone, left: left.length };
}

function startProbe() {
  let gap = 0;
  let cpu = 0;
  let on = true;
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  const tick = () => {
    const now = performance.now();
    const c = process.cpuUsage(lastCpu);
    gap = Math.max(gap, now - last);
    cpu = Math.max(cpu, (c.user + c.system) / 1000);
    last = now;
    lastCpu = process.cpuUsage();
    if (on) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  return {
    stop() {
      on = false;
      return { gap, cpu };
    },
  };
}

// ---- small /proc reads (open/read/close: readFileSync of a /proc file costs ~10x) ----------------------

const buf = Buffer.alloc(4096);
function readProc(path) {
  let fd;
  try {
    fd = fs.openSync(path, 'r');
    return buf.toString('latin1', 0, fs.readSync(fd, buf, 0, buf.length, 0));
  } catch {
    return null;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function kidsOf(pid) {
  const list = readProc(`/proc/${pid}/task/${pid}/children`);
  return list === null ? [] : list.split(' ').filter((s) => s.trim() !== '').map(Number);
}

function running(pid) {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return false;
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state !== 'Z' && state !== 'X';
}

// ---- the baseline: evy's freeze before it ran on later turns (src/patching/child-process.ts at b6e17e5) ----

const CHILD_KILL_GRACE_MS = 1000;
const FREEZE_MAX_MS = 500;
const pause = new Int32Array(new SharedArrayBuffer(4));

function oldTerminate(c) {
  const tree = c.pid === undefined ? [] : freeze(c.pid);
  for (const pid of tree) signal(pid, blocksSigterm(pid) ? 'SIGKILL' : 'SIGTERM');
  for (const pid of tree) signal(pid, 'SIGCONT');
  const timer = setTimeout(() => {
    for (const pid of tree) signal(pid, 'SIGKILL');
  }, CHILD_KILL_GRACE_MS);
  const check = () => {
    if (tree.some(isAlive)) setTimeout(check, 10).unref();
    else clearTimeout(timer);
  };
  c.once('exit', check);
}

function freeze(root) {
  signal(root, 'SIGSTOP');
  const seen = new Set([root]);
  const deadline = Date.now() + FREEZE_MAX_MS;
  for (;;) {
    const settled = awaitStopped([...seen], deadline);
    let fresh = false;
    for (const pid of descendants(root, seen)) {
      if (seen.has(pid)) continue;
      seen.add(pid);
      signal(pid, 'SIGSTOP');
      fresh = true;
    }
    if ((settled && !fresh) || Date.now() >= deadline) return [...seen];
  }
}

function awaitStopped(pids, deadline) {
  for (;;) {
    if (pids.every(stoppedOrGone)) return true;
    if (Date.now() >= deadline) return false;
    Atomics.wait(pause, 0, 0, 0.2);
  }
}

function blocksSigterm(pid) {
  let status;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return false;
  }
  const m = /\nSigBlk:\s*([0-9a-f]+)/.exec(status);
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << 14n)) !== 0n;
}

function stoppedOrGone(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return true;
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state === 'T' || state === 't' || state === 'Z' || state === 'X';
}

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return !(state === 'Z' || state === 'X');
  } catch {
    return false;
  }
}

function descendants(pid, known = new Set()) {
  const children = new Map();
  for (const name of fs.readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ', 2)[1]);
    let list = children.get(ppid);
    if (list === undefined) children.set(ppid, (list = []));
    list.push(Number(name));
  }
  const out = [];
  const queue = [pid, ...known];
  while (queue.length > 0) {
    const kids = children.get(queue.shift());
    if (kids === undefined) continue;
    out.push(...kids);
    queue.push(...kids);
  }
  return out;
}

if (hasTaskset && process.env.EVY_BENCH_PINNED !== '1') {
  // Pin this process to CPU 0 (its children are spawned on CPU 1).
  const r = spawnProcess('taskset', ['-c', '0', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, EVY_BENCH_PINNED: '1' },
  });
  r.on('exit', (code) => process.exit(code ?? 1));
} else {
  await main();
}
