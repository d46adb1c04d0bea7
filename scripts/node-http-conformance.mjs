#!/usr/bin/env node
// Runs Node's own test/parallel/test-http*.js and test-https*.js files twice each, plainly and under
// `--import <this repo>/register.mjs`, and prints the files whose outcome (exit code, signal, timeout) differs.
// Node's tests are not part of this project: point --node-tests at a checkout of Node's repository (or of its
// test/ directory) matched to the binary's line. docs/servers.md ("Conformance") has the figures.
//
//   node scripts/node-http-conformance.mjs --node-tests /tmp/node-v24/ --node "$(npx -y node@24 -p process.execPath)"
//
// Options: --node <binary> (default: this node), --evy <dir> (the evy whose register.mjs is tried: this
// repository by default; a copy keeps a long run apart from rebuilds), --timeout <s> per run (60), --jobs <n> (2 at most),
// --match <regexp> over file names (default: http and https tests), --retries <n> (1: a difference is run
// again, both ways, and called flaky if it does not repeat), --json <file> (every outcome), --verbose.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    'node-tests': { type: 'string' },
    node: { type: 'string', default: process.execPath },
    evy: { type: 'string', default: repo },
    timeout: { type: 'string', default: '60' },
    jobs: { type: 'string', default: '2' },
    match: { type: 'string', default: '^test-https?[-.].*\\.(js|mjs|cjs)$' },
    retries: { type: 'string', default: '1' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

function fail(msg) {
  process.stderr.write(`node-http-conformance: ${msg}\n`);
  process.exit(2);
}

if (opt['node-tests'] === undefined) fail('--node-tests <dir> is required (a checkout of Node\'s repository)');
const root = resolve(opt['node-tests']);
const parallelDir = [join(root, 'test', 'parallel'), join(root, 'parallel')].find((d) => existsSync(d));
if (parallelDir === undefined) fail(`no test/parallel under ${root}`);
const evy = resolve(opt.evy);
const hook = join(evy, 'register.mjs');
if (!existsSync(join(evy, 'dist', 'register-esm.js'))) fail(`${evy}/dist is missing: run \`npm run build\` first`);
const timeoutMs = Number(opt.timeout) * 1000;
if (!(timeoutMs > 0)) fail('--timeout must be a positive number of seconds');
// The machine is shared: two runs at once at most, whatever is asked.
const jobs = Math.max(1, Math.min(2, Math.trunc(Number(opt.jobs)) || 1));
const retries = Math.max(0, Math.trunc(Number(opt.retries)) || 0);
const match = new RegExp(opt.match);

const files = readdirSync(parallelDir).filter((f) => match.test(f)).sort();
if (files.length === 0) fail(`no file of ${parallelDir} matches ${match}`);

// The `// Flags:` and `// Env:` lines Node's own runner honours (test/common re-spawns a test without them).
function metadata(file) {
  const head = readFileSync(file, 'utf8').slice(0, 1500);
  const flags = /\/\/ Flags:\s+(--.*)/.exec(head)?.[1].trim().split(/\s+/) ?? [];
  const envLine = /\/\/ Env:\s+(.*)/.exec(head)?.[1].trim().split(/\s+/) ?? [];
  const env = Object.fromEntries(envLine.filter(Boolean).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  return { flags, env };
}

// Each slot gets its own tmpdir and port base, so two runs at once (even of the same file) do not collide.
const scratch = mkdtempSync(join(tmpdir(), 'evy-node-http-'));
const children = new Set();

function runOnce(file, mode, slot) {
  const path = join(parallelDir, file);
  const { flags, env } = metadata(path);
  const args = [...flags, ...(mode === 'hook' ? ['--import', hook] : []), path];
  const started = Date.now();
  return new Promise((resolvePromise) => {
    const child = spawn(opt.node, args, {
      cwd: root,
      detached: true, // its own process group: a timeout ends whatever the test started too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...env,
        NODE_TEST_DIR: scratch,
        TEST_THREAD_ID: String(slot),
        NODE_COMMON_PORT: String(12346 + 100 * slot),
        EVY_PATCH: undefined,
        NODE_OPTIONS: undefined,
      },
    });
    children.add(child);
    let out = '';
    const keep = (b) => {
      out += b;
      if (out.length > 16384) out = out.slice(-8192);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      // What the test left in its group (a server child it forked) goes with it.
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* none left */ }
      const outcome = timedOut ? 'timeout' : signal !== null ? signal : `exit ${code}`;
      resolvePromise({ outcome, ms: Date.now() - started, tail: out.slice(-2000) });
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      resolvePromise({ outcome: `spawn error ${err.code}`, ms: 0, tail: String(err) });
    });
  });
}

