// The chaos harness (docs/chaos.md): waves of green threads doing real I/O through shared clients, with
// kills, withTimeout deadlines and nested Timeouts injected at points chosen by a seeded PRNG. Run it
// through chaos/main.mjs (npm run chaos), which starts PostgreSQL/Redis/MariaDB and runs this file as
//   node --expose-gc --import ./register.mjs chaos/run.mjs --seed N --injections N
//
// Every operation is recorded with the thread that ran it, and every failure, kill, deadline and doom with the
// moment it happened. A failure is explained only by something that came before it (chaos/classify.mjs): its
// own thread's kill or fired deadline (expected), or a kill that legitimately destroyed the shared handle it
// used (excused: see `doom`). Anything else is collateral.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import crypto from 'node:crypto';
import * as tp from 'node:timers/promises';
import { spawn as cpSpawn, exec, execFile } from 'node:child_process';
import pg from 'pg';
import Redis from 'ioredis';
import mysql from 'mysql2/promise';
import * as evy from 'evy';
import { classifyFailure } from './classify.mjs';
import { setupPrivate } from './private.mjs';
import { setupRequests } from './requests.mjs';
import { setupCancel } from './cancel.mjs';

const { spawn, spawnAfter, sleep, until, Timeout, withTimeout, GreenletExit, GreenPool, GreenPile, Queue, Event, Semaphore, unowned } = evy;

// ---- stdio first, then the baseline ----------------------------------------------------------------
// Node creates process.stderr lazily (a socket's destroy reads it on Node 24): create stdio now, so the
// leak baseline includes it.
void process.stdout;
void process.stderr;
const T0 = performance.now();

// ---- arguments -------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const SEED = Number(opt('seed', '1'));
const INJECTIONS = Number(opt('injections', '1000'));
const SABOTAGE = opt('sabotage', null);
const NO_LISTENERS = argv.includes('--no-listeners');
const VERBOSE = argv.includes('--verbose');
// --only a,b: run only these scenarios (to chase one kind of failure; the queue consumers and producers still run).
const ONLY = opt('only', null)?.split(',') ?? null;
// random | on | off: whether the shared clients and the pool of pg / mysql2 use TLS (random: each one a coin toss).
const tlsMode = (name) => {
  const mode = opt(name, 'random');
  if (!['random', 'on', 'off'].includes(mode)) {
    console.error(`--${name} must be one of random, on, off`);
    process.exit(2);
  }
  return mode;
};
const PG_TLS_MODE = tlsMode('pg-tls');
const MYSQL_TLS_MODE = tlsMode('mysql-tls');
const WATCHDOG_S = Number(opt('watchdog', String(Math.max(180, INJECTIONS * 0.05))));
const COUNTERS = ['collateral', 'integrity', 'unsettled', 'leaked', 'orphans', 'unhandled', 'wrongerror', 'lingering', 'misdirected', 'fallback'];
// Each sabotage mode (see sabotage() and docs/chaos.md) and the one counter it must move.
const SABOTAGES = { ...Object.fromEntries(COUNTERS.map((c) => [c, c])), 'kill-shared': 'collateral', 'orphan-ref': 'lingering', 'orphan-shared': 'collateral', 'request-unowned': 'lingering', 'cancel-skip': 'lingering', 'unblock-skip': 'lingering', 'pool-twice': 'integrity' };
if (SABOTAGE !== null && !(SABOTAGE in SABOTAGES)) {
  console.error(`--sabotage must be one of ${Object.keys(SABOTAGES).join(', ')}`);
  process.exit(2);
}
for (const k of ['PGHOST', 'PGPORT', 'REDIS_PORT', 'MYSQL_HOST', 'MYSQL_PORT', 'MYSQL_USER', 'CHAOS_CA', 'CHAOS_KEY', 'CHAOS_CERT']) {
  if (!process.env[k]) {
    console.error(`chaos/run.mjs: ${k} is not set (run it through chaos/main.mjs: npm run chaos)`);
    process.exit(2);
  }
}

