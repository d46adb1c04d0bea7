// http client/server request loop on 127.0.0.1 (keep-alive agent, 16 concurrent loops, server in the
// same process): unpatched vs monkeyPatch()ed (loops in the main thread: the pass-through cost), and
// patched with each loop in a green thread (ownership bookkeeping on every request). Each configuration
// runs in fresh processes, interleaved; min and median of ms per 1000 requests. Target: <= 5% slower.
// Threads cost something on Node 20 whatever the patching (ALS taxes every await), so the green-thread
// rows are compared with each other: unpatched in threads vs patched in threads.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = process.env.EVY_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const PROCS = Number(process.env.BENCH_PROCS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 4000);
const LOOPS = 16;

if (process.argv[2] === 'child') {
  const mode = process.argv[3];
  const http = await import('node:http');
  const evy = await import(`${ROOT}/dist/index.js`);
  if (mode.startsWith('patched')) evy.monkeyPatch();
  const server = http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS });
  const get = () =>
    new Promise((resolve, reject) => {
      http
        .get(url, { agent }, (res) => {
          res.on('data', () => {});
          res.on('end', resolve);
        })
        .on('error', reject);
    });
  const loop = async (n) => {
    for (let i = 0; i < n; i++) await get();
  };
  const round = async () => {
    const per = REQUESTS / LOOPS;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    if (mode.endsWith('-thread')) {
      const threads = Array.from({ length: LOOPS }, () => evy.spawn(loop, per));
      for (const t of threads) await t.wait();
    } else {
      await Promise.all(Array.from({ length: LOOPS }, () => loop(per)));
    }
    const wall = (Number(process.hrtime.bigint() - t0) / 1e6 / REQUESTS) * 1000;
    const c = process.cpuUsage(c0);
    return [wall, ((c.user + c.system) / 1e3 / REQUESTS) * 1000];
  };
  await round(); // warm-up
  const values = [];
  for (let r = 0; r < ROUNDS; r++) values.push(await round());
  agent.destroy();
  server.close();
  console.log(JSON.stringify(values));
  process.exit(0);
}

const modes = [
  ['plain', 'unpatched'],
  ['patched', 'monkeyPatch(), loops in the main thread'],
  ['plain-thread', 'unpatched, each loop a green thread (the baseline for the next row: ALS costs the same)'],
  ['patched-thread', 'monkeyPatch(), each loop a green thread'],
];
const values = Object.fromEntries(modes.map(([m]) => [m, []]));
const cpu = Object.fromEntries(modes.map(([m]) => [m, []]));
const self = fileURLToPath(import.meta.url);
for (let p = 0; p < PROCS; p++) {
  for (const [m] of modes) {
    const out = execFileSync(process.execPath, [self, 'child', m], { encoding: 'utf8' });
    for (const [wall, c] of JSON.parse(out.trim().split('\n').pop())) {
      values[m].push(wall);
      cpu[m].push(c);
    }
  }
}
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
function table(title, data) {
  const base = stats(data.plain);
  const baseThread = stats(data['plain-thread']);
  console.log(`\n${title} (ratios: to unpatched; the last row: to unpatched in threads)`);
  console.log('| configuration | min | median | ratio (min) | ratio (median) |');
  console.log('|---|---|---|---|---|');
  for (const [m, desc] of modes) {
    const s = stats(data[m]);
    const b = m === 'patched-thread' ? baseThread : base;
    console.log(`| ${desc} | ${s.min.toFixed(1)} | ${s.median.toFixed(1)} | ${(s.min / b.min).toFixed(3)} | ${(s.median / b.median).toFixed(3)} |`);
  }
}
console.log(`Node ${process.version}, ${PROCS} processes x ${ROUNDS} rounds x ${REQUESTS} requests (${LOOPS} concurrent loops, keep-alive), per configuration`);
table('Wall time, ms per 1000 requests: min / median', values);
table('CPU time of the process (user + system), ms per 1000 requests: min / median', cpu);

// Wall and CPU times on a shared machine move by tens of percent between runs. A CPU profile does not
// care: the share of samples spent in evy's own functions (self time, files under dist/) is the cost.
{
  console.log('\nShare of CPU profile samples in evy\'s own code (self time; --cpu-prof, one process each)');
  console.log('| configuration | evy share |');
  console.log('|---|---|');
  for (const [m, desc] of modes) {
    const dir = mkdtempSync(join(tmpdir(), 'evy-prof-'));
    execFileSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, self, 'child', m], { encoding: 'utf8' });
    const prof = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    let all = 0;
    let evy = 0;
    prof.samples.forEach((id, i) => {
      const f = byId.get(id).callFrame;
      if (f.functionName === '(idle)') return;
      const dt = prof.timeDeltas[i];
      all += dt;
      if (f.url.includes('/dist/')) evy += dt;
    });
    console.log(`| ${desc} | ${((100 * evy) / all).toFixed(2)}% |`);
  }
}
