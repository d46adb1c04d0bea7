// PostgreSQL, Redis, MariaDB and TLS certificates for the chaos harness, started from temp dirs on free ports on
// 127.0.0.1 (the same recipe as test/helpers/servers.ts and certs.ts, in plain JS so that `npm run chaos`
// needs no TypeScript loader). Runs in the unpatched parent process: the servers are not the harness's
// children, so they never count as its leaks or orphans.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const PG_PASSWORD = 'evy-chaos';
const MYSQL_PASSWORD = 'evy-chaos';

function which(bin) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, bin))) return path.join(dir, bin);
  }
  return null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

async function waitPort(what, port, ms, alive = () => true) {
  const deadline = Date.now() + ms;
  while (!(await canConnect(port))) {
    if (!alive() || Date.now() > deadline) throw new Error(`${what} did not come up on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function pgBinDir() {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const v = readdirSync(base).filter((d) => existsSync(path.join(base, d, 'bin', 'pg_ctl'))).sort((a, b) => b - a);
    if (v.length > 0) return path.join(base, v[0], 'bin');
  }
  const initdb = which('initdb');
  return initdb !== null && which('pg_ctl') !== null ? path.dirname(initdb) : null;
}

/** A MariaDB binary: on PATH, else in /usr/sbin (mariadbd lives there, and a PATH may lack sbin). */
function mariadbBin(name) {
  return which(name) ?? ['/usr/sbin', '/usr/bin'].map((d) => path.join(d, name)).find((p) => existsSync(p)) ?? null;
}

/** Why PostgreSQL / Redis / MariaDB cannot run here, or null when they can. */
export function missingServers() {
  const why = [];
  if (pgBinDir() === null) why.push('PostgreSQL binaries (initdb, pg_ctl) not found');
  else if (isRoot && spawnSync('id', ['-u', 'postgres']).status !== 0) why.push('root without a postgres user');
  if (which('redis-server') === null) why.push('redis-server not found');
  if (mariadbBin('mariadbd') === null || mariadbBin('mariadb-install-db') === null) why.push('MariaDB binaries (mariadbd, mariadb-install-db) not found');
  if (which('openssl') === null) why.push('openssl not found');
  return why.length ? why.join('; ') : null;
}

// The server refuses to run as root: run its binaries as `postgres` then.
function pgRun(bin, args, timeout) {
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser'].find((p) => existsSync(p)) ?? 'runuser';
  const [cmd, argv] = isRoot ? [runuser, ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

// Each start function hands `onStop` its stop as soon as there is something to stop (a temp dir, a process),
// before the server is ready: a parent that exits during startup (a SIGTERM) then leaves nothing behind.
// Stops are synchronous (they run from 'exit') and idempotent; a start that was stopped goes no further.
function stopper(fn) {
  let done = false;
  const stop = () => {
    if (!done) (done = true), fn();
  };
  stop.check = () => {
    if (done) throw new Error('stopped while starting');
  };
  return stop;
}

export async function startPostgres(onStop = () => {}) {
  const bin = pgBinDir();
  const dir = mkdtempSync(path.join(isRoot ? '/tmp' : os.tmpdir(), 'evy-chaos-pg-'));
  const pgCtl = path.join(bin, 'pg_ctl');
  const data = path.join(dir, 'data');
  const stop = stopper(() => {
    if (existsSync(path.join(data, 'postmaster.pid'))) pgRun(pgCtl, ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30'], 40_000);
    rmSync(dir, { recursive: true, force: true });
  });
  onStop(stop);
  if (isRoot) {
    const id = (f) => Number(spawnSync('id', [f, 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, id('-u'), id('-g'));
  }
  chmodSync(dir, 0o700);
  const log = path.join(dir, 'server.log');
  // Password authentication (SCRAM), as in production: the client's handshake then writes in reply.
  const pwFile = path.join(dir, 'pw');
  writeFileSync(pwFile, `${PG_PASSWORD}\n`);
  if (isRoot) chownSync(pwFile, statSync(dir).uid, statSync(dir).gid);
  const init = pgRun(path.join(bin, 'initdb'), ['-D', data, '-U', 'evy', '--pwfile', pwFile, '-A', 'scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale=C'], 60_000);
  if (!init.ok) throw new Error(`initdb failed:\n${init.out}`);
  // TLS offered too (clients choose): pg then replaces its socket by a TLS one started on it mid-handshake.
  // The server reads its key as `postgres`, and only if it is private.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt',
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  for (const f of ['tls.key', 'tls.crt']) {
    if (isRoot) chownSync(path.join(dir, f), statSync(dir).uid, statSync(dir).gid);
    chmodSync(path.join(dir, f), 0o600);
  }
  const tls = `-c ssl=on -c ssl_cert_file=${path.join(dir, 'tls.crt')} -c ssl_key_file=${path.join(dir, 'tls.key')}`;
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    stop.check();
    // Default cancellation settings (no client_connection_check_interval): a killed statement ends only if evy cancels it.
    const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=80 ${tls}`;
    const r = pgRun(pgCtl, ['start', '-D', data, '-l', log, '-w', '-t', '60', '-o', opts], 70_000);
    if (r.ok) break;
    if (attempt === 2) throw new Error(`pg_ctl start failed:\n${r.out}\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
  }
  await waitPort('postgres', port, 30_000);
  stop.check();
  return {
    env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'evy', PGDATABASE: 'postgres', PGPASSWORD: PG_PASSWORD },
    stop,
  };
}

export async function startRedis(onStop = () => {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-chaos-redis-'));
  let child = null;
  let exited = false;
  const stop = stopper(() => {
    if (child !== null && !exited) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  onStop(stop);
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    stop.check();
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
    exited = false;
    const c = child;
    c.once('exit', () => c === child && (exited = true));
    try {
      await waitPort('redis-server', port, 15_000, () => !exited);
      stop.check();
    } catch {
      stop.check();
      if (!exited) child.kill('SIGKILL');
      continue;
    }
    return { env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port) }, stop };
  }
  stop();
  throw new Error('redis-server failed to start');
}

// Small buffers, a small redo log, no binlog, no performance schema: a throwaway server that starts in a
// fraction of a second (the same InnoDB sizes at install time, else the first start resizes the redo log).
const MARIADB_OPTS = ['--innodb-buffer-pool-size=16M', '--innodb-log-file-size=8M', '--skip-log-bin', '--performance-schema=0'];

/** Whether `pid` still runs (a zombie, not yet reaped by our event loop, has stopped). Linux: /proc. */
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * mariadb-install-db into a temp dir, then mariadbd in the foreground on a free port (its Unix socket in the
 * temp dir); an init file makes the database `evy` and the user 'evy'@'%' with a password. TLS is offered
 * (a self-signed certificate): clients choose.
 */
export async function startMariadb(onStop = () => {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-chaos-mariadb-'));
  let child = null;
  let exited = false;
  const stop = stopper(() => {
    // SIGTERM, a clean shutdown bounded to 10 s, else SIGKILL.
    if (child !== null && !exited && child.pid !== undefined) {
      child.kill('SIGTERM');
      for (let t = 0; t < 200 && running(child.pid); t++) sleepSync(50);
      if (running(child.pid)) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });
  onStop(stop);
  const data = path.join(dir, 'data');
  // Its own temp dir: servers bootstrapping at once in the shared /tmp trip over each other's temp tables.
  const tmp = path.join(dir, 'tmp');
  mkdirSync(tmp);
  // mariadbd refuses to run as root unless told to; the temp dir is ours, so no need for the mysql user.
  const asUser = isRoot ? ['--user=root'] : [];
  // --no-defaults everywhere: the machine's /etc/mysql config must not leak in.
  const install = spawnSync(
    mariadbBin('mariadb-install-db'),
    ['--no-defaults', `--datadir=${data}`, `--tmpdir=${tmp}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asUser, ...MARIADB_OPTS],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (install.status !== 0) {
    stop();
    throw new Error(`mariadb-install-db failed:\n${install.stdout ?? ''}${install.stderr ?? ''}${install.error ? String(install.error) : ''}`);
  }
  // The bootstrap runs without grant tables (CREATE USER fails there): the init file makes the database and
  // a TCP user with a password (as in production) before the server reports ready.
  const initFile = path.join(dir, 'init.sql');
  writeFileSync(
    initFile,
    `CREATE DATABASE IF NOT EXISTS evy;\nCREATE USER IF NOT EXISTS 'evy'@'%' IDENTIFIED BY '${MYSQL_PASSWORD}';\nGRANT ALL ON *.* TO 'evy'@'%' WITH GRANT OPTION;\n`,
  );
  // TLS offered too: mysql2 then replaces its socket by a TLS one mid-handshake when the client asks for it.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt',
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let lastErr = '';
  // The free port may be taken between our probe and the server's bind: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    stop.check();
    const log = path.join(dir, `server-${attempt}.log`); // one per attempt: an old "ready" must not count
    const readLog = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
    child = spawn(
      mariadbBin('mariadbd'),
      [
        '--no-defaults',
        `--datadir=${data}`,
        `--socket=${path.join(dir, 'mysqld.sock')}`,
        `--pid-file=${path.join(dir, 'mariadbd.pid')}`,
        `--log-error=${log}`,
        `--init-file=${initFile}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        '--skip-networking=0',
        '--skip-name-resolve',
        '--innodb-flush-log-at-trx-commit=0',
        '--max-connections=200',
        `--ssl-cert=${path.join(dir, 'tls.crt')}`,
        `--ssl-key=${path.join(dir, 'tls.key')}`,
        `--tmpdir=${tmp}`,
        ...MARIADB_OPTS,
        ...asUser,
      ],
      { stdio: 'ignore' },
    );
    exited = false;
    const c = child;
    const gone = new Promise((resolve) => (c.once('exit', resolve), c.once('error', resolve)));
    c.once('exit', () => c === child && (exited = true));
    c.once('error', () => c === child && (exited = true));
    // The TCP port listens before the init file has run: "ready for connections" in the log comes after it.
    const ready = () => readLog().includes('ready for connections');
    const deadline = Date.now() + 60_000;
    while (!exited && !(ready() && (await canConnect(port))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    stop.check();
    if (exited || !ready()) {
      if (!exited) child.kill('SIGKILL');
      // The next attempt reuses the data dir: the old server must be gone first (InnoDB locks its files).
      await gone;
      lastErr = readLog();
      continue;
    }
    return { env: { MYSQL_HOST: '127.0.0.1', MYSQL_PORT: String(port), MYSQL_USER: 'evy', MYSQL_PASSWORD, MYSQL_DATABASE: 'evy' }, stop };
  }
  stop();
  throw new Error(`mariadbd failed to start:\n${lastErr}`);
}

/** A CA and a server certificate it signs (127.0.0.1, localhost), made with the openssl CLI. */
export function makeCerts() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-chaos-certs-'));
  const ssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=evy chaos CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  ssl(['req', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext']);
  const files = { CHAOS_CA: path.join(dir, 'ca.crt'), CHAOS_KEY: path.join(dir, 'server.key'), CHAOS_CERT: path.join(dir, 'server.crt') };
  return { env: files, stop: () => rmSync(dir, { recursive: true, force: true }) };
}