// ---- seeded PRNG (mulberry32) ----------------------------------------------------------------------
let prngState = SEED >>> 0 || 1;
function rand() {
  prngState = (prngState + 0x6d2b79f5) >>> 0;
  let t = prngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const rint = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const chance = (p) => rand() < p;
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
function weighted(table) {
  let total = 0;
  for (const [, w] of table) total += w;
  let r = rand() * total;
  for (const [v, w] of table) if ((r -= w) < 0) return v;
  return table[table.length - 1][0];
}

// ---- counters --------------------------------------------------------------------------------------
const counts = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
const examples = Object.fromEntries(COUNTERS.map((c) => [c, []]));
const stats = { injections: 0, fired: 0, ops: 0, opsFailed: 0, expected: 0, excused: 0, excusedNotClean: 0, threads: 0, waves: 0, kinds: {}, kindsFailed: {} };
const fmtErr = (e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
const portNames = {};
function count(counter, what, err) {
  counts[counter]++;
  const port = /127\.0\.0\.1:(\d+)/.exec(String(err?.message ?? ''))?.[1];
  if (port && portNames[port]) what += ` (port ${port} is ${portNames[port]})`;
  const line = err === undefined ? what : `${what}: ${err instanceof Error && err.stack ? err.stack : fmtErr(err)}`;
  if (examples[counter].length < 5) examples[counter].push(line);
  if (VERBOSE) console.error(`[${counter}] ${line}`);
}

// ---- the process-wide error listeners --------------------------------------------------------------
// Where an error object was last seen by an operation (to name the thread and op of an unhandled one).
const seenAt = new WeakMap();
const where = (e) => (e !== null && typeof e === 'object' && seenAt.has(e) ? ` [seen in ${seenAt.get(e)}]` : '');
if (!NO_LISTENERS) {
  process.on('uncaughtException', (e) => count('unhandled', `uncaughtException${where(e)}`, e));
  process.on('unhandledRejection', (e) => count('unhandled', `unhandledRejection${where(e)}`, e));
}

// Foreign timers: not owned by any thread (the originals), so a kill never clears them.
const ot = evy.original('timers');
const foreignDelay = (ms, v) => new Promise((r) => ot.setTimeout(r, ms, v));

// Taken before the watchdog timer exists: it is cleared before the leak check.
const baseline = process.getActiveResourcesInfo();

// ---- global watchdog: everything stops by itself ----------------------------------------------------
const live = new Set(); // ThreadInfo of threads not yet ended
const watchdog = ot.setTimeout(() => {
  console.error(`chaos: WATCHDOG after ${WATCHDOG_S} s: stuck. Live threads:`);
  for (const ti of [...live].slice(0, 30)) console.error(`  #${ti.id} ${ti.scenario} role=${ti.role} op=${ti.op ?? '-'} killed=${ti.killed}`);
  try {
    console.error(evy.debug.formatThreads().slice(0, 4000));
  } catch {
    /* best effort */
  }
  printSummary();
  process.exit(3);
}, WATCHDOG_S * 1000);
const fdCount = () => {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
};
// What each open fd is (the listing's own directory fd reads as '?', at the start as at the end).
const fdLinks = () => {
  try {
    return fs.readdirSync('/proc/self/fd').map((f) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${f}`);
      } catch {
        return '?';
      }
    });
  } catch {
    return [];
  }
};
const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];
/** `socket:[inode]` named from /proc/net/{tcp,tcp6,unix}: its ports (and the server each is), its TCP state. */
function describeFd(link, names) {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  if (m === null) return link;
  const port = (hex) => {
    const p = parseInt(hex.split(':').pop(), 16);
    return names[p] ? `${p} (${names[p]})` : String(p);
  };
  for (const table of ['tcp', 'tcp6', 'unix']) {
    let rows;
    try {
      rows = fs.readFileSync(`/proc/self/net/${table}`, 'utf8').split('\n').slice(1);
    } catch {
      continue;
    }
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      if (table === 'unix' ? f[6] !== m[1] : f[9] !== m[1]) continue;
      if (table === 'unix') return `${link} unix ${f[7] ?? '(unnamed)'}`;
      return `${link} ${table} :${port(f[1])} -> :${port(f[2])} ${TCP_STATES[parseInt(f[3], 16)] ?? f[3]}`;
    }
  }
  return link;
}
/** The entries of `now` not in `before` (a multiset difference): what a leak report should name. */
const added = (before, now) => {
  const left = new Map();
  for (const l of before) left.set(l, (left.get(l) ?? 0) + 1);
  return now.filter((l) => {
    const n = left.get(l) ?? 0;
    if (n > 0) left.set(l, n - 1);
    return n === 0;
  });
};
const heap = () => {
  global.gc?.();
  global.gc?.();
  return process.memoryUsage().heapUsed;
};
const heapStart = heap();

// ---- the harness's own servers (unowned: no kill may touch them) ------------------------------------
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), `evy-chaos-${process.pid}-`));
const CA = fs.readFileSync(process.env.CHAOS_CA);
// Every `sleep` the harness starts carries this marker, so a /proc scan finds orphans the pid lists missed.
const MARK = `29.${String(process.pid).padStart(6, '0')}${SEED % 10}`;
const PIDFILE = path.join(TMP, 'pids');
const serverSockets = new Set();
// The connections the harness's servers hold open, as `<server port>:<client port>`: what a server sees of a client.
const peerOpen = new Set();
const track = (s) => {
  serverSockets.add(s);
  const key = `${s.localPort}:${s.remotePort}`;
  if (!peerOpen.has(key)) {
    peerOpen.add(key);
    s.on('close', () => peerOpen.delete(key));
  }
  s.on('error', () => {});
};

const httpServer = unowned(() =>
  http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const v = u.searchParams.get('v') ?? '';
    if (u.pathname === '/fast') res.end(v);
    else if (u.pathname === '/slow') {
      const t = ot.setTimeout(() => res.end(v), Number(u.searchParams.get('ms') ?? 10));
      res.on('close', () => ot.clearTimeout(t));
    } else if (u.pathname === '/never') {
      res.writeHead(200);
      res.write('partial'); // headers and part of a body: the client is mid-response when killed
    } else if (u.pathname === '/stream') {
      const n = Number(u.searchParams.get('n') ?? 10);
      let i = 0;
      const next = () => {
        if (res.destroyed) return;
        if (i === n) return void res.end();
        res.write(`${v}:${i++}\n`);
        ot.setImmediate(next);
      };
      next();
    } else {
      res.statusCode = 404;
      res.end();
    }
  }),
);
httpServer.on('connection', track);

// Line echo: `<id> <delayMs> <payload>\n` is echoed back after delayMs, in order per connection.
function echoHandler(sock) {
  track(sock);
  let buf = '';
  let chain = Promise.resolve();
  let dup = SABOTAGE === 'integrity'; // sabotage: echo one line twice (a duplicated message)
  // The delays end with the connection: a closed one leaves no timer of the harness's own behind (the leak
  // check runs while this server is still up).
  const delays = new Map(); // timer -> resolve
  sock.on('close', () => {
    for (const [t, resolve] of delays) ot.clearTimeout(t), resolve();
    delays.clear();
  });
  const pause = (ms) =>
    new Promise((resolve) => {
      if (sock.destroyed) return resolve();
      const t = ot.setTimeout(() => (delays.delete(t), resolve()), ms);
      delays.set(t, resolve);
    });
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i + 1);
      buf = buf.slice(i + 1);
      const delay = Number(line.split(' ', 2)[1]) || 0;
      chain = chain.then(async () => {
        if (delay > 0) await pause(delay);
        if (!sock.destroyed) sock.write(line);
        if (dup && line.includes('shared-line') && !sock.destroyed) {
          dup = false;
          sock.write(line);
        }
      });
    }
  });
}
const echoServer = unowned(() => net.createServer(echoHandler));
const tlsServer = unowned(() =>
  tls.createServer({ key: fs.readFileSync(process.env.CHAOS_KEY), cert: fs.readFileSync(process.env.CHAOS_CERT) }, echoHandler),
);
// The TCP socket under each TLS connection too: that is the handle the leak check sees.
echoServer.on('connection', track);
tlsServer.on('connection', track);
const listenOn = (srv) => new Promise((r) => srv.listen(0, '127.0.0.1', () => r(srv.address().port)));
const HTTP_PORT = await unowned(() => listenOn(httpServer));
const ECHO_PORT = await unowned(() => listenOn(echoServer));
const TLS_PORT = await unowned(() => listenOn(tlsServer));
// A GreenSocket listener several threads accept on (accept interrupted by Timeouts must not lose a client).
let acceptor = await unowned(() => evy.listen(['127.0.0.1', 0]));
let ACCEPT_PORT = acceptor.getsockname()[1];
const acceptPorts = new Set([ACCEPT_PORT]);
const abandonedTokens = new Set(); // clients whose acceptor was killed or timed out: the next accept skips them
const acceptLock = new Semaphore(1);

Object.assign(portNames, { [HTTP_PORT]: 'the http server', [ECHO_PORT]: 'the echo server', [TLS_PORT]: 'the TLS echo server', [ACCEPT_PORT]: 'the GreenSocket listener' });
const PG = { host: process.env.PGHOST, port: Number(process.env.PGPORT), user: process.env.PGUSER, database: process.env.PGDATABASE, password: process.env.PGPASSWORD };
const REDIS = { host: process.env.REDIS_HOST, port: Number(process.env.REDIS_PORT), username: process.env.REDIS_USER, password: process.env.REDIS_PASSWORD };
const MYSQL = { host: process.env.MYSQL_HOST, port: Number(process.env.MYSQL_PORT), user: process.env.MYSQL_USER, password: process.env.MYSQL_PASSWORD, database: process.env.MYSQL_DATABASE };
// The servers offer TLS (a self-signed certificate): half of the pg and mysql2 clients use it, so the client
// swaps its socket for a TLS one started on it mid-handshake.
const CLIENT_TLS = { ssl: { rejectUnauthorized: false } };
const tlsChoice = (mode) => (mode === 'on' ? true : mode === 'off' ? false : chance(0.5));
const pgTls = () => tlsChoice(PG_TLS_MODE);
const mysqlTls = () => tlsChoice(MYSQL_TLS_MODE);
/** A socket as evy sees it (its ownership state: docs/patching.md), for a stuck thread's report. */
function socketState(sock) {
  if (!sock) return 'no socket';
  const sym = (name) => sock[Symbol.for(`evy.net.${name}`)];
  const users = sym('users')?.map((t) => t.name ?? '?');
  const parent = sock._parent ? `; under it ${socketState(sock._parent)}` : '';
  return `socket destroyed=${sock.destroyed} shared=${sym('shared') === true} users=[${users ?? ''}] setup=${sym('setup') === true} abandoned=${sym('abandoned') !== undefined} clientQueue=${sym('clientQueue') === true}${parent}`;
}
/** Shared clients made per Gen kind (printed at the end: proves that plain and TLS clients both ran). */
const made = {};
let madeAfterKill = 0;
function madeClient(gen, ti, budget) {
  gen.createdBy = `#${ti.id} ${ti.role}${ti.deadline ? ` ${ti.deadline}` : ''}`;
  made[gen.kind] = (made[gen.kind] ?? 0) + 1;
  // A thread already killed whose code still runs (detached on a foreign promise) makes a client: evy abandons
  // a setup begun after the kill, destroying it once it has been quiet for 50 ms unless another thread starts
  // a request on it (docs/patching.md). Threads that only await its connect() in JavaScript are invisible to
  // evy: a slow handshake can cost them the connection, and that is the documented limit, not collateral.
  const afterKill = ti.killed || evy.getcurrent().signal.aborted;
  if (afterKill) {
    madeAfterKill++;
    gen.dooms.push({ at: performance.now(), by: `#${ti.id} (made it after its own kill: its setup is abandoned)` });
  }
  if (VERBOSE) console.error(`chaos: ${gen.createdBy} creates a ${gen.kind} (retired after ${budget} operations)${afterKill ? ' after its own kill' : ''}`);
}
Object.assign(portNames, { [PG.port]: 'postgres', [REDIS.port]: 'redis', [MYSQL.port]: 'mariadb' });
let agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
const oldAgents = [];

// ---- threads and operations ------------------------------------------------------------------------
let nextId = 0;
class ThreadInfo {
  constructor(scenario, role) {
    this.id = ++nextId;
    this.scenario = scenario;
    this.role = role; // survivor | victim | deadline
    this.killed = false; // a kill (kill, killall, cancel, withTimeout expiry) was aimed at it
    this.killedAt = undefined; // performance.now() of the first one: what failed before it is not its doing
    // The kind of deadline it runs under (launchDeadline: 'withTimeout', 'Timeout'; true for a retry loop), for
    // the scenarios' choices. Whether and when it fired is `firedAt` (a withTimeout's firing is a kill: killedAt).
    this.deadline = role === 'deadline';
    this.firedAt = undefined;
    this.useUntil = role === 'deadline' || chance(0.3); // foreign awaits through evy.until
    this.inflight = new Set(); // shared-handle generations it has an operation outstanding on
    this.failures = [];
    this.op = null;
    this.started = false;
    this.returned = false; // the body returned (or threw) by itself
    stats.threads++;
  }
}

/**
 * A shared handle's incarnation. `dooms`: the kills that may legitimately have destroyed it, each with its
 * moment (a kill of a thread with an operation outstanding on it: evy destroys a connection its only user's
 * kill interrupts). `doomable` false: no kill may ever destroy it (a GreenSocket another thread made).
 */
class Gen {
  constructor(kind, { doomable = true } = {}) {
    this.kind = kind;
    this.doomable = doomable;
    this.dooms = [];
  }
}

/**
 * A kill is aimed at `ti` now (call it before the kill itself): what `ti` fails from now on is expected, and
 * the shared handles it has an operation outstanding on may legitimately die from now on.
 */
const doomHooks = [];
function doom(ti, why, at = performance.now()) {
  for (const hook of doomHooks) hook(ti, at);
  ti.killed = true;
  if (ti.killedAt === undefined) (ti.killedAt = at), (ti.killedBy = why);
  for (const g of ti.inflight) if (g.doomable && !g.dooms.some((d) => d.id === ti.id)) g.dooms.push({ at, id: ti.id, by: `#${ti.id} (${why}, op ${ti.op ?? '-'})` });
  if (SABOTAGE === 'kill-shared') killShared(ti);
}

const aw = (ti, p) => (ti.useUntil ? until(p) : p);
/**
 * The duration of a sleep statement issued later (from a callback of the thread's code): 30 s (only a
 * server-side cancel ends it) when `long` and the thread has not been killed by then, else `short`. A killed
 * thread's detached code issues statements nobody owns; they run (docs/patching.md).
 */
const sleepFor = (ti, long, short) => () => (long && !ti.killed ? 30 : short);
// Work that only ends with a kill (never routes, long sleeps, held handles) is for threads that will be
// killed: victims and withTimeout bodies. A Timeout alone interrupts the wait but kills nothing.
const killable = (ti) => ti.role === 'victim' || ti.deadline === 'withTimeout';

/**
 * Runs one operation for `ti`; a failure is recorded with its moment (classified at the end of the wave) and
 * rethrown. `note` (optional) is filled in by `fn` when it hands its request to `gen`'s connection: `sentAt`
 * (performance.now()) if that connection was still open, and `queued` for a watched client (pg, mysql2).
 */
async function op(ti, kind, fn, gen = null, note = null) {
  stats.ops++;
  stats.kinds[kind] = (stats.kinds[kind] ?? 0) + 1;
  ti.op = kind;
  ti.opAt = performance.now();
  ti.opGen = gen;
  if (gen) ti.inflight.add(gen);
  try {
    const r = await fn();
    return r;
  } catch (e) {
    stats.opsFailed++;
    stats.kindsFailed[kind] = (stats.kindsFailed[kind] ?? 0) + 1;
    ti.failures.push({ kind, err: e, gen, note, at: performance.now() });
    // A killed thread's detached code can still fail after its wave was classified: classify it now.
    if (ti.classified) classifyOne(ti, ti.failures[ti.failures.length - 1]);
    ti.lastFailedOp = gen ? `${kind} on a ${gen.kind}` : kind;
    if (e !== null && typeof e === 'object' && !seenAt.has(e)) seenAt.set(e, `#${ti.id} ${ti.scenario} (${ti.role}${ti.deadline ? `, ${ti.deadline}` : ''}) op ${kind}`);
    throw e;
  } finally {
    if (gen) ti.inflight.delete(gen);
    ti.op = null;
  }
}
const check = (cond, what) => {
  if (!cond) throw new Error(`wrong result: ${what}`);
};

// ---- http ------------------------------------------------------------------------------------------
// Resolves with the body; settles on 'close' too, so a request without an 'error' listener that dies is
// noticed (its 'error' event then also reaches uncaughtException: that is counted separately).
function httpCall(pathq, { listener = true, useRequest = false, noAgent = false } = {}) {
  return new Promise((resolve, reject) => {
    let responded = false;
    const o = { host: '127.0.0.1', port: HTTP_PORT, path: pathq, agent: noAgent ? false : agent };
    const req = useRequest ? http.request({ ...o, method: 'GET' }) : http.get(o);
    req.on('response', (res) => {
      responded = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('close', () => {
        if (!res.complete) reject(new Error(`response aborted (${pathq})`));
      });
      res.on('error', () => {});
    });
    req.on('close', () => {
      if (!responded) reject(new Error(`request closed without a response (${pathq})`));
    });
    if (listener) req.on('error', reject);
    if (useRequest) req.end();
  });
}

async function httpScenario(ti) {
  for (let k = rint(1, 3); k > 0; k--) {
    const v = rint(1, 1e9);
    const route = weighted([
      ['fast', 4],
      ['slow', 3],
      ['stream', 2],
      ['never', killable(ti) ? 2 : 0],
    ]);
    const o = { listener: chance(0.6), useRequest: chance(0.4) };
    if (route === 'fast') check((await op(ti, 'http.fast', () => aw(ti, httpCall(`/fast?v=${v}`, o)))) === String(v), 'http fast body');
    else if (route === 'slow') check((await op(ti, 'http.slow', () => aw(ti, httpCall(`/slow?v=${v}&ms=${rint(1, 30)}`, o)))) === String(v), 'http slow body');
    else if (route === 'stream') {
      const n = rint(2, 30);
      const body = await op(ti, 'http.stream', () => aw(ti, httpCall(`/stream?v=${v}&n=${n}`, o)));
      check(body === Array.from({ length: n }, (_, i) => `${v}:${i}\n`).join(''), 'http stream body');
    } else await op(ti, 'http.never', () => aw(ti, httpCall('/never', o)));
  }
}

// Issue 11 item 3: the kill lands between the socket's creation and http's tickOnSocket (a microtask or a
// nextTick after http.get returned), on a request with or without an 'error' listener.
async function httpWindowScenario(ti, gt) {
  const o = { listener: chance(0.5), useRequest: chance(0.3), noAgent: chance(0.3) };
  const p = httpCall(`/slow?v=1&ms=${rint(0, 20)}`, o);
  p.catch(() => {});
  const killNow = () => unowned(() => injectKill(ti, gt(), 'window'));
  if (chance(0.5)) queueMicrotask(killNow);
  else process.nextTick(killNow);
  await op(ti, 'http.window', () => aw(ti, p));
}

// Issue 11 item 3: a thread killed while detached on a foreign promise resumes later and fires
// http.get(url, cb) without an 'error' listener.
async function detachedHttpScenario(ti) {
  await foreignDelay(rint(20, 150));
  await new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: HTTP_PORT, path: `/fast?v=2`, agent: chance(0.5) ? agent : undefined }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', resolve);
    });
    req.on('close', resolve);
  });
}

// ---- PostgreSQL ------------------------------------------------------------------------------------
// The shared client is created lazily by whichever thread first needs it, then used by everyone. Like the
// mysql2 one (below, where the reason is given), it retires after a random number of operations: the next
// user creates a new one, and the old one ends once its last operation has settled. Half of them use TLS.
let pgShared = null; // { gen, client, ready, budget, users, retired }
const pgSlots = new Set(); // slots whose client has not ended (ended at the end of the run)
function sharedPg(ti) {
  if (pgShared !== null) return pgShared;
  const tlsOn = pgTls();
  const gen = new Gen(tlsOn ? 'pg.Client (TLS)' : 'pg.Client');
  const client = new pg.Client({ ...PG, ...(tlsOn ? CLIENT_TLS : {}), application_name: 'evy-chaos' });
  const slot = { gen, client, ready: null, budget: rint(2, 40), users: 0, retired: false };
  madeClient(gen, ti, slot.budget);
  gen.describe = () => `${socketState(client.connection?.stream)}; pg: connected=${client._connected} queryable=${client._queryable} ending=${client._ending} readyForQuery=${client.readyForQuery} active=${JSON.stringify(client.activeQuery?.text ?? null)} queued=${client.queryQueue?.length}; slot users=${slot.users} retired=${slot.retired}`;
  pgSlots.add(slot);
  const drop = () => {
    if (pgShared === slot) pgShared = null;
  };
  client.on('error', drop); // pg emits 'error' when its connection dies: without a listener, a crash
  // pg emits 'end' once its socket has closed, whatever the cause (a failed connect too): nothing left to end.
  client.on('end', () => (drop(), pgSlots.delete(slot)));
  slot.ready = client.connect().then(() => {
    H.watchFallback(client.connection.stream, gen.kind, ti);
    return client;
  });
  slot.ready.catch(drop);
  pgShared = slot;
  return slot;
}
let pgPool = null;
function sharedPool() {
  if (pgPool === null) {
    pgPool = new pg.Pool({ ...PG, ...(pgTls() ? CLIENT_TLS : {}), max: 4, application_name: 'evy-chaos-pool' });
    pgPool.on('error', () => {}); // an idle client whose connection died: the pool drops it
    H.watchPgPool(pgPool, 'pg.Pool');
  }
  return pgPool;
}

