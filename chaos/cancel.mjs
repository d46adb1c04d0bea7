// Server-side cancel (issue 22; docs/patching.md, "A kill reaches the database"): what the harness checks of the
// statements the waves run on pg and mysql2 (shared clients, pools, lazily shared clients, private clients).
//
// - Every statement carries a tag (`/*chaos-op:<id>*/`). At a kill, the tags of the thread's statements in flight
//   are noted; each must be gone from the server (pg_stat_activity / information_schema.PROCESSLIST, read from
//   unowned side connections) within STATEMENT_BOUND_MS (`lingering`). Threads that will be killed run
//   statements that only a cancel ends (`pg_sleep(30)`, `SLEEP(30)`).
// - A connection evy destroys with a kill error once it was set up is a cancel that fell back to the old way
//   (the statement outlived the cancel bound, or the cancel was not sent): `fallback`.
// - A never-killed thread's command that fails with the server's cancel error (57014, ER_QUERY_INTERRUPTED) is
//   `misdirected` (classify.mjs).
// - Pools under random kills (pg.Pool, mysql2's pool): no connection lent twice at once, none handed out dead, no
//   more connections than the pool's maximum (`integrity`), no waiter left at the end (`unsettled`).
import net from 'node:net';
import pg from 'pg';
import mysql from 'mysql2/promise';
import Redis from 'ioredis';

/** evy's mark on a socket whose setup it abandoned (its connector killed during the setup). */
const kAbandoned = Symbol.for('evy.net.abandoned');

/** How long after a kill the killed thread's statement may still run on the server. */
export const STATEMENT_BOUND_MS = 3000;
/** When, after a kill, an item is pushed on the key of the killed thread's blocking pop (which must not take it). */
export const UNBLOCK_PUSH_MS = 1500;

