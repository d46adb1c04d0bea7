// Core runtime benchmarks: each evy figure beside its baselines, measured in the same run, in separate
// processes (the raw baselines never load evy), interleaved (evy, baseline, evy, baseline...) so that drift in
// machine load hits both sides alike. Min and median over all rounds of all processes.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summary } from './summary.mjs';

const worker = fileURLToPath(new URL('./core-cases.mjs', import.meta.url));
const PROCS = Number(process.env.BENCH_PROCS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

function once(name, impl) {
  const out = execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=8192', worker, name, impl, String(ROUNDS)], {
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop());
}

/** Runs every impl of a case PROCS times, interleaved; returns { impl: { min, median, unit } }. */
function run(name, impls) {
  const values = Object.fromEntries(impls.map((i) => [i, []]));
  let unit;
  for (let p = 0; p < PROCS; p++) {
    for (const impl of p % 2 ? [...impls].reverse() : impls) {
      const r = once(name, impl);
      values[impl].push(...r.values);
      unit = r.unit;
    }
  }
  const res = {};
  for (const impl of impls) {
    const v = values[impl].sort((a, b) => a - b);
    res[impl] = { min: v[0], median: v[Math.floor(v.length / 2)], unit };
  }
  return res;
}

const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
// [case, label, baselines, target ratio on Node 24 against the first baseline]
const table = [
  ['spawn', 'spawn + wait, 100k threads', [['raw', 'async fn + await null'], ['raw-als', 'same, ALS on (Node 20 tax)'], ['raw-ctx', 'same, each in its own ALS context']], 1.2],
  ['pingpong', 'Queue ping-pong round trip (put and get awaited)', [['raw', 'array + resolver channel'], ['raw-als', 'same, ALS on']], 1.2],
  ['imap', 'GreenPool(1000).imap, 100k items', [['raw', 'hand-rolled limiter'], ['plimit', 'p-limit(1000)'], ['raw-als', 'hand-rolled, ALS on'], ['raw-stream', 'hand-rolled, results in order through for await (imap\'s shape)']], 1.2],
  ['sleep0', 'sleep(0) among 100 threads', [['raw', 'setImmediate yield'], ['raw-als', 'same, ALS on']], 1.2],
  ['heap', 'heap per thread parked in Event.wait, 200k alive', [['raw', 'parked async fn'], ['raw-als', 'same, ALS on'], ['raw-ctx', 'same, each in its own ALS context on its own promise']], null],
];

console.log(`Node ${process.version}, ${PROCS} processes x ${ROUNDS} rounds each, evy and baselines interleaved (heap: 1 round per process); min / median`);
console.log('| benchmark | evy | baseline | baseline figure | ratio (min) | ratio (median) |');
console.log('|---|---|---|---|---|---|');
for (const [name, label, baselines, target] of table) {
  const r = run(name, ['evy', ...baselines.map((b) => b[0])]);
  const e = r.evy;
  baselines.forEach(([impl, desc], i) => {
    const b = r[impl];
    console.log(
      `| ${label} | ${fmt(e.min)} / ${fmt(e.median)} ${e.unit} | ${desc} | ${fmt(b.min)} / ${fmt(b.median)} | ${(e.min / b.min).toFixed(2)}x | ${(e.median / b.median).toFixed(2)}x |`,
    );
    if (i > 0) return;
    if (name === 'heap') summary({ figure: 'heap per parked thread (B)', target: '<= 700 B', min: e.min, median: e.median, baseline: b.min, met: e.median <= 700, unit: 'B' });
    else summary({ figure: label, target: `<= ${target}x raw`, min: e.min / b.min, median: e.median / b.median, met: e.median / b.median <= target, unit: 'x' });
  });
}