/**
 * A user of a shared client's slot begins: the slot's budget counts down, and at 0 it retires (`unshare`
 * stops handing it out; the next user makes a new one).
 */
function useSlot(slot, unshare) {
  slot.users++;
  if (--slot.budget <= 0 && !slot.retired) {
    slot.retired = true;
    unshare(slot);
  }
}

/** That user is done: a retired slot whose last user has left is ended (QUIT or Terminate, written by no thread). */
function leaveSlot(slot, slots) {
  if (--slot.users !== 0 || !slot.retired || !slots.delete(slot)) return;
  unowned(() => slot.ready.then((c) => c.end()).catch(() => {}));
}

async function pgScenario(ti) {
  for (let k = rint(1, 3); k > 0; k--) {
    const s = sharedPg(ti);
    useSlot(s, () => {
      if (pgShared === s) pgShared = null;
    });
    const v = rint(1, 1e9);
    const note = {};
    try {
      if (killable(ti) && chance(0.3)) {
        // Short, or a statement only a server-side cancel ends (its kill must reach the server). Decided when it
        // is issued: a killed thread's detached code (after s.ready) issues a statement nobody owns, which runs.
        const x = sleepFor(ti, chance(0.5), rand() * 0.2);
        await H.sql(ti, 'pg', 'pg_sleep', 'SELECT pg_sleep($1)', (q) => op(ti, 'pg.client.sleep', () => aw(ti, s.ready.then((c) => clientSend(note, c, () => c.query(q, [x()])))), s.gen, note));
      } else {
        const sql = chance(0.5) ? 'SELECT $1::int AS v' : 'SELECT $1::int AS v, pg_sleep(0.005)';
        const r = await H.sql(ti, 'pg', 'query', sql, (q) => op(ti, 'pg.client.query', () => aw(ti, s.ready.then((c) => clientSend(note, c, () => c.query(q, [v])))), s.gen, note));
        check(r.rows[0].v === v, 'pg shared client value');
      }
    } finally {
      leaveSlot(s, pgSlots);
    }
  }
}

async function pgPoolScenario(ti) {
  const pool = sharedPool();
  const v = rint(1, 1e9);
  // A long statement only where a kill ends it (an interrupted until() would leave it holding a connection).
  if ((ti.role === 'victim' || ti.deadline === 'withTimeout') && chance(0.4)) {
    await H.sql(ti, 'pg', 'pg_sleep', 'SELECT pg_sleep(30)', (q) => op(ti, 'pg.pool.sleep', () => aw(ti, pool.query(q))));
  } else if (chance(0.5)) {
    const r = await H.sql(ti, 'pg', 'query', 'SELECT $1::int AS v, pg_sleep(0.01)', (q) => op(ti, 'pg.pool.query', () => aw(ti, pool.query(q, [v]))));
    check(r.rows[0].v === v, 'pg pool value');
  } else {
    // Checkout / release explicitly (a finally that releases, as apps do).
    // A plain await: until() would abandon a checkout that completes later, and the client would never be released.
    const c = await op(ti, 'pg.pool.connect', () => pool.connect());
    let broken;
    try {
      const r = await H.sql(ti, 'pg', 'query', 'SELECT $1::int AS v', (q) => op(ti, 'pg.pool.client.query', () => aw(ti, c.query(q, [v]))));
      check(r.rows[0].v === v, 'pg pool client value');
    } catch (e) {
      broken = e;
      throw e;
    } finally {
      c.release(broken);
    }
  }
}

// ---- MySQL (mysql2 against MariaDB) ----------------------------------------------------------------
// The same shapes as pg: a shared connection that the first thread needing it creates, and a pool.
// Unlike pg's, the shared connection retires after a random number of operations (the next user creates a
// new one; the old one ends once its last operation has settled). The first time two threads' commands
// overlap on it (one queued in mysql2 behind another's), evy marks its socket shared for the rest of its
// life and no kill destroys it again: with one connection per run, the queue watch, the creator's connect
// window and a kill of the only thread using it would each be exercised in the first moments only.
let mysqlShared = null; // { gen, conn, ready, budget, users, retired }
const mysqlSlots = new Set(); // slots not yet ended (closed at the end of the run)
function sharedMysql(ti) {
  if (mysqlShared !== null) return mysqlShared;
  const tlsOn = mysqlTls();
  const gen = new Gen(tlsOn ? 'mysql2.Connection (TLS)' : 'mysql2.Connection');
  const slot = { gen, conn: null, ready: null, budget: rint(2, 40), users: 0, retired: false };
  madeClient(gen, ti, slot.budget);
  gen.describe = () => {
    const c = slot.conn?.connection;
    if (!c) return 'not connected yet';
    return `${socketState(c.stream)}; mysql2: closing=${c._closing} fatal=${c._fatalError?.code ?? null} command=${c._command?.constructor?.name ?? null}${c._command?.sql ? ` (${String(c._command.sql).slice(0, 80)})` : ""} queued=${c._commands?.length}; slot users=${slot.users} retired=${slot.retired}`;
  };
  mysqlSlots.add(slot);
  const drop = () => {
    if (mysqlShared === slot) mysqlShared = null;
    mysqlSlots.delete(slot); // dead: nothing to end
  };
  slot.ready = mysql.createConnection({ ...MYSQL, ...(tlsOn ? CLIENT_TLS : {}) }).then((conn) => {
    slot.conn = conn;
    // mysql2 emits 'error' on the connection when it dies with no command to hand the error to, and again
    // for a command added later ("closed state"): without a listener, that is an uncaughtException. A
    // destroyed socket with a command in flight gives the error to that command only: drop on 'close' too.
    const c = conn.connection;
    c.on('error', drop);
    c.on('end', drop);
    c.stream.on('close', drop);
    if (c.stream.destroyed) drop();
    else H.watchFallback(c.stream, gen.kind, ti);
    return conn;
  });
  slot.ready.catch(drop);
  mysqlShared = slot;
  return slot;
}
let mysqlPool = null;
function sharedMysqlPool() {
  if (mysqlPool === null) {
    mysqlPool = mysql.createPool({ ...MYSQL, ...(mysqlTls() ? CLIENT_TLS : {}), connectionLimit: 4 });
    // A pool connection has one once('error') of its own (it leaves the pool): a second 'error' (a command
    // added after it died) would be unhandled.
    mysqlPool.on('connection', (c) => c.on('error', () => {}));
    H.watchMysqlPool(mysqlPool, 'mysql2 pool');
  }
  return mysqlPool;
}

/**
 * Hands a command to a shared watched client (a pg.Client, or a mysql2 connection: both keep their socket in
 * `c.connection.stream`), noting whether that socket (and, over TLS, the TCP one under it) was open: from then on
 * evy sees the command in the client's queue, so no other thread's kill may destroy the connection under it.
 */
function clientSend(note, c, send) {
  const st = c.connection.stream;
  note.queued = !st.destroyed && st._parent?.destroyed !== true;
  if (note.queued) note.sentAt = performance.now();
  return send();
}

async function mysqlScenario(ti) {
  for (let k = rint(1, 3); k > 0; k--) {
    const s = sharedMysql(ti);
    useSlot(s, () => {
      if (mysqlShared === s) mysqlShared = null;
    });
    const v = rint(1, 1e9);
    const note = {};
    try {
      if (killable(ti) && chance(0.3)) {
        const x = sleepFor(ti, chance(0.5), rand() * 0.2);
        await H.sql(ti, 'mysql', 'SLEEP', 'SELECT SLEEP(?) AS s', (q) => op(ti, 'mysql.conn.sleep', () => aw(ti, s.ready.then((c) => clientSend(note, c, () => c.query(q, [x()])))), s.gen, note));
      } else if (chance(0.5)) {
        const sql = chance(0.5) ? 'SELECT ? AS v' : 'SELECT ? AS v, SLEEP(0.005) AS s';
        const [rows] = await H.sql(ti, 'mysql', 'query', sql, (q) => op(ti, 'mysql.conn.query', () => aw(ti, s.ready.then((c) => clientSend(note, c, () => c.query(q, [v])))), s.gen, note));
        check(rows[0].v === v, 'mysql shared connection value');
      } else {
        // A prepared statement: mysql2 writes the execute in reply to the prepare (then caches the statement).
        const [rows] = await op(ti, 'mysql.conn.execute', () => aw(ti, s.ready.then((c) => clientSend(note, c, () => c.execute('SELECT ? AS v', [v])))), s.gen, note);
        check(rows[0].v === v, 'mysql shared connection execute value');
      }
    } finally {
      leaveSlot(s, mysqlSlots);
    }
  }
}

async function mysqlPoolScenario(ti) {
  const pool = sharedMysqlPool();
  const v = rint(1, 1e9);
  // A long statement only where a kill ends it (an interrupted until() would leave it holding a connection).
  if ((ti.role === 'victim' || ti.deadline === 'withTimeout') && chance(0.4)) {
    await H.sql(ti, 'mysql', 'SLEEP', 'SELECT SLEEP(30) AS s', (q) => op(ti, 'mysql.pool.sleep', () => aw(ti, pool.query(q))));
  } else if (chance(0.5)) {
    const [rows] = await H.sql(ti, 'mysql', 'query', 'SELECT ? AS v, SLEEP(0.01) AS s', (q) => op(ti, 'mysql.pool.query', () => aw(ti, pool.query(q, [v]))));
    check(rows[0].v === v, 'mysql pool value');
  } else {
    // Checkout / release explicitly (a finally that releases, as apps do).
    // A plain await: until() would abandon a checkout that completes later, and the connection would never be released.
    const c = await op(ti, 'mysql.pool.getConnection', () => pool.getConnection());
    try {
      const [rows] = await H.sql(ti, 'mysql', 'query', 'SELECT ? AS v', (q) => op(ti, 'mysql.pool.conn.query', () => aw(ti, c.query(q, [v]))));
      check(rows[0].v === v, 'mysql pool connection value');
    } finally {
      c.release();
    }
  }
}

// ---- Redis -----------------------------------------------------------------------------------------
let redisShared = null; // { gen, client }
function sharedRedis() {
  if (redisShared === null) {
    const client = new Redis({ ...REDIS, maxRetriesPerRequest: 5 });
    const slot = { gen: new Gen('ioredis'), client };
    client.on('error', () => {});
    H.watchRedis(client, slot);
    client.on('end', () => {
      if (redisShared === slot) redisShared = null;
    });
    redisShared = slot;
  }
  return redisShared;
}

/** ioredis writes a command at once when its connection is ready; otherwise it queues it, to be written later from a callback. */
function redisSend(note, client, send) {
  if (client.status === 'ready' && client.stream?.writable === true) note.sentAt = performance.now();
  return send();
}

async function redisScenario(ti) {
  for (let k = rint(1, 3); k > 0; k--) {
    const s = sharedRedis();
    const key = `chaos:${SEED}:${process.pid}:${ti.id}:${k}`;
    const v = crypto.randomBytes(6).toString('hex');
    const what = weighted([
      ['setget', 3],
      ['pushpop', 2],
      ['blpop-empty', killable(ti) ? 2 : 0],
      ['blpop-long', killable(ti) ? 2 : 0],
    ]);
    const redisOp = (kind, send) => {
      const note = {};
      return op(ti, kind, () => aw(ti, redisSend(note, s.client, send)), s.gen, note);
    };
    if (what === 'setget') {
      await redisOp('redis.set', () => s.client.set(key, v, 'EX', 60));
      check((await redisOp('redis.get', () => s.client.get(key))) === v, 'redis get value');
    } else if (what === 'pushpop') {
      await redisOp('redis.lpush', () => s.client.lpush(key, v));
      const r = await redisOp('redis.blpop', () => s.client.blpop(key, 1));
      check(r !== null && r[1] === v, 'redis blpop value');
    } else if (what === 'blpop-empty') {
      // A short blocking pop on a key nobody pushes to: the connection is busy while the kill lands.
      await redisOp('redis.blpop.empty', () => s.client.blpop(`${key}:empty`, 0.05));
    } else {
      // A blocking pop only the kill ends (CLIENT UNBLOCK on the server): once the kill has had time to act,
      // the harness pushes an item on its key, which must stay there (not taken by the BLPOP, still blocked or
      // replayed after a reconnect).
      await H.redisBlocking(ti, `${key}:long`, (k) => redisOp('redis.blpop.long', () => s.client.blpop(k, 30)));
    }
  }
}

