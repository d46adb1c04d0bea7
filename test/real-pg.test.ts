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

  it('the server answers (harness check): default cancellation settings', async () => {
    const c = new pg.Client(server.config);
    await c.connect();
    const r = await c.query('SELECT 1 + 1 AS two, current_setting($1) AS check_interval', ['client_connection_check_interval']);
    await c.end();
    expect(r.rows[0].two).toBe(2);
    // Off, as by default: a backend inside pg_sleep() does not notice that its client left. Only a
    // CancelRequest stops it.
    expect(r.rows[0].check_interval).toBe('0');
  });

  // Before server-side cancel, the socket was destroyed and the statement ran its 10 s on the server (the
  // server's check interval is off). Over TLS the CancelRequest goes over TLS too (SSLRequest first).
  it.each([
    ['plain TCP', {}, false],
    ['plain TCP, no \'error\' listener on the client', { NO_ERROR_LISTENER: '1' }, false],
    ['TLS', { PGSSLMODE: 'no-verify' }, true],
    ['TLS, no \'error\' listener on the client', { PGSSLMODE: 'no-verify', NO_ERROR_LISTENER: '1' }, true],
  ])('withTimeout(0.5) around SELECT pg_sleep(10) on the thread\'s own client, %s: Timeout in about 0.5 s, the statement cancelled on the server (57014), the connection kept', async (_, env, tls) => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'own', ...env }, 20_000);
    expect(r.stderr, r.stderr).not.toMatch(/Error|Unhandled|evy:/);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep).toMatchObject({ outcome: 'Timeout', tls, code: '57014', activeAtTimeout: false, kept: true, samePid: true, clientErrors: [], leftOpen: [] });
    // "about 0.5 s": not before the deadline, and far from the 10 s of the query (no tight bound on a shared machine).
    expect(rep.seconds).toBeGreaterThanOrEqual(0.45);
    expect(rep.seconds).toBeLessThan(1.5);
    expect(r.code).toBe(0);
  });

  it.each([
    ['plain TCP', {}],
    ['TLS', { PGSSLMODE: 'no-verify' }],
  ])('a checked-out pg.Pool client (%s): its query cancelled, released by its finally, the pool hands out the same backend, no reconnect', async (_, env) => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'pool-checkout', ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep).toMatchObject({ outcome: 'Timeout', code: '57014', released: true, activeAtTimeout: false, samePid: true, connects: 1, clientErrors: [], leftOpen: [] });
    expect(rep.seconds).toBeLessThan(1.5);
    // The next query did not wait for the 10 s statement, and the pool ended at once.
    expect(rep.nextMs).toBeLessThan(1000);
    expect(rep.endMs).toBeLessThan(1000);
    expect(r.code).toBe(0);
  });

  // Before: a connection whose first query came through pool.query() (or that main used once) was marked
  // shared and never cut: each withTimeout(0.3) returned at 0.4 s (the detach grace), the statement ran on.
  it('pool.query under withTimeout(0.3), on a warm connection main used once and on a new one: the statement is gone from pg_stat_activity when Timeout is thrown', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'pool-query' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.runs.map((x: { kind: string }) => x.kind)).toEqual(['warm', 'cold']);
    for (const run of rep.runs) {
      expect(run.outcome).toBe('Timeout');
      expect(run.activeAfter).toEqual([]);
      expect(run.seconds).toBeLessThan(1.5);
    }
    expect(rep.next).toBe(5);
    expect(rep.nextMs).toBeLessThan(1000);
    expect(rep.endMs).toBeLessThan(1000);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
  });

  // Before: T's kill did not touch the shared connection (C queued behind T), so C waited out T's 10 s.
  it('shared pg.Client, the killed thread\'s statement running: cancelled (57014), the query queued behind it completes within 1 s of the kill', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'shared-running' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', tCode: '57014', otherResult: 42, after: true, kept: true, clientErrors: [], leftOpen: [] });
    expect(r.report.otherMs).toBeLessThan(1000);
    expect(r.code).toBe(0);
  });

  // Before: T's queued statement stayed in pg's queue and ran (10 s) after U's.
  it('shared pg.Client, the killed thread\'s query queued behind another\'s: taken out of pg\'s queue at once, the running one completes untouched', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'shared-queued' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', tCode: 'ERR_EVY_GREENLET_EXIT', otherResult: 42, after: true, kept: true, clientErrors: [], leftOpen: [] });
    expect(r.report.killMs).toBeLessThan(100); // nothing to wait for: the queued query never ran
    expect(r.report.afterMs).toBeLessThan(1000); // T's pg_sleep(10) did not run after U's
    expect(r.code).toBe(0);
  });

  // A CancelRequest that arrives while the backend still waits for the query is dropped by the server: before,
  // the query then ran on (10 s), and at the 1 s bound the connection was destroyed under it.
  it('a cancel that lands before the server has started the query (its bytes 150 ms late through a proxy): sent again, the query gets 57014, the connection kept', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'early' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', tCode: '57014', stillActive: false, kept: true, after: true, clientErrors: [], leftOpen: [] });
    expect(r.report.settledMs).toBeLessThan(900); // before the bound
    expect(r.code).toBe(0);
  });

  // PostgreSQL sends the 57014 before it aborts the statement's transaction and shows the backend idle: told at
  // once, the killed thread's Timeout came while pg_stat_activity still said 'active' (the pool-query case above
  // failed about 2 runs in 20 on a loaded 2-core machine). A proxy holds the ReadyForQuery back 200 ms, so the
  // order is seen every run: before, the error came first.
  it('the killed query\'s 57014 is told at its ReadyForQuery (held back 200 ms by a proxy), not at its ErrorResponse: the server is done with the statement by then', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'late-ready' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tCode: '57014', readyHeld: 1, readySentAtError: true, kept: true, after: true, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });

  it('a cancel the server never answers (a proxy swallows it): the connection is destroyed after the 1 s bound, the side connection closed at the 10 s give-up', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'fallback' }, 25_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tError: 'killed', cancelConnections: 1, swallowedClosed: 1, leftOpen: [] });
    expect(r.report.destroyedAfterMs).toBeGreaterThanOrEqual(990);
    expect(r.report.destroyedAfterMs).toBeLessThan(2000);
    expect(r.report.sideClosedAfterMs).toBeGreaterThanOrEqual(9900);
    expect(r.report.sideClosedAfterMs).toBeLessThan(11_500);
    expect(r.code).toBe(0);
  });

  // Before: the bound gave up the cancel on its way with the connection it destroyed, and the statement ran on
  // (pg_sleep(10) still active 4 s after the kill, 1 of 1 on the old code); the chaos harness counted these as
  // lingering statements under load (a side connection's TLS handshake slower than the bound).
  it('a cancel slower than the 1 s bound (its TLS handshake delayed through a proxy): the connection is destroyed at the bound, and the cancel still stops the statement', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'slow-cancel' }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ destroyed: true, leftOpen: [] });
    expect(r.report.goneAfterKillMs).toBeGreaterThan(0);
    expect(r.code).toBe(0);
  });

  // Before: a client made inside unowned() was never marked shared when another thread's query queued behind the
  // killed one, so the bound destroyed it under that query (C got an error); one main made was kept.
  it.each(['main', 'unowned'])('a cancel slower than the 1 s bound on a shared client (made by %s): the bound does not destroy it, the query queued behind runs', async (creator) => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'slow-cancel-shared', CREATOR: creator }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ tResult: 'killed', tCode: '57014', otherResult: 42, destroyed: false, after: true, clientErrors: [], leftOpen: [] });
    expect(r.code).toBe(0);
  });

  // The killed thread's own code queries again while its private connection is held for the cancel (the cancel's
  // connection 600 ms late through a proxy). Before: 'detached' (the killed query ended by itself before the cancel
  // arrived) had its next query written by the cancel's release, in main's context, which made the connection
  // main's: never orphaned, ref'd for good, open on the server (the chaos harness: 'private pg connection of a
  // killed thread still open on the server'); 'finally' (queued behind the killed query) made it shared, the same.
  it.each(['detached', 'finally'])('a killed thread\'s private connection used again by its own code (%s) while the cancel holds it: orphaned once the thread has ended, closed on the server', async (variant) => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'private-late-cancel', VARIANT: variant }, 40_000, ['--expose-gc']);
    expect(r.report, `code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    expect(r.report).toMatchObject({ first: variant === 'detached' ? 'ok' : '57014', last: 2, clientErrors: [], leftOpen: [] });
    expect(r.report.closedMs).toBeGreaterThan(0);
    expect(r.code).toBe(0);
  });

  // A CancelRequest names a backend, not a statement: without the hold (pg writing C's query as soon as T's
  // ended), 26 of 100 rounds gave C's query 57014 (measured with the hold removed).
  it('never another thread\'s statement: 120 kills of a query that ends about when the cancel lands, another thread\'s query right behind it, none of those gets 57014', async () => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'stress', ROUNDS: '120' }, 90_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep).toMatchObject({ rounds: 120, misdirected: 0, otherOk: 120, otherFailed: [], kept: true, clientErrors: [], leftOpen: [] });
    // The race was really run: some kills cancelled T's statement, some came after it had ended.
    expect(rep.cancelled).toBeGreaterThan(5);
    expect(rep.finished).toBeGreaterThan(5);
    expect(r.code).toBe(0);
  }, 100_000);

  // Before: pg's end() (called by the killed thread's finally, or by pg.Pool for release(err)) destroyed the socket
  // while the killed query was still active, which aborted the CancelRequest on its way: pg_sleep(30) ran on the
  // server (the chaos harness's `lingering`, seeds 11 and 12, on a retiring shared client).
  it.each([
    ['the thread\'s own client, finally client.end()', { VARIANT: 'own' }],
    ['the thread\'s own client over TLS, finally client.end()', { VARIANT: 'own', PGSSLMODE: 'no-verify' }],
    ['a client main shares, the finally ends it inside unowned()', { VARIANT: 'shared' }],
    ['a checked-out pg.Pool client, finally release(err) (the pool ends it)', { VARIANT: 'release-error' }],
  ])('a killed thread ends the connection its statement runs on while the cancel is on its way (%s): the statement is still cancelled on the server, the end completes', async (_, env) => {
    const r = await runFixture('pg-cancel.mjs', { ...server.env, MODE: 'end-in-finally', ...env }, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep).toMatchObject({ outcome: 'Timeout', ended: true, clientErrors: [], leftOpen: [] });
    expect(rep.seconds).toBeLessThan(1.5);
    // Gone within the cancel's bound (-1: still running 2 s after the Timeout).
    expect(rep.goneMs).toBeGreaterThanOrEqual(0);
    expect(rep.goneMs).toBeLessThan(1000);
    expect(r.code).toBe(0);
  });

  it('ownership follows use: killing the thread that created a shared client spares another thread\'s query on it; killing the one whose query runs cancels that query', async () => {
    const r = await runFixture('pg-shared.mjs', server.env, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.bResult).toBe(42);
    expect(rep.survived).toBe(true);
    expect(rep.afterCreatorKill).toBe(7);
    // The thread that was using it, killed: its statement is cancelled on the server (the kill does not wait
    // 10 s), and the connection stays usable.
    expect(rep.cCode).toBe('57014');
    expect(rep.killSeconds).toBeLessThan(1);
    expect(rep.keptAfterOwnerKill).toBe(true);
    expect(rep.afterOwnerKill).toBe(8);
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
    // The four pg_sleep(10) were cancelled on the server (before: they ran on, and pool.end() took 9.6 s).
    expect(rep.slowActiveAfter).toBe(0);
    expect(rep.endSeconds).toBeLessThan(2);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
    // Every backend of the fixture is gone: the pool ended, the killed ones were closed.
    expect(await waitBackendGone(server, 'application_name = $1', 'evy-pg-pool', 5_000)).toBeGreaterThanOrEqual(0);
  });
});
