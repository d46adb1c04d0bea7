#!/usr/bin/env node
// `npm run mutants [-- --only id,id] [--list] [--no-baseline] [--keep]`: applies each curated mutant
// (mutation/mutants.mjs) in a copy of the tree, builds it, runs the test files that must catch it, and
// reports caught or survived. The working tree is never written: the copy lives in the system's temp
// directory (node_modules linked, not copied) and is removed at the end, on Ctrl-C and on SIGTERM too.
//
// Before the mutants, each distinct test selection runs once on the unmutated copy (the baseline): a test
// that fails without any mutant would "catch" every mutant and prove nothing. A mutant is
//   caught     its tests failed (or hung past the limit)
//   survived   its tests passed: a blind spot, or an equivalent mutant
//   stale      its search text is not (exactly once) in the file any more: update the list
//   broken     the mutated tree did not build
//   no baseline  its tests failed twice without the mutant: nothing to conclude
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mutants } from './mutants.mjs';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
/** Per test run (ms): a mutant that makes a test hang is caught when this passes. */
const LIMIT_MS = Number(value('--limit') ?? 600_000);

const only = value('--only')?.split(',').filter(Boolean);
const chosen = only === undefined ? mutants : mutants.filter((m) => only.includes(m.id));
if (only !== undefined && chosen.length !== only.length) {
  const known = new Set(mutants.map((m) => m.id));
  console.error(`unknown mutant id: ${only.filter((id) => !known.has(id)).join(', ')}`);
  process.exit(2);
}
if (flag('--list')) {
  for (const m of chosen) console.log(`${m.id.padEnd(28)} ${m.file}  ->  ${m.tests.join(' ')}${m.filter ? ` -t "${m.filter}"` : ''}\n${' '.repeat(29)}${m.why}`);
  process.exit(0);
}

let work = '';
let running = null; // the child process group running now
function cleanup() {
  if (running !== null) {
    try {
      process.kill(-running.pid, 'SIGKILL');
    } catch {
      // gone
    }
    running = null;
  }
  if (work !== '' && !flag('--keep')) rmSync(work, { recursive: true, force: true });
  work = '';
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping (the working tree was never changed; removing the copy)`);
    cleanup();
    process.exit(130);
  });
}
process.on('exit', cleanup);

/** Runs a command in the copy, in a process group of its own (killed whole on a limit or Ctrl-C). */
function run(cmd, argv, limitMs = LIMIT_MS) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { cwd: work, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
    running = child;
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, limitMs);
    const t0 = performance.now();
    child.once('close', (code) => {
      clearTimeout(timer);
      running = null;
      try {
        process.kill(-child.pid, 'SIGKILL'); // workers the run left behind
      } catch {
        // none
      }
      resolve({ code, hung, out, ms: Math.round(performance.now() - t0) });
    });
  });
}

const testArgs = (m) => ['vitest', 'run', ...m.tests, ...(m.filter ? ['-t', m.filter] : [])];
const key = (m) => JSON.stringify(testArgs(m));
const failedTests = (out) => [...out.matchAll(/^\s*(?:FAIL|×)\s+(.+)$/gm)].map((x) => x[1].trim()).filter((l) => !/^test\/\S+$/.test(l));

async function main() {
  work = mkdtempSync(path.join(tmpdir(), 'evy-mutants-'));
  // The tracked and the untracked (not ignored) files: what is being worked on, uncommitted changes included.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of files) {
    mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
    try {
      cpSync(path.join(REPO, f), path.join(work, f));
    } catch {
      // listed but deleted in the working tree
    }
  }
  symlinkSync(path.join(REPO, 'node_modules'), path.join(work, 'node_modules'), 'dir');
  console.log(`copy of the tree: ${work} (${files.length} files)`);

  const build = () => run('npx', ['tsup', '--silent'], 300_000);
  const b0 = await build();
  if (b0.code !== 0) throw new Error(`the unmutated tree does not build:\n${b0.out}`);

  // A selection that fails unmutated proves nothing about its mutants: tried twice (a loaded machine makes
  // timing-bound tests flaky), then its mutants are skipped and reported as such.
  const noBaseline = new Set();
  if (!flag('--no-baseline')) {
    for (const k of new Set(chosen.map(key))) {
      const shown = JSON.parse(k).slice(2).join(' ');
      let r = await run('npx', JSON.parse(k));
      if (r.code !== 0) r = await run('npx', JSON.parse(k));
      if (r.code !== 0) {
        noBaseline.add(k);
        console.error(`baseline FAILED twice (${shown}): its mutants are skipped\n  ${failedTests(r.out).join('\n  ') || r.out.slice(-2000)}`);
        continue;
      }
      console.log(`baseline ok   ${shown} (${r.ms} ms)`);
    }
  }

  const results = [];
  for (const m of chosen) {
    if (noBaseline.has(key(m))) {
      results.push({ m, verdict: 'no baseline', detail: 'its tests fail without the mutant' });
      console.log(`no baseline   ${m.id}`);
      continue;
    }
    const file = path.join(work, m.file);
    let original;
    try {
      original = readFileSync(file, 'utf8');
    } catch {
      original = null;
    }
    const n = original === null ? 0 : original.split(m.search).length - 1;
    if (n !== 1) {
      results.push({ m, verdict: 'stale', detail: original === null ? 'file gone' : `search text found ${n} times` });
      console.log(`stale         ${m.id}`);
      continue;
    }
    writeFileSync(file, original.replace(m.search, () => m.replace));
    try {
      const b = await build();
      if (b.code !== 0) {
        results.push({ m, verdict: 'broken', detail: b.out.slice(-500) });
        console.log(`broken        ${m.id}`);
        continue;
      }
      const r = await run('npx', testArgs(m));
      const verdict = r.code === 0 ? 'survived' : 'caught';
      const detail = r.hung ? `hung past ${LIMIT_MS} ms` : r.code === 0 ? '' : failedTests(r.out).slice(0, 4).join('; ');
      results.push({ m, verdict, detail, ms: r.ms });
      console.log(`${verdict.padEnd(13)} ${m.id} (${r.ms} ms)${detail ? `: ${detail}` : ''}`);
    } finally {
      writeFileSync(file, original);
    }
  }

  console.log('\n| mutant | verdict | tests | what it breaks |\n|---|---|---|---|');
  for (const { m, verdict } of results) console.log(`| ${m.id} | ${verdict} | ${m.tests.join(', ')}${m.filter ? ` (-t "${m.filter}")` : ''} | ${m.why} |`);
  const count = (v) => results.filter((r) => r.verdict === v).length;
  console.log(`\n${count('caught')} caught, ${count('survived')} survived, ${count('stale')} stale, ${count('broken')} broken, ${count('no baseline')} without a baseline (of ${results.length})`);
  if (count('caught') !== results.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
