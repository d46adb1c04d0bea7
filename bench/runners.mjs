// Wall time of real test suites with an evy test-runner adapter and without (and with vitest's own
// --detectAsyncLeaks), in fresh processes, interleaved: every round runs each variant once, in an order that
// rotates from round to round, so that a noisy neighbour hits all of them alike. Prints min and median per
// variant, the median ratio to the plain run, and each variant's test counts (the adapter must not change
// what passes; a leak it reports shows up as a failure there).
//
//   node bench/runners.mjs [--rounds N] [--no-pin] [--node PATH] [--arg A]... [vitest] [node-test=DIR] [mocha=DIR]
//
//   vitest         this repo's queue, event/semaphore, pool and timeout tests (vitest forks pool)
//   node-test=DIR  DIR's node:test suite: `node --test` on DIR/test/*.test.{js,mjs,cjs}
//   mocha=DIR      DIR's mocha suite (DIR/node_modules/mocha) on the same files
//   --arg A        one more argument for the runner in every variant of the suites named after it
//
// DIR needs evy installed (npm install --no-save <evy tarball>). The README's figures used pinojs/sonic-boom
// (node:test, file I/O) and websockets/ws (mocha, sockets) at the commits it names. Runs are pinned to CPU 1
// with taskset when it exists (--no-pin: not), so a runner's own parallelism is the same in every variant.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
let rounds = 5;
let pin = true;
let node = process.execPath;
const cases = [];
const extra = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--rounds') rounds = Number(args[++i]);
  else if (a === '--no-pin') pin = false;
  else if (a === '--node') node = args[++i];
  else if (a === '--arg' && i + 1 < args.length) extra.push(args[++i]);
  else if (a === 'vitest' || /^(node-test|mocha)=/.test(a)) cases.push([a, [...extra]]);
  else usage(`unknown argument ${JSON.stringify(a)}`);
}
if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds takes a whole number ≥ 1');
if (cases.length === 0) usage('name at least one suite');
if (pin && spawnSync('taskset', ['-c', '1', 'true']).status !== 0) pin = false;

function usage(why) {
  console.error(`${why}\nusage: node bench/runners.mjs [--rounds N] [--no-pin] [--node PATH] [--arg A]... [vitest] [node-test=DIR] [mocha=DIR]`);
  process.exit(2);
}

function testFiles(dir) {
  const t = path.join(dir, 'test');
  if (!existsSync(t)) usage(`${t} does not exist`);
  const files = readdirSync(t).filter((f) => /\.test\.[cm]?js$/.test(f)).sort().map((f) => path.join('test', f));
  if (files.length === 0) usage(`no test/*.test.js files in ${dir}`);
  return files;
}

function needEvy(dir) {
  if (!existsSync(path.join(dir, 'node_modules', 'evy', 'package.json'))) usage(`evy is not installed in ${dir} (npm install --no-save <evy tarball>)`);
}

