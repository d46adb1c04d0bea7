// What the test adapters' creation sites cost a timer made outside any test (a module-level setInterval, a
// suite fixture's timer): the exit explainer names such timers with the line that made them, which takes a
// stack at creation for intervals and for timeouts at least as long as its delay (1 s by default). Each
// variant runs in its own process, processes alternate between variants, ROUNDS measurements per process;
// min and median over all, ratio to the raw row (Node's own timers, evy not loaded) of the same run.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summary } from './summary.mjs';

const PROCS = Number(process.env.BENCH_PROCS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const N = 100_000;

if (process.argv[2] === '--case') {
  const [, , , workload, variant] = process.argv;
  if (variant !== 'raw') {
    const evy = await import('../dist/index.js');
    if (variant === 'patched') evy.monkeyPatch({ timers: true });
    // The node:test adapter (the other two install the same hook); it patches as evy/register does.
    if (variant === 'adapter') await import('../dist/testing/node-test.js');
    await evy.spawn(() => {}).wait(); // as in a test run: threads exist, so every timer asks for its owner
  }
  const noop = () => {};
  const work = {
    interval() {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) clearInterval(setInterval(noop, 1000));
      return ((performance.now() - t0) * 1e6) / N;
    },
    short() {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) clearTimeout(setTimeout(noop, 10));
      return ((performance.now() - t0) * 1e6) / N;
    },
    long() {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) clearTimeout(setTimeout(noop, 5000));
      return ((performance.now() - t0) * 1e6) / N;
    },
  }[workload];
  work(); // warm-up
  const values = [];
  for (let r = 0; r < ROUNDS; r++) {
    globalThis.gc?.();
    values.push(work());
  }
  console.log(JSON.stringify(values));
  process.exit(0);
}

const self = fileURLToPath(import.meta.url);
const variants = [
  ['raw', 'raw (evy not loaded)'],
  ['patched', 'monkeyPatch({ timers: true }), outside a thread'],
  ['adapter', 'evy/node-test loaded, outside any test (sites kept)'],
];
const table = [
  ['interval', 'setInterval(fn, 1000) + clearInterval, 100k', true],
  ['long', 'setTimeout(fn, 5000) + clearTimeout, 100k', true],
  ['short', 'setTimeout(fn, 10) + clearTimeout, 100k', false],
];
const stats = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
console.log(`Node ${process.version}, ${PROCS} processes x ${ROUNDS} rounds per variant, variants alternating; min / median; ratio to raw`);
console.log('| workload | variant | ns per timer | ratio (min) | ratio (median) |');
console.log('|---|---|---|---|---|');
for (const [workload, title, sited] of table) {
  const values = new Map(variants.map(([v]) => [v, []]));
  for (let p = 0; p < PROCS; p++) {
    for (const [v] of variants) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, '--case', workload, v], { encoding: 'utf8' });
      values.get(v).push(...JSON.parse(out.trim().split('\n').pop()));
    }
  }
  const base = stats(values.get('raw'));
  for (const [v, label] of variants) {
    const s = stats(values.get(v));
    console.log(`| ${title} | ${label} | ${fmt(s.min)} / ${fmt(s.median)} | ${(s.min / base.min).toFixed(2)}x | ${(s.median / base.median).toFixed(2)}x |`);
  }
  // The short timeout is the hot case (a library's retry, a debounce): the adapter must cost it nothing
  // beyond what the patch does. The sited ones are reported as they are.
  if (!sited) {
    const p = stats(values.get('patched'));
    const a = stats(values.get('adapter'));
    const r = a.median / p.median;
    summary({ figure: 'short setTimeout outside any test, adapter / patch alone', target: '<= 1.10x', min: a.min / p.min, median: r, met: r <= 1.1, unit: 'x' });
  }
}
