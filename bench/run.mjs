// `npm run bench`: runs every bench/*.bench.mjs in its own process, one after the other, on each Node line of
// EVY_BENCH_NODES (default `24,20,22,26`: 24 is the gate; a line is `20`, `22`... resolved through
// `npx -y node@N` (cached by npx after the first run), `current`, or a path to a node binary).
// Each bench prints its own table (evy beside its baseline, measured in the same run, min and median); the
// target figures are collected into one summary table at the end.
//   node bench/run.mjs core echo      only the files whose name contains one of these
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

function resolveNode(line) {
  if (line === 'current') return process.execPath;
  if (line.includes('/')) return line;
  if (process.versions.node.split('.')[0] === line) return process.execPath;
  try {
    return execFileSync('npx', ['-y', `node@${line}`, '-p', 'process.execPath'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

const lines = (process.env.EVY_BENCH_NODES ?? '24,20,22,26').split(',').map((s) => s.trim()).filter(Boolean);
const nodes = [];
for (const line of lines) {
  const exe = resolveNode(line);
  if (exe === null) {
    console.log(`(Node ${line}: not available through npx, skipped)`);
    continue;
  }
  nodes.push({ exe, version: execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim() });
}

function runFile(node, f) {
  return new Promise((resolve) => {
    // The servers of the echo bench run on this node too (EVY_BENCH_NODE).
    const child = spawn(node.exe, ['--expose-gc', f], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, EVY_BENCH_NODE: node.exe } });
    const rows = [];
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('EVY_SUMMARY ')) rows.push(JSON.parse(line.slice(12)));
        else console.log(line);
      }
    });
    child.on('exit', (code) => resolve({ code, rows }));
  });
}

let failed = 0;
const results = new Map(); // figure -> { target, [version]: row }
for (const node of nodes) {
  for (const f of files) {
    console.log(`\n## ${f} on Node ${node.version}`);
    const { code, rows } = await runFile(node, f);
    if (code !== 0) failed++;
    for (const r of rows) {
      if (!results.has(r.figure)) results.set(r.figure, { target: r.target, by: {} });
      results.get(r.figure).by[node.version] = r;
    }
  }
}

if (results.size > 0) {
  const fmt = (r) => {
    if (r === undefined) return '-';
    const n = (x) => (r.unit === 'x' ? `${x.toFixed(2)}x` : r.unit === 'ms' ? `${x >= 0 ? '+' : ''}${x.toFixed(1)} ms` : `${Math.round(x)} B`);
    return `${n(r.min)} / ${n(r.median)}${r.met ? '' : ' (missed)'}`;
  };
  console.log('\n## Targets: min / median of each figure, per Node version (the gate is Node 24)');
  console.log(`| figure | target | ${nodes.map((n) => `Node ${n.version}`).join(' | ')} |`);
  console.log(`|---|---|${nodes.map(() => '---').join('|')}|`);
  for (const [figure, { target, by }] of results) console.log(`| ${figure} | ${target} | ${nodes.map((n) => fmt(by[n.version])).join(' | ')} |`);
}
process.exit(failed ? 1 : 0);
