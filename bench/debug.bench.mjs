// evy.debug costs: spawn with thread tracking off (the default: one unset slot read per spawn) vs on, and a
// switch-heavy workload and a *Sync-call loop with blocking detection off vs on. Each variant runs in its own
// process (a watchdog worker, once started, must not linger into the baseline), processes alternate between
// variants, ROUNDS measurements per process; min and median over all, ratio to the "off" row of the same run.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const PROCS = Number(process.env.BENCH_PROCS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SPAWNS = 50_000;
const PINGS = 30_000;
const STATS = 50_000;

if (process.argv[2] === '--case') {
  const [, , , workload, variant] = process.argv;
  const evy = await import('../dist/index.js');
  const work = {
    async spawn() {
      const ts = new Array(SPAWNS);
      const t0 = performance.now();
      for (let i = 0; i < SPAWNS; i++) ts[i] = evy.spawn(() => i);
      for (let i = 0; i < SPAWNS; i++) await ts[i].wait();
      return ((performance.now() - t0) * 1e6) / SPAWNS; // ns per thread
    },
    async pingpong() {
      const a = new evy.Queue(0);
      const b = new evy.Queue(0);
      const t0 = performance.now();
      const echo = evy.spawn(async () => {
        for (let i = 0; i < PINGS; i++) await b.put(await a.get());
      });
      for (let i = 0; i < PINGS; i++) {
        await a.put(i);
        await b.get();
      }
      await echo.wait();
      return ((performance.now() - t0) * 1e6) / PINGS; // ns per round trip
    },
    async stat() {
      const t0 = performance.now();
      for (let i = 0; i < STATS; i++) fs.statSync('.');
      return ((performance.now() - t0) * 1e6) / STATS; // ns per call
    },
  }[workload];
  if (variant === 'tracking') evy.debug.trackThreads(true);
  if (variant === 'tracking-nostacks') evy.debug.trackThreads(true, { stacks: false });
  // Reports are counted, not printed: on a loaded machine a descheduled process does block for 100+ ms.
  let reports = 0;
  const report = () => void reports++;
  if (variant === 'detect') evy.debug.blockingDetection(true, 0.1, { report });
  if (variant === 'detect-nosync') evy.debug.blockingDetection(true, 0.1, { report, syncCalls: false });
  await evy.sleep(0.2); // let a watchdog worker finish booting its isolate
  await work(); // warm-up
  const values = [];
  for (let r = 0; r < ROUNDS; r++) {
    globalThis.gc?.();
    values.push(await work());
  }
  console.log(JSON.stringify(values));
  process.exit(0);
}

const self = fileURLToPath(import.meta.url);
const table = [
  ['spawn', 'spawn + wait, 50k threads', 'ns/thread', [
    ['off', 'tracking off (default)'],
    ['tracking', 'trackThreads() (spawn stacks)'],
    ['tracking-nostacks', 'trackThreads(true, { stacks: false })'],
  ]],
  ['pingpong', 'Queue(0) ping-pong, 30k round trips', 'ns/trip', [
    ['off', 'blocking detection off (default)'],
    ['detect', 'blockingDetection(true, 0.1)'],
  ]],
  ['stat', 'fs.statSync loop, 50k calls', 'ns/call', [
    ['off', 'blocking detection off (default)'],
    ['detect', 'blockingDetection(true, 0.1) (wraps *Sync)'],
    ['detect-nosync', 'blockingDetection, syncCalls: false'],
  ]],
];
const stats = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
console.log(`Node ${process.version}, ${PROCS} processes x ${ROUNDS} rounds per variant, variants alternating; min / median; ratio to the first row of each block`);
console.log('| workload | variant | cost | ratio (min) | ratio (median) |');
console.log('|---|---|---|---|---|');
for (const [workload, title, unit, variants] of table) {
  const values = new Map(variants.map(([v]) => [v, []]));
  for (let p = 0; p < PROCS; p++) {
    for (const [v] of variants) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, '--case', workload, v], { encoding: 'utf8' });
      values.get(v).push(...JSON.parse(out.trim().split('\n').pop()));
    }
  }
  const base = stats(values.get(variants[0][0]));
  for (const [v, label] of variants) {
    const s = stats(values.get(v));
    console.log(`| ${title} | ${label} | ${fmt(s.min)} / ${fmt(s.median)} ${unit} | ${(s.min / base.min).toFixed(2)}x | ${(s.median / base.median).toFixed(2)}x |`);
  }
}

// What "off" leaves in the spawn path: reading one unset slot of rt.ext.
{
  await import('../dist/index.js');
  const ext = globalThis[Symbol.for('evy.runtime')].ext;
  const N = 10_000_000;
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) if (ext.onSpawn !== undefined) hits++;
  const ns = ((performance.now() - t0) * 1e6) / N;
  console.log(`\nthe off-path check in spawn (\`rt.ext.onSpawn !== undefined\`): ${ns.toFixed(2)} ns (${hits} hits)`);
}