// ---- shared raw net connection: request/response lines multiplexed by id ----------------------------
// Integrity: the echo of every line must come back once, unaltered and in order.
let lineShared = null;
class LineConn {
  constructor(port, useTls) {
    this.gen = new Gen('net.line');
    allLineConns.add(this);
    this.pending = new Map();
    this.nextId = 0;
    this.expect = 1;
    this.buf = '';
    this.sock = useTls ? tls.connect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost' }) : net.connect(port, '127.0.0.1');
    this.sock.setEncoding('utf8');
    this.ready = new Promise((resolve, reject) => {
      this.sock.once(useTls ? 'secureConnect' : 'connect', resolve);
      this.sock.once('error', reject);
      // Destroyed while connecting without an error (a kill, the harness): its users must not wait forever.
      this.sock.once('close', () => reject(new Error('shared line connection closed before it connected')));
    });
    this.ready.catch(() => {});
    this.sock.on('error', () => {});
    this.sock.on('data', (d) => this.onData(d));
    this.sock.on('close', () => {
      allLineConns.delete(this);
      if (lineShared === this) lineShared = null;
      for (const [, p] of this.pending) p.reject(new Error('shared line connection closed'));
      this.pending.clear();
    });
  }
  onData(d) {
    this.buf += d;
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      const [idS, , payload] = line.split(' ');
      const id = Number(idS);
      if (id !== this.expect) count('integrity', `shared net line: got id ${id}, expected ${this.expect} (lost, duplicated or reordered)`);
      this.expect = Math.max(this.expect, id + 1);
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (p === undefined) continue; // abandoned by a killed thread, or a duplicate (counted above)
      if (payload !== p.payload) count('integrity', `shared net line ${id}: payload altered`);
      p.resolve(payload);
    }
  }
  /** Sends one line for thread `ti` (null: the harness's own); `note.sentAt` if the socket was still open. */
  request(payload, delay, ti = null, note = {}) {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { payload, resolve, reject, ti });
      if (!this.sock.destroyed) note.sentAt = performance.now();
      this.sock.write(`${id} ${delay} ${payload}\n`);
    });
  }
  /** Threads with a request written and not yet answered. */
  waiting() {
    return new Set([...this.pending.values()].map((p) => p.ti).filter((t) => t !== null));
  }
}
/** Every line connection made (the kill-shared sabotage looks for one the killed thread waits on). */
const allLineConns = new Set();
async function lineScenario(ti) {
  for (let k = rint(1, 4); k > 0; k--) {
    if (lineShared === null) lineShared = new LineConn(ECHO_PORT, false);
    const c = lineShared;
    const payload = `shared-line-${ti.id}-${k}-${crypto.randomBytes(4).toString('hex')}`;
    const delay = rint(0, 3) === 0 ? rint(1, 20) : 0;
    const note = {};
    const got = await op(ti, 'net.line', () => aw(ti, c.ready.then(() => c.request(payload, delay, ti, note))), c.gen, note);
    check(got === payload, 'net line echo');
  }
}

// ---- GreenSockets shared by threads (a lock serialises request/response) ----------------------------
// Issue 11 item 7: a Timeout that interrupts sendall/recv/readline on a socket the thread did not create
// must leave it open, no byte lost: the next user skips the stale echo (checked in order) and gets its own.
const gsShared = { recv: null, file: null };
const allGreenLines = []; // every shared GreenSocket the harness made: it closes them all at the end
class GreenLine {
  constructor(mode) {
    allGreenLines.push(this);
    this.mode = mode; // 'recv' (own buffer over recv) | 'file' (makefile().readline())
    // Made by a thread of its own (below): a kill or Timeout of a thread waiting on it only interrupts that
    // wait (docs/patching.md, GreenSockets), so no failure on it is ever excused.
    this.gen = new Gen(`GreenSocket.${mode}`, { doomable: false });
    this.lock = new Semaphore(1);
    this.nextId = 0;
    this.expect = 1;
    this.buf = Buffer.alloc(0);
    // connect() (like wait()) is an evy wait of the thread calling it: a Timeout or a kill of that thread
    // rejects it. A connection meant for everyone is made in a thread of its own, which publishes it.
    this.ready = new Promise((resolve, reject) => {
      spawn(async () => {
        const s = await evy.connect(['127.0.0.1', ECHO_PORT]);
        this.sock = s;
        if (mode === 'file') this.file = s.makefile('r');
      })
        .link((gt) => gt.wait().then(resolve, reject));
    });
    this.ready.catch(() => this.drop());
  }
  drop() {
    if (gsShared[this.mode] === this) gsShared[this.mode] = null;
    this.file?.close().catch(() => {});
    this.sock?.close(); // the harness's own connection: nobody else closes it
  }
  async readline() {
    if (this.mode === 'file') return (await this.file.readline()).toString();
    for (;;) {
      const i = this.buf.indexOf(10);
      if (i >= 0) {
        const line = this.buf.subarray(0, i + 1).toString();
        this.buf = this.buf.subarray(i + 1);
        return line;
      }
      const d = await this.sock.recv(65536);
      if (d.length === 0) return '';
      this.buf = Buffer.concat([this.buf, d]);
    }
  }
  /** Sends a line and reads until its own echo; stale echoes of interrupted requests must come in order. */
  async request(payload, delay) {
    await this.lock.acquire();
    try {
      const id = ++this.nextId;
      await this.sock.sendall(`${id} ${delay} ${payload}\n`);
      for (;;) {
        const line = await this.readline();
        if (line === '') {
          this.drop();
          if (VERBOSE) console.error(`chaos: shared GreenSocket(${this.mode}) got EOF`);
          throw new Error(`GreenSocket(${this.mode}) EOF`);
        }
        if (!line.endsWith('\n')) count('integrity', `GreenSocket(${this.mode}): partial line ${JSON.stringify(line.slice(0, 40))}`);
        const [idS, , body] = line.trimEnd().split(' ');
        const got = Number(idS);
        if (got !== this.expect) count('integrity', `GreenSocket(${this.mode}): got id ${got}, expected ${this.expect}`);
        this.expect = Math.max(this.expect, got + 1);
        if (got === id) {
          if (body !== payload) count('integrity', `GreenSocket(${this.mode}) ${id}: payload altered`);
          return body;
        }
      }
    } catch (e) {
      if (this.sock?.raw?.destroyed) this.drop();
      throw e;
    } finally {
      this.lock.release();
    }
  }
}
async function greenSocketScenario(ti) {
  for (let k = rint(1, 3); k > 0; k--) {
    const mode = chance(0.5) ? 'recv' : 'file';
    if (gsShared[mode] === null) gsShared[mode] = new GreenLine(mode);
    const g = gsShared[mode];
    // Big payloads sometimes, so sendall itself can be interrupted.
    const size = chance(0.1) ? rint(64 * 1024, 256 * 1024) : rint(4, 64);
    const payload = crypto.randomBytes(Math.ceil(size / 2)).toString('hex');
    const delay = ti.deadline ? rint(0, 40) : rint(0, 3);
    const got = await op(ti, `greensocket.${mode}`, async () => {
      await aw(ti, g.ready);
      return g.request(payload, delay);
    }, g.gen);
    check(got === payload, 'GreenSocket echo');
  }
}

// accept() on the shared listener; an interrupted accept must not swallow a client.
async function acceptScenario(ti) {
  await acceptLock.acquire();
  try {
    if (!acceptor.raw.listening) {
      // Destroyed by some kill (counted as collateral where it hit a clean thread): a new one, so that
      // one incident is not counted again by every later accept.
      acceptor = await unowned(() => evy.listen(['127.0.0.1', 0]));
      ACCEPT_PORT = acceptor.getsockname()[1];
      acceptPorts.add(ACCEPT_PORT);
      portNames[ACCEPT_PORT] = 'a GreenSocket listener';
    }
    if (ti.deadline && chance(0.6)) {
      // Nobody connects for us: a Timeout ends it. It may still get a connection an interrupted accept() put
      // back (that client's own thread has gone): close it, as an app's accept loop would.
      const [s] = await op(ti, 'greensocket.accept.idle', () => acceptor.accept());
      s.close();
      return;
    }
    const token = crypto.randomBytes(8).toString('hex');
    const c = net.connect(ACCEPT_PORT, '127.0.0.1');
    c.on('error', () => {});
    c.end(`${token}\n`);
    let done = false;
    try {
      for (;;) {
        const [s] = await op(ti, 'greensocket.accept', () => acceptor.accept());
        try {
          const f = s.makefile('r');
          let line;
          try {
            line = (await op(ti, 'greensocket.accept.read', () => f.readline())).toString();
          } finally {
            f.close(); // an open file keeps the socket open after close()
          }
          if (line === `${token}\n`) break;
          // EOF with no data: a client whose thread was killed before it sent (a survivor's never dies first).
          if (line === '') continue;
          if (abandonedTokens.delete(line.trim())) continue; // an earlier, interrupted accept's client
          count('integrity', `accept: got ${JSON.stringify(line)} instead of the token of the client just connected`);
          break;
        } finally {
          s.close();
        }
      }
      done = true;
    } finally {
      if (!done) abandonedTokens.add(token);
      c.destroy();
    }
  } finally {
    acceptLock.release();
  }
}

// ---- TLS: per-thread connections (node tls and evy.wrapSsl) -------------------------------------------
async function tlsScenario(ti) {
  const payload = `tls-${ti.id}-${crypto.randomBytes(4).toString('hex')}`;
  if (chance(0.5)) {
    const got = await op(ti, 'tls.connect', () =>
      aw(ti, new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: TLS_PORT, ca: CA, servername: 'localhost' }, () => s.write(`1 0 ${payload}\n`));
        let buf = '';
        s.setEncoding('utf8');
        s.on('data', (d) => {
          buf += d;
          if (buf.endsWith('\n')) {
            s.end();
            resolve(buf.trimEnd().split(' ')[2]);
          }
        });
        s.on('error', reject);
        s.on('close', () => reject(new Error('tls closed early')));
      })),
    );
    check(got === payload, 'tls echo');
  } else {
    const raw = await op(ti, 'evy.connect', () => evy.connect(['127.0.0.1', TLS_PORT]));
    let s = raw;
    try {
      s = await op(ti, 'evy.wrapSsl', () => evy.wrapSsl(raw, { ca: CA, servername: 'localhost' }));
      await op(ti, 'tls.sendall', () => s.sendall(`1 0 ${payload}\n`));
      const f = s.makefile('r');
      try {
        const line = (await op(ti, 'tls.readline', () => f.readline())).toString();
        check(line === `1 0 ${payload}\n`, 'wrapSsl echo');
      } finally {
        f.close();
      }
    } finally {
      s.close();
    }
  }
}

// ---- timers ------------------------------------------------------------------------------------------
async function timersScenario(ti) {
  if (killable(ti) && chance(0.5)) {
    // Long timers a kill must clear (else they are leaks): the thread then waits on them.
    const iv = setInterval(() => {}, 5);
    setTimeout(() => {}, 30_000);
    await op(ti, 'timers.long', () => (chance(0.5) ? tp.setTimeout(30_000) : sleep(30)));
    clearInterval(iv);
    return;
  }
  const fired = await op(ti, 'timers', () =>
    aw(ti, new Promise((resolve) => {
      let n = 0;
      const iv = setInterval(() => {
        if (++n === 3) {
          clearInterval(iv);
          setTimeout(() => setImmediate(() => resolve(n)), rint(0, 5));
        }
      }, 1);
    })),
  );
  check(fired === 3, 'interval count');
  check((await op(ti, 'timers/promises', () => tp.setTimeout(rint(0, 5), 'tp'))) === 'tp', 'timers/promises value');
  check((await op(ti, 'timers/promises.immediate', () => tp.setImmediate('im'))) === 'im', 'setImmediate value');
  await op(ti, 'evy.sleep', () => sleep(rand() * 0.01));
}