async function runAll(tasks) {
  const results = new Array(tasks.length);
  let next = 0;
  let done = 0;
  async function worker(slot) {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await runOnce(tasks[i].file, tasks[i].mode, slot);
      done++;
      if (process.stderr.isTTY) process.stderr.write(`\r${done}/${tasks.length} `);
      else if (done % 50 === 0) process.stderr.write(`${done}/${tasks.length} runs\n`);
    }
  }
  await Promise.all(Array.from({ length: jobs }, (_, slot) => worker(slot)));
  if (process.stderr.isTTY) process.stderr.write('\n');
  return results;
}

function onSignal(sig) {
  for (const c of children) {
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  rmSync(scratch, { recursive: true, force: true });
  process.exit(sig === 'SIGINT' ? 130 : 143);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const version = await new Promise((res) => {
  const c = spawn(opt.node, ['--version'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let v = '';
  c.stdout.on('data', (b) => { v += b; });
  c.on('close', () => res(v.trim()));
  c.on('error', (err) => fail(`cannot run ${opt.node}: ${err.message}`));
});
process.stderr.write(`${files.length} files from ${parallelDir}, node ${version}, ${jobs} at once, ${opt.timeout} s each\n`);

const t0 = Date.now();
const tasks = files.flatMap((file) => [{ file, mode: 'plain' }, { file, mode: 'hook' }]);
const first = await runAll(tasks);
const byFile = new Map(files.map((file, i) => [file, { file, plain: [first[2 * i]], hook: [first[2 * i + 1]] }]));

const differs = (r) => r.plain.at(-1).outcome !== r.hook.at(-1).outcome;
for (let round = 0; round < retries; round++) {
  const again = [...byFile.values()].filter(differs);
  if (again.length === 0) break;
  process.stderr.write(`running the ${again.length} differences again\n`);
  const rerun = await runAll(again.flatMap((r) => [{ file: r.file, mode: 'plain' }, { file: r.file, mode: 'hook' }]));
  again.forEach((r, i) => { r.plain.push(rerun[2 * i]); r.hook.push(rerun[2 * i + 1]); });
}
rmSync(scratch, { recursive: true, force: true });

// A difference is steady when every round differed the same way; flaky when some round agreed.
const rows = [...byFile.values()];
const diff = rows.filter((r) => r.plain[0].outcome !== r.hook[0].outcome);
const steady = diff.filter((r) => r.plain.every((p, i) => p.outcome === r.plain[0].outcome
  && r.hook[i].outcome === r.hook[0].outcome && p.outcome !== r.hook[i].outcome));
const passPlain = rows.filter((r) => r.plain[0].outcome === 'exit 0').length;
const passHook = rows.filter((r) => r.hook[0].outcome === 'exit 0').length;

const lines = [];
lines.push(`node ${version}; tests: ${parallelDir}; evy: ${evy}`);
lines.push(`${rows.length} files, ${rows.length - diff.length} same outcome, ${diff.length} different `
  + `(${steady.length} again on ${retries} rerun${retries === 1 ? '' : 's'}); exit 0: ${passPlain} plainly, ${passHook} under the hook; `
  + `${Math.round((Date.now() - t0) / 1000)} s`);
for (const r of diff) {
  const kind = steady.includes(r) ? 'steady' : 'flaky';
  lines.push(`  ${r.file}: plain ${r.plain.map((x) => x.outcome).join(', ')} | hook ${r.hook.map((x) => x.outcome).join(', ')} (${kind})`);
  if (opt.verbose) {
    lines.push(`    --- plain (last run):\n${indent(r.plain.at(-1).tail)}`);
    lines.push(`    --- hook (last run):\n${indent(r.hook.at(-1).tail)}`);
  }
}
process.stdout.write(lines.join('\n') + '\n');

if (opt.json !== undefined) {
  mkdirSync(dirname(resolve(opt.json)), { recursive: true });
  writeFileSync(opt.json, JSON.stringify({ node: version, tests: parallelDir, evy, rows }, null, 1));
}
process.exitCode = steady.length > 0 ? 1 : 0;

function indent(s) {
  return s.split('\n').map((l) => `      ${l}`).join('\n');
}
