// Private connections and lazily shared clients (issue 20 item 4; docs/patching.md's state table, "private
// connection" row; docs/chaos.md). Two scenarios for chaos/run.mjs:
//
// - `private`: a thread connects a connection of its own (raw net, TLS, a ws WebSocket, a pg.Client plain or
//   TLS), makes requests, gets its replies, parks elsewhere and is killed, or not. After the kill of a thread
//   idle on it, the connection must no longer keep the process alive (its handles unref'd), and once the thread
//   has ended and a garbage collection has run, the server must see it closed within CLOSE_BOUND_MS. A thread
//   never killed keeps it open and working: evy never closes it. Failures of the first two count as `lingering`.
//   The harness keeps no reference to such a connection: a record holds its peer's key, its
//   application_name and a WeakRef, never the socket.
// - `lazy`: a client made by whichever thread needs it first and kept where every thread finds it (a
//   module-level pg.Client, a mysql2 connection, a connection of a tiny pool evy does not know). Its creator is
//   often killed while the client sits idle, having been its only user: the client must keep serving the later
//   threads (their failures are collateral, as everywhere), and it must never close while idle unless a kill of a
//   thread using it explains that (collateral too).
import net from 'node:net';
import tls from 'node:tls';
import * as tp from 'node:timers/promises';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { WebSocket, WebSocketServer } from 'ws';

const kOrphan = Symbol.for('evy.net.orphan');
/** How long after a killed thread has ended (and a collection has run) its private connection may stay open. */
export const CLOSE_BOUND_MS = 3000;
/** How often the reaper collects and looks: a full collection each time something is pending. */
const ROUND_MS = 200;

/** The native handles under a socket (a TLS socket's wrap and the TCP handle under it): any one ref'd keeps the process up. */
function refd(sock) {
  const h = sock._handle;
  const hs = [h, h?._parent, h?._parentWrap?._handle, sock._parent?._handle].filter((x) => x != null && typeof x.hasRef === 'function');
  return hs.some((x) => x.hasRef());
}