export async function setupCancel(H) {
  const { evy, op, check, count, ot, VERBOSE, SABOTAGE, PG, MYSQL, isKillError } = H;
  const { unowned, sleep, Event } = evy;

  const sidePg = unowned(() => new pg.Client({ ...PG, application_name: 'evy-chaos-cancel-side' }));
  sidePg.on('error', () => {});
  await unowned(() => sidePg.connect());
  let sideMy = await unowned(() => mysql.createConnection(MYSQL));
  sideMy.connection.on('error', () => {});
  const sideRedis = unowned(() => new Redis({ ...H.REDIS, maxRetriesPerRequest: 5 }));
  sideRedis.on('error', () => {});

  // ---- tags -------------------------------------------------------------------------------------------------
  let n = 0;
  const killed = new Map(); // tag -> { at, ti, db, kind, seen }
  const cstats = { tagged: { pg: 0, mysql: 0 }, killedInFlight: { pg: 0, mysql: 0 }, goneMs: [], fallback: 0, abandoned: 0, pools: {} };

  /**
   * Runs `run(taggedSql)` for thread `ti` with `sql` tagged: while it is in flight, a kill of `ti` notes the tag,
   * and the statement must then be gone from the server within the bound.
   */
  async function sql(ti, db, kind, text, run) {
    const tag = `${process.pid}-${++n}`;
    cstats.tagged[db]++;
    const rec = { tag, db, kind };
    (ti.sqlTags ??= new Set()).add(rec);
    try {
      return await run(`/*chaos-op:${tag}*/ ${text}`);
    } finally {
      ti.sqlTags.delete(rec);
    }
  }

  // ---- ioredis blocking commands: a killed thread's BLPOP is unblocked on the server, never replayed ---------
  const blocked = new Map(); // key -> { at, ti, pushedAt }
  const rstats = { blocking: 0, killedBlocked: 0, kept: 0, reconnects: 0 };
  async function redisBlocking(ti, key, run) {
    rstats.blocking++;
    const rec = { key };
    (ti.redisKeys ??= new Set()).add(rec);
    try {
      return await run(key);
    } finally {
      ti.redisKeys.delete(rec);
    }
  }
  /** The shared ioredis client: its connection closing by itself is a fallback (evy never destroys it but when the server does not unblock in time). */
  function watchRedis(client, slot) {
    client.on('close', () => {
      if (slot.closing || client.status === 'end') return;
      rstats.reconnects++;
      count('fallback', `the shared ioredis connection closed (status ${client.status}) without the harness closing it: evy destroyed it where CLIENT UNBLOCK was expected, or the server dropped it`);
    });
  }
  async function checkBlocked(t) {
    for (const [key, b] of blocked) {
      if (b.pushedAt === undefined) {
        if (t - b.at < UNBLOCK_PUSH_MS) continue;
        b.pushedAt = t;
        await unowned(() => sideRedis.lpush(key, 'after-the-kill'));
      } else if (t - b.pushedAt >= 300) {
        const n = await unowned(() => sideRedis.llen(key));
        if (n !== 1) count('lingering', `#${b.ti.id} ${b.ti.scenario} (${b.ti.role}): an item pushed on the key of its BLPOP ${(UNBLOCK_PUSH_MS / 1000).toFixed(1)} s after its kill was taken (the BLPOP still blocked on the server, or replayed)`);
        else rstats.kept++;
        await unowned(() => sideRedis.del(key));
        blocked.delete(key);
      }
    }
  }

  H.onDoom((ti, at) => {
    for (const r of ti.redisKeys ?? []) {
      if (blocked.has(r.key)) continue;
      blocked.set(r.key, { at, ti });
      rstats.killedBlocked++;
    }
    if (ti.sqlTags === undefined) return;
    for (const r of ti.sqlTags) {
      if (killed.has(r.tag)) continue;
      killed.set(r.tag, { at, ti, db: r.db, kind: r.kind, seen: false });
      if (VERBOSE) console.error(`chaos: the kill of #${ti.id} ${ti.scenario} (${ti.role}${ti.deadline ? `, ${ti.deadline}` : ''}) finds its ${r.kind} statement chaos-op:${r.tag} (${r.db}) in flight`);
      cstats.killedInFlight[r.db]++;
    }
  });

  async function running() {
    const [p, m] = await Promise.all([
      unowned(() => sidePg.query("SELECT substring(query from 'chaos-op:([0-9-]+)') AS tag FROM pg_stat_activity WHERE state = 'active' AND query LIKE '/*chaos-op:%' AND pid <> pg_backend_pid()")),
      unowned(() => sideMy.query("SELECT SUBSTRING_INDEX(SUBSTRING_INDEX(INFO, 'chaos-op:', -1), '*/', 1) AS tag FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' AND INFO LIKE '/*chaos-op:%' AND ID <> CONNECTION_ID()")),
    ]);
    return new Set([...p.rows.map((r) => r.tag), ...m[0].map((r) => r.tag)]);
  }

  let checking = true;
  let stopAt;
  let checkerDone;
  const checkerEnded = new Promise((r) => (checkerDone = r));
  async function checker() {
    try {
      while (checking || killed.size > 0 || blocked.size > 0) {
        await new Promise((r) => ot.setTimeout(r, 150));
        if (!checking && performance.now() - stopAt > STATEMENT_BOUND_MS + 10_000) break;
        if (blocked.size > 0) {
          try {
            await checkBlocked(performance.now());
          } catch (e) {
            console.error('chaos: the BLPOP checker could not reach Redis:', e);
          }
        }
        if (killed.size === 0) continue;
        let now;
        try {
          now = await running();
        } catch (e) {
          console.error('chaos: the statement checker could not read the servers:', e);
          // The side connections died (they must not): a new mysql2 one (pg's error ends the run's checks).
          if (sideMy.connection._fatalError) sideMy = await unowned(() => mysql.createConnection(MYSQL));
          continue;
        }
        const t = performance.now();
        for (const [tag, k] of killed) {
          if (now.has(tag)) {
            // Running (again: a statement killed while queued in its client must never start later).
            k.seen = true;
            k.goneAt = undefined;
            if (t - k.at > STATEMENT_BOUND_MS) {
              count('lingering', `#${k.ti.id} ${k.ti.scenario} (${k.ti.role}): its ${k.kind} statement (${k.db}, chaos-op:${tag}) still runs on the server ${((t - k.at) / 1000).toFixed(1)} s after the thread's kill`);
              killed.delete(tag);
            }
          } else {
            if (k.goneAt === undefined) k.goneAt = t;
            if (!k.recorded) {
              k.recorded = true;
              cstats.goneMs.push({ ms: t - k.at, seen: k.seen });
            }
            // Watched until the bound has passed (a statement that only starts later is caught too).
            if (t - k.at > STATEMENT_BOUND_MS) killed.delete(tag);
          }
        }
      }
    } finally {
      checkerDone();
    }
  }
  void checker();

  // ---- fallback: a set-up connection destroyed with a kill error ------------------------------------------
  /**
   * `stream` is a watched client's connection, set up (its connect has resolved): evy may cancel on it, never
   * destroy it with a kill error. Except by the setup rule: if the thread that connected it was killed during its
   * setup, evy abandons the setup and destroys it once quiet (docs/patching.md). `creator` (the harness thread
   * that connected it, when known) must then have been killed before the connect resolved.
   */
  function watchFallback(stream, what, creator = null) {
    if (stream == null || stream.destroyed) return;
    const readyAt = performance.now();
    // Whether evy abandoned its setup (its mark holds the kill error until it decides, then it is cleared).
    let abandonedBy = isKillError(stream[kAbandoned]) ? stream[kAbandoned] : undefined;
    let mark = stream[kAbandoned];
    Object.defineProperty(stream, kAbandoned, {
      configurable: true,
      get: () => mark,
      set(v) {
        if (v !== undefined) abandonedBy = isKillError(v) ? v : undefined;
        mark = v;
      },
    });
    // Where it was destroyed from (evy's frames name the rule that did it), for the report.
    let where = '';
    const destroy = stream.destroy;
    stream.destroy = function (e, ...rest) {
      if (where === '' && isKillError(e) && !this.destroyed) where = new Error('destroyed').stack.split('\n').slice(2, VERBOSE ? 14 : 6).join('\n');
      return destroy.call(this, e, ...rest);
    };
    stream.on('error', (e) => {
      if (!isKillError(e)) return;
      if (abandonedBy === e) {
        const k = creator?.killedAt;
        if (creator === null || (k !== undefined && k <= readyAt)) return void cstats.abandoned++;
        count('fallback', `a ${what} connection was destroyed as an abandoned setup (${e?.name}: ${e?.message}) although its creator #${creator.id} ${k === undefined ? 'was never killed' : `was killed ${(k - readyAt).toFixed(0)} ms after its connect resolved`}\n${where}`);
        return;
      }
      cstats.fallback++;
      count('fallback', `a ${what} connection was destroyed by a kill (${e?.name}: ${e?.message}) where evy cancels the statement and keeps the connection\n${where}`);
    });
  }

  // ---- pool invariants ----------------------------------------------------------------------------------------
  const pools = new Set(); // { name, waiting(), end state }
  function watchPgPool(pool, name) {
    const lent = new Set();
    const st = (cstats.pools[name] ??= { acquired: 0 });
    pool.on('connect', (client) => watchFallback(client.connection?.stream, `${name} client`));
    pool.on('acquire', (client) => {
      st.acquired++;
      if (lent.has(client)) count('integrity', `${name}: a client lent twice at once`);
      const s = client.connection?.stream;
      if (client._ending || s?.destroyed || client._connectionError) count('integrity', `${name}: a dead client handed out (ending=${client._ending} destroyed=${s?.destroyed})`);
      lent.add(client);
      if (pool.totalCount > pool.options.max) count('integrity', `${name}: ${pool.totalCount} clients, more than its max ${pool.options.max}`);
    });
    pool.on('release', (err, client) => lent.delete(client));
    pool.on('remove', (client) => lent.delete(client));
    pools.add({ name, waiting: () => pool.waitingCount });
  }
  function watchMysqlPool(promisePool, name) {
    const pool = promisePool.pool; // the callback pool under the promise one: its events carry its connections
    const lent = new Set();
    const st = (cstats.pools[name] ??= { acquired: 0 });
    const limit = pool.config.connectionLimit;
    pool.on('connection', (c) => watchFallback(c.stream, `${name} connection`));
    pool.on('acquire', (c) => {
      st.acquired++;
      if (lent.has(c)) count('integrity', `${name}: a connection lent twice at once`);
      if (c._fatalError || c._closing || c.stream?.destroyed) count('integrity', `${name}: a dead connection handed out (fatal=${c._fatalError?.code ?? null} closing=${c._closing} destroyed=${c.stream?.destroyed})`);
      lent.add(c);
      if (pool._allConnections.length > limit) count('integrity', `${name}: ${pool._allConnections.length} connections, more than its limit ${limit}`);
    });
    pool.on('release', (c) => lent.delete(c));
    pools.add({ name, waiting: () => pool._connectionQueue.length });
  }

  // ---- sabotages (alone, --injections 0) ----------------------------------------------------------------------
  const ownClient = async () => {
    const c = unowned(() => new pg.Client({ ...PG, application_name: 'evy-chaos-sabotage' }));
    c.on('error', () => {});
    await unowned(() => c.connect());
    watchFallback(c.connection.stream, 'pg.Client (sabotage)');
    return c;
  };
  /** Runs `fn(ti)` in a thread of role `role` and returns its gt once its statement `tag` runs on the server. */
  async function statementThread(role, fn) {
    const ti = new H.ThreadInfo(`sabotage-${SABOTAGE}`, role);
    ti.useUntil = false;
    const gt = evy.spawn(H.body(ti, fn));
    await H.waitFor(() => ti.sqlTags?.size > 0, 'the sabotage statement to be sent');
    return { ti, gt };
  }
  const activeTags = async () => running();

  async function sabotage(mode) {
    if (mode === 'misdirected') {
      // A victim's pg_sleep(30) and a survivor's query queued behind it on one client; the kill cancels the
      // victim's, the survivor's begins, and then a CancelRequest for that backend arrives (sent by the harness,
      // as a cancel that did not wait for the killed statement to end would): the survivor gets 57014.
      const c = await ownClient();
      const v = await statementThread('victim', (ti) => sql(ti, 'pg', 'sleep', 'SELECT pg_sleep(30)', (q) => op(ti, 'cancel.pg.sleep', () => c.query(q))));
      let sTag;
      const s = await statementThread('survivor', (ti) =>
        sql(ti, 'pg', 'query', 'SELECT 1 AS v, pg_sleep(1)', (q) => {
          sTag = /chaos-op:([0-9-]+)/.exec(q)[1];
          return op(ti, 'cancel.pg.query', () => c.query(q));
        }),
      );
      await H.injectKill(v.ti, v.gt, 'kill');
      await H.checkWait(v.ti, v.gt);
      for (let t0 = performance.now(); !(await activeTags()).has(sTag); await sleep(0.01)) if (performance.now() - t0 > 20_000) throw new Error('chaos: the survivor statement never ran');
      await cancelRequest(c);
      await s.gt.wait().catch(() => {});
      H.classify([v.ti, s.ti]);
      await c.end();
    } else if (mode === 'fallback') {
      // What evy did before it cancelled: the kill destroys the connection the killed statement runs on.
      const c = await ownClient();
      const v = await statementThread('victim', (ti) => sql(ti, 'pg', 'sleep', 'SELECT pg_sleep(1)', (q) => op(ti, 'cancel.pg.sleep', () => c.query(q))));
      H.onDoom((ti) => {
        if (ti === v.ti) c.connection.stream.destroy(new H.KillError());
      });
      await H.injectKill(v.ti, v.gt, 'kill');
      await H.checkWait(v.ti, v.gt);
      H.classify([v.ti]);
    } else if (mode === 'cancel-skip') {
      // A statement nobody owns (issued inside unowned()): the kill of the thread awaiting it cancels nothing.
      const c = await ownClient();
      const v = await statementThread('victim', (ti) => sql(ti, 'pg', 'sleep', 'SELECT pg_sleep(4)', (q) => op(ti, 'cancel.pg.sleep', () => unowned(() => c.query(q)))));
      await H.injectKill(v.ti, v.gt, 'kill');
      await H.checkWait(v.ti, v.gt);
      H.classify([v.ti]);
      await H.waitFor(() => killed.size === 0, 'the statement checker to judge the statement');
      c.end().catch(() => {});
    } else if (mode === 'unblock-skip') {
      // A BLPOP nobody owns (sent inside unowned()): the kill of the thread awaiting it unblocks nothing, so it
      // takes the item the checker pushes after the kill.
      const c = unowned(() => new Redis({ ...H.REDIS, maxRetriesPerRequest: 5 }));
      c.on('error', () => {});
      const ti = new H.ThreadInfo(`sabotage-${SABOTAGE}`, 'victim');
      ti.useUntil = false;
      const key = `chaos:sabotage:${process.pid}:unblock`;
      const gt = evy.spawn(H.body(ti, () => redisBlocking(ti, key, (k) => op(ti, 'redis.blpop.long', () => evy.until(unowned(() => c.blpop(k, 30)))))));
      await H.waitFor(() => ti.redisKeys?.size > 0, 'the sabotage BLPOP to be sent');
      await sleep(0.1);
      await H.injectKill(ti, gt, 'kill');
      await H.checkWait(ti, gt);
      H.classify([ti]);
      await H.waitFor(() => blocked.size === 0, 'the BLPOP checker to judge the killed BLPOP');
      c.disconnect();
    } else if (mode === 'pool-twice') {
      // A pool bug: one idle client listed twice, so two borrowers get it at once.
      const pool = new pg.Pool({ ...PG, max: 2, application_name: 'evy-chaos-sabotage' });
      pool.on('error', () => {});
      watchPgPool(pool, 'pg.Pool (sabotage)');
      const c = await pool.connect();
      c.release();
      pool._idle.push(pool._idle[pool._idle.length - 1]);
      const [a, b] = await Promise.all([pool.connect(), pool.connect()]);
      for (const x of [a, b]) {
        try {
          x.release();
        } catch {
          // released twice: the pool says so
        }
      }
      void pool.end().catch(() => {});
    }
  }

  /** PostgreSQL's CancelRequest for `client`'s backend, on a raw connection of the harness's own. */
  function cancelRequest(client) {
    return new Promise((resolve) => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(client.processID, 8);
      b.writeInt32BE(client.secretKey, 12);
      const s = unowned(() => net.connect(PG.port, PG.host));
      s.on('error', () => {});
      s.on('close', resolve);
      s.on('connect', () => s.write(b));
      s.resume();
    });
  }

  return {
    sql,
    redisBlocking,
    watchRedis,
    watchFallback,
    watchPgPool,
    watchMysqlPool,
    sabotage,
    async drain() {
      checking = false;
      stopAt = performance.now();
      await checkerEnded;
      for (const p of pools) {
        const w = p.waiting();
        if (w > 0) count('unsettled', `${p.name}: ${w} waiters left hanging at the end of the run`);
      }
    },
    close() {
      sideRedis.disconnect();
      return Promise.all([sidePg.end().catch(() => {}), sideMy.end().catch(() => {})]);
    },
    summary() {
      const q = (xs, p) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(0) : '-');
      const seen = cstats.goneMs.filter((g) => g.seen).map((g) => g.ms).sort((a, b) => a - b);
      const all = cstats.goneMs.map((g) => g.ms).sort((a, b) => a - b);
      return [
        `chaos: statements tagged pg=${cstats.tagged.pg} mysql=${cstats.tagged.mysql}; in flight at their thread's kill pg=${cstats.killedInFlight.pg} mysql=${cstats.killedInFlight.mysql}: gone from the server (ms after the kill, looked at every 150 ms) median ${q(all, 0.5)}, max ${q(all, 1)}; of them seen still running after the kill ${seen.length} (median ${q(seen, 0.5)}, max ${q(seen, 1)}); fallbacks ${cstats.fallback}; set-ups abandoned by a kill during the connect (destroyed by the setup rule) ${cstats.abandoned}; pool checkouts ${Object.entries(cstats.pools).map(([k, v]) => `${k}=${v.acquired}`).join(' ')}`,
        `chaos: ioredis BLPOP of 30 s: ${rstats.blocking}, ${rstats.killedBlocked} killed while blocked or queued; an item pushed ${UNBLOCK_PUSH_MS} ms after the kill stayed in the list ${rstats.kept} times; shared connection closed by itself ${rstats.reconnects} times`,
      ];
    },
  };
}
