// The children of running tests outlive a test process that dies without running any code (SIGKILL: vitest
// 5's watchdog when vitest dies, vitest's own SIGKILL of a worker slow to stop, the OOM killer). So the first
// time a test starts a child, a small reaper process is started beside the test process: it is told each
// running test's child (pid and start time, against pid reuse), and when its stdin reaches its end (the test
// process is gone, however it died) it ends what is still there, with its descendants: SIGTERM, then SIGKILL
// after 1 s. Linux only (it reads /proc). It holds nothing of the test process (unref'd), ignores the
// terminal's signals (its own process group: Ctrl-C must not end it before the test process) and exits once
// it has done its work.
import { unowned } from '../ownership.js';

const fs = process.getBuiltinModule('fs') as typeof import('node:fs');

// Runs in a plain `node -e`: no evy, nothing but /proc and signals.
const SOURCE = String.raw`
const fs = require('fs');
const pids = new Map();
let buf = '';
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => {});
const stat = (pid) => { try { const t = fs.readFileSync('/proc/' + pid + '/stat', 'latin1'); return t.slice(t.lastIndexOf(')') + 2).split(' '); } catch { return null; } };
const alive = (pid) => { const f = stat(pid); return f !== null && f[0] !== 'Z' && f[0] !== 'X'; };
const sig = (pid, s) => { try { process.kill(pid, s); } catch {} };
process.stdin.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
    const [pid, start] = buf.slice(1, i).split(' ');
    if (buf[0] === '+') pids.set(Number(pid), start); else pids.delete(Number(pid));
  }
});
process.stdin.on('end', () => {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    const f = /^\d+$/.test(d) ? stat(d) : null;
    if (f === null) continue;
    if (!kids.has(Number(f[1]))) kids.set(Number(f[1]), []);
    kids.get(Number(f[1])).push(Number(d));
  }
  const tree = [];
  for (const [pid, start] of pids) {
    if (stat(pid)?.[19] !== start) continue; // gone, or the pid was reused
    for (const q = [pid]; q.length > 0; ) { const p = q.shift(); tree.push(p); q.push(...(kids.get(p) || [])); }
  }
  for (const p of tree) sig(p, 'SIGTERM');
  const t0 = Date.now();
  const check = () => {
    const left = tree.filter(alive);
    if (left.length > 0 && Date.now() - t0 < 1000) return void setTimeout(check, 20);
    for (const p of left) sig(p, 'SIGKILL');
    process.exit(0);
  };
  check();
});
`;

let reaper: import('node:child_process').ChildProcess | null | undefined;

/** /proc's start time of `pid` (clock ticks since boot), or null. */
function startOf(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function send(line: string): void {
  if (reaper === undefined) {
    reaper = null;
    if (process.platform !== 'linux') return;
    const cp = process.getBuiltinModule('child_process') as typeof import('node:child_process');
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // no --import of an adapter into the reaper
    try {
      reaper = unowned(() => cp.spawn(process.execPath, ['-e', SOURCE], { stdio: ['pipe', 'ignore', 'ignore'], detached: true, env }));
      reaper.on('error', () => (reaper = null));
      reaper.stdin!.on('error', () => (reaper = null));
      reaper.unref();
      (reaper.stdin as unknown as { unref?: () => void }).unref?.();
    } catch {
      reaper = null;
    }
  }
  if (reaper !== null && reaper.stdin?.writable === true) reaper.stdin.write(line);
}

/** A running test started `child`: ended by the reaper if the test process dies while it runs. */
export function guardChild(child: { pid?: number; once(e: 'exit', l: () => void): unknown }): void {
  const pid = child.pid;
  if (pid === undefined) return;
  const st = startOf(pid);
  if (st === null) return;
  send(`+${pid} ${st}\n`);
  child.once('exit', () => releaseChild(pid));
}

/** The child exited, or its test ended (what is left of it then is the leak policy's business). */
export function releaseChild(pid: number | undefined): void {
  if (pid !== undefined && reaper != null) send(`-${pid}\n`);
}