export async function setupPrivate(H) {
  const { evy, op, check, count, rint, chance, weighted, rand, killable, aw, Gen, ot, foreignDelay, stats, VERBOSE, SABOTAGE, PG, MYSQL, CLIENT_TLS, CA } = H;
  const { sleep, unowned, Event } = evy;
  const ECHO_PORT = H.ECHO_PORT;
  const TLS_PORT = H.TLS_PORT;

  // ---- the WebSocket echo server (the harness's: unowned, its connections discounted like the others) -----
  const wsHttp = unowned(() => H.http.createServer());
  wsHttp.on('connection', H.track);
  const wss = new WebSocketServer({ server: wsHttp });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('message', (m) => ws.send(String(m)));
  });
  const WS_PORT = await unowned(() => H.listenOn(wsHttp));
  H.portNames[WS_PORT] = 'the WebSocket server';
  H.harnessServers.add(wsHttp);
  H.leakNames[WS_PORT] = 'ws';

  // An unowned side connection that reads pg_stat_activity (what the server still holds).
  const side = unowned(() => new pg.Client({ ...PG, application_name: 'evy-chaos-side' }));
  side.on('error', () => {});
  await unowned(() => side.connect());

  // ---- records: what the reaper checks, never the connection itself ---------------------------------------
  const recs = new Set();
  const byThread = new Map(); // ThreadInfo -> rec (until its thread is killed and checked)
  const pstats = { atKill: {}, kinds: {}, killedIdle: 0, killedBusy: 0, closedAfterMs: [], keptBySabotage: [], survivors: 0 };
  const kept = []; // --sabotage lingering: connections the harness keeps reachable (closed at the end)

  H.onDoom((ti) => {
    const rec = byThread.get(ti);
    if (rec !== undefined && rec.phaseAtKill === undefined) rec.phaseAtKill = rec.phase;
    for (const slot of lazySlots) {
      if (slot.creator === ti && slot.users === 0 && slot.soloUsers.size === 1 && slot.killedIdle === undefined) slot.killedIdle = true;
    }
    if (SABOTAGE === 'orphan-shared') sabotageLazy(ti);
  });

  // ---- the private connections ---------------------------------------------------------------------------
  /** A line connection of its own to the echo server (plain or TLS): `<id> <delay> <payload>`, echoed. */
  function openLine(kind, rec) {
    const sock = kind === 'tls' ? tls.connect({ host: '127.0.0.1', port: TLS_PORT, ca: CA, servername: 'localhost' }) : net.connect(ECHO_PORT, '127.0.0.1');
    const port = kind === 'tls' ? TLS_PORT : ECHO_PORT;
    rec.weak = new WeakRef(sock);
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    const onConnect = () => (rec.peer = `${port}:${sock.localPort}`);
    sock.once('connect', onConnect);
    let buf = '';
    let waiter = null;
    sock.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0 && waiter !== null) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = waiter;
        waiter = null;
        w.resolve(line);
      }
    });
    sock.on('close', () => waiter?.reject(new Error(`private ${kind} connection closed`)));
    let id = 0;
    return {
      ready: new Promise((resolve, reject) => {
        sock.once(kind === 'tls' ? 'secureConnect' : 'connect', resolve);
        sock.once('error', reject);
        sock.once('close', () => reject(new Error(`private ${kind} connection closed while connecting`)));
      }),
      request(payload) {
        return new Promise((resolve, reject) => {
          waiter = { resolve, reject };
          sock.write(`${++id} ${rint(0, 4) === 0 ? rint(1, 15) : 0} ${payload}\n`);
        }).then((line) => line.split(' ')[2]);
      },
      socket: () => sock,
      close: () =>
        new Promise((resolve) => {
          if (sock.destroyed) return resolve();
          sock.once('close', resolve);
          sock.end();
        }),
    };
  }

  function openWs(rec) {
    const ws = new WebSocket(`ws://127.0.0.1:${WS_PORT}/`);
    ws.on('error', () => {});
    let waiter = null;
    ws.on('message', (m) => {
      const w = waiter;
      waiter = null;
      w?.resolve(String(m));
    });
    ws.on('close', () => waiter?.reject(new Error('private WebSocket closed')));
    const ready = new Promise((resolve, reject) => {
      ws.once('open', () => {
        rec.weak = new WeakRef(ws._socket);
        rec.peer = `${WS_PORT}:${ws._socket.localPort}`;
        resolve();
      });
      ws.once('error', reject);
      ws.once('close', () => reject(new Error('private WebSocket closed while connecting')));
    });
    return {
      ready,
      request(payload) {
        return new Promise((resolve, reject) => {
          waiter = { resolve, reject };
          ws.send(payload);
        });
      },
      socket: () => ws._socket,
      close: () =>
        new Promise((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', resolve);
          ws.close();
        }),
    };
  }

  function openPg(kind, rec, ti) {
    rec.app = `evy-chaos-priv-${H.SEED}-${ti.id}`;
    const client = new pg.Client({ ...PG, ...(kind === 'pg-tls' ? CLIENT_TLS : {}), application_name: rec.app });
    client.on('error', () => {}); // its connection died (a kill): without a listener, a crash
    const ready = client.connect().then(() => {
      rec.weak = new WeakRef(client.connection.stream); // the TLS socket once TLS is on
      rec.connected = true;
      H.watchFallback(client.connection.stream, `private ${kind}`, ti);
    });
    rec.weak = new WeakRef(client.connection.stream);
    return {
      ready,
      async request(payload) {
        const r = await H.sql(ti, 'pg', 'query', chance(0.5) ? 'SELECT $1::text AS v' : 'SELECT $1::text AS v, pg_sleep(0.003)', (q) => client.query(q, [payload]));
        return r.rows[0].v;
      },
      socket: () => client.connection.stream,
      close: () => client.end().catch(() => {}),
    };
  }

  async function privateScenario(ti) {
    const kind = weighted([
      ['net', 3],
      ['tls', 2],
      ['ws', 2],
      ['pg', 2],
      ['pg-tls', 1],
    ]);
    pstats.kinds[kind] = (pstats.kinds[kind] ?? 0) + 1;
    const rec = { ti, kind, phase: 'connecting', peer: undefined, app: undefined, weak: undefined, phaseAtKill: undefined, selfClosed: false };
    recs.add(rec);
    byThread.set(ti, rec);
    const conn = kind === 'ws' ? openWs(rec) : kind.startsWith('pg') ? openPg(kind, rec, ti) : openLine(kind, rec);
    conn.ready.catch(() => {});
    const gone = () => ti.killed || evy.getcurrent().signal.aborted;
    try {
      await op(ti, `private.${kind}.connect`, () => aw(ti, conn.ready));
      for (let k = rint(1, 3); k > 0; k--) {
        const payload = `p${ti.id}-${k}-${rint(1, 1e9)}`;
        rec.phase = 'request';
        const got = await op(ti, `private.${kind}.request`, () => aw(ti, conn.request(payload)));
        check(got === payload, `private ${kind} reply`);
        rec.phase = 'idle';
      }
      rec.phase = 'parked';
      ti.atPark?.();
      // Parked elsewhere: a thread that will be killed parks long (it is killed there, idle), the others briefly.
      if (killable(ti)) {
        const how = weighted([
          ['sleep', 3],
          ['event', 2],
          ['timers', 1],
          ['foreign', 2],
        ]);
        if (how === 'sleep') await sleep(30);
        else if (how === 'event') await new Event().wait();
        else if (how === 'timers') await tp.setTimeout(30_000);
        else await aw(ti, foreignDelay(rint(50, 800))); // killed here: detached, its frames go when this settles
      } else {
        await (chance(0.5) ? sleep(rand() * 0.02) : aw(ti, foreignDelay(rint(0, 20))));
      }
      // A killed thread's detached code that resumes here leaves the connection as it is (no close): the case.
      if (gone()) return;
      rec.phase = 'request';
      // Never killed: evy has not touched it (not orphaned) and it still serves.
      const s = conn.socket();
      check(s[kOrphan] === undefined && s._parent?.[kOrphan] === undefined, `private ${kind}: a live thread's connection was orphaned`);
      const payload = `again-${ti.id}-${rint(1, 1e9)}`;
      check((await op(ti, `private.${kind}.again`, () => aw(ti, conn.request(payload)))) === payload, `private ${kind} reply after parking`);
      rec.phase = 'closing';
      await op(ti, `private.${kind}.close`, () => aw(ti, conn.close()));
      rec.selfClosed = true;
      pstats.survivors++;
    } catch (e) {
      // Not killed (a failure of its own, or its Timeout): the thread closes what it opened, as apps do in a
      // finally. A killed one leaves it to evy.
      if (!gone()) {
        rec.selfClosed = true;
        void conn.close().catch?.(() => {});
      }
      throw e;
    }
  }

  // ---- the reaper: after each kill, unref'd at once, closed once collected ----------------------------------
  /** Application names of private pg connections the server still has (one query per round). */
  async function pgHeld(apps) {
    if (apps.length === 0) return new Set();
    const r = await unowned(() => side.query('SELECT application_name FROM pg_stat_activity WHERE application_name = ANY($1)', [apps]));
    return new Set(r.rows.map((x) => x.application_name));
  }

  let reaping = true;
  let stopAt;
  let reaperDone;
  const reaperEnded = new Promise((r) => (reaperDone = r));
  /** A killed thread's record is ready to judge once the thread has ended: its frames no longer hold the connection. */
  function markReady(now) {
    for (const rec of recs) {
      const ti = rec.ti;
      if (rec.selfClosed || (!ti.killed && ti.returned) || (ti.killed && ti.returned && ti.killedAt > (ti.endedAt ?? Infinity))) {
        // Closed by its own thread, or ended without a kill (nothing for evy to do), or killed after it had ended.
        recs.delete(rec);
        byThread.delete(ti);
        continue;
      }
      if (!ti.killed || !ti.returned || rec.readyAt !== undefined) continue;
      rec.readyAt = now;
      byThread.delete(ti);
      const idle = rec.phaseAtKill === 'idle' || rec.phaseAtKill === 'parked';
      if (idle) pstats.killedIdle++;
      else pstats.killedBusy++;
      pstats.atKill[rec.phaseAtKill] = (pstats.atKill[rec.phaseAtKill] ?? 0) + 1;
      const s = rec.weak?.deref();
      if (s === undefined || s.destroyed) continue;
      if (SABOTAGE === 'orphan-ref') s.ref(); // what evy would do without orphaning: the socket holds the process
      if (SABOTAGE === 'lingering') kept.push(s); // the harness keeps it reachable: it is never collected
      // Idle at its kill (its replies all in): evy must have unref'd it at once.
      if (idle && refd(s)) count('lingering', `#${ti.id} private ${rec.kind} connection (${rec.phaseAtKill} when its thread was killed) still keeps the process alive after the kill (a handle is ref'd)`);
    }
  }
  async function reaper() {
    try {
      while (reaping || recs.size > 0) {
        await new Promise((r) => ot.setTimeout(r, ROUND_MS));
        const ready = [...recs].filter((r) => r.readyAt !== undefined);
        if (ready.length > 0) {
          // A collection in a job of its own (a WeakRef read earlier keeps its target until its job ends), then
          // the finalizers run as a task, and the close reaches the server.
          global.gc?.();
          await new Promise((r) => ot.setTimeout(r, 30));
          let held;
          try {
            held = await pgHeld(ready.filter((r) => r.connected === true).map((r) => r.app));
          } catch (e) {
            console.error('chaos: the reaper could not read pg_stat_activity:', e);
            held = new Set();
          }
          const t = performance.now();
          for (const rec of ready) {
            // The server's view: its end of the connection (by local port), or the backend (by application_name).
            // A connection that never got as far as the server has nothing to see there: its socket must be gone.
            let open;
            if (rec.connected === true) open = held.has(rec.app);
            else if (rec.peer !== undefined) open = H.peerOpen.has(rec.peer);
            else open = rec.weak?.deref()?.destroyed === false;
            if (!open) {
              pstats.closedAfterMs.push(t - rec.readyAt);
              recs.delete(rec);
            } else if (t - rec.readyAt > CLOSE_BOUND_MS) {
              count('lingering', `#${rec.ti.id} private ${rec.kind} connection of a killed thread (${rec.phaseAtKill ?? '?'} at the kill) still open on the server ${((t - rec.readyAt) / 1000).toFixed(1)} s after its thread ended, with collections`);
              recs.delete(rec);
            }
          }
        }
        markReady(performance.now());
        if (!reaping && performance.now() - stopAt > CLOSE_BOUND_MS + 10_000) {
          for (const rec of recs) count('lingering', `#${rec.ti.id} private ${rec.kind} connection: its killed thread never ended, so nothing could be judged`);
          recs.clear();
        }
      }
    } finally {
      reaperDone();
    }
  }
  void reaper();

  // ---- lazily shared clients --------------------------------------------------------------------------------
  const lazy = { pg: null, mysql: null };
  const lazySlots = new Set(); // not yet ended
  const lstats = { made: {}, killedIdle: 0, orphaned: 0, servedAfter: 0, closedIdle: 0 };
  const isOrphan = (s) => s != null && (s[kOrphan] !== undefined || s._parent?.[kOrphan] !== undefined);

  /** The slot's client socket (the TLS one when TLS is on). */
  const slotSocket = (slot) => (slot.kind === 'pg' ? slot.client?.connection?.stream : slot.conn?.connection?.stream);

  function watchIdleClose(slot, sock) {
    // Nothing but a kill of a thread using it, or the harness ending it, may close it.
    sock.on('close', () => {
      if (slot.ending || slot.gen.dooms.length > 0 || slot.users > 0) return;
      lstats.closedIdle++;
      count('collateral', `lazy ${slot.gen.kind} (created by ${slot.gen.createdBy}) closed while idle, no kill of a thread using it explains that${slot.killedIdle ? ' (its creator had been killed while it sat idle)' : ''}`);
    });
  }

  function newLazy(kind, ti) {
    const tlsOn = kind === 'pg' ? H.pgTls() : H.mysqlTls();
    const gen = new Gen(`lazy ${kind === 'pg' ? 'pg.Client' : 'mysql2.Connection'}${tlsOn ? ' (TLS)' : ''}`);
    const slot = { kind, gen, client: null, conn: null, ready: null, creator: ti, budget: rint(1, 6), users: 0, soloUsers: new Set([ti]), retired: false, ending: false, killedIdle: undefined, servedAfter: false };
    H.madeClient(gen, ti, slot.budget);
    lstats.made[gen.kind] = (lstats.made[gen.kind] ?? 0) + 1;
    lazySlots.add(slot);
    const drop = () => {
      if (lazy[kind] === slot) lazy[kind] = null;
    };
    if (kind === 'pg') {
      const client = new pg.Client({ ...PG, ...(tlsOn ? CLIENT_TLS : {}), application_name: 'evy-chaos-lazy' });
      slot.client = client;
      client.on('error', drop);
      client.on('end', () => (drop(), lazySlots.delete(slot)));
      slot.ready = client.connect().then(() => {
        watchIdleClose(slot, client.connection.stream);
        H.watchFallback(client.connection.stream, gen.kind, ti);
        return client;
      });
    } else {
      slot.ready = mysql.createConnection({ ...MYSQL, ...(tlsOn ? CLIENT_TLS : {}) }).then((conn) => {
        slot.conn = conn;
        const c = conn.connection;
        const dead = () => (drop(), lazySlots.delete(slot));
        c.on('error', dead);
        c.on('end', dead);
        c.stream.on('close', dead);
        watchIdleClose(slot, c.stream);
        H.watchFallback(c.stream, gen.kind, ti);
        if (c.stream.destroyed) dead();
        return conn;
      });
    }
    slot.ready.catch(() => (drop(), lazySlots.delete(slot)));
    lazy[kind] = slot;
    return slot;
  }

  /** At the end of a user: a retired slot whose last user left ends. */
  function leaveLazy(slot) {
    if (--slot.users !== 0 || !slot.retired || !lazySlots.delete(slot)) return;
    slot.ending = true;
    unowned(() => slot.ready.then((c) => c.end()).catch(() => {}));
  }

  /** --sabotage orphan-shared: at the kill of a lazy client's creator, idle on it, evy "closes its private connection". */
  function sabotageLazy(ti) {
    for (const slot of lazySlots) {
      if (slot.creator !== ti || slot.users !== 0 || slot.soloUsers.size !== 1) continue;
      const s = slotSocket(slot);
      if (s === undefined || s.destroyed) continue;
      H.sabotaged.n++;
      if (VERBOSE) console.error(`chaos: sabotage orphan-shared: the kill of #${ti.id} closes the idle ${slot.gen.kind} it created`);
      s.destroy();
    }
  }

  /**
   * A later thread comes to a client whose creator was killed while it sat idle, its only user so far: evy
   * orphaned its socket (weakly held, unref'd), yet it is reachable here, so it must serve this thread.
   */
  function noteLaterUse(h, ti, sock) {
    if (h.creator === ti) return;
    h.soloUsers.add(ti);
    if (h.killedIdle !== true || h.laterSeen) return;
    h.laterSeen = true;
    lstats.killedIdle++;
    if (isOrphan(sock)) (h.wasOrphan = true), lstats.orphaned++;
  }
  function noteServed(h) {
    if (h.wasOrphan && !h.servedAfter) (h.servedAfter = true), lstats.servedAfter++;
  }

  async function lazyClient(ti, kind) {
    const slot = lazy[kind] ?? newLazy(kind, ti);
    slot.users++;
    if (--slot.budget <= 0 && !slot.retired) {
      slot.retired = true;
      if (lazy[kind] === slot) lazy[kind] = null;
    }
    try {
      noteLaterUse(slot, ti, slotSocket(slot));
      for (let k = rint(1, 2); k > 0; k--) {
        const v = rint(1, 1e9);
        const note = {};
        if (kind === 'pg') {
          const r = await H.sql(ti, 'pg', 'query', 'SELECT $1::int AS v', (q) => op(ti, 'lazy.pg.query', () => aw(ti, slot.ready.then((c) => H.clientSend(note, c, () => c.query(q, [v])))), slot.gen, note));
          check(r.rows[0].v === v, 'lazy pg value');
        } else {
          const [rows] = await H.sql(ti, 'mysql', 'query', 'SELECT ? AS v', (q) => op(ti, 'lazy.mysql.query', () => aw(ti, slot.ready.then((c) => H.clientSend(note, c, () => c.query(q, [v])))), slot.gen, note));
          check(rows[0].v === v, 'lazy mysql value');
        }
        noteServed(slot);
      }
    } finally {
      leaveLazy(slot);
    }
  }

  // A tiny pool evy knows nothing of (as generic-pool or tarn): connections made for the first borrower that
  // needs one, handed out from a free list (dead ones skipped, as with testOnBorrow), never retired.
  const tinyPool = { free: [], all: new Set(), max: 3, waiters: [] };
  lstats.made['tinypool net'] = 0;
  function poolWake() {
    tinyPool.waiters.shift()?.();
  }
  async function poolAcquire(ti) {
    for (;;) {
      while (tinyPool.free.length > 0) {
        const c = tinyPool.free.pop();
        c.inFree = false;
        if (!c.sock.destroyed) return c;
        tinyPool.all.delete(c);
      }
      if (tinyPool.all.size < tinyPool.max) {
        const c = new H.LineConn(ECHO_PORT, false);
        c.gen = new Gen('tinypool net');
        c.creator = ti;
        c.soloUsers = new Set([ti]);
        c.uses = rint(1, 5); // retired after that many borrowers (pg-pool's maxUses), so that new ones keep being made
        H.madeClient(c.gen, ti, Infinity);
        lstats.made['tinypool net']++;
        tinyPool.all.add(c);
        c.sock.on('close', () => {
          if (!c.inFree || c.ending || c.gen.dooms.length > 0) return;
          lstats.closedIdle++;
          count('collateral', `a tinypool connection (created by ${c.gen.createdBy}) closed while idle in the pool, no kill of a thread using it explains that`);
        });
        try {
          await op(ti, 'lazy.pool.connect', () => c.ready, c.gen); // a plain await: a real pool's create
          return c;
        } catch (e) {
          tinyPool.all.delete(c);
          c.sock.destroy();
          poolWake();
          throw e;
        }
      }
      await new Promise((r) => tinyPool.waiters.push(r));
    }
  }
  function poolRelease(c, broken) {
    if (broken || c.sock.destroyed || --c.uses <= 0) {
      c.ending = !broken;
      tinyPool.all.delete(c);
      c.sock.destroy();
    } else {
      c.inFree = true;
      tinyPool.free.push(c);
    }
    poolWake();
  }

  async function lazyPool(ti) {
    const c = await poolAcquire(ti);
    let broken = false;
    let released = false;
    try {
      noteLaterUse(c, ti, c.sock);
      for (let k = rint(1, 2); k > 0; k--) {
        const payload = `pool-${ti.id}-${k}-${rint(1, 1e9)}`;
        const note = {};
        const got = await op(ti, 'lazy.pool.request', () => aw(ti, c.request(payload, rint(0, 3) === 0 ? rint(1, 10) : 0, ti, note)), c.gen, note);
        check(got === payload, 'tinypool echo');
        noteServed(c);
      }
      if (killable(ti) && chance(0.5)) {
        released = true;
        poolRelease(c, false);
      }
    } catch (e) {
      broken = true;
      throw e;
    } finally {
      if (!released) poolRelease(c, broken);
    }
  }

  async function lazyScenario(ti) {
    const kind = weighted([
      ['pg', 2],
      ['mysql', 2],
      ['pool', 3],
    ]);
    if (kind === 'pool') await lazyPool(ti);
    else await lazyClient(ti, kind);
    // Killed while idle, its client left for the others.
    if (killable(ti) && (ti.atPark !== undefined || chance(0.7))) {
      ti.atPark?.();
      await (chance(0.5) ? sleep(30) : aw(ti, foreignDelay(rint(50, 600))));
    }
  }
  H.onDoom((ti) => {
    for (const c of tinyPool.all) {
      if (c.creator === ti && c.soloUsers.size === 1 && c.killedIdle === undefined && !c.waiting().has(ti)) c.killedIdle = true;
    }
  });

  // ---- sabotage runs with --injections 0 ----------------------------------------------------------------------
  /** Runs a victim that keeps a private connection, kills it idle, and waits until the reaper has judged it. */
  async function sabotagePrivate() {
    const ti = new H.ThreadInfo('sabotage-private', 'victim');
    ti.useUntil = false;
    const parked = new Event();
    const gt = evy.spawn(H.body(ti, async () => {
      const rec = { ti, kind: 'net', phase: 'connecting', peer: undefined, app: undefined, weak: undefined, phaseAtKill: undefined, selfClosed: false };
      recs.add(rec);
      byThread.set(ti, rec);
      const conn = openLine('net', rec);
      await conn.ready;
      rec.phase = 'request';
      check((await conn.request('sabotage')) === 'sabotage', 'sabotage private reply');
      rec.phase = 'parked';
      parked.send();
      await sleep(30);
    }));
    await parked.wait();
    await H.injectKill(ti, gt, 'kill');
    await H.checkWait(ti, gt);
    await H.waitFor(() => recs.size === 0, 'the reaper to judge the sabotaged connection');
  }

  /** A victim creates the lazy pg client, uses it, is killed idle; then a survivor uses it (the sabotage closed it). */
  async function sabotageShared() {
    const victim = new H.ThreadInfo('sabotage-orphan-shared', 'victim');
    victim.useUntil = false;
    const parked = new Event();
    const gv = evy.spawn(H.body(victim, async () => {
      await lazyClient(victim, 'pg');
      parked.send();
      await sleep(30);
    }));
    await parked.wait();
    await H.injectKill(victim, gv, 'kill');
    await H.checkWait(victim, gv);
    const survivor = new H.ThreadInfo('sabotage-orphan-shared', 'survivor');
    const gs = evy.spawn(H.body(survivor, () => lazyClient(survivor, 'pg')));
    await gs.wait().catch(() => {});
    H.classify([victim, survivor]);
  }

  return {
    scenarios: [
      ['private', privateScenario, 4],
      ['lazy', lazyScenario, 4],
    ],
    async sabotage(mode) {
      if (mode === 'lingering' || mode === 'orphan-ref') await sabotagePrivate();
      else if (mode === 'orphan-shared') await sabotageShared();
    },
    /** After the waves: the reaper judges what is left (bounded by CLOSE_BOUND_MS once every thread has ended). */
    async drain() {
      reaping = false;
      stopAt = performance.now();
      await reaperEnded;
    },
    /** Then, before the leak check, the harness's own clients end. */
    close() {
      for (const s of kept) s.destroy();
      const closing = [];
      for (const slot of lazySlots) {
        slot.ending = true;
        closing.push(slot.ready.then((c) => c.end()).catch(() => {}));
      }
      for (const c of tinyPool.all) {
        c.ending = true;
        c.sock.destroy();
      }
      closing.push(side.end().catch(() => {}));
      wss.close();
      return Promise.all(closing);
    },
    summary() {
      const ms = pstats.closedAfterMs.sort((a, b) => a - b);
      const q = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))].toFixed(0) : '-');
      return [
        `chaos: private connections: ${Object.entries(pstats.kinds).map(([k, n]) => `${k}=${n}`).join(' ')}; killed idle ${pstats.killedIdle}, killed in a request or connecting ${pstats.killedBusy} (${Object.entries(pstats.atKill).map(([k, n]) => `${k}=${n}`).join(' ')}), kept and closed by a live thread ${pstats.survivors}; closed on the server after the thread's end (ms, with collections every ${ROUND_MS} ms): median ${q(0.5)}, p99 ${q(0.99)}, max ${q(1)} over ${ms.length}`,
        `chaos: lazily shared clients: ${Object.entries(lstats.made).map(([k, n]) => `${k}=${n}`).join(', ')}; creator killed while its client sat idle, then a later thread came: ${lstats.killedIdle} (orphaned by evy then: ${lstats.orphaned}, served that thread: ${lstats.servedAfter}); closed while idle without a kill: ${lstats.closedIdle}`,
      ];
    },
  };
}
