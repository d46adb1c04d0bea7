// Real servers for the tests: Debian's PostgreSQL, redis-server and MariaDB, each started on a free port on
// 127.0.0.1 from a temporary data directory and stopped after. Where a binary is absent the test file is skipped
// with a clear message, except under CI (CI=true), where a missing server is a failure: CI must not pass green
// without having run them.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runNode, type RunResult } from './run.js';
import { removeSnapshot, snapshotPackage } from './snapshot.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const IN_CI = /^(1|true|yes)$/i.test(process.env.CI ?? '');

export interface Availability {
  ok: boolean;
  /** Why the server cannot run here (empty when ok). */
  reason: string;
}

/**
 * What a test file needs to know up front: run, skip (with `reason`), or fail because CI lacks the server.
 * Use as `describe.skipIf(skip)(title, ...)` and call `requireServer()` in `beforeAll`.
 */
export function plan(a: Availability, what: string): { skip: boolean; title: string } {
  if (a.ok) return { skip: false, title: what };
  if (IN_CI) return { skip: false, title: `${what} (MISSING IN CI: ${a.reason})` };
  process.stderr.write(`\n[evy tests] SKIPPED ${what}: ${a.reason}\n`);
  return { skip: true, title: `${what} (skipped: ${a.reason})` };
}

/** Throws the clear reason when the server is absent (reached only in CI, where it must fail). */
export function requireServer(a: Availability): void {
  if (!a.ok) throw new Error(`required server missing in CI: ${a.reason} (is .ci/packages.txt installed?)`);
}

