// Request threads (issue 23; docs/servers.md): harness threads are HTTP clients of the harness's own app
// servers, whose handlers run in request threads (patch key `http`) and do real work: a pg.Pool query (a
// pg_sleep), an upstream request to another harness server (http.get or fetch), a timer, a `sleep` child. Clients
// abort at random moments (their thread is killed, or they destroy the request themselves); one app server has a
// per-server deadline (`requestDeadline`) answered 503.
//
// What must hold, per request:
// - a request whose client did not abort gets its answer: 200 and its own body, or 503 from the deadline server
//   once the request is older than the deadline; anything else fails the client's operation (collateral, or
//   misdirected when the server's error was a server-side cancel: classify.mjs);
// - a request the server saw aborted (the response closed before the app ended it) or cut at its deadline is
//   stopped within REQ_BOUND_MS: its handler has ended, its statement is gone from pg_stat_activity, its upstream
//   request is closed on the upstream server, its child is gone, and its timer never fires (`lingering`).
import http from 'node:http';
import { spawn as cpSpawn } from 'node:child_process';
import pg from 'pg';

/** How long after a request was aborted (or cut at its deadline) its work may still be found. */
export const REQ_BOUND_MS = 3000;
/** The deadline of the deadline server (seconds). */
const DEADLINE_S = 0.15;

