// A killed thread's BLPOP, unblocked on the server: kill() -> the same connection answers again (a PING sent
// right after the kill, which Redis runs only once the BLPOP ahead of it is unblocked). Target: <= 100 ms on
// loopback (issue 22), min / median / max over BENCH_KILLS kills (default 60). Beside it, for information,
// plain ioredis: it cannot cancel one command, and dropping the connection makes it replay the BLPOP.
// Starts its own redis-server on a free port (skipped when there is none).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { summary } from './summary.mjs';

const ROOT = process.env.EVY_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const REGISTER = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).exports['./register'].import.default);
const CHILD = fileURLToPath(new URL('redis-unblock.child.mjs', import.meta.url));
const KILLS = Number(process.env.BENCH_KILLS ?? 60);

if (spawnSync('redis-server', ['--version']).status !== 0) {
  console.log('redis-server not found: skipped');
  process.exit(0);
}
const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'evy-bench-redis-'));
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
for (let i = 0; i < 200; i++) {
  const up = await new Promise((resolve) => net.connect(port, '127.0.0.1').once('connect', function () { this.destroy(); resolve(true); }).once('error', () => resolve(false)));
  if (up) break;
  await new Promise((r) => setTimeout(r, 25));
}

function run(mode) {
  const args = mode === 'evy' ? ['--import', REGISTER, CHILD, mode, String(KILLS)] : [CHILD, mode, String(KILLS)];
  const env = { ...process.env, REDIS_PORT: String(port), EVY_INDEX: pathToFileURL(join(ROOT, 'dist', 'index.js')).href };
  const r = spawnSync(process.execPath, args, { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${mode}: exit ${r.status}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

try {
  const evy = run('evy');
  const plain = run('plain');
  const st = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? null : { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
  };
  const f = (x) => (x === null ? '-' : `${x.min.toFixed(2)} / ${x.median.toFixed(2)} / ${x.max.toFixed(2)}`);
  const u = st(evy.unblockMs);
  console.log(`Node ${process.version}, ${KILLS} kills each, loopback, ms (min / median / max)`);
  console.log('| configuration | kill() settled | connection answers again | BLPOP replayed on the server |');
  console.log('|---|---|---|---|');
  console.log(`| evy: the thread killed (CLIENT UNBLOCK) | ${f(st(evy.killMs))} | ${f(u)} | 0 of ${KILLS} |`);
  console.log(
    `| plain ioredis: disconnect(true), the only way to let go (information) | - | ${plain.pingWithin300 === KILLS ? f(st(plain.unblockMs)) : `within 300 ms in ${plain.pingWithin300} of ${KILLS}`} | ${plain.replayed} of ${KILLS} |`,
  );
  summary({ figure: 'ioredis: kill -> the BLPOP unblocked on the server (ms)', target: '<= 100 ms', min: u.min, median: u.median, met: u.max <= 100, unit: 'ms' });
} finally {
  server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
