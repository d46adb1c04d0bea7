// evy.tpool: N CPU-bound tasks run through tpool (worker threads) vs the same tasks on the main thread (in
// green threads, which cannot yield inside a computation), and the round-trip latency that a concurrently
// running evy echo server shows a client meanwhile (the client is a separate process, so its own clock is not
// blocked). Interleaved rounds; min and median; ratios measured in the same run.
import { spawn as spawnProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import * as evy from '../dist/index.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const N = Number(process.env.BENCH_TASKS ?? 8);

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

// Size each task to ~40 ms on this machine.
let K = 20;
for (;;) {
  const t0 = performance.now();
  fib(K);
  if (performance.now() - t0 > 40 || K > 40) break;
  K++;
}

// The echo server, in this process.
const listener = await evy.listen(['127.0.0.1', 0]);
const [, port] = listener.getsockname();
evy.spawn(() =>
  evy.serve(listener, async (client) => {
    for (;;) {
      const data = await client.recv(64);
      if (data.length === 0) return;
      await client.sendall(data);
    }
  }),
);

// The client: pings every millisecond, records round trips; driven by lines on stdin.
const CLIENT = `
const net = require('node:net');
const readline = require('node:readline');
let samples = [];
let sentAt = 0;
const s = net.connect(${port}, '127.0.0.1', () => { s.setNoDelay(true); ping(); });
function ping() { sentAt = performance.now(); s.write('0123456789abcdef'); }
let got = 0;
s.on('data', (d) => {
  got += d.length;
  if (got < 16) return;
  got = 0;
  samples.push(performance.now() - sentAt);
  setTimeout(ping, 1);
});
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'reset') { samples = []; console.log('{}'); }
  else if (l === 'report') {
    const x = samples.slice().sort((a, b) => a - b);
    const q = (p) => x[Math.min(x.length - 1, Math.floor(p * x.length))];
    console.log(JSON.stringify({ n: x.length, median: q(0.5), p99: q(0.99), max: x[x.length - 1] }));
  } else { s.destroy(); process.exit(0); }
});
`;
const client = spawnProcess(process.execPath, ['-e', CLIENT], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: client.stdout })[Symbol.asyncIterator]();
async function ask(cmd) {
  client.stdin.write(`${cmd}\n`);
  return JSON.parse((await lines.next()).value);
}

async function phase(kind) {
  await evy.sleep(0.05);
  await ask('reset');
  const t0 = performance.now();
  if (kind === 'main') {
    const ts = [];
    for (let i = 0; i < N; i++) ts.push(evy.spawn(() => fib(K)));
    for (const t of ts) await t.wait();
  } else if (kind === 'tpool') {
    const ts = [];
    for (let i = 0; i < N; i++) ts.push(evy.spawn(() => evy.tpool.execute(fib, K)));
    for (const t of ts) await t.wait();
  } else {
    await evy.sleep(0.3); // idle: the server's latency with nothing else running
  }
  const ms = performance.now() - t0;
  await evy.sleep(0.05); // let the round trip that was in flight during the work land
  const lat = await ask('report');
  return { ms, lat };
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
};
const f = (x) => (x === undefined ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(2));

await Promise.all(Array.from({ length: availableParallelism() }, () => evy.tpool.execute(fib, 10))); // start the workers
const results = { idle: [], main: [], tpool: [] };
for (let r = 0; r < ROUNDS; r++) for (const k of ['idle', 'main', 'tpool']) results[k].push(await phase(k));

console.log(`Node ${process.version}, ${availableParallelism()} CPUs, tpool size ${evy.tpool.size}; ${N} tasks of fib(${K}) (~40 ms each); ${ROUNDS} rounds; min / median`);
console.log('| run | wall time for the N tasks (ms) | ratio to main thread (min / median) | echo round trips answered (median) | echo RTT median (ms) | echo RTT p99 (ms) | echo RTT max (ms) |');
console.log('|---|---|---|---|---|---|---|');
const wMain = stats(results.main.map((x) => x.ms));
for (const k of ['idle', 'main', 'tpool']) {
  const w = stats(results[k].map((x) => x.ms));
  const med = stats(results[k].map((x) => x.lat.median));
  const p99 = stats(results[k].map((x) => x.lat.p99));
  const max = stats(results[k].map((x) => x.lat.max));
  const n = stats(results[k].map((x) => x.lat.n));
  const label = { idle: 'idle server (no tasks; 300 ms window)', main: 'tasks on the main thread', tpool: 'tasks via evy.tpool.execute' }[k];
  const ratio = k === 'idle' ? '-' : `${(w.min / wMain.min).toFixed(2)}x / ${(w.median / wMain.median).toFixed(2)}x`;
  console.log(`| ${label} | ${k === 'idle' ? '-' : `${f(w.min)} / ${f(w.median)}`} | ${ratio} | ${n.median} | ${f(med.min)} / ${f(med.median)} | ${f(p99.min)} / ${f(p99.median)} | ${f(max.min)} / ${f(max.median)} |`);
}

client.stdin.write('exit\n');
await evy.tpool.destroy();
listener.close();
process.exit(0);
