// Watched clients where the finder's path test fails (issue 22, "Shape"): a vendored copy of pg is found by
// the shape of its Client class; pg bundled by esbuild is found by no finder, and its connection is
// recognised by its first bytes instead and never destroyed by a kill. In each, a shared pg.Client, the
// thread whose query is in flight is killed, and the other thread's query queued behind it completes on the
// same connection. Real PostgreSQL, real processes under `node --import evy/register`.
import { cpSync } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plan, postgresAvailability, requireServer, startPostgres, type PgServer } from './helpers/servers.js';
import { REPO, removeSnapshot, snapshotPackage } from './helpers/snapshot.js';

const avail = postgresAvailability();
const { skip, title } = plan(avail, 'pg vendored and bundled: a kill of the thread in flight spares the query queued behind it');

function run(root: string, file: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; report: any }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'evy/register', file], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      let report: any = null;
      try {
        report = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        /* the assertions show stdout and stderr */
      }
      resolve({ code, stdout, stderr, report });
    });
  });
}

describe.skipIf(skip)(title, () => {
  let server: PgServer;
  let root: string | null = null;
  let dir: string;

  beforeAll(async () => {
    requireServer(avail);
    server = await startPostgres();
    root = await snapshotPackage('evy-bundle', ['fixtures/bundle']);
    dir = path.join(root, 'fixtures', 'bundle');
    cpSync(path.join(REPO, 'node_modules', 'pg'), path.join(dir, 'vendor', 'pg'), { recursive: true });
    await build({
      entryPoints: [path.join(dir, 'bundled.mjs')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      external: ['evy', 'pg-native'],
      outfile: path.join(dir, 'out', 'bundled.cjs'),
      logLevel: 'silent',
    });
  }, 90_000);

  afterAll(async () => {
    removeSnapshot(root);
    await server?.stop();
  }, 30_000);

  for (const [how, file, watched] of [
    ['installed (found by its path)', 'installed.mjs', true],
    ['vendored (found by the shape of its Client class)', 'vendored.mjs', true],
    ['bundled by esbuild (no finder sees it: its connection is known by its first bytes)', 'out/bundled.cjs', false],
  ] as const) {
    it(how, async () => {
      const r = await run(root!, path.join(dir, file), server.env);
      expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
      expect(r.report.watched).toBe(watched);
      expect(r.report.aError).toBe('GreenletExit');
      // B's query, queued inside pg behind the killed thread's, ran on the same connection.
      expect(r.report.bError).toBeNull();
      expect(r.report.bValue).toBe(42);
      expect(r.report.samePid).toBe(true);
      expect(r.code).toBe(0);
      expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
    });
  }
});
