// evy.debug costs: spawn with thread tracking off (the default: one unset slot read per spawn) vs on, and a
// switch-heavy workload and a *Sync-call loop with blocking detection off vs on. Variants are interleaved in
// one process, ROUNDS times each; min and median, ratio to the "off" baseline measured in the same run.
import fs from 'node:fs';
import * as evy from '../dist/index.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const SPAWNS = 50_000;
const PINGS = 50_000;
const STATS = 50_000;

async function spawnWait() {
  const ts = new Array(SPAWNS);
  const t0 = performance.now();
  for (let i = 0; i < SPAWNS; i++) ts[i] = evy.spawn(() => i);
  for (let i = 0; i < SPAWNS; i++) await ts[i].wait();
  return ((performance.now() - t0) * 1e6) / SPAWNS; // ns per thread
}

async function pingPong() {
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
}

function statLoop() {
  const t0 = performance.now();
  for (let i = 0; i < STATS; i++) fs.statSync('.');
  return ((performance.now() - t0) * 1e6) / STATS; // ns per call
}

const stats = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

async function compare(title, unit, variants, work) {
  const results = new Map(variants.map(([name]) => [name, []]));
  await work(); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, setup, teardown] of variants) {
      setup();
      globalThis.gc?.();
      results.get(name).push(await work());
      teardown();
    }
  }
  const base = stats(results.get(variants[0][0]));
  for (const [name] of variants) {
    const s = stats(results.get(name));
    console.log(`| ${title} | ${name} | ${fmt(s.min)} / ${fmt(s.median)} ${unit} | ${(s.min / base.min).toFixed(2)}x | ${(s.median / base.median).toFixed(2)}x |`);
  }
}

const nop = () => {};
console.log(`Node ${process.version}, ${ROUNDS} rounds, variants interleaved; min / median; ratio to the first row of each block`);
console.log('| workload | variant | cost | ratio (min) | ratio (median) |');
console.log('|---|---|---|---|---|');
await compare('spawn + wait, 50k threads', 'ns/thread', [
  ['tracking off (default)', nop, nop],
  ['trackThreads() with spawn stacks', () => evy.debug.trackThreads(true), () => evy.debug.trackThreads(false)],
  ['trackThreads(true, { stacks: false })', () => evy.debug.trackThreads(true, { stacks: false }), () => evy.debug.trackThreads(false)],
], spawnWait);
await compare('Queue(0) ping-pong, 50k round trips', 'ns/trip', [
  ['blocking detection off (default)', nop, nop],
  ['blockingDetection(true, 0.1)', () => evy.debug.blockingDetection(true, 0.1), () => evy.debug.blockingDetection(false)],
], pingPong);
await compare('fs.statSync loop, 50k calls', 'ns/call', [
  ['blocking detection off (default)', nop, nop],
  ['blockingDetection(true, 0.1) (wraps *Sync)', () => evy.debug.blockingDetection(true, 0.1), () => evy.debug.blockingDetection(false)],
  ['blockingDetection, syncCalls: false', () => evy.debug.blockingDetection(true, 0.1, { syncCalls: false }), () => evy.debug.blockingDetection(false)],
], statLoop);

// What "off" leaves in the spawn path: reading one unset slot of rt.ext.
{
  const ext = globalThis[Symbol.for('evy.runtime')].ext;
  const N = 10_000_000;
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) if (ext.onSpawn !== undefined) hits++;
  const ns = ((performance.now() - t0) * 1e6) / N;
  console.log(`\nthe off-path check (\`rt.ext.onSpawn !== undefined\`): ${ns.toFixed(2)} ns per spawn (${hits} hits)`);
}
