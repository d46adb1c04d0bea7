// Watched clients where the finder's path test fails (issue 22, "Shape"): a vendored copy of pg is found by
// the shape of its Client class; pg bundled by esbuild is found by no finder, and its connection is
// recognised by its first bytes instead and never destroyed by a kill. In each, a shared pg.Client, the
// thread whose query is in flight is killed, and the other thread's query queued behind it completes on the
// same connection. Real PostgreSQL, real processes under `node --import evy/register`.
import { cpSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plan, postgresAvailability, requireServer, startPostgres, type PgServer } from './helpers/servers.js';
import { runNode } from './helpers/run.js';
import { REPO, removeSnapshot, snapshotPackage } from './helpers/snapshot.js';

const avail = postgresAvailability();
const { skip, title } = plan(avail, 'pg vendored and bundled: a kill of the thread in flight spares the query queued behind it');

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
      const r = await runNode(['--import', 'evy/register', path.join(dir, file)], { cwd: root!, env: server.env });
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
