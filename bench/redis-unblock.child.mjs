// One side of bench/redis-unblock.bench.mjs, run with REDIS_PORT set, as `node --import evy/register
// redis-unblock.child.mjs evy <kills>` or `node redis-unblock.child.mjs plain <kills>`. A consumer blocks in
// BLPOP on a client shared with main (which waits until the server has it blocked), then:
// - evy: its green thread is killed; main at once sends PING on the same client. Timed: kill() settled, and
//   the PING answered (the server ran it, so the BLPOP ahead of it was unblocked).
// - plain: ioredis cannot cancel one command; the only way to let go of it is to drop the connection
//   (disconnect(true): reconnect). Then the PING, and whether the BLPOP is blocked again on the server
//   (replayed by ioredis on the new connection) after 300 ms.
// Prints one JSON line.
import Redis from 'ioredis';

const mode = process.argv[2];
const kills = Number(process.argv[3] ?? 60);
const opts = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const admin = new Redis(opts);
const shared = new Redis(opts);
// EVY_INDEX: the build to use (bench/redis-unblock.bench.mjs passes the one EVY_ROOT names).
const evy = mode === 'evy' ? await import(process.env.EVY_INDEX ?? 'evy') : null;

const blockedNow = async () => Number((await admin.info('clients')).match(/blocked_clients:(\d+)/)[1]);
const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitBlocked() {
  for (let i = 0; i < 2000 && (await blockedNow()) === 0; i++) await sleepMs(1);
}

const killMs = [];
const unblockMs = [];
let replayed = 0;
let pingWithin300 = 0;
for (let i = 0; i < kills; i++) {
  const key = `evy:bench:unblock:${process.pid}:${i}`;
  if (mode === 'evy') {
    const t = evy.spawn(() => shared.blpop(key, 0));
    await waitBlocked();
    const t0 = performance.now();
    const killed = t.kill().then(() => killMs.push(performance.now() - t0));
    await shared.ping();
    unblockMs.push(performance.now() - t0);
    await killed;
  } else {
    shared.blpop(key, 0).catch(() => {});
    await waitBlocked();
    const t0 = performance.now();
    shared.disconnect(true);
    const ping = shared.ping().then(() => performance.now() - t0);
    const late = await Promise.race([ping, sleepMs(300).then(() => null)]);
    if (late !== null) {
      pingWithin300++;
      unblockMs.push(late);
    }
    if ((await blockedNow()) > 0) replayed++;
    // Let it go for the next round: the replayed BLPOP gets an item.
    await admin.rpush(key, 'x');
    await ping;
  }
  await admin.del(key);
}
await shared.quit();
await admin.quit();
console.log(JSON.stringify({ mode, kills, killMs, unblockMs, replayed, pingWithin300 }));
