// The unmodified ioredis client against Debian's redis-server, under `node --import evy/register`: a kill
// cancels a blocking BLPOP (on the server too), and green threads hand work to each other through Redis lists.
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

  it('kill() of a thread blocked in BLPOP: settles at once, the server drops the blocked client, no resent BLPOP eats later items', async () => {
    const r = await runFixture('redis-blpop-kill.mjs', server.env, 20_000);
    expect(r.report, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBeNull();
    const rep = r.report;
    expect(rep.blockedBefore).toBe(1);
    // Parked in until(): the kill lands at once and the thread's finally runs.
    expect(rep.killSeconds).toBeLessThan(1);
    expect(rep.finallyRan).toBe(true);
    expect(rep.dead).toBe(true);
    expect(rep.waitError).toBe('GreenletExit');
    // The kill destroyed the thread's connection: the server no longer has a blocked client...
    expect(rep.blockedAfter).toBe(0);
    // ...and ioredis did not reconnect and resend the BLPOP (the finally disconnected the client).
    expect(rep.blockedLater).toBe(0);
    expect(rep.lengthAfter).toBe(1);
    expect(rep.leftOpen).toEqual([]);
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
