// Issue 11 ("a kill you can trust"): each case that broke, in a real process under the hook. Every fixture
// failed on the code before the fix (see the comment at its top); the chaos test covers them at random.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  disposeFixtures, mariadbAvailability, plan, postgresAvailability, requireServer, runFixture, startMariadb, startPostgres, type MariadbServer, type PgServer,
} from './helpers/servers.js';

afterAll(() => disposeFixtures());

describe('kills that must not touch other threads or crash (real processes)', () => {
  it('http.Agent queue: killing a request in flight lets the queued request of another thread run, no socket storm', async () => {
    const r = await runFixture('kill-agent-queue.mjs', {}, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report.bResult).toBe('ok');
    expect(r.report.bSeconds).toBeLessThan(2);
    expect(r.report.connections).toBeLessThanOrEqual(3); // V's socket and B's: no retry loop
    expect(r.report.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
  });

  it('no crash from evy destroying a killed thread’s http request, in any window (no uncaughtException listener)', async () => {
    const r = await runFixture('kill-crash-windows.mjs', {}, 20_000);
    expect(r.stderr, r.stderr).not.toMatch(/Error|Unhandled|evy:/);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toEqual({ survived: true, windows: 40 });
    expect(r.code).toBe(0);
  });

  it('exec killed 0-5 ms after its start: 0 of 60 trees left (nor of a child that blocks SIGTERM and forks), no pipe open; wait() gives the kill error, not "Command failed"', async () => {
    const r = await runFixture('kill-exec.mjs', {}, 30_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report.orphans).toBe(0);
    expect(r.report.blockedOrphans).toBe(0);
    expect(r.report.orphansAfterWaits).toBe(0);
    expect(r.report.errors).toEqual(['GreenletExit', 'GreenletExit', 'GreenletExit']);
    expect(r.report.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
  });
});

const pgAvail = postgresAvailability();
const pgPlan = plan(pgAvail, 'a shared client with a command queue (real PostgreSQL)');

describe.skipIf(pgPlan.skip)(pgPlan.title, () => {
  let server: PgServer;
  beforeAll(async () => {
    requireServer(pgAvail);
    server = await startPostgres();
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);

  it.each([
    ['patched at startup', {}],
    ['patched after pg loaded', { EVY_PATCH: 'none', LATE_PATCH: '1' }],
    ['over TLS', { PGSSLMODE: 'no-verify' }],
  ])('killing the thread whose pg command is in flight spares a command queued in pg behind it (%s)', async (_, env) => {
    const r = await runFixture('kill-queue-pg-writer.mjs', { ...server.env, ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', cResult: 42, alive: true, after: 7, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });

  it('a pg.Client over TLS whose creator is killed before the TLS socket exists: another thread takes it over, its queries all succeed', async () => {
    const r = await runFixture('kill-creator-tls-pg.mjs', { ...server.env, MODE: 'taken' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ bResult: [0, 1, 2, 3], tls: true, leftOpen: [] });
    expect(r.code).toBe(0);
  });

  it('a pg.Client over TLS whose creator is killed before the TLS socket exists, used by nobody else: destroyed once quiet, nothing open', async () => {
    const r = await runFixture('kill-creator-tls-pg.mjs', { ...server.env, MODE: 'alone' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ destroyed: true, leftOpen: [] });
    expect(r.code).toBe(0);
  });

  it.each([
    ['plain TCP', {}],
    ['TLS', { PGSSLMODE: 'no-verify' }],
  ])('killing the idle thread that created a pg.Client spares the commands pg writes for others from its callbacks (%s)', async (_, env) => {
    const r = await runFixture('kill-queue-pg.mjs', { ...server.env, ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ bResult: 1, cResult: 42, alive: true, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });
});

const myAvail = mariadbAvailability();
const myPlan = plan(myAvail, 'a shared mysql2 connection (real MariaDB)');

describe.skipIf(myPlan.skip)(myPlan.title, () => {
  let server: MariadbServer;
  beforeAll(async () => {
    requireServer(myAvail);
    server = await startMariadb();
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);

  it.each([
    ['patched at startup', {}],
    ['patched after mysql2 loaded', { EVY_PATCH: 'none', LATE_PATCH: '1' }],
    ['over TLS', { MYSQL_SSL: '1' }],
  ])('killing the thread whose query is in flight spares a query queued in mysql2 behind it (%s)', async (_, env) => {
    const r = await runFixture('kill-queue-mysql.mjs', { ...server.env, MODE: 'writer', ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', cResult: 42, alive: true, after: 7, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });

  // Over TLS the connection is carried by the TLS socket started on the creator's socket; the creator's kill
  // destroyed that raw socket under B and C (found by the chaos harness).
  it.each([
    ['plain TCP', {}],
    ['TLS', { MYSQL_SSL: '1' }],
  ])('killing the idle thread that created the connection spares the queries mysql2 writes for others from its callbacks (%s)', async (_, env) => {
    const r = await runFixture('kill-queue-mysql.mjs', { ...server.env, MODE: 'creator', ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ bResult: 1, cResult: 42, alive: true, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });

  it.each([
    ['plain TCP', {}, false],
    ['TLS', { MYSQL_SSL: '1' }, true],
  ])('a Timeout in the middle of a query on the thread\'s own connection (%s) cancels it on the server and keeps the connection, nothing left open', async (_, env, tls) => {
    const r = await runFixture('kill-queue-mysql.mjs', { ...server.env, MODE: 'own', ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ outcome: 'Timeout', tls, kept: true, after: 7, leftOpen: [] });
    expect(r.report.seconds).toBeLessThan(1.5);
    expect(r.code).toBe(0);
  });

  // The killed statement's reply arrives while the connection is still held for the cancel (its answers come
  // 300 ms late), and main queues a query then. Before: evy orphaned the killed thread's private connection at
  // that reply (no thread awaited one on it), unref'd, and nothing else kept the process alive: exit code 13
  // with main's query never answered (1 run in ~20 of the case above, on a loaded machine).
  it.each([
    ['plain TCP', {}],
    ['TLS', { MYSQL_SSL: '1' }],
  ])('the connection stays in use while its cancel holds it: a query main queues then is answered (%s)', async (_, env) => {
    const r = await runFixture('kill-queue-mysql.mjs', { ...server.env, MODE: 'own-late-cancel', ...env }, 20_000);
    expect(r.report, `code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', after: 7, kept: true, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });
});
