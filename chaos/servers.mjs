// PostgreSQL, Redis and TLS certificates for the chaos harness, started from temp dirs on free ports on
// 127.0.0.1 (the same recipe as test/helpers/servers.ts and certs.ts, in plain JS so that `npm run chaos`
// needs no TypeScript loader). Runs in the unpatched parent process: the servers are not the harness's
// children, so they never count as its leaks or orphans.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const PG_PASSWORD = 'evy-chaos';

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

/** Why PostgreSQL / Redis cannot run here, or null when they can. */
export function missingServers() {
  const why = [];
  if (pgBinDir() === null) why.push('PostgreSQL binaries (initdb, pg_ctl) not found');
  else if (isRoot && spawnSync('id', ['-u', 'postgres']).status !== 0) why.push('root without a postgres user');
  if (which('redis-server') === null) why.push('redis-server not found');
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

export async function startPostgres() {
  const bin = pgBinDir();
  const dir = mkdtempSync(path.join(isRoot ? '/tmp' : os.tmpdir(), 'evy-chaos-pg-'));
  if (isRoot) {
    const id = (f) => Number(spawnSync('id', [f, 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, id('-u'), id('-g'));
  }
  chmodSync(dir, 0o700);
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  // Password authentication (SCRAM), as in production: the client's handshake then writes in reply.
  const pwFile = path.join(dir, 'pw');
  writeFileSync(pwFile, `${PG_PASSWORD}\n`);
  if (isRoot) chownSync(pwFile, statSync(dir).uid, statSync(dir).gid);
  const init = pgRun(path.join(bin, 'initdb'), ['-D', data, '-U', 'evy', '--pwfile', pwFile, '-A', 'scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale=C'], 60_000);
  if (!init.ok) throw new Error(`initdb failed:\n${init.out}`);
  const pgCtl = path.join(bin, 'pg_ctl');
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    // client_connection_check_interval: a backend in pg_sleep notices that a killed client went away.
    const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=80 -c client_connection_check_interval=100ms`;
    const r = pgRun(pgCtl, ['start', '-D', data, '-l', log, '-w', '-t', '60', '-o', opts], 70_000);
    if (r.ok) break;
    if (attempt === 2) throw new Error(`pg_ctl start failed:\n${r.out}\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
  }
  await waitPort('postgres', port, 30_000);
  return {
    env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'evy', PGDATABASE: 'postgres', PGPASSWORD: PG_PASSWORD },
    stop() {
      pgRun(pgCtl, ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30'], 40_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'evy-chaos-redis-'));
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
    let exited = false;
    child.once('exit', () => (exited = true));
    try {
      await waitPort('redis-server', port, 15_000, () => !exited);
    } catch {
      if (!exited) child.kill('SIGKILL');
      continue;
    }
    return {
      env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port) },
      stop() {
        if (!exited) child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error('redis-server failed to start');
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