/** A free TCP port on 127.0.0.1 (the OS picks one; we close it and hand it to the server). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, bin);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Retries `probe` until it resolves or `ms` pass. */
async function waitFor(what: string, ms: number, probe: () => Promise<boolean>, diag: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${ms} ms\n${diag()}`);
    await sleepMs(50);
  }
}

/** Whether something accepts connections on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// Safety net: if the test process exits without stop() (a crash, a hook timeout), stop the servers anyway.
const cleanups = new Set<() => void>();
process.once('exit', () => {
  for (const c of cleanups) {
    try {
      c();
    } catch {
      /* best effort */
    }
  }
});

// ---- PostgreSQL --------------------------------------------------------------------------------------

function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(path.join(base, v, 'bin', 'initdb')) && existsSync(path.join(base, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return path.join(base, versions[0]!, 'bin');
  }
  const initdb = which('initdb');
  return initdb !== null && which('pg_ctl') !== null ? path.dirname(initdb) : null;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const PG_PASSWORD = 'evy-test';

export function postgresAvailability(): Availability {
  const bin = pgBinDir();
  if (bin === null) return { ok: false, reason: 'PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql' };
  if (isRoot && spawnSync('id', ['-u', 'postgres']).status !== 0) {
    return { ok: false, reason: 'running as root but there is no `postgres` user to run the server as' };
  }
  return { ok: true, reason: '' };
}

/** A database server a test started (PostgreSQL or MariaDB). */
interface DbServer {
  host: string;
  port: number;
  user: string;
  database: string;
  /** Connection settings for the client: `new pg.Client(...)`, `mysql.createConnection(...)` (mysql2). */
  config: { host: string; port: number; user: string; database: string; password: string };
  /** The same as environment variables, for fixtures: PGHOST, PGPORT, ...; MYSQL_HOST, MYSQL_PORT, ... */
  env: Record<string, string>;
  logFile: string;
  stop(): Promise<void>;
}

export type PgServer = DbServer;

/** Runs a PostgreSQL binary as the postgres user when we are root (the server refuses to run as root). */
function pgCommand(bin: string, args: string[]): [string, string[]] {
  // runuser lives in sbin, which a CI environment's PATH may lack.
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser'].find((p) => existsSync(p)) ?? 'runuser';
  return isRoot ? [runuser, ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

function runPg(bin: string, args: string[], timeoutMs: number): { ok: boolean; out: string } {
  const [cmd, argv] = pgCommand(bin, args);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** initdb into a temp dir, pg_ctl start on a free port (TCP on 127.0.0.1, its Unix socket in the temp dir). */
export async function startPostgres(): Promise<PgServer> {
  const a = postgresAvailability();
  if (!a.ok) throw new Error(a.reason);
  const bin = pgBinDir()!;
  // As root the server runs as `postgres`, which must reach its dir: /tmp, whatever TMPDIR says.
  const dir = mkdtempSync(path.join(isRoot ? '/tmp' : os.tmpdir(), 'evy-pg-'));
  // The server runs as `postgres`: it must own its temp dir.
  if (isRoot) {
    const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gw = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    chownSync(dir, Number(pw.stdout.trim()), Number(gw.stdout.trim()));
  }
  chmodSync(dir, 0o700);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const user = 'evy';
  // Password authentication (SCRAM, the default of PostgreSQL 14+), as in production: the client then
  // writes in reply to the server during the handshake, which a kill must still see as the connecting
  // thread's (with trust, nothing is written in reply, and that case went untested).
  const pwFile = path.join(dir, 'pw');
  writeFileSync(pwFile, `${PG_PASSWORD}\n`);
  if (isRoot) chownSync(pwFile, statSync(dir).uid, statSync(dir).gid);
  const init = runPg(path.join(bin, 'initdb'), ['-D', data, '-U', user, '--pwfile', pwFile, '-A', 'scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale=C'], 60_000);
  if (!init.ok) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed:\n${init.out}`);
  }
  // TLS offered too (clients choose: PGSSLMODE=no-verify): pg then replaces its socket by a TLS one
  // mid-handshake, which a kill must follow. The server reads its key as `postgres`, and only if private.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt',
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  for (const f of ['tls.key', 'tls.crt']) {
    if (isRoot) chownSync(path.join(dir, f), statSync(dir).uid, statSync(dir).gid);
    chmodSync(path.join(dir, f), 0o600);
  }
  const tls = `-c ssl=on -c ssl_cert_file=${path.join(dir, 'tls.crt')} -c ssl_key_file=${path.join(dir, 'tls.key')}`;
  const pgCtl = path.join(bin, 'pg_ctl');
  let port = 0;
  let started = false;
  // The free port may be taken between our probe and the server's bind: try a few.
  for (let attempt = 0; attempt < 3 && !started; attempt++) {
    port = await freePort();
    // fsync off and small shared memory: a throwaway test cluster that starts fast on a small machine.
    // Cancellation settings are the defaults (no client_connection_check_interval): a backend busy in a query
    // does not notice that its client went away, so a kill must cancel it on the server (CancelRequest).
    const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60 ${tls}`;
    const r = runPg(pgCtl, ['start', '-D', data, '-l', logFile, '-w', '-t', '60', '-o', opts], 70_000);
    started = r.ok;
    if (!started && attempt === 2) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`pg_ctl start failed:\n${r.out}\n${log}`);
    }
  }
  const stopSync = (): void => {
    runPg(pgCtl, ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30'], 40_000);
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(stopSync);
  await waitFor('postgres', 30_000, () => canConnect(port));
  const host = '127.0.0.1';
  const database = 'postgres';
  return {
    host,
    port,
    user,
    database,
    config: { host, port, user, database, password: PG_PASSWORD },
    env: { PGHOST: host, PGPORT: String(port), PGUSER: user, PGDATABASE: database, PGPASSWORD: PG_PASSWORD },
    logFile,
    async stop() {
      cleanups.delete(stopSync);
      const [cmd, argv] = pgCommand(pgCtl, ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30']);
      await new Promise<void>((resolve) => spawn(cmd, argv, { stdio: 'ignore' }).once('exit', () => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- Redis -------------------------------------------------------------------------------------------

export function redisAvailability(): Availability {
  if (which('redis-server') === null) return { ok: false, reason: 'redis-server not found: apt-get install redis-server' };
  if (!redisHasTls()) return { ok: false, reason: 'this redis-server was built without TLS (Debian\'s has it): the tests run it as in production, with TLS offered' };
  return { ok: true, reason: '' };
}

/** Built with TLS: asked for a TLS port without a certificate, it complains about the certificate, not the option. */
function redisHasTls(): boolean {
  const r = spawnSync('redis-server', ['--port', '0', '--tls-port', '1'], { encoding: 'utf8', timeout: 10_000 });
  return /tls-cert-file/i.test(`${r.stdout}${r.stderr}`);
}

export interface RedisServer {
  host: string;
  port: number;
  /** The same server over TLS (its certificate: `ca`, for 127.0.0.1 and localhost). */
  tlsPort: number;
  /** An ACL user (all commands, all keys); the default user has `requirepass` set: as in production, nobody gets in without a password. */
  user: string;
  password: string;
  /** PEM of the server's self-signed certificate. */
  ca: string;
  url: string;
  /**
   * As environment variables for fixtures: REDIS_HOST, REDIS_PORT, REDIS_TLS_PORT, REDIS_USER, REDIS_PASSWORD,
   * REDIS_CA (a file).
   */
  env: Record<string, string>;
  process: ChildProcess;
  stop(): Promise<void>;
}

const REDIS_PASSWORD = 'evy-test';

/**
 * redis-server in the foreground on a free port, no persistence, its dir a temp dir. Production-like: the
 * default user needs a password (`requirepass`), an ACL user `evy` has its own, and TLS is offered on a second
 * port (Debian's redis-server is built with TLS).
 */
export async function startRedis(): Promise<RedisServer> {
  const a = redisAvailability();
  if (!a.ok) throw new Error(a.reason);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-redis-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt',
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ca = readFileSync(path.join(dir, 'tls.crt'), 'utf8');
  const user = 'evy';
  let lastErr = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const tlsPort = await freePort();
    const child = spawn(
      'redis-server',
      [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning',
        '--requirepass', REDIS_PASSWORD,
        '--user', user, 'on', `>${REDIS_PASSWORD}`, '~*', '&*', '+@all',
        '--tls-port', String(tlsPort), '--tls-cert-file', path.join(dir, 'tls.crt'), '--tls-key-file', path.join(dir, 'tls.key'), '--tls-auth-clients', 'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    let exited = false;
    child.once('exit', () => (exited = true));
    const killSync = (): void => {
      if (!exited) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    };
    cleanups.add(killSync);
    try {
      await waitFor('redis-server', 15_000, async () => {
        if (exited) throw new Error('exited');
        return (await canConnect(port)) && (await canConnect(tlsPort));
      });
    } catch {
      cleanups.delete(killSync);
      if (!exited) child.kill('SIGKILL');
      lastErr = output;
      continue;
    }
    const host = '127.0.0.1';
    return {
      host,
      port,
      tlsPort,
      user,
      password: REDIS_PASSWORD,
      ca,
      url: `redis://${user}:${REDIS_PASSWORD}@${host}:${port}`,
      env: {
        REDIS_HOST: host,
        REDIS_PORT: String(port),
        REDIS_TLS_PORT: String(tlsPort),
        REDIS_USER: user,
        REDIS_PASSWORD,
        REDIS_CA: path.join(dir, 'tls.crt'),
      },
      process: child,
      async stop() {
        cleanups.delete(killSync);
        if (!exited) {
          const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          child.kill('SIGTERM');
          await gone;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`redis-server failed to start:\n${lastErr}`);
}

// ---- MariaDB -----------------------------------------------------------------------------------------

/** A MariaDB binary: on PATH, else in /usr/sbin (mariadbd lives there, and a CI PATH may lack sbin). */
function mariadbBin(name: string): string | null {
  return which(name) ?? ['/usr/sbin', '/usr/bin'].map((d) => path.join(d, name)).find((p) => existsSync(p)) ?? null;
}

export function mariadbAvailability(): Availability {
  if (mariadbBin('mariadbd') === null || mariadbBin('mariadb-install-db') === null) {
    return { ok: false, reason: 'MariaDB server binaries (mariadbd, mariadb-install-db) not found: apt-get install mariadb-server' };
  }
  return { ok: true, reason: '' };
}

export type MariadbServer = DbServer;

// Small buffers, a small redo log, no binlog, no performance schema: a throwaway server that starts in a
// fraction of a second. The same InnoDB sizes at install time, else the first start resizes the redo log.
const MARIADB_OPTS = ['--innodb-buffer-pool-size=16M', '--innodb-log-file-size=8M', '--skip-log-bin', '--performance-schema=0'];

/** mariadb-install-db into a temp dir, mariadbd in the foreground on a free port (its Unix socket in the temp dir). */
export async function startMariadb(): Promise<MariadbServer> {
  const a = mariadbAvailability();
  if (!a.ok) throw new Error(a.reason);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-mariadb-'));
  const data = path.join(dir, 'data');
  // Its own temp dir: servers bootstrapping at once in the shared /tmp trip over each other's temp tables.
  const tmp = path.join(dir, 'tmp');
  mkdirSync(tmp);
  const logFile = path.join(dir, 'server.log');
  // mariadbd refuses to run as root unless told to; the temp dir is ours, so no need for the mysql user.
  const asUser = isRoot ? ['--user=root'] : [];
  // --no-defaults everywhere: the machine's /etc/mysql config (datadir, socket, logging) must not leak in.
  // Root without a password only matters for poking at the server by hand over the socket.
  const install = spawnSync(
    mariadbBin('mariadb-install-db')!,
    ['--no-defaults', `--datadir=${data}`, `--tmpdir=${tmp}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asUser, ...MARIADB_OPTS],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (install.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed:\n${install.stdout ?? ''}${install.stderr ?? ''}${install.error ? String(install.error) : ''}`);
  }
  // The bootstrap runs without grant tables (CREATE USER fails there): the init file makes the database and
  // a TCP user with a password (as in production) before the server reports ready.
  const user = 'evy';
  const database = 'evy';
  const password = 'evy-test';
  const initFile = path.join(dir, 'init.sql');
  writeFileSync(
    initFile,
    `CREATE DATABASE IF NOT EXISTS ${database};\nCREATE USER IF NOT EXISTS '${user}'@'%' IDENTIFIED BY '${password}';\nGRANT ALL ON *.* TO '${user}'@'%' WITH GRANT OPTION;\n`,
  );
  // TLS offered too (clients choose): mysql2 then replaces its socket by a TLS one mid-handshake.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt',
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const mariadbd = mariadbBin('mariadbd')!;
  const readLog = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  let lastErr = '';
  // The free port may be taken between our probe and the server's bind: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    // innodb-flush-log-at-trx-commit=0: no fsync per commit. skip-name-resolve: no DNS per connection (and
    // the client's host is 127.0.0.1, which the '%' user matches).
    const child = spawn(
      mariadbd,
      [
        '--no-defaults',
        `--datadir=${data}`,
        `--socket=${path.join(dir, 'mysqld.sock')}`,
        `--pid-file=${path.join(dir, 'mariadbd.pid')}`,
        `--log-error=${logFile}`,
        `--init-file=${initFile}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        '--skip-networking=0',
        '--skip-name-resolve',
        '--innodb-flush-log-at-trx-commit=0',
        `--ssl-cert=${path.join(dir, 'tls.crt')}`,
        `--ssl-key=${path.join(dir, 'tls.key')}`,
        `--tmpdir=${tmp}`,
        ...MARIADB_OPTS,
        ...asUser,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    let exited = false;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => (exited = true));
    const killSync = (): void => {
      if (!exited) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    };
    cleanups.add(killSync);
    // The TCP port listens before the init file has run: "ready for connections" in the log comes after it.
    const ready = (): boolean => readLog().includes('ready for connections');
    await waitFor('mariadbd', 60_000, async () => exited || (ready() && (await canConnect(port)))).catch(() => undefined);
    if (exited || !ready()) {
      cleanups.delete(killSync);
      if (!exited) child.kill('SIGKILL');
      // The next attempt reuses the data dir: the old server must be gone first (InnoDB locks its files).
      await gone;
      lastErr = `${output}${readLog()}`;
      continue;
    }
    const host = '127.0.0.1';
    return {
      host,
      port,
      user,
      database,
      config: { host, port, user, database, password },
      env: { MYSQL_HOST: host, MYSQL_PORT: String(port), MYSQL_USER: user, MYSQL_PASSWORD: password, MYSQL_DATABASE: database },
      logFile,
      async stop() {
        cleanups.delete(killSync);
        if (!exited) {
          child.kill('SIGTERM');
          // A clean shutdown takes well under a second; do not let a stuck one hang the suite.
          const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await gone;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`mariadbd failed to start:\n${lastErr}`);
}

// ---- fixtures under the register hook ---------------------------------------------------------------

export type FixtureResult = RunResult;

/**
 * Runs `fixtures/real/<name>` as `node --import evy/register <file>` (the way an app runs under evy) with
 * `env` added and `args` after the file; kills it after `timeoutMs`. The fixture prints its findings as one
 * JSON line last.
 */
export async function runFixture(name: string, env: Record<string, string>, timeoutMs = 30_000, nodeArgs: string[] = [], args: string[] = []): Promise<FixtureResult> {
  const root = await snapshot();
  const file = path.join(root, 'fixtures', 'real', name);
  return runNode(['--import', 'evy/register', ...nodeArgs, file, ...args], { cwd: root, env, timeoutMs });
}

let snapshotDir: string | null = null;

/** The package copy the fixtures run from (test/helpers/snapshot.ts), made once per test file. */
async function snapshot(): Promise<string> {
  if (snapshotDir !== null) return snapshotDir;
  const dir = await snapshotPackage('evy-real', ['fixtures/real']);
  cleanups.add(disposeFixtures);
  snapshotDir = dir;
  return dir;
}

/** Removes the fixture snapshot (call in afterAll: a test worker may be ended without an 'exit' event). */
export function disposeFixtures(): void {
  if (snapshotDir === null) return;
  removeSnapshot(snapshotDir);
  cleanups.delete(disposeFixtures);
  snapshotDir = null;
}
