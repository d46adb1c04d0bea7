// The scenario every runner's example runs: four tests that time out while holding something (an interval,
// a `sleep 60` child, an http request to a server that never answers, a PostgreSQL query), one that passes
// but leaves a server listening, and after each of them a test that checks it is all gone (and measures
// how long after the timeout that was). The example test files only register these with their runner.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

/** The per-test timeout the stuck tests run under (ms). */
export const TIMEOUT = Number(process.env.STUCK_TIMEOUT_MS ?? 500);

const state = { deadline: 0, interval: null, ticks: 0, child: null, req: null, pg: null, pgCode: null, leakedPort: 0 };
/** A server that accepts and never answers: a suite fixture (before/beforeAll), shared by the tests. */
let silent = null;

function measure(what, ms) {
  if (process.env.EVY_MEASURE_FILE) appendFileSync(process.env.EVY_MEASURE_FILE, `${JSON.stringify({ what, ms: Math.round(ms * 10) / 10 })}\n`);
}

/** Polls (every loop turn) until `gone()`; returns the ms from the stuck test's deadline to then. */
async function settle(what, gone, limitMs = 3000) {
  const t0 = performance.now();
  while (!gone()) {
    if (performance.now() - t0 > limitMs) throw new Error(`${what} still there ${limitMs} ms after the test after the timeout started`);
    await new Promise((r) => setImmediate(r));
  }
  const ms = performance.now() - state.deadline;
  measure(what, ms);
  return ms;
}

function startClock() {
  state.deadline = performance.now() + TIMEOUT;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startSilentServer() {
  silent = http.createServer(() => {}); // never responds
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
}

export async function stopSilentServer() {
  silent?.closeAllConnections();
  await new Promise((r) => silent.close(r));
}

export const stuck = {
  async interval() {
    startClock();
    state.interval = setInterval(() => state.ticks++, 10);
    await new Promise(() => {}); // waits forever: only the runner's timeout ends it
  },
  async child() {
    startClock();
    state.child = spawn('sleep', ['60']);
    await once(state.child, 'exit');
  },
  async http() {
    startClock();
    await new Promise((resolve, reject) => {
      state.req = http.get(`http://127.0.0.1:${silent.address().port}/slow`, resolve);
      state.req.on('error', reject);
    });
  },
  async pg() {
    startClock();
    const { default: pg } = await import('pg');
    state.pg = new pg.Client();
    await state.pg.connect();
    await state.pg.query('SELECT pg_sleep(30)').catch((e) => {
      state.pgCode = e.code; // 57014: evy cancelled the statement on the server at the timeout
      throw e;
    });
  },
};

export async function leaveServerListening() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  state.leakedPort = srv.address().port;
}

export const checks = {
  async interval() {
    await settle('interval cleared', () => state.interval._destroyed === true);
    const before = state.ticks;
    await delay(50);
    if (state.ticks !== before) throw new Error(`the interval of the timed-out test still ticks (${state.ticks - before} more)`);
  },
  async child() {
    await settle('sleep 60 child gone', () => state.child.exitCode !== null || state.child.signalCode !== null);
    if (alive(state.child.pid)) throw new Error(`sleep 60 (pid ${state.child.pid}) outlived its test`);
  },
  async http() {
    await settle('http request socket destroyed', () => state.req.destroyed === true || state.req.socket?.destroyed === true);
    const deadline = performance.now() + 1000;
    for (;;) {
      const n = await new Promise((r, j) => silent.getConnections((e, c) => (e ? j(e) : r(c))));
      if (n === 0) break;
      if (performance.now() > deadline) throw new Error(`the silent server still has ${n} connection(s) from the timed-out test`);
      await delay(5);
    }
  },
  async pg() {
    await settle('pg statement cancelled', () => state.pgCode === '57014');
    // The server's view: the statement is gone (the connection is kept; this test closes it).
    const { default: pg } = await import('pg');
    const c = new pg.Client();
    await c.connect();
    try {
      const deadline = performance.now() + 3000;
      for (;;) {
        const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()");
        if (r.rows[0].n === 0) break;
        if (performance.now() > deadline) throw new Error('the pg_sleep(30) backend of the timed-out test is still running');
        await delay(20);
      }
      if (state.pg.connection.stream.destroyed) throw new Error('the timed-out test\'s pg connection was destroyed instead of kept');
    } finally {
      await c.end();
      await state.pg.end();
    }
  },
  async leakedServer() {
    const err = await new Promise((resolve) => {
      const s = net.connect(state.leakedPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('error', resolve);
    });
    if (err === null || err.code !== 'ECONNREFUSED') throw new Error(`the leaked server on port ${state.leakedPort} is still listening`);
  },
};

export const others = {
  /** The last test of a file: records when it ended, to measure how long the runner takes to exit after it. */
  async last() {
    if (process.env.EVY_MEASURE_FILE) appendFileSync(process.env.EVY_MEASURE_FILE, `${JSON.stringify({ what: 'last test end', at: Date.now() })}\n`);
  },
  async quickTimer() {
    await delay(20);
  },
  async closedServerIsNoLeak() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    await new Promise((r) => srv.close(r));
  },
  async awaitedChildIsNoLeak() {
    const c = spawn('true');
    await once(c, 'exit');
  },
};
