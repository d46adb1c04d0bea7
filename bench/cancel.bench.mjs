// A kill reaches the database: from `kill()` of a thread whose statement runs on the server to that statement
// gone from the server's own view (pg_stat_activity / information_schema.processlist), over ≥ 50 kills per
// client (BENCH_KILLS), min / median / max. Beside it, the baseline: the same program without evy (the caller
// gives up on the query and closes its connection): the server runs the statement to its end (BASELINE_SLEEP
// seconds here). PostgreSQL and MariaDB are started from temp dirs (chaos/servers.mjs), default settings.
import pg from 'pg';
import mysql from 'mysql2/promise';
import { missingServers, startMariadb, startPostgres } from '../chaos/servers.mjs';
import { summary } from './summary.mjs';

const KILLS = Number(process.env.BENCH_KILLS ?? 50);
const BASELINE_ROUNDS = Number(process.env.BENCH_BASELINE_ROUNDS ?? 3);
const BASELINE_SLEEP = 2;

const missing = (missingServers() ?? '').split('; ').filter((s) => s !== '' && !s.startsWith('redis-server'));
if (missing.length > 0) {
  console.log(`(cancel bench skipped: ${missing.join('; ')})`);
  process.exit(0);
}
const [pgServer, myServer] = await Promise.all([startPostgres(), startMariadb()]);
let stopped = false;
const stopServers = () => {
  if (stopped) return;
  stopped = true;
  pgServer.stop();
  myServer.stop();
};
process.on('exit', stopServers);
const PG = { host: pgServer.env.PGHOST, port: Number(pgServer.env.PGPORT), user: pgServer.env.PGUSER, password: pgServer.env.PGPASSWORD, database: pgServer.env.PGDATABASE };
const MY = { host: myServer.env.MYSQL_HOST, port: Number(myServer.env.MYSQL_PORT), user: myServer.env.MYSQL_USER, password: myServer.env.MYSQL_PASSWORD, database: myServer.env.MYSQL_DATABASE };

// Observers, made before anything is patched: the server's view.
const pgObs = new pg.Client(PG);
await pgObs.connect();
const myObs = await mysql.createConnection(MY);
const pgActive = async (pid) => (await pgObs.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.state === 'active';
const myActive = async (id) => (await myObs.query("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE id = ? AND command = 'Query'", [id]))[0][0].n > 0;

/** ms from t0 until `active()` is false (polled back to back). */
async function goneAfter(t0, active) {
  while (await active()) {
    if (performance.now() - t0 > 30_000) throw new Error('statement still running after 30 s');
  }
  return performance.now() - t0;
}
/** Until the server shows the statement running. */
async function untilActive(active) {
  while (!(await active())) await new Promise((r) => setTimeout(r, 1));
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const f = (x) => x.toFixed(1);

// ---- baseline: no evy. The caller stops waiting and closes its connection; the statement runs on. ----
const base = { pg: [], mysql: [] };
for (let i = 0; i < BASELINE_ROUNDS; i++) {
  const c = new pg.Client(PG);
  c.on('error', () => {}); // the connection this baseline closes under its query
  await c.connect();
  const pid = c.processID;
  c.query(`SELECT pg_sleep(${BASELINE_SLEEP})`).catch(() => {});
  await untilActive(() => pgActive(pid));
  const t0 = performance.now();
  c.connection.stream.destroy(); // what a timeout wrapper without server-side cancel amounts to
  base.pg.push(await goneAfter(t0, () => pgActive(pid)));
  const m = await mysql.createConnection(MY);
  m.connection.on('error', () => {});
  const id = m.threadId;
  m.query(`SELECT SLEEP(${BASELINE_SLEEP})`).catch(() => {});
  await untilActive(() => myActive(id));
  const t1 = performance.now();
  m.connection.stream.destroy();
  base.mysql.push(await goneAfter(t1, () => myActive(id)));
}

// ---- evy: the same kill under monkeyPatch (what evy/register does at startup) ----
const evy = await import('../dist/index.js');
evy.monkeyPatch();
const runs = { pg: [], 'pg (TLS)': [], mysql: [], 'mysql (TLS)': [] };
for (const [name, tls] of [['pg', false], ['pg (TLS)', true]]) {
  const c = new pg.Client({ ...PG, ssl: tls ? { rejectUnauthorized: false } : false });
  await c.connect();
  const pid = c.processID;
  for (let i = 0; i < KILLS; i++) {
    const t = evy.spawn(() => c.query('SELECT pg_sleep(10)'));
    await untilActive(() => pgActive(pid));
    const t0 = performance.now();
    void t.kill();
    runs[name].push(await goneAfter(t0, () => pgActive(pid)));
    await t.wait().catch(() => {});
  }
  await c.end();
}
for (const [name, tls] of [['mysql', false], ['mysql (TLS)', true]]) {
  const c = await mysql.createConnection({ ...MY, ssl: tls ? { rejectUnauthorized: false } : undefined });
  const id = c.threadId;
  for (let i = 0; i < KILLS; i++) {
    const t = evy.spawn(() => c.query('SELECT SLEEP(10)'));
    await untilActive(() => myActive(id));
    const t0 = performance.now();
    void t.kill();
    runs[name].push(await goneAfter(t0, () => myActive(id)));
    await t.wait().catch(() => {});
  }
  await c.end();
}
await pgObs.end();
await myObs.end();

console.log(`Node ${process.version}, ${KILLS} kills per client; baseline ${BASELINE_ROUNDS} rounds of a ${BASELINE_SLEEP} s statement`);
console.log('\nkill → statement gone from the server (ms): min / median / max');
console.log('| client | evy (kill) | baseline: no evy, connection closed |');
console.log('|---|---|---|');
for (const [name, xs] of Object.entries(runs)) {
  const s = stats(xs);
  const b = stats(name.startsWith('pg') ? base.pg : base.mysql);
  console.log(`| ${name} | ${f(s.min)} / ${f(s.median)} / ${f(s.max)} | ${f(b.min)} / ${f(b.median)} / ${f(b.max)} |`);
  summary({ figure: `kill → ${name} statement gone (ms)`, target: '<= 100 ms', min: s.min, median: s.median, baseline: b.min, met: s.median <= 100, unit: 'ms' });
}
stopServers(); // the servers are child processes: they would keep this process alive
