// The unmodified `pg` client against Debian's PostgreSQL server, under `node --import evy/register`:
// a withTimeout really cancels a query (socket destroyed, nothing left open, the server's backend ends),
// and a GreenPool of 20 drives 200 queries over a shared pg.Pool while other threads' queries are killed.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { disposeFixtures, plan, postgresAvailability, requireServer, runFixture, startPostgres, type PgServer } from './helpers/servers.js';

const avail = postgresAvailability();
const { skip, title } = plan(avail, 'real PostgreSQL with the pg client under evy/register');

/** Polls the server until no backend has this pid (or application name); returns how long it took, or -1. */
async function waitBackendGone(server: PgServer, where: string, arg: unknown, ms: number): Promise<number> {
  // This observer runs in the test process, outside evy: it is the server's own view.
  const c = new pg.Client(server.config);
  await c.connect();
  const t0 = Date.now();
  try {
    for (;;) {
      const r = await c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${where}`, [arg]);
      if (r.rows[0].n === 0) return Date.now() - t0;
      if (Date.now() - t0 > ms) return -1;
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    await c.end();
  }
}

describe.skipIf(skip)(title, () => {
  let server: PgServer;

  beforeAll(async () => {
    requireServer(avail);
    server = await startPostgres();
  }, 90_000);

  afterAll(async () => {
    disposeFixtures();
    await server?.stop();
  }, 60_000);

  it('the server answers (harness check)', async () => {
    const c = new pg.Client(server.config);
    await c.connect();
    const r = await c.query('SELECT 1 + 1 AS two, current_setting($1) AS check_interval', ['client_connection_check_interval']);
    await c.end();
    expect(r.rows[0].two).toBe(2);
    // Without it a backend inside pg_sleep() would not notice its client left until the sleep ends.
    expect(r.rows[0].check_interval).not.toBe('0');
  });

  // Over TLS pg swaps its socket for a TLS one mid-handshake; without an 'error' listener pg's Client reports the
  // connection evy destroyed as an 'error' event (both failed before: the TLS socket stayed open, the process crashed).
  it.each([
    ['plain TCP', {}, false],
    ['plain TCP, no \'error\' listener on the client', { NO_ERROR_LISTENER: '1' }, false],
    ['TLS', { PGSSLMODE: 'no-verify' }, true],
    ['TLS, no \'error\' listener on the client', { PGSSLMODE: 'no-verify', NO_ERROR_LISTENER: '1' }, true],
  ])('withTimeout(0.5) around SELECT pg_sleep(10), %s: Timeout in about 0.5 s, socket destroyed, nothing open, the backend ends', async (_, env, tls) => {
    const r = await runFixture('pg-timeout.mjs', { ...server.env, ...env }, 20_000);
    expect(r.stderr, r.stderr).not.toMatch(/Error|Unhandled|evy:/);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.tls).toBe(tls);
    expect(rep.outcome).toBe('Timeout');
    expect(typeof rep.pid).toBe('number');
    // "about 0.5 s": not before the deadline, and far from the 10 s of the query (no tight bound on a shared machine).
    expect(rep.seconds).toBeGreaterThanOrEqual(0.45);
    expect(rep.seconds).toBeLessThan(2);
    // The kill destroyed the client's socket: it is gone by the time withTimeout throws.
    expect(rep.socketDestroyedAtOnce).toBe(true);
    expect(rep.leftOpen).toEqual([]);
    // Not even a timer once the socket's handle has closed (evy's kill grace timer included).
    expect(rep.whenSocketsClosed).toEqual([]);
    // Nothing kept the process alive: it exited by itself, long before the 10 s query would have ended.
    expect(r.code).toBe(0);
    expect(r.ms).toBeLessThan(8_000);
    // The server's side of the cancelled query ends too (it notices the closed connection).
    const goneAfter = await waitBackendGone(server, 'pid = $1', rep.pid, 5_000);
    expect(goneAfter, 'the backend of the cancelled query is still there').toBeGreaterThanOrEqual(0);
  });

  it('ownership follows use: killing the thread that created a shared client spares another thread\'s query on it', async () => {
    const r = await runFixture('pg-shared.mjs', server.env, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.bResult).toBe(42);
    expect(rep.survived).toBe(true);
    expect(rep.afterCreatorKill).toBe(7);
    // The thread that was using it, killed: its connection is destroyed, and the kill does not wait 10 s.
    expect(rep.destroyedByOwnerKill).toBe(true);
    expect(rep.killSeconds).toBeLessThan(1);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
  });

  it('200 queries through a GreenPool of 20 over one pg.Pool: all rows right, killed slow queries hurt no one else', async () => {
    const r = await runFixture('pg-pool.mjs', server.env, 30_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.failures).toEqual([]);
    expect(rep.wrong).toBe(0);
    expect(rep.correct).toBe(200);
    // The pool really ran 20 at once, and never more.
    expect(rep.maxRunning).toBe(20);
    expect(rep.slowOutcomes).toEqual(['Timeout', 'Timeout', 'Timeout', 'Timeout']);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
    // Every backend of the fixture is gone: the pool ended, the killed ones were closed.
    expect(await waitBackendGone(server, 'application_name = $1', 'evy-pg-pool', 5_000)).toBeGreaterThanOrEqual(0);
  });
});
