// evy beside OpenTelemetry (issue 22): the http and pg instrumentations loaded before or after
// `evy/register`, in a CommonJS and an ESM app (OpenTelemetry's own loader hook, import-in-the-middle, for
// the latter). Each run: one span per query and per request, evy still finds pg (its finder and
// OpenTelemetry's require-in-the-middle both wrap pg's Client, in either order), and a kill still lands: the
// thread's withTimeout throws Timeout, the statement leaves the server, its span ends in error.
// Real PostgreSQL, real processes.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plan, postgresAvailability, requireServer, startPostgres, type PgServer } from './helpers/servers.js';
import { runNode } from './helpers/run.js';
import { removeSnapshot, snapshotPackage } from './helpers/snapshot.js';

const avail = postgresAvailability();
const { skip, title } = plan(avail, 'OpenTelemetry http and pg instrumentations beside evy/register');

describe.skipIf(skip)(title, () => {
  let server: PgServer;
  let root: string | null = null;

  beforeAll(async () => {
    requireServer(avail);
    server = await startPostgres();
    root = await snapshotPackage('evy-otel', ['fixtures/otel']);
  }, 60_000);

  afterAll(async () => {
    removeSnapshot(root);
    await server?.stop();
  }, 30_000);

  for (const [name, args, evyFirst] of [
    ['CommonJS, evy first', ['--require', 'evy/register', '--require', './setup.cjs', 'app.cjs'], true],
    ['CommonJS, OpenTelemetry first', ['--require', './setup.cjs', '--require', 'evy/register', 'app.cjs'], false],
    ['ESM, evy first', ['--import', 'evy/register', '--import', './setup.mjs', 'app.mjs'], true],
    ['ESM, OpenTelemetry first', ['--import', './setup.mjs', '--import', 'evy/register', 'app.mjs'], false],
  ] as const) {
    it(name, async () => {
      const r = await runNode([...args], { cwd: path.join(root!, 'fixtures', 'otel'), env: server.env });
      expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
      const rep = r.report;
      expect(rep.otelAfterEvy).toBe(evyFirst);
      expect(rep.evyWatched).toBe(true);
      expect(rep.one).toBe(1);
      expect(rep.codes).toEqual([200, 200]);
      // The kill lands: Timeout at the deadline (0.3 s; well before the statement's 5 s), the statement gone.
      expect(rep.killedOutcome).toBe('Timeout');
      expect(rep.killMs).toBeLessThan(2500);
      expect(rep.running).toBe(0);
      // One span per query (none doubled by two wrappers of Client#query) and per request, each side.
      const queries = rep.spans.filter((s: any) => s.name.startsWith('pg.query'));
      expect(queries).toHaveLength(rep.queries);
      expect(rep.spans.filter((s: any) => s.name === 'GET' && s.kind === 1)).toHaveLength(2);
      expect(rep.spans.filter((s: any) => s.name === 'GET' && s.kind === 2)).toHaveLength(2);
      // The killed query's span ended, in error; the others did not.
      const sleep = queries.filter((s: any) => /evy_otel_sleep/.test(s.statement ?? '') && !/pg_stat_activity/.test(s.statement));
      expect(sleep).toHaveLength(1);
      expect(sleep[0].error).toBe(true);
      expect(queries.filter((s: any) => s.error)).toHaveLength(1);
      expect(r.code).toBe(0);
      expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
    });
  }
});