/** The variants of one suite: [name, cwd, argv after the node binary]. */
function variants(c, more) {
  if (c === 'vitest') {
    // The adapter from a copy under node_modules, as users have it: vitest loads a runner from outside
    // node_modules through its module runner (transformed by vite), one from inside it natively.
    const cacheDir = path.join(REPO, 'node_modules', '.cache', 'evy-bench');
    const pkg = path.join(cacheDir, 'evy');
    rmSync(pkg, { recursive: true, force: true });
    mkdirSync(pkg, { recursive: true });
    for (const f of ['package.json', 'vitest.mjs', 'register.mjs', 'register.cjs', 'dist']) cpSync(path.join(REPO, f), path.join(pkg, f), { recursive: true });
    // A config that adds the runner line to the repo's own (vitest has no --runner flag).
    const cfg = path.join(cacheDir, 'vitest.runner.config.mjs');
    writeFileSync(
      cfg,
      `import { mergeConfig } from 'vitest/config';\nimport base from ${JSON.stringify(path.join(REPO, 'vitest.config.ts'))};\nexport default mergeConfig(base, { root: ${JSON.stringify(REPO)}, test: { runner: ${JSON.stringify(path.join(pkg, 'vitest.mjs'))} } });\n`,
    );
    const files = ['test/queue.test.ts', 'test/event-semaphore.test.ts', 'test/greenpool.test.ts', 'test/timeout.test.ts'];
    const vitest = path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs');
    return [
      ['vitest plain', REPO, [vitest, 'run', ...more, ...files]],
      ["vitest runner: 'evy/vitest'", REPO, [vitest, 'run', '--config', cfg, ...more, ...files]],
      ['vitest --detectAsyncLeaks', REPO, [vitest, 'run', '--detectAsyncLeaks', ...more, ...files]],
    ];
  }
  const [kind, raw] = c.split('=');
  const dir = path.resolve(raw);
  needEvy(dir);
  const files = testFiles(dir);
  if (kind === 'node-test') {
    return [
      ['node --test plain', dir, ['--test', ...more, ...files]],
      ['node --import evy/node-test --test', dir, ['--import', 'evy/node-test', '--test', ...more, ...files]],
    ];
  }
  const mocha = path.join(dir, 'node_modules', 'mocha', 'bin', 'mocha.js');
  if (!existsSync(mocha)) usage(`mocha is not installed in ${dir}`);
  return [
    ['mocha plain', dir, [mocha, ...more, ...files]],
    ['mocha --require evy/mocha', dir, [mocha, '--require', 'evy/mocha', ...more, ...files]],
  ];
}

/** Runs once; resolves with the wall ms and the test counts the runner printed. */
function once([, cwd, argv]) {
  const cmd = pin ? 'taskset' : node;
  const full = pin ? ['-c', '1', node, ...argv] : argv;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, full, { cwd, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', CI: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - t0, code, signal, counts: counts(out) });
    });
  });
}

function counts(out) {
  const grab = (re) => out.match(re)?.slice(1).join(' ') ?? '';
  return (
    grab(/(?:ℹ|#) pass (\d+)[\s\S]*?(?:ℹ|#) fail (\d+)/).replace(/(\d+) (\d+)/, '$1 passed, $2 failed') ||
    [grab(/(\d+) passing/), grab(/(\d+) failing/)].filter(Boolean).map((n, i) => `${n} ${i ? 'failed' : 'passed'}`).join(', ') ||
    grab(/Tests\s+([^\n]+)/).trim() ||
    '(no counts found)'
  );
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const nodeVersion = spawnSync(node, ['-v'], { encoding: 'utf8' }).stdout.trim();
console.log(`node ${nodeVersion}, ${rounds} rounds, ${pin ? 'pinned to CPU 1 (taskset -c 1)' : 'not pinned'}`);
for (const [c, more] of cases) {
  const vs = variants(c, more);
  const times = vs.map(() => []);
  const seen = vs.map(() => '');
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < vs.length; k++) {
      const i = (k + r) % vs.length; // rotate the order
      const res = await once(vs[i]);
      times[i].push(res.ms);
      const tag = `${res.counts}${res.signal ? `, killed by ${res.signal}` : ''}, exit ${res.code ?? res.signal}`;
      if (seen[i] !== '' && seen[i] !== tag) console.log(`  note: ${vs[i][0]} round ${r + 1}: ${tag} (earlier: ${seen[i]})`);
      seen[i] ||= tag;
    }
  }
  const base = median(times[0]);
  const baseMin = Math.min(...times[0]);
  console.log(`\n${c}${more.length ? ` (runner arguments: ${more.join(' ')})` : ''}`);
  console.log('| variant | min | median | ratio min / median | tests |');
  console.log('|---|---|---|---|---|');
  vs.forEach(([name], i) => {
    const med = median(times[i]);
    const min = Math.min(...times[i]);
    console.log(`| ${name} | ${(min / 1000).toFixed(2)} s | ${(med / 1000).toFixed(2)} s | ${(min / baseMin).toFixed(2)}× / ${(med / base).toFixed(2)}× | ${seen[i]} |`);
  });
}
