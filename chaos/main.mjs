// `npm run chaos -- --seed N --injections N [--no-listeners] [--sabotage <counter>] [--verbose]`
//
// Starts PostgreSQL, Redis, MariaDB and TLS certificates here (an unpatched parent: the servers are never the
// harness's children, leaks or orphans), then runs the harness itself in one child process under the hook:
//   node --expose-gc --import ./register.mjs chaos/run.mjs <args>
// and exits with its exit code. Run chaos/run.mjs directly when the env below is already set.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { makeCerts, missingServers, startMariadb, startPostgres, startRedis } from './servers.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const missing = missingServers();
if (missing !== null) {
  console.error(`chaos: cannot run: ${missing}`);
  process.exit(2);
}
const stops = [];
const stopAll = () => {
  for (const s of stops.splice(0)) {
    try {
      s();
    } catch {
      /* best effort */
    }
  }
};
process.once('exit', stopAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

const certs = makeCerts();
stops.push(certs.stop);
// Each server hands its stop over as soon as it has a process or a temp dir, before it is ready: a failure to
// start another, or a SIGTERM during startup, still stops it.
const onStop = (stop) => stops.push(stop);
const [pgs, redis, mariadb] = await Promise.all([startPostgres(onStop), startRedis(onStop), startMariadb(onStop)]);

const child = spawn(process.execPath, ['--expose-gc', '--import', './register.mjs', 'chaos/run.mjs', ...process.argv.slice(2)], {
  cwd: root,
  env: { ...process.env, ...pgs.env, ...redis.env, ...mariadb.env, ...certs.env },
  stdio: 'inherit',
});
child.once('exit', (code, signal) => {
  stopAll();
  process.exit(code ?? (signal ? 128 + 9 : 1));
});
