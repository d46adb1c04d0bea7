// The unmodified ioredis client against Debian's redis-server (a password, an ACL user, TLS offered), under
// `node --import evy/register`: a kill settles the killed thread's command at once, unblocks a blocking one on
// the server and never lets ioredis replay it; green threads hand work to each other through Redis lists.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { disposeFixtures, plan, redisAvailability, requireServer, runFixture, startRedis, type RedisServer } from './helpers/servers.js';

const avail = redisAvailability();
const { skip, title } = plan(avail, 'real Redis with the ioredis client under evy/register');

describe.skipIf(skip)(title, () => {
  let server: RedisServer;

  beforeAll(async () => {
    requireServer(avail);
    server = await startRedis();
  }, 30_000);

  afterAll(async () => {
    disposeFixtures();
    await server?.stop();
  }, 30_000);

  // A kill of a thread blocked in BLPOP (a plain await, no finally of its own): settles at once; the server
  // unblocks the connection (CLIENT UNBLOCK from a side connection) and keeps it; the BLPOP is never resent.
  for (const [mode, tls] of [['shared', false], ['own', false], ['shared', true], ['own', true]] as const) {
    it(`BLPOP killed, ${mode === 'shared' ? 'on a client main made and keeps using' : "on the thread's own client, never closed"}${tls ? ', over TLS' : ''}: unblocked on the server, the connection kept, never resent${mode === 'own' ? ', the process ends by itself' : ''}`, async () => {
      const r = await runFixture('redis-blpop-kill.mjs', server.env, 20_000, ['--expose-gc'], [mode, ...(tls ? ['tls'] : [])]);
      expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
      const rep = r.report;
      expect(rep.blockedBefore).toBe(1);
      expect(rep.waitError).toBe('GreenletExit');
      expect(rep.finallyRan).toBe(true);
      // Its finally released the lock through the same client: a killed thread's cleanup commands run.
      expect(rep.lockLeft).toBe(0);
      expect(rep.dead).toBe(true);
      // The BLPOP was settled by the kill itself (not after the detach grace, KILL_GRACE_MS = 100 ms, that a
      // foreign await gets); kill() settled once the finally's DEL was answered.
      expect(rep.rejectedMs).toBeLessThan(100);
      expect(rep.killMs).toBeLessThan(1000);
      // The same connection, no longer blocked: the server ran CLIENT UNBLOCK on it.
      expect(rep.afterKill).not.toBeNull();
      expect(rep.afterKill.flags).not.toContain('b');
      expect(rep.blockedLater).toBe(0);
      // Not resent: the item pushed after the kill is still in the list.
      expect(rep.lengthAfter).toBe(1);
      if (mode === 'shared') {
        expect(rep.idAfter).toBe(rep.idBefore);
        expect(rep.pingAfter).toBe('PONG');
      }
      // "own": once nothing reaches the killed thread's client, the server sees its connection end.
      if (mode === 'own') expect(rep.closedWhenGarbage).toBe(true);
      expect(rep.leftOpen).toEqual([]);
      // "own": nobody closes the killed thread's client, and the process still ends (the fixture does not exit).
      expect(r.signal).toBeNull();
      expect(r.code).toBe(0);
      expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
    });
  }

  it('CLIENT UNBLOCK reaches only the killed thread: a live BLPOP behind it on the same client is never unblocked (50 races), a killed BLPOP held behind a live one is never sent, and WAIT, XREAD/XREADGROUP BLOCK, BRPOPLPUSH, BZPOPMIN, BLMOVE, BLMPOP and a pipeline are unblocked', async () => {
    const r = await runFixture('redis-unblock-exact.mjs', server.env, 60_000, [], ['50']);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    // B's BLPOP shared A's connection and was never hit by the UNBLOCK meant for A.
    expect(rep.misdirected).toBe(0);
    expect(rep.bErrors).toEqual([]);
    expect(rep.bGot).toBe(50);
    // A's BLPOP was unblocked in some rounds (the item for A stayed), served in others: both orders happened.
    expect(rep.aServed).toBeLessThan(50);
    // Held behind main's BLPOP, the killed thread's BLPOP settled at once and was never written.
    expect(rep.heldError).toBe('GreenletExit');
    expect(rep.heldKillMs).toBeLessThan(100);
    expect(rep.mainGot).toBe('for-main');
    expect(rep.heldLeft).toBe(1);
    expect(rep.heldConnBlocked).toBe(false);
    for (const cmd of ['wait', 'xread', 'xreadgroup', 'brpoplpush', 'bzpopmin', 'blmove', 'blmpop']) {
      expect(rep.others[cmd], cmd).toMatchObject({ err: 'GreenletExit', sameConnection: true });
    }
    // No killed command took anything afterwards.
    expect(rep.leftAfterOthers).toEqual({ src: 1, dst: 0, z: 1 });
    // The thread's pipeline: exec() rejected with the kill error; the INCR written with the BLPOP ran, once.
    expect(rep.pipelineError).toBe('GreenletExit');
    expect(rep.pipelineKillMs).toBeLessThan(100);
    expect(rep.pipelineCounter).toBe(1);
    expect(rep.pipelineSame).toBe(true);
    expect(rep.sharedSame).toBe(true);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
  });

  it("a killed thread's command is never replayed after a reconnect: not run (paused server, connection dropped), run once (reply lost), a MULTI not yet written never runs, one written runs to its end, one left open is discarded", async () => {
    const r = await runFixture('redis-replay.mjs', server.env, 60_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const { paused, lost, offline, written, open, leftOpen } = r.report;
    for (const c of [paused, lost, offline, written, open]) {
      expect(c.error).toBe('GreenletExit');
      expect(c.ms).toBeLessThan(100);
    }
    // The kill left the connection alone; the server dropped it later: the INCR never ran and was not
    // replayed, while the live thread's INCR sent with it was (ioredis's own behaviour, kept).
    expect(paused.keptBeforeDrop).toBe(true);
    expect(paused.ran).toBe(0);
    expect(paused.live).toBe(1);
    expect(paused.liveGot).toBe(1);
    // It ran before the kill; its reply was lost with the connection: once, not twice.
    expect(lost.ran).toBe(1);
    expect(offline.statusAtKill).not.toBe('ready');
    expect(offline.ran).toBe(0);
    expect(written.ran).toBe(1);
    expect(written.sameConnection).toBe(true);
    // A transaction left open (multi({ pipeline: false }), no EXEC) by the killed thread is discarded: its INCR
    // never ran, and main's next command runs instead of being queued into it.
    expect(open.ran).toBe(0);
    expect(open.mainGot).toBe(1);
    expect(open.sameConnection).toBe(true);
    expect(leftOpen).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
  });

  it('producer/consumer between green threads through Redis lists: every job done exactly once, in order, by all workers', async () => {
    const r = await runFixture('redis-producer-consumer.mjs', server.env, 30_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.received).toBe(200);
    expect(rep.bad).toBe(0);
    expect(rep.exactlyOnce).toBe(true);
    expect(rep.inOrderPerWorker).toBe(true);
    // Redis serves the longest-blocked client first: with 4 blocked consumers, each gets a share.
    expect(rep.perWorker).toHaveLength(4);
    for (const n of rep.perWorker) expect(n).toBeGreaterThan(0);
    expect(rep.maxBusy).toBeGreaterThan(1);
    expect(rep.maxBusy).toBeLessThanOrEqual(4);
    expect(rep.leftInRedis).toBe(0);
    expect(rep.leftOpen).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr, r.stderr).not.toMatch(/Unhandled|evy:/);
  });
});
