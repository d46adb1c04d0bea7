// Core runtime benchmarks: each evy figure beside its baseline, measured in the same run, in separate
// processes (the raw baselines never load evy). Repeated: min and median over all rounds.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const worker = fileURLToPath(new URL('./core-cases.mjs', import.meta.url));
const PROCS = Number(process.env.BENCH_PROCS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

function run(name, impl) {
  const values = [];
  let unit;
  for (let p = 0; p < PROCS; p++) {
    const out = execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=8192', worker, name, impl, String(ROUNDS)], {
      encoding: 'utf8',
    });
    const r = JSON.parse(out.trim().split('\n').pop());
    values.push(...r.values);
    unit = r.unit;
  }
  values.sort((a, b) => a - b);
  return { min: values[0], median: values[Math.floor(values.length / 2)], unit };
}

const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const rows = [];
const table = [
  ['spawn', 'spawn + wait, 100k threads', [['raw', 'async fn + await null'], ['raw-als', 'same, ALS on (Node 20 tax)']]],
  ['pingpong', 'Queue ping-pong round trip', [['raw', 'array + resolver channel'], ['raw-als', 'same, ALS on']]],
  ['imap', 'GreenPool(1000).imap, 100k items', [['raw', 'hand-rolled limiter'], ['plimit', 'p-limit(1000)'], ['raw-als', 'hand-rolled, ALS on']]],
  ['sleep0', 'sleep(0) among 100 threads', [['raw', 'setImmediate yield'], ['raw-als', 'same, ALS on']]],
  ['heap', 'heap per parked thread, 1M alive', [['raw', 'parked async fn'], ['raw-als', 'same, ALS on']]],
];

console.log(`Node ${process.version}, ${PROCS} processes x ${ROUNDS} rounds (heap: 1 round per process); min / median`);
console.log('| benchmark | evy | baseline | baseline figure | ratio (min) | ratio (median) |');
console.log('|---|---|---|---|---|---|');
for (const [name, label, baselines] of table) {
  const e = run(name, 'evy');
  for (const [impl, desc] of baselines) {
    const b = run(name, impl);
    rows.push({ name, impl, evy: e, base: b });
    console.log(
      `| ${label} | ${fmt(e.min)} / ${fmt(e.median)} ${e.unit} | ${desc} | ${fmt(b.min)} / ${fmt(b.median)} | ${(e.min / b.min).toFixed(2)}x | ${(e.median / b.median).toFixed(2)}x |`,
    );
  }
}