// ---- fs ------------------------------------------------------------------------------------------------
const BIG = path.join(TMP, 'big.bin');
fs.writeFileSync(BIG, crypto.randomBytes(4 * 1024 * 1024));
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
async function fsScenario(ti) {
  const f = path.join(TMP, `t${ti.id}-${rint(0, 1e9)}`);
  const data = crypto.randomBytes(rint(10, 200_000));
  const kind = weighted([
    ['promises', 3],
    ['streams', 2],
    ['filehandle', 2],
    ['hold', killable(ti) ? 3 : 0],
  ]);
  try {
    if (kind === 'promises') {
      await op(ti, 'fs.writeFile', () => fsp.writeFile(f, data));
      check(sha(await op(ti, 'fs.readFile', () => fsp.readFile(f))) === sha(data), 'fs readFile content');
    } else if (kind === 'streams') {
      await op(ti, 'fs.createWriteStream', () =>
        aw(ti, new Promise((resolve, reject) => {
          const w = fs.createWriteStream(f);
          w.on('error', reject);
          w.on('finish', resolve);
          for (let o = 0; o < data.length; o += 16384) w.write(data.subarray(o, o + 16384));
          w.end();
        })),
      );
      const back = await op(ti, 'fs.createReadStream', () =>
        aw(ti, new Promise((resolve, reject) => {
          const chunks = [];
          const r = fs.createReadStream(f, { highWaterMark: 8192 });
          r.on('data', (c) => chunks.push(c));
          r.on('end', () => resolve(Buffer.concat(chunks)));
          r.on('error', reject);
        })),
      );
      check(sha(back) === sha(data), 'fs stream content');
    } else if (kind === 'filehandle') {
      const fh = await op(ti, 'fs.open', () => fsp.open(f, 'w+'));
      try {
        await op(ti, 'filehandle.write', () => fh.write(data, 0, data.length, 0));
        const back = Buffer.alloc(data.length);
        const { bytesRead } = await op(ti, 'filehandle.read', () => fh.read(back, 0, data.length, 0));
        check(bytesRead === data.length && sha(back) === sha(data), 'filehandle content');
      } finally {
        await fh.close();
      }
    } else {
      // Held open while the kill lands: a FileHandle and a paused read stream the kill must close.
      const fh = await op(ti, 'fs.open.hold', () => fsp.open(BIG, 'r'));
      const rs = fs.createReadStream(BIG, { highWaterMark: 1024 });
      rs.on('error', () => {});
      rs.pause();
      await op(ti, 'fs.hold', () => (chance(0.5) ? foreignDelay(1_500) : sleep(5))); // foreign: ends within the leak check's 3 s settle
      rs.destroy();
      await fh.close();
    }
  } finally {
    fs.rm(f, { force: true }, () => {});
  }
}