export async function setupRequests(H) {
  const { evy, op, check, count, rint, chance, weighted, rand, killable, aw, ot, foreignDelay, VERBOSE, SABOTAGE, PG, MARK, childPids } = H;
  const { unowned } = evy;

  // ---- the upstream server (the harness's: unowned, so no request threads of its own) -------------------
  const upOpen = new Map(); // rid -> open upstream requests
  const up = unowned(() =>
    http.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      const rid = u.searchParams.get('rid');
      const ms = Number(u.searchParams.get('ms'));
      upOpen.set(rid, (upOpen.get(rid) ?? 0) + 1);
      let t = null;
      res.on('close', () => {
        if (t !== null) ot.clearTimeout(t);
        const n = upOpen.get(rid) - 1;
        if (n === 0) upOpen.delete(rid);
        else upOpen.set(rid, n);
      });
      // fetch's connections are undici's own pool: not kept alive, so that none is left idle at the leak check.
      if (u.searchParams.has('close')) res.setHeader('Connection', 'close');
      if (ms >= 0) t = ot.setTimeout(() => res.end(`up:${rid}`), ms);
      else if (ms === -1) res.writeHead(200).write('partial'); // never ends: only the client's going away ends it
      // -2: no answer at all
    }),
  );
  up.on('connection', H.track);
  const UP_PORT = await unowned(() => H.listenOn(up));
  H.harnessServers.add(up);
  H.portNames[UP_PORT] = 'the upstream server';
  H.leakNames[UP_PORT] = 'upstream';

  // ---- the app: what its handlers use (made at startup, their connections made by the request threads) ---
  const appPool = new pg.Pool({ ...PG, max: 6, application_name: 'evy-chaos-app' });
  appPool.on('error', () => {});
  H.watchPgPool(appPool, 'app pg.Pool');
  const upAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const side = unowned(() => new pg.Client({ ...PG, application_name: 'evy-chaos-req-side' }));
  side.on('error', () => {});
  await unowned(() => side.connect());

  const reqs = new Map(); // rid -> record (what the server saw and did)
  const rstats = { sent: 0, ok: 0, got503: 0, aborted: 0, killedClient: 0, serverAborted: 0, deadlineCut: 0, stoppedMs: [], works: {} };
  const mainThread = evy.getcurrent();

  async function work(item, rec) {
    const [kind, arg] = item;
    rstats.works[kind] = (rstats.works[kind] ?? 0) + 1;
    if (kind === 'pg') {
      const r = await appPool.query(`SELECT /*chaos-rid:${rec.rid}*/ $1::text AS v, pg_sleep($2)`, [rec.rid, arg]);
      check(r.rows[0].v === rec.rid, 'app pg value');
    } else if (kind === 'up' || kind === 'fetch') {
      const url = `http://127.0.0.1:${UP_PORT}/up?rid=${rec.rid}&ms=${arg}${kind === 'fetch' ? '&close=1' : ''}`;
      let body;
      if (kind === 'fetch') {
        // undici's socket is a raw one: while a reply streams in, a kill does not cut it (docs/patching.md), so a
        // body that never ends is read with the thread's signal, as the docs say; one that never starts needs none.
        const r = await fetch(url, arg === -1 ? { signal: evy.getcurrent().signal } : undefined);
        body = await r.text();
      } else {
        body = await new Promise((resolve, reject) => {
          const r = http.get(url, { agent: upAgent }, (resp) => {
            let b = '';
            resp.setEncoding('utf8');
            resp.on('data', (d) => (b += d));
            resp.on('end', () => resolve(b));
            resp.on('error', reject);
          });
          r.on('error', reject);
        });
      }
      check(body === `up:${rec.rid}`, 'upstream body');
    } else if (kind === 'timer') {
      await new Promise((resolve) =>
        setTimeout(() => {
          rec.timerFiredAt = performance.now();
          if (rec.stoppedAt !== undefined) count('lingering', `request ${rec.rid}: its timer fired ${(rec.timerFiredAt - rec.stoppedAt).toFixed(0)} ms after the request was ${rec.stopWhy}`);
          resolve();
        }, arg),
      );
    } else if (kind === 'child') {
      const c = cpSpawn('sleep', [String(arg)], { stdio: 'ignore' });
      c.on('error', () => {});
      childPids.add(c.pid);
      rec.pids.push(c.pid);
      const code = await c.wait();
      check(code === 0, `app child exit code ${code}`);
    }
  }

  async function handler(req, res) {
    const u = new URL(req.url, 'http://x');
    const rid = u.searchParams.get('rid');
    const rec = reqs.get(rid);
    if (rec === undefined) return void res.writeHead(404).end();
    rec.serverAt = performance.now();
    rec.thread = evy.getcurrent();
    if (rec.fetch) res.setHeader('Connection', 'close'); // the client's undici pool keeps no idle socket
    if (evy.getcurrent() === mainThread && SABOTAGE !== 'request-unowned') count('unsettled', `request ${rid}: its handler runs in no request thread (the http patch is off?)`);
    res.on('close', () => {
      if (res.writableEnded) return;
      rec.stoppedAt = performance.now();
      rec.stopWhy = 'aborted by its client';
      rstats.serverAborted++;
    });
    res.on('finish', () => {
      if (res.statusCode === 503 && rec.answeredAt === undefined) {
        rec.stoppedAt = performance.now();
        rec.stopWhy = 'cut at its deadline';
        rstats.deadlineCut++;
      }
    });
    try {
      if (rec.parallel) await Promise.all(rec.works.map((w) => work(w, rec)));
      else for (const w of rec.works) await work(w, rec);
      rec.answeredAt = performance.now();
      res.end(`ok:${rid}`);
    } catch (e) {
      rec.handlerError = e;
      if (!res.headersSent && !res.destroyed) {
        res.statusCode = 500;
        res.setHeader('x-chaos-code', String(e?.code ?? e?.errno ?? ''));
        res.end(`error:${rid}:${e?.message}`);
      }
    } finally {
      rec.handlerEndedAt = performance.now();
    }
  }

  // Listening from main, outside unowned(): its requests run in request threads (with --sabotage request-unowned,
  // inside unowned(), as if the patch were off: nothing kills a request's work).
  const listen = (srv) => (SABOTAGE === 'request-unowned' ? unowned(() => H.listenOn(srv)) : H.listenOn(srv));
  const app = http.createServer(handler);
  const appDl = evy.requestDeadline(http.createServer(handler), DEADLINE_S);
  for (const srv of [app, appDl]) {
    srv.on('connection', H.track);
    H.harnessServers.add(srv);
  }
  const APP_PORT = await listen(app);
  const APPDL_PORT = await listen(appDl);
  Object.assign(H.portNames, { [APP_PORT]: 'the app server', [APPDL_PORT]: 'the app server with a deadline' });
  Object.assign(H.leakNames, { [APP_PORT]: 'app', [APPDL_PORT]: 'app-deadline' });
  const appAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  /** One request as a client: resolves with { status, body, code } or 'aborted' (the client gave up on purpose). */
  function call(rec, abortMs) {
    const path = `/work?rid=${rec.rid}`;
    const port = rec.deadline ? APPDL_PORT : APP_PORT;
    if (rec.fetch) {
      const ac = new AbortController();
      if (abortMs !== null) ot.setTimeout(() => ((rec.clientAbortAt = performance.now()), ac.abort()), abortMs);
      return fetch(`http://127.0.0.1:${port}${path}`, { signal: ac.signal }).then(
        async (r) => ({ status: r.status, code: r.headers.get('x-chaos-code'), body: await r.text() }),
        (e) => {
          if (rec.clientAbortAt !== undefined && e?.name === 'AbortError') return 'aborted';
          throw e;
        },
      ).catch((e) => {
        if (rec.clientAbortAt !== undefined) return 'aborted';
        throw e;
      });
    }
    return new Promise((resolve, reject) => {
      const r = http.get({ host: '127.0.0.1', port, path, agent: appAgent }, (resp) => {
        let b = '';
        resp.setEncoding('utf8');
        resp.on('data', (d) => (b += d));
        resp.on('end', () => resolve({ status: resp.statusCode, code: resp.headers['x-chaos-code'], body: b }));
        resp.on('error', () => {});
        resp.on('close', () => {
          if (!resp.complete) (rec.clientAbortAt !== undefined ? resolve('aborted') : reject(new Error(`app response aborted (${path})`)));
        });
      });
      r.on('error', (e) => (rec.clientAbortAt !== undefined ? resolve('aborted') : reject(e)));
      r.on('close', () => rec.clientAbortAt !== undefined && resolve('aborted'));
      if (abortMs !== null) {
        ot.setTimeout(() => {
          if (r.destroyed) return;
          rec.clientAbortAt = performance.now();
          r.destroy();
        }, abortMs);
      }
    });
  }

  /** Work a request's handler does: short (answers by itself) or long (only a kill ends it). */
  function pickWorks(long) {
    const kinds = weighted([
      [['pg'], 3],
      [['up'], 2],
      [['fetch'], 1],
      [['timer'], 2],
      [['child'], 1],
      [['pg', 'up'], 1],
      [['timer', 'child'], 1],
      [['up', 'pg', 'timer'], 1],
    ]);
    const longOne = long ? rint(0, kinds.length - 1) : -1;
    return kinds.map((k, i) => {
      const isLong = i === longOne;
      if (k === 'pg') return ['pg', isLong ? 30 : chance(0.5) ? 0 : rand() * 0.01];
      if (k === 'up') return [k, isLong ? -1 : rint(0, 15)];
      if (k === 'fetch') return [k, isLong ? (chance(0.5) ? -1 : -2) : rint(0, 15)];
      if (k === 'timer') return ['timer', isLong ? 30_000 : rint(0, 10)];
      return ['child', isLong ? MARK : 0.01];
    });
  }

  let nextRid = 0;
  async function requestScenario(ti) {
    for (let k = rint(1, 2); k > 0; k--) {
      const deadline = chance(0.3);
      // The client gives up by itself now and then (whatever its role): it destroys its request.
      const abortMs = chance(0.2) ? rint(0, 120) : null;
      // Work that only a kill ends: for clients that will be killed or abort, and on the deadline server.
      const long = killable(ti) || abortMs !== null || (deadline && chance(0.5));
      const rid = `${H.SEED}-${process.pid}-${++nextRid}`;
      const rec = { rid, ti, deadline, fetch: chance(0.2), parallel: chance(0.4), works: pickWorks(long), long, pids: [] };
      reqs.set(rid, rec);
      rstats.sent++;
      const t0 = performance.now();
      const kinds = rec.works.map((w) => w[0]).join('+');
      const r = await op(ti, `request.${deadline ? 'deadline' : 'plain'}.${long ? 'long' : 'short'}`, async () => {
        const res = await aw(ti, call(rec, abortMs));
        if (res === 'aborted') return res;
        if (res.status === 200) {
          check(res.body === `ok:${rid}`, `request ${rid} (${kinds}) body ${JSON.stringify(res.body.slice(0, 60))}`);
          return res;
        }
        const elapsed = performance.now() - t0;
        if (res.status === 503 && deadline && elapsed >= DEADLINE_S * 1000) return res;
        const e = new Error(`request ${rid} (${kinds}${long ? ', long' : ''}) got ${res.status} after ${elapsed.toFixed(0)} ms${res.status === 503 ? (deadline ? ', before the deadline' : ' from the server without a deadline') : ''}: ${res.body.slice(0, 200)}`);
        if (res.code) e.code = res.code; // the server's error code (pg's SQLSTATE, mysql2's ER_...)
        throw e;
      });
      if (r === 'aborted') rstats.aborted++;
      else if (r.status === 503) rstats.got503++;
      else rstats.ok++;
      if (r !== 'aborted' && !rec.stoppedAt) reqs.delete(rid); // answered: nothing left to check
    }
  }

  // ---- the checker: a stopped request's work is gone within REQ_BOUND_MS ----------------------------------
  async function statementsOnServer() {
    const r = await unowned(() => side.query("SELECT substring(query from 'chaos-rid:([0-9-]+)') AS rid FROM pg_stat_activity WHERE state <> 'idle' AND query LIKE '%chaos-rid:%' AND pid <> pg_backend_pid()"));
    return new Set(r.rows.map((x) => x.rid));
  }
  /** What of a stopped request is still there. */
  function leftOf(rec, onServer) {
    const left = [];
    // Its thread dead (a handler awaiting a promise whose work the kill stopped stays pending: detached).
    if (rec.thread !== undefined && !rec.thread.dead) left.push('its request thread (not killed)');
    if (onServer.has(rec.rid)) left.push('its statement on the server (pg_stat_activity)');
    if (upOpen.has(rec.rid)) left.push('its upstream request (open on the upstream server)');
    for (const pid of rec.pids) if (H.alive(pid)) left.push(`its child ${pid}`);
    return left;
  }
  let checking = true;
  let checkerDone;
  const checkerEnded = new Promise((r) => (checkerDone = r));
  let stopAt;
  async function checker() {
    try {
      while (checking || [...reqs.values()].some((r) => r.stoppedAt !== undefined)) {
        await new Promise((r) => ot.setTimeout(r, 150));
        const now = performance.now();
        // A record whose client is done and whose server never saw a stop: nothing to check.
        for (const [rid, rec] of reqs) {
          if (rec.stoppedAt === undefined && rec.ti.returned && (rec.serverAt === undefined ? now - (rec.ti.endedAt ?? now) > 2000 : rec.thread?.dead === true || rec.handlerEndedAt !== undefined)) reqs.delete(rid);
        }
        const stopped = [...reqs.values()].filter((r) => r.stoppedAt !== undefined);
        if (stopped.length === 0) {
          if (!checking && now - stopAt > 5000) break;
          continue;
        }
        let onServer;
        try {
          onServer = await statementsOnServer();
        } catch (e) {
          console.error('chaos: the request checker could not read pg_stat_activity:', e);
          onServer = new Set();
        }
        const t = performance.now();
        for (const rec of stopped) {
          const left = leftOf(rec, onServer);
          if (left.length === 0) {
            rstats.stoppedMs.push(t - rec.stoppedAt);
            reqs.delete(rec.rid);
          } else if (t - rec.stoppedAt > REQ_BOUND_MS) {
            count('lingering', `request ${rec.rid} (${rec.works.map((w) => w[0]).join('+')}, ${rec.deadline ? 'deadline server' : 'plain server'}) ${rec.stopWhy} ${((t - rec.stoppedAt) / 1000).toFixed(1)} s ago; still there: ${left.join(', ')}`);
            reqs.delete(rec.rid);
          }
        }
      }
    } finally {
      checkerDone();
    }
  }
  void checker();

  // ---- sabotage: the app's requests run in no thread (request-unowned), so an abort stops nothing ------------
  async function sabotageUnowned() {
    const ti = new H.ThreadInfo('sabotage-request-unowned', 'survivor');
    const gt = evy.spawn(H.body(ti, async () => {
      const rid = `${H.SEED}-${process.pid}-${++nextRid}`;
      const rec = { rid, ti, deadline: false, fetch: false, parallel: true, works: [['up', -1], ['timer', 600]], long: true, pids: [] };
      reqs.set(rid, rec);
      const r = await op(ti, 'request.plain.long', () => call(rec, 150));
      check(r === 'aborted', 'the sabotage request is aborted by its client');
    }));
    await gt.wait();
    await H.waitFor(() => reqs.size === 0, 'the request checker to judge the aborted request');
  }

  return {
    scenarios: [['request', requestScenario, 4]],
    async sabotage(mode) {
      if (mode === 'request-unowned') await sabotageUnowned();
    },
    async drain() {
      checking = false;
      stopAt = performance.now();
      await checkerEnded;
    },
    close() {
      appAgent.destroy();
      upAgent.destroy();
      return Promise.all([appPool.end().catch(() => {}), side.end().catch(() => {})]);
    },
    summary() {
      const ms = rstats.stoppedMs.sort((a, b) => a - b);
      const q = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))].toFixed(0) : '-');
      return [
        `chaos: request threads: ${rstats.sent} requests (${Object.entries(rstats.works).map(([k, n]) => `${k}=${n}`).join(' ')}): ${rstats.ok} answered 200, ${rstats.got503} 503 at the deadline, ${rstats.aborted} aborted by their client; the server saw ${rstats.serverAborted} aborted and cut ${rstats.deadlineCut} at the deadline; their work gone (ms after the stop, checked every 150 ms): median ${q(0.5)}, p99 ${q(0.99)}, max ${q(1)} over ${ms.length}`,
      ];
    },
  };
}