// ---- child processes ---------------------------------------------------------------------------------
const childPids = new Set();
const note = (p) => {
  if (p?.pid) childPids.add(p.pid);
  return p;
};
async function childScenario(ti, inject) {
  const kind = killable(ti)
    ? weighted([['spawn-sleep', 2], ['exec-sleep', 3], ['execFile-sleep', 1], ['short', 1]])
    : weighted([['short', 2], ['execFile', 2], ['communicate', 2]]);
  if (kind === 'spawn-sleep') {
    const c = note(cpSpawn('sleep', [MARK], { stdio: 'ignore' }));
    c.on('error', () => {});
    await op(ti, 'child.spawn.wait', () => (c.wait ? c.wait() : until(new Promise((r) => c.once('exit', r)))));
  } else if (kind === 'exec-sleep') {
    // A shell with a grandchild: the inner shell writes its pid, then becomes `sleep` (same pid).
    // Issue 11 item 6: the kill lands 0–5 ms after the start.
    const c = note(exec(`sh -c 'echo $$ >> ${PIDFILE}; exec sleep ${MARK}'; true`));
    c.on('error', () => {});
    if (typeof inject === 'function') inject(rint(0, 5)); // a pool victim's body gets the wave's params here
    await op(ti, 'child.exec.wait', () => (c.wait ? c.wait() : until(new Promise((r) => c.once('exit', r)))));
  } else if (kind === 'execFile-sleep') {
    await op(ti, 'child.execFile.sleep', () => new Promise((resolve, reject) => note(execFile('sleep', [MARK], (e) => (e ? reject(e) : resolve())))));
  } else if (kind === 'short') {
    const c = note(cpSpawn('sleep', ['0.01'], { stdio: 'ignore' }));
    const code = await op(ti, 'child.spawn.short', () => (c.wait ? c.wait() : until(new Promise((r) => c.once('exit', r)))));
    check(code === 0, `sleep 0.01 exit code ${code}`);
  } else if (kind === 'execFile') {
    const v = String(rint(1, 1e9));
    const out = await op(ti, 'child.execFile', () => aw(ti, new Promise((resolve, reject) => note(execFile('echo', [v], (e, so) => (e ? reject(e) : resolve(so)))))));
    check(out === `${v}\n`, 'execFile echo output');
  } else {
    const v = crypto.randomBytes(rint(1, 20000)).toString('hex');
    const c = note(cpSpawn('cat', [], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const [o] = await op(ti, 'child.communicate', () => (c.communicate ? c.communicate(v) : Promise.reject(new Error('no communicate() on the child'))));
    check(o.toString() === v, 'communicate output');
  }
}

// ---- Issue 11 item 5: until(p) in an already killed thread, p rejecting later -------------------------
async function untilKilledScenario(ti) {
  await foreignDelay(rint(20, 120)); // killed meanwhile: detached
  const late = new Promise((_, reject) => ot.setTimeout(() => reject(new Error('late rejection (must be observed by until)')), rint(1, 30)));
  await until(late);
}

// ---- Issue 11 item 4: an overall deadline plus per-attempt Timeouts in a retry loop -------------------
async function retryLoopScenario(ti) {
  const overallS = rand() * 0.05 + 0.01;
  const t0 = performance.now();
  const overall = new Timeout(overallS);
  let firedAt;
  onFire(overall, () => (firedAt = performance.now()));
  stats.injections++;
  let attempts = 0;
  try {
    for (; attempts < 300; attempts++) {
      const attempt = new Timeout(rand() * 0.01 + 0.001);
      try {
        await foreignDelay(rint(0, 12)); // a foreign await: Timeouts that fire now are delivered at the next evy wait
        const waitAt = performance.now();
        await sleep(0.002);
        // Checked by the order of events, not by the clock (a loaded machine delays every timer): a Timeout that
        // fired before this evy wait began had to be thrown by it.
        if (firedAt !== undefined && firedAt <= waitAt) {
          count('unsettled', `retry loop #${ti.id}: overall Timeout fired ${(waitAt - firedAt).toFixed(1)} ms before an evy wait that returned normally (attempt ${attempts})`);
          return;
        }
      } catch (e) {
        if (e !== attempt) throw e;
        stats.injections++; // an attempt's Timeout that fired (armed ones that did not fire are not counted)
      } finally {
        attempt.cancel();
      }
    }
    count('unsettled', `retry loop #${ti.id}: overall Timeout(${overallS.toFixed(3)}) never delivered (${attempts} attempts, ${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  } catch (e) {
    if (e !== overall) throw e;
    const late = (performance.now() - t0) / 1000 - overallS;
    if (late > 5) count('unsettled', `retry loop #${ti.id}: overall Timeout delivered ${late.toFixed(2)} s late`);
  } finally {
    overall.cancel();
  }
}

// ---- evy primitives ----------------------------------------------------------------------------------
// Per wave: a channel (maxsize 0) and a bounded queue with producers, survivor consumers and victim
// consumers; every item put must be taken exactly once (by a survivor, or by a victim that recorded it).
function makePrimitives() {
  return {
    chan: new Queue(0),
    q: new Queue(rint(1, 4)),
    put: new Set(),
    got: new Map(), // item -> who
    event: new Event(),
    sem: new Semaphore(2),
    producers: 0,
  };
}
async function consumerScenario(ti, P, which) {
  const q = P[which];
  for (;;) {
    const item = await op(ti, `queue.get.${which}`, () => q.get());
    if (item === null) return; // the wave's sentinel
    if (P.got.has(item)) count('integrity', `queue item ${item} taken twice (${P.got.get(item)} and #${ti.id})`);
    P.got.set(item, `#${ti.id}`);
    if (ti.role !== 'survivor') await op(ti, 'sem.run', () => P.sem.run(() => sleep(rand() * 0.01)));
  }
}
async function producerScenario(ti, P) {
  P.producers++;
  try {
    for (let k = rint(3, 12); k > 0; k--) {
      const item = `${ti.id}.${k}`;
      P.put.add(item);
      const which = chance(0.5) ? 'chan' : 'q';
      await op(ti, `queue.put.${which}`, () => P[which].put(item));
    }
  } finally {
    P.producers--;
  }
}
async function eventScenario(ti, P) {
  const v = await op(ti, 'event.wait', () => P.event.wait());
  check(v === 'go', 'event value');
  await op(ti, 'sem.run', () => P.sem.run(() => sleep(rand() * 0.005)));
}
async function pileScenario(ti) {
  const pile = new GreenPile(rint(1, 4));
  const n = rint(2, 6);
  for (let i = 0; i < n; i++) await op(ti, 'pile.spawn', () => pile.spawn(async (x) => (await sleep(rand() * 0.005), x * 2), i));
  let i = 0;
  for await (const v of pile) {
    check(v === i * 2, 'GreenPile order');
    i++;
  }
  check(i === n, 'GreenPile count');
}

// ---- scenarios in modules of their own: what they need of the harness ----------------------------------
const harnessServers = new Set([httpServer, echoServer, tlsServer]); // discounted by the leak check, closed after it
const leakNames = {}; // port -> name of a harness server, for the leak report
const sabotagedBy = { n: 0 }; // what a module's sabotage destroyed (printed)
const H = {
  evy, http, fs, op, check, count, rint, chance, pick, weighted, rand, killable, aw, Gen, ThreadInfo, LineConn, ot, foreignDelay, stats,
  VERBOSE, SABOTAGE, SEED, PG, MYSQL, REDIS, CLIENT_TLS, CA, ECHO_PORT, TLS_PORT, MARK, childPids, portNames, leakNames, harnessServers,
  peerOpen, alive, track, listenOn, pgTls, mysqlTls, madeClient, clientSend, injectKill, checkWait, body, classify, waitFor, sabotaged: sabotagedBy,
  onDoom: (hook) => doomHooks.push(hook),
  isKillError: (e) => isKillError(e),
  get KillError() {
    return KillError;
  },
};
const cancels = await setupCancel(H);
Object.assign(H, { sql: cancels.sql, watchFallback: cancels.watchFallback, watchPgPool: cancels.watchPgPool, watchMysqlPool: cancels.watchMysqlPool, watchRedis: cancels.watchRedis, redisBlocking: cancels.redisBlocking });
const priv = await setupPrivate(H);
const requests = await setupRequests(H);

// ---- scenarios and roles -----------------------------------------------------------------------------
const SCENARIOS = [
  ...priv.scenarios,
  ...requests.scenarios,
  ['http', httpScenario, 6],
  ['pg', pgScenario, 4],
  ['pgpool', pgPoolScenario, 2],
  ['mysql', mysqlScenario, 4],
  ['mysqlpool', mysqlPoolScenario, 2],
  ['redis', redisScenario, 4],
  ['line', lineScenario, 4],
  ['greensocket', greenSocketScenario, 4],
  ['accept', acceptScenario, 1],
  ['tls', tlsScenario, 2],
  ['timers', timersScenario, 3],
  ['fs', fsScenario, 3],
  ['child', childScenario, 1.5],
  ['event', eventScenario, 1],
  ['pile', pileScenario, 1],
];
// Scenarios that need a role: victims only (they must be killed), deadlines only.
const VICTIM_ONLY = [
  ['httpWindow', httpWindowScenario, 1.5],
  ['detachedHttp', detachedHttpScenario, 1],
  ['untilKilled', untilKilledScenario, 1],
];
const DEADLINE_ONLY = [['retryLoop', retryLoopScenario, 1.5]];

class KillError extends Error {
  constructor() {
    super('chaos kill');
    this.name = 'KillError';
  }
}

/** Aims a kill at `gt` (info `ti`) now; checks that kill() settles and wait() gives the kill error. */
function injectKill(ti, gt, why, error) {
  stats.injections++;
  doom(ti, why);
  if (gt === undefined) return Promise.resolve();
  const err = error ?? (chance(0.3) ? new KillError() : undefined);
  (ti.killErrors ??= []).push(err);
  const p = gt.kill(err);
  return watch(p, `kill() of #${ti.id} ${ti.scenario} (${why}) in op ${ti.op ?? '-'}`);
}

/** Counts `p` as unsettled if it has not settled within 5 s (then keeps going). */
function watch(p, what) {
  return new Promise((resolve) => {
    const t = ot.setTimeout(() => {
      count('unsettled', `${what}: not settled within 5 s`);
      resolve();
    }, 5000);
    Promise.resolve(p).then(
      () => (ot.clearTimeout(t), resolve()),
      () => (ot.clearTimeout(t), resolve()),
    );
  });
}

/** wait() of a killed thread must throw the kill error, unless the body returned by itself first. */
async function checkWait(ti, gt) {
  let outcome;
  await watch(
    gt.wait().then(
      (v) => (outcome = { ok: true, v }),
      (e) => (outcome = { ok: false, e }),
    ),
    `wait() of #${ti.id} ${ti.scenario}`,
  );
  if (outcome === undefined || !ti.killed || ti.killErrors === undefined) return;
  if (outcome.ok) return; // finished (or caught the kill) before it landed
  const e = outcome.e;
  const isKill = ti.killErrors.some((k) => (k === undefined ? e instanceof GreenletExit : e === k));
  if (!isKill && !ti.returnedError) count('wrongerror', `wait() of killed #${ti.id} ${ti.scenario} (${ti.role}${ti.how ? ` killed by ${ti.how}` : ''}, failed op ${ti.lastFailedOp ?? '-'}${where(e)}) threw a secondary error instead of the kill error`, e);
}

/** The body of every spawned thread: records how it ended. */
function body(ti, fn, ...args) {
  return async () => {
    ti.started = true;
    live.add(ti);
    try {
      return await fn(ti, ...args);
    } catch (e) {
      // The body threw by itself (not the kill): remember so wait() may legitimately throw it. No kill was
      // aimed at it yet (doom() runs before every kill), so even a GreenletExit or KillError is not its own: it is
      // another thread's kill error that reached it through a shared handle (a connection that thread was
      // creating, destroyed when it was killed).
      if (!ti.killed) ti.returnedError = true;
      throw e;
    } finally {
      ti.returned = true;
      ti.endedAt = performance.now();
      live.delete(ti);
    }
  };
}

// ---- a wave ------------------------------------------------------------------------------------------
const STUCK_OP_MS = 8_000;
const STUCK_WAVE_MS = 60_000;
async function wave(w) {
  stats.waves++;
  const t0w = performance.now();
  const P = makePrimitives();
  const pool = new GreenPool(rint(4, 16));
  const threads = []; // { ti, gt, done }
  const infos = [];
  const size = rint(25, 45);

  const launch = (ti, fn, ...args) => {
    infos.push(ti);
    if (ti.sub) infos.push(ti.sub);
    const gt = spawn(body(ti, fn, ...args));
    threads.push({ ti, gt });
    return gt;
  };

  // The primitives: producers and one consumer per queue are survivors; victims consume too (below).
  const consumers = [];
  for (const which of ['chan', 'q']) {
    const ti = new ThreadInfo(`consumer.${which}`, 'survivor');
    consumers.push([ti, which]);
    launch(ti, consumerScenario, P, which);
  }
  for (let k = rint(1, 2); k > 0; k--) launch(new ThreadInfo('producer', 'survivor'), producerScenario, P);

  for (let i = 0; i < size; i++) {
    const role = weighted([
      ['survivor', 4],
      ['victim', 4],
      ['deadline', 2],
    ]);
    const table = (role === 'victim' ? [...SCENARIOS, ...VICTIM_ONLY] : role === 'deadline' ? [...SCENARIOS, ...DEADLINE_ONLY] : SCENARIOS).filter(([n]) => ONLY === null || ONLY.includes(n));
    if (table.length === 0) continue;
    let [name, fn] = weighted(table.map(([n, f, wt]) => [[n, f], wt]));
    // Victims also consume from the wave's queues (a killed getter must not swallow an item).
    if (name === 'event' && role === 'victim' && chance(0.6)) {
      const which = chance(0.5) ? 'chan' : 'q';
      [name, fn] = [`consumer.${which}`, (t, P) => consumerScenario(t, P, which)];
    }
    const ti = new ThreadInfo(name, role);

    if (ti.role === 'survivor') {
      launch(ti, fn, P);
    } else if (ti.role === 'deadline') {
      launchDeadline(ti, name, fn, P, launch);
    } else {
      launchVictim(ti, name, fn, P, launch, pool, threads);
    }
  }

  // Let the primitives' waiters go: the event, and (once the producers are done and every victim consumer
  // has died) one sentinel per survivor consumer.
  ot.setTimeout(() => P.event.send('go'), rint(0, 30));
  const sentinels = spawn(async () => {
    while (threads.some((t) => t.ti.scenario === 'producer' && !t.ti.returned)) await sleep(0.005);
    while (threads.some((t) => t.ti.scenario.startsWith('consumer') && t.ti.role !== 'survivor' && !(t.gt?.dead ?? true))) await sleep(0.005);
    for (const [, which] of consumers) await P[which].put(null);
  });

  if (chance(0.3)) {
    // pool.killall() at a random point: every victim the pool is running dies.
    ot.setTimeout(() => {
      stats.injections++;
      for (const t of threads) {
        // killall() kills the pool's running threads only: one still waiting for a slot starts later, alive
        // (its own kill comes later). Marking it killed now would count its failures as expected, and its
        // wait() as wrongerror.
        if (!t.inPool || !t.ti.started || t.ti.returned) continue;
        doom(t.ti, 'kill');
        (t.ti.killErrors ??= []).push(undefined);
      }
      void watch(pool.killall(), `pool.killall() of wave ${w}`);
    }, rint(0, 40));
  }

  // Wait for every thread. A thread is stuck when its current operation has had no outcome for STUCK_OP_MS (a
  // missing reply, timed per operation: a loaded machine that slows every step of a wave is not a missing
  // reply), or when it still runs STUCK_WAVE_MS after the wave began (stuck outside any operation).
  const deadline = performance.now() + STUCK_WAVE_MS;
  const agentBefore = agent; // the agent this wave's requests used (a stuck one is replaced below)
  const stuck = (ti) => {
    const cur = ti.sub !== undefined && !ti.sub.returned ? ti.sub : ti; // a withTimeout caller waits on its child's op
    return (cur.op !== null && performance.now() - cur.opAt > STUCK_OP_MS) || performance.now() > deadline;
  };
  for (const t of threads) {
    const gt = t.gt ?? (await Promise.race([t.gtPromise, foreignDelay(Math.max(0, deadline - performance.now()))]));
    if (gt === undefined) {
      count('unsettled', `pool.spawn() for #${t.ti.id} ${t.ti.scenario} never returned a thread`);
      continue;
    }
    while (!gt.dead && !stuck(t.ti)) await sleep(0.01);
    if (!gt.dead) {
      // For a stuck http op, say what holds the agent's sockets (which request, whether its socket is destroyed).
      const agentState = t.ti.op?.startsWith('http')
        ? `; agent sockets busy with [${Object.values(agentBefore.sockets).flat().map((k) => `${k._httpMessage?.path ?? 'no request'}${k.destroyed ? ' (destroyed)' : ''}`).join(', ')}], ${Object.values(agentBefore.requests).flat().length} queued`
        : '';
      const genState = t.ti.opGen?.describe ? `; its ${t.ti.opGen.kind} (created by ${t.ti.opGen.createdBy}; dooms: ${t.ti.opGen.dooms.map((d) => d.by).join(', ') || 'none'}): ${t.ti.opGen.describe()}` : '';
      count('unsettled', `thread #${t.ti.id} ${t.ti.scenario} (role ${t.ti.role}, killed ${t.ti.killed}) never ended; stuck in op ${t.ti.op ?? '-'}${agentState}${genState}`);
      // The op a clean thread is stuck in failed (a missing reply), as of when it started: collateral unless a
      // doom before that explains it. (A stuck killed thread is unsettled only; a withTimeout caller's child,
      // `sub`, is classified itself.)
      if (t.ti.sub === undefined && t.ti.killedAt === undefined && t.ti.firedAt === undefined) {
        const what = t.ti.op === null ? `still running ${STUCK_WAVE_MS / 1000} s after its wave began, in no op` : `no reply to op ${t.ti.op} for ${((performance.now() - t.ti.opAt) / 1000).toFixed(1)} s`;
        t.ti.failures.push({ kind: t.ti.op ?? '-', err: new Error(what), gen: null, at: t.ti.op === null ? t0w : t.ti.opAt });
      }
      doom(t.ti, 'the clean-up kill of a stuck thread'); // what fails after it is expected
      replaceJammed(t.ti.op ?? '');
      void watch(gt.kill(), `clean-up kill() of stuck #${t.ti.id}`);
    }
  }
  await watch(sentinels.wait().catch(() => {}), `sentinel thread of wave ${w}`);
  if (!sentinels.dead) await sentinels.kill();

  // Items put must all have been taken, by a survivor or a victim that recorded it (or still be queued).
  const queued = new Set();
  while (P.q.qsize() > 0) queued.add(P.q.getNowait());
  for (const item of P.put) if (!P.got.has(item) && !queued.has(item)) count('integrity', `queue item ${item} was put but never taken nor queued (lost)`);

  // Victims spawned in the pool or with spawnAfter (cancel) are not launched through launch(): classify them too.
  for (const t of threads) if (!infos.includes(t.ti)) infos.push(t.ti);
  classify(infos);
  if (VERBOSE) {
    const slow = infos.filter((t) => t.endedAt).sort((a, b) => b.endedAt - a.endedAt).slice(0, 3);
    console.error(`wave ${w}: ${(performance.now() - t0w).toFixed(0)} ms; last to end: ${slow.map((t) => `#${t.id} ${t.scenario}/${t.role} ${(t.endedAt - t0w).toFixed(0)}ms`).join(', ')}`);
  }
}

/**
 * A shared client that left a clean thread without a reply would stall every later wave on the same
 * incident: once counted, later users get a new one (the old one is closed at the end).
 */
function replaceJammed(opKind) {
  if (opKind.startsWith('http') && !agent.chaosJammed) {
    agent.chaosJammed = true;
    oldAgents.push(agent);
    agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  } else if (opKind.startsWith('redis') && redisShared !== null) {
    const old = redisShared;
    redisShared = null;
    jammed.push(() => ((old.closing = true), old.client.disconnect()));
  } else if (opKind.startsWith('pg.client') && pgShared !== null) {
    const old = pgShared;
    pgShared = null;
    pgSlots.delete(old);
    // end() destroys the socket when a query is still active (it would wait for its reply otherwise).
    jammed.push(() => old.client.end().catch(() => {}));
  } else if (opKind.startsWith('pg.pool') && pgPool !== null) {
    const old = pgPool;
    pgPool = null;
    jammed.push(() => old.end().catch(() => {}));
  } else if (opKind.startsWith('mysql.conn') && mysqlShared !== null) {
    const old = mysqlShared;
    mysqlShared = null;
    mysqlSlots.delete(old);
    // Not end(): mysql2 queues its QUIT behind the command that never got its reply.
    jammed.push(() => old.ready.then((c) => c.connection.stream.destroy(), () => {}));
  } else if (opKind.startsWith('mysql.pool') && mysqlPool !== null) {
    const old = mysqlPool;
    mysqlPool = null;
    jammed.push(() => old.end().catch(() => {}));
  } else if (opKind === 'net.line' && lineShared !== null) {
    const old = lineShared;
    lineShared = null;
    jammed.push(() => old.sock.destroy());
  } else if (opKind.startsWith('greensocket.') && gsShared[opKind.slice(12)]) {
    const old = gsShared[opKind.slice(12)];
    gsShared[opKind.slice(12)] = null;
    jammed.push(() => (old.file?.close(), old.sock?.close()));
  }
}
const jammed = [];

/** Classifies every failure of the wave's threads, now that all kills and deadlines are known. */
function classify(infos) {
  for (const ti of infos) {
    ti.classified = true;
    for (const f of ti.failures) classifyOne(ti, f);
  }
}
const isKillError = (e) => e instanceof GreenletExit || e instanceof KillError || e instanceof Timeout;
/** Counts one failure as expected, excused or collateral (the rule: chaos/classify.mjs). */
function classifyOne(ti, f) {
  const c = classifyFailure(ti, f, isKillError);
  if (c.verdict === 'expected') stats.expected++;
  else if (c.verdict === 'misdirected') count('misdirected', `#${ti.id} ${ti.scenario} (${ti.role}${ti.deadline ? `, ${ti.deadline}` : ''}): ${f.kind} failed with the server's cancel${c.why ? `: ${c.why}` : ''}${where(f.err)}`, f.err);
  else if (c.verdict === 'excused') {
    stats.excused++;
    if (ti.role !== 'survivor') stats.excusedNotClean++;
    if (VERBOSE) console.error(`[excused] #${ti.id} ${ti.scenario} (${ti.role}): ${f.kind} failed on a ${f.gen.kind} (${c.why}, ${(f.at - c.doom.at).toFixed(1)} ms earlier): ${fmtErr(f.err)}${where(f.err)}\n    ${String(f.err?.stack ?? '').split('\n').slice(1, 4).join('\n    ')}`);
  } else {
    const on = f.gen ? ` on a ${f.gen.kind}${f.gen.createdBy ? ` (created by ${f.gen.createdBy})` : ''}` : '';
    count('collateral', `#${ti.id} ${ti.scenario} (${ti.role}${ti.deadline ? `, ${ti.deadline}` : ''}): ${f.kind} failed${on}, explained by nothing before it${c.why ? `: ${c.why}` : ''}${where(f.err)}`, f.err);
  }
}

function launchVictim(ti, name, fn, P, launch, pool, threads) {
  const how = weighted([
    ['main', 4],
    ['thread', 3],
    ['double', 2],
    ['dead', 1],
    ['pool', name === 'httpWindow' ? 0 : 2],
    ['cancel', name === 'httpWindow' ? 0 : 1],
  ]);
  ti.how = how; // named in a wrongerror report
  // A thread with a connection of its own is killed later too, so that it is often idle on it (parked) by then.
  const delay = name === 'childexec' ? rint(0, 5) : name === 'private' || name === 'lazy' ? (chance(0.3) ? rint(0, 40) : rint(40, 400)) : rint(0, 40);
  if (how === 'pool') {
    // Spawned in the wave's pool: killed by pool.killall (if drawn) or by a kill from main.
    const rec = { ti, inPool: true };
    threads.push(rec);
    rec.gtPromise = pool.spawn(body(ti, fn, P)).then((gt) => (rec.gt = gt));
    rec.gtPromise.then((gt) => ot.setTimeout(() => injectKill(ti, gt, 'kill').then(() => checkWait(ti, gt)), delay + 10));
    return;
  }
  if (how === 'cancel') {
    const rec = { ti };
    threads.push(rec);
    const gt = spawnAfter(rand() * 0.02, body(ti, fn, P));
    rec.gt = gt;
    ot.setTimeout(() => {
      stats.injections++;
      // cancel() is a no-op once started: then a kill follows (below), so the victim still dies, and only
      // that kill marks it killed (until then a failure of its body is its own).
      if (!ti.started) {
        doom(ti, 'kill');
        (ti.killErrors ??= []).push(undefined);
      }
      gt.cancel();
      ot.setTimeout(() => (gt.dead ? checkWait(ti, gt) : injectKill(ti, gt, 'kill').then(() => checkWait(ti, gt))), 5);
    }, rint(0, 25));
    return;
  }
  let gt;
  let injectFromBody = null;
  // Called from inside the victim's body: the timer must run in main's context, not the victim's.
  if (name === 'child') injectFromBody = (ms) => unowned(() => ot.setTimeout(() => injectKill(ti, gt, 'kill').then(() => checkWait(ti, gt)), ms));
  gt = launch(ti, name === 'httpWindow' ? (t) => fn(t, () => gt) : name === 'child' ? (t) => fn(t, injectFromBody) : fn, P);
  if (name === 'httpWindow') {
    // The kill comes from the body (window kill); check its wait afterwards.
    ot.setTimeout(() => checkWait(ti, gt), 0);
    return;
  }
  if (name === 'child' && ti.killErrors === undefined) {
    // Child victims also get a later kill if the body did not ask for one (spawn-sleep etc.).
  }
  const killOnce = (from) => injectKill(ti, gt, from === 'double' ? 'kill' : 'kill');
  if (how === 'main' && (name === 'private' || name === 'lazy') && chance(0.8)) {
    // Killed soon after it parks, idle on its connection (the scenario calls ti.atPark): the case of issue 20 item 4.
    // Called from inside the victim's body: the timer must run in main's context.
    ti.atPark = () => unowned(() => ot.setTimeout(() => killOnce('main').then(() => checkWait(ti, gt)), rint(0, 30)));
  } else if (how === 'main') ot.setTimeout(() => killOnce('main').then(() => checkWait(ti, gt)), delay);
  else if (how === 'thread') {
    spawn(async () => {
      await sleep(delay / 1000);
      await killOnce('thread');
      await checkWait(ti, gt);
    });
  } else if (how === 'double') {
    ot.setTimeout(() => {
      const a = killOnce('main');
      const b = chance(0.5) ? killOnce('main') : spawn(() => killOnce('thread')).wait();
      Promise.all([a, b]).then(() => checkWait(ti, gt));
    }, delay);
  } else {
    // Kill of a dead thread: wait for the end (bounded: it is killed anyway after 200 ms), kill again.
    spawn(async () => {
      const t = new Event();
      gt.link(() => t.send());
      await t.wait(0.2).catch(() => killOnce('thread'));
      await killOnce('thread');
      await checkWait(ti, gt);
    });
  }
}

/**
 * Calls `cb` at the moment `t` fires. evy has no public hook for that, so the harness wraps the internal
 * `_fire` its timer calls (checked at startup: if it is ever renamed, the harness stops instead of leaving
 * every failure under a Timeout unexplained).
 */
function onFire(t, cb) {
  const fire = t._fire;
  t._fire = function () {
    cb();
    return fire.call(this);
  };
}
if (typeof Timeout.prototype._fire !== 'function') {
  console.error('chaos/run.mjs: evy Timeout has no _fire method any more: update onFire()');
  process.exit(2);
}

function launchDeadline(ti, name, fn, P, launch) {
  if (name === 'retryLoop') return launch(ti, fn, P);
  const how = weighted([
    ['withTimeout', 3],
    ['Timeout', 2],
  ]);
  // A thread with a connection of its own gets longer deadlines too, so that some fire while it is idle on it.
  const s = (name === 'private' || name === 'lazy') && chance(0.7) ? rand() * 0.4 + 0.04 : rand() * 0.04 + 0.001;
  stats.injections++;
  if (how === 'withTimeout') {
    ti.deadline = 'withTimeout'; // the child is killed at the deadline: anything may be in flight
    const caller = new ThreadInfo(`${name}/withTimeout-caller`, 'survivor');
    caller.sub = ti; // the caller runs no op itself: its child's failures are classified as the child's
    return launch(caller, async () => {
      const t0 = performance.now();
      try {
        await withTimeout(s, async () => {
          ti.started = true;
          live.add(ti);
          // The deadline kills this child: its signal aborts at that moment, before evy destroys what it owns.
          const signal = evy.getcurrent().signal;
          signal.addEventListener('abort', () => doom(ti, 'withTimeout'), { once: true });
          try {
            return await fn(ti, P);
          } finally {
            ti.returned = true;
            ti.endedAt = performance.now();
            live.delete(ti);
          }
        });
      } catch (e) {
        if (e instanceof Timeout) stats.fired++;
        else if (!ti.failures.length && !(e instanceof GreenletExit)) throw e;
      }
      const late = (performance.now() - t0) / 1000 - s;
      if (late > 5) count('unsettled', `withTimeout(${s.toFixed(3)}) around ${name} returned ${late.toFixed(1)} s late`);
    });
  }
  // A Timeout created in the thread: only evy waits are interrupted, so the body uses until().
  ti.useUntil = true;
  ti.deadline = 'Timeout';
  return launch(ti, async () => {
    const t0 = performance.now();
    const t = new Timeout(s);
    // A Timeout only interrupts the thread's evy waits and destroys nothing (docs/patching.md), so it dooms no
    // shared handle: it only explains this thread's own failures from the moment it fires.
    onFire(t, () => (ti.firedAt = performance.now()));
    seenAt.set(t, `the Timeout(${s.toFixed(4)}) of #${ti.id} ${ti.scenario}`);
    try {
      await fn(ti, P);
    } catch (e) {
      if (e === t) stats.fired++;
      else if (!ti.failures.length) throw e;
    } finally {
      t.cancel();
    }
    const late = (performance.now() - t0) / 1000 - s;
    if (late > 5) count('unsettled', `Timeout(${s.toFixed(3)}) in ${name} ran ${late.toFixed(1)} s past its deadline`);
  });
}

// ---- sabotage: make each counter fail on purpose (proves the harness can see it) ---------------------
/** Waits (bounded: 30 s, then the harness fails) until `cond()`: a loaded machine may take its time. */
async function waitFor(cond, what) {
  for (const t0 = performance.now(); !cond(); await sleep(0.005)) {
    if (performance.now() - t0 > 30_000) throw new Error(`chaos: waited 30 s for ${what}`);
  }
}
let sabotaged = 0;
/**
 * --sabotage kill-shared, at every kill: what `useSocket` in src/patching/net.ts does without its rule that two
 * threads' requests outstanding at once make a connection shared. A kill of a thread waiting on a line
 * connection destroys it although another live thread's request is outstanding on it too.
 */
function killShared(ti) {
  for (const c of allLineConns) {
    const waiting = c.waiting();
    if (!waiting.has(ti) || ![...waiting].some((t) => t !== ti && !t.returned)) continue;
    sabotaged++;
    if (VERBOSE) console.error(`chaos: sabotage kill-shared: the kill of #${ti.id} destroys a line connection threads ${[...waiting].map((t) => `#${t.id}`).join(', ')} wait on`);
    c.sock.destroy();
  }
}
async function sabotage() {
  if (SABOTAGE === 'collateral') {
    // Destroy the shared line connection under a clean thread's request, as a buggy kill would.
    if (lineShared === null) lineShared = new LineConn(ECHO_PORT, false);
    const c = lineShared;
    const ti = new ThreadInfo('sabotage-collateral', 'survivor');
    const gt = spawn(body(ti, async () => op(ti, 'net.line', () => c.ready.then(() => c.request('sabotage', 2000, ti)), c.gen)));
    await waitFor(() => c.waiting().has(ti), 'the sabotage-collateral request to be written');
    c.sock.destroy();
    await gt.wait().catch(() => {});
    classify([ti]);
  } else if (SABOTAGE === 'unsettled') {
    // A retry loop that swallows its overall Timeout (see retryLoopScenario): never delivered.
    const ti = new ThreadInfo('sabotage-unsettled', 'deadline');
    const gt = spawn(body(ti, async () => {
      const overall = new Timeout(0.01);
      for (let i = 0; i < 40; i++) {
        try {
          await sleep(0.005);
        } catch (e) {
          if (e !== overall) throw e; // swallowed: the loop runs on past its deadline
        }
      }
      count('unsettled', 'sabotage: retry loop ran past its overall deadline (Timeout swallowed)');
    }));
    await gt.wait();
  } else if (SABOTAGE === 'integrity') {
    // The echo server duplicates the first shared-line message (see echoHandler).
    lineShared ??= new LineConn(ECHO_PORT, false);
    const c = lineShared;
    await c.ready;
    await c.request('shared-line-sabotage-1', 0);
    await c.request('shared-line-sabotage-2', 0);
  } else if (SABOTAGE === 'wrongerror') {
    // evy now turns any failure of a killed thread into its kill error, so no thread body can provoke this:
    // a stand-in whose wait() gives a secondary error (what evy did before) proves the check still sees it.
    const ti = new ThreadInfo('sabotage-wrongerror', 'victim');
    stats.injections++;
    doom(ti, 'kill');
    ti.killErrors = [new KillError()];
    await checkWait(ti, { wait: () => Promise.reject(new Error('sabotage: a secondary error instead of the kill')) });
  } else if (SABOTAGE === 'leaked') {
    unowned(() => setInterval(() => {}, 60_000)); // never cleared
    // And a client socket nobody destroys, as a kill that failed to would leave: it must be counted although
    // the echo server's end would close it the moment the harness's servers go.
    const sock = unowned(() => net.connect(ECHO_PORT, '127.0.0.1'));
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
  } else if (SABOTAGE === 'kill-shared') {
    // Two threads with a line request outstanding at once on one connection (the echo waits 2 s), then a kill
    // of one: killShared (called by injectKill) destroys the connection under the other, as evy did without its
    // shared-connection rule. The survivor's failure follows the victim's doom, but its request was already on
    // the connection: collateral. The same happens in the waves when they run (--injections > 0).
    lineShared ??= new LineConn(ECHO_PORT, false);
    const c = lineShared;
    await c.ready;
    const line = async (t) => {
      const note = {};
      return op(t, 'net.line', () => c.request(`shared-line-sabotage-${t.id}`, 2000, t, note), c.gen, note);
    };
    const survivor = new ThreadInfo('sabotage-kill-shared', 'survivor');
    const victim = new ThreadInfo('sabotage-kill-shared', 'victim');
    const gs = spawn(body(survivor, line));
    const gv = spawn(body(victim, line));
    await waitFor(() => c.waiting().size === 2, 'both kill-shared requests to be written');
    await injectKill(victim, gv, 'kill');
    await checkWait(victim, gv);
    await gs.wait().catch(() => {});
    classify([survivor, victim]);
  } else if (SABOTAGE === 'orphans') {
    // A shell backgrounds a `sleep` and exits: the grandchild is nobody's child any more.
    await new Promise((r) => unowned(() => exec(`sleep ${MARK} >/dev/null 2>&1 & echo $! >> ${PIDFILE}`, r)));
  } else if (SABOTAGE === 'unhandled') {
    Promise.reject(new Error('sabotage: an unhandled rejection'));
  } else {
    await priv.sabotage(SABOTAGE);
    await requests.sabotage(SABOTAGE);
    await cancels.sabotage(SABOTAGE);
  }
}

// ---- the run -----------------------------------------------------------------------------------------
console.log(`chaos: seed ${SEED}, injections ${INJECTIONS}${SABOTAGE ? `, sabotage ${SABOTAGE}` : ''}${NO_LISTENERS ? ', no listeners' : ''} on Node ${process.versions.node}`);
console.log(`chaos: heap after GC at start ${(heapStart / 1048576).toFixed(1)} MB`);
const fdStart = fdCount();
const fdStartLinks = fdLinks();
await sabotage();
// Waves overlap (up to OVERLAP at once): a slow wave (a reconnecting client) does not idle the rest.
const OVERLAP = 3;
let w = 0;
try {
  const running = new Set();
  while (stats.injections < INJECTIONS) {
    while (running.size >= OVERLAP) await Promise.race(running);
    const n = ++w;
    const p = wave(n).finally(() => running.delete(p));
    running.add(p);
    if (VERBOSE || n % 50 === 0) console.log(`chaos: wave ${n}: ${stats.injections} injections, ${stats.ops} ops, ${((performance.now() - T0) / 1000).toFixed(1)} s`);
    await sleep(0.01);
  }
  await Promise.all(running);
} catch (e) {
  console.error('chaos: the harness itself failed (a bug in chaos/run.mjs, not a counter):', e);
  process.exit(2);
}

// ---- the end: close the harness's clients, settle and measure, then close its servers -------------------
await sleep(0.2);
const closing = []; // [what, promise that settles once it has ended]
// The last killed threads' private connections and stopped requests are judged (bounded).
await Promise.all([priv.drain(), requests.drain(), cancels.drain()]);
closing.push(['private and lazily shared clients', priv.close()]);
closing.push(['request threads app clients', requests.close()]);
closing.push(['statement checker side connections', cancels.close()]);
for (const slot of pgSlots) closing.push(['pg client', slot.ready.then((c) => c.end()).catch(() => {})]);
if (pgPool) closing.push(['pg pool', pgPool.end().catch(() => {})]);
for (const slot of mysqlSlots) closing.push(['mysql2 connection', slot.ready.then((c) => c.end()).catch(() => {})]);
if (mysqlPool) closing.push(['mysql2 pool', mysqlPool.end().catch(() => {})]);
if (redisShared) (redisShared.closing = true), redisShared.client.disconnect();
lineShared?.sock.destroy();
for (const g of allGreenLines) {
  g.file?.close().catch(() => {});
  g.sock?.close();
}
acceptor.close();
agent.destroy();
for (const a of oldAgents) a.destroy();
// Some requests use the global agent: its free keep-alive sockets are unref'd (they keep no process alive) but
// stay open until the server's keep-alive timeout (5 s), longer than the settle below, and counted as leaked fds
// (a run on Node 26 failed so). Only the free ones: a socket still busy with a request stays, and counts.
for (const free of Object.values(http.globalAgent.freeSockets).flat()) free.destroy();
for (const close of jammed) close();
// Not a counter: a pool that cannot end shows up as leaked sockets below.
await Promise.all(
  closing.map(([what, p]) =>
    new Promise((resolve) => {
      const t = ot.setTimeout(() => {
        console.log(`chaos: note: the shared ${what} did not end within 3 s`);
        resolve();
      }, 3000);
      p.then(() => (ot.clearTimeout(t), resolve()));
    }),
  ),
);
// Orphans: every child and grandchild pid recorded, plus any process carrying the marker.
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'; // a zombie is not alive
  } catch {
    return false;
  }
}
function markedPids() {
  const found = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(MARK)) found.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return found;
}
const candidates = () => {
  const grand = fs.existsSync(PIDFILE) ? fs.readFileSync(PIDFILE, 'utf8').split('\n').filter(Boolean).map(Number) : [];
  return [...new Set([...childPids, ...grand, ...markedPids()])];
};
// A killed thread's children get SIGTERM, then SIGKILL after a grace: wait for that, bounded.
let orphanPids = [];
for (let t = 0; t < 40; t++) {
  orphanPids = candidates().filter(alive);
  if (orphanPids.length === 0) break;
  await foreignDelay(100);
}
counts.orphans = orphanPids.length;
for (const pid of orphanPids.slice(0, 5)) {
  let cmd = '?';
  try {
    cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {}
  examples.orphans.push(`pid ${pid} still alive: ${cmd}`);
}
for (const pid of orphanPids) {
  try {
    process.kill(pid, 'SIGKILL'); // do not leave them behind for the next run
  } catch {}
}

// Leaks: active resources against the baseline (per kind), after a settle period; and open fds. Measured while
// the harness's own servers still listen and hold their ends of every connection open: a client socket a kill
// failed to destroy gets no EOF from them, so it cannot close by itself during the settle and hide. Those
// server handles (the listeners and the server side of each connection) are the harness's, and discounted.
ot.clearTimeout(watchdog);
const isHarnessHandle = (h) => harnessServers.has(h) || serverSockets.has(h);
function harnessHandles() {
  const kinds = { TCPServerWrap: 0, TCPSocketWrap: 0 };
  let fds = 0; // the listeners' fds are in fdStart; a destroyed socket's fd is closed while its handle closes
  for (const h of process._getActiveHandles()) {
    if (harnessServers.has(h)) kinds.TCPServerWrap++;
    else if (serverSockets.has(h)) (kinds.TCPSocketWrap++, (fds += h.destroyed ? 0 : 1));
  }
  return { kinds, fds };
}
const extra = (discount) => {
  const now = {};
  for (const r of process.getActiveResourcesInfo()) now[r] = (now[r] ?? 0) + 1;
  for (const r of baseline) now[r] = (now[r] ?? 0) - 1;
  for (const [k, n] of Object.entries(discount)) now[k] = (now[k] ?? 0) - n;
  return Object.entries(now).filter(([, n]) => n > 0);
};
let leaks = [];
let fdLeak = 0;
const settleUntil = performance.now() + 3000;
for (;;) {
  await new Promise((r) => ot.setImmediate(r));
  const own = harnessHandles();
  leaks = extra(own.kinds);
  fdLeak = fdCount() - fdStart - own.fds;
  if ((leaks.length === 0 && fdLeak <= 0) || performance.now() > settleUntil) break;
  await new Promise((r) => ot.setTimeout(r, 50));
  await new Promise((r) => ot.setImmediate(r));
}
counts.leaked = leaks.reduce((a, [, n]) => a + n, 0) + Math.max(0, fdLeak);
for (const [k, n] of leaks) examples.leaked.push(`${n} x ${k}`);
const names = { [HTTP_PORT]: 'http', [ECHO_PORT]: 'echo', [TLS_PORT]: 'tls-echo', [PG.port]: 'postgres', [REDIS.port]: 'redis', [MYSQL.port]: 'mariadb', ...leakNames };
for (const p of acceptPorts) names[p] = 'accept';
if (fdLeak > 0) {
  const since = added(fdStartLinks, fdLinks()).map((l) => describeFd(l, names));
  examples.leaked.push(`${fdLeak} more open file descriptors than at start; opened since (the harness's own server ends among them): ${since.join(', ')}`);
}

// Name the sockets still open: which server they talk to, and in which state.
if (leaks.length > 0 && typeof process._getActiveHandles === 'function') {
  for (const h of process._getActiveHandles()) {
    if (!(h instanceof net.Socket) || h === process.stdout || h === process.stderr || isHarnessHandle(h)) continue;
    if (examples.leaked.length > 12) break;
    const peer = names[h.remotePort] ?? names[h.localPort] ?? h.remotePort;
    const state = `destroyed=${h.destroyed} connecting=${h.connecting} readable=${h.readable} writable=${h.writable}${h._httpMessage ? ` http=${h._httpMessage.path}` : ''}`;
    examples.leaked.push(`socket to ${peer}${names[h.localPort] ? ' (server side)' : ''}: ${state}`);
  }
}

// Only now the harness's servers go (and with them whatever leaked client socket was still connected to them).
for (const srv of harnessServers) srv.close();
for (const s of serverSockets) s.destroy();
fs.rmSync(TMP, { recursive: true, force: true });

if (leaks.length > 0 && globalThis.__liveTcp) for (const [, [st, res]] of globalThis.__liveTcp) { const o = res[Object.getOwnPropertySymbols(res).find((x) => String(x) === 'Symbol(owner_symbol)')]; if (o && !o.destroyed) process._rawDebug('LEAKTCP', o.localPort, o.remotePort, st); }
if (leaks.length > 0 && globalThis.__liveTimers) for (const [, [type, st, res]] of globalThis.__liveTimers) if (type === 'Timeout' && !res._destroyed && res.hasRef?.()) process._rawDebug('LEAKTIMER', res._idleTimeout, String(res._onTimeout).slice(0, 200), st);
const heapEnd = heap();
printSummary(heapEnd);

function printSummary(heapNow) {
  const s = (performance.now() - T0) / 1000;
  for (const c of COUNTERS) {
    console.log(`chaos: ${c.padEnd(10)} ${counts[c]}${c === 'unhandled' && NO_LISTENERS ? ' (no listeners: an unhandled error would have ended the process)' : ''}`);
    for (const e of examples[c]) console.log(`    ${e.split('\n').slice(0, 8).join('\n      ')}`);
  }
  if (heapNow !== undefined) console.log(`chaos: heap after GC at start ${(heapStart / 1048576).toFixed(1)} MB, at end ${(heapNow / 1048576).toFixed(1)} MB`);
  const fired = stats.fired;
  const kinds = Object.keys(stats.kinds).sort();
  console.log(`chaos: ops per kind (failed): ${kinds.map((k) => `${k}=${stats.kinds[k]}${stats.kindsFailed[k] ? `(${stats.kindsFailed[k]})` : ''}`).join(' ')}`);
  console.log(`chaos: shared clients made: ${Object.keys(made).sort().map((k) => `${k}=${made[k]}`).join(', ') || 'none'} (${madeAfterKill} by a thread after its own kill)`);
  if (SABOTAGE === 'kill-shared') console.log(`chaos: sabotage kill-shared destroyed ${sabotaged} shared line connections at a kill`);
  if (SABOTAGE === 'orphan-shared') console.log(`chaos: sabotage orphan-shared closed ${sabotagedBy.n} idle lazily shared clients at their creator's kill`);
  for (const line of [...priv.summary(), ...requests.summary(), ...cancels.summary()]) console.log(line);
  console.log(`chaos: ${stats.waves} waves, ${stats.threads} threads, ${stats.ops} operations (${stats.opsFailed} failed: ${stats.expected} expected, ${stats.excused} excused by a legitimate kill, ${stats.excusedNotClean} of them a victim's or deadline thread's before its own kill or deadline), ${stats.injections} injections (${fired} deadlines fired), ${s.toFixed(1)} s`);
  const total = COUNTERS.reduce((a, c) => a + counts[c], 0);
  console.log(`chaos: summary seed=${SEED} injections=${stats.injections} ops=${stats.ops} ${COUNTERS.map((c) => `${c}=${counts[c]}`).join(' ')} seconds=${s.toFixed(1)} result=${total === 0 ? 'PASS' : 'FAIL'}`);
  process.exitCode = total === 0 ? 0 : 1;
}

// The process must now end by itself; if something keeps it alive, say what and fail.
ot.setTimeout(() => {
  console.error(`chaos: the process did not exit 5 s after the summary; active: ${process.getActiveResourcesInfo().join(', ')}`);
  process.exit(4);
}, 5000).unref();
