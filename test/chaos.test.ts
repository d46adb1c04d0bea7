// The chaos harness (chaos/run.mjs, docs/chaos.md) as part of `npm test`: a short seeded run under the
// hook must end with every counter at 0; a run without uncaughtException/unhandledRejection listeners
// must end normally; and each --sabotage mode must make exactly its own counter non-zero (the harness can
// fail). PostgreSQL, Redis and MariaDB are started once for the file; under CI their absence is a failure.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from './helpers/certs.js';
import {
  IN_CI,
  ROOT,
  mariadbAvailability,
  plan,
  postgresAvailability,
  redisAvailability,
  requireServer,
  startMariadb,
  startPostgres,
  startRedis,
  type MariadbServer,
  type PgServer,
  type RedisServer,
} from './helpers/servers.js';

const COUNTERS = ['collateral', 'integrity', 'unsettled', 'leaked', 'orphans', 'unhandled', 'wrongerror'] as const;
const pgA = postgresAvailability();
const redisA = redisAvailability();
const mariadbA = mariadbAvailability();
const all = [pgA, redisA, mariadbA];
const both = all.every((a) => a.ok) ? pgA : { ok: false, reason: all.map((a) => a.reason).filter(Boolean).join('; ') };
const { skip, title } = plan(both, 'chaos harness (PostgreSQL + Redis + MariaDB)');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  counts: Record<string, number> | null;
}

let pgs: PgServer | undefined;
let redis: RedisServer | undefined;
let mariadb: MariadbServer | undefined;
let certs: Certs | undefined;

/** Runs the harness as `node --expose-gc --import ./register.mjs chaos/run.mjs ...args`. */
function chaos(args: string[], timeoutMs = 50_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', './register.mjs', path.join('chaos', 'run.mjs'), ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        ...pgs!.env,
        ...redis!.env,
        ...mariadb!.env,
        CHAOS_CA: certs!.files.caCert,
        CHAOS_KEY: certs!.files.serverKey,
        CHAOS_CERT: certs!.files.serverCert,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('chaos: summary '));
      let counts: Record<string, number> | null = null;
      if (line !== undefined) {
        counts = {};
        for (const c of COUNTERS) counts[c] = Number(new RegExp(` ${c}=(\\d+)`).exec(line)?.[1] ?? NaN);
      }
      resolve({ code, signal, out, counts });
    });
  });
}

describe.skipIf(skip)(title, () => {
  beforeAll(async () => {
    requireServer(both);
    certs = makeCerts();
    [pgs, redis, mariadb] = await Promise.all([startPostgres(), startRedis(), startMariadb()]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([pgs?.stop(), redis?.stop(), mariadb?.stop()]);
    certs?.cleanup();
  }, 60_000);

  it('a short seeded run: every counter is 0 and the exit code is 0', async () => {
    const r = await chaos(['--seed', '7', '--injections', '300']);
    expect(r.counts, r.out).not.toBeNull();
    expect(r.counts, r.out).toEqual(Object.fromEntries(COUNTERS.map((c) => [c, 0])));
    expect(r.code, r.out).toBe(0);
  }, 60_000);

  it('without uncaughtException/unhandledRejection listeners the run ends normally', async () => {
    const r = await chaos(['--seed', '8', '--injections', '200', '--no-listeners']);
    expect(r.out).toMatch(/^chaos: summary .* result=PASS/m);
    expect(r.signal, r.out).toBeNull();
    expect(r.code, r.out).toBe(0);
  }, 60_000);

  // Each sabotage runs alone (no waves): its counter, and only it, must go non-zero, whatever the state
  // of the library, so this proves the harness can see that kind of failure.
  it('each --sabotage mode makes exactly its own counter non-zero', async () => {
    // Three at a time: seven harness processes at once on a 2-core machine, beside the suite's other
    // files, could outlast any sane timeout.
    const runs: Run[] = [];
    for (let i = 0; i < COUNTERS.length; i += 3) {
      const batch = COUNTERS.slice(i, i + 3).map((c) => chaos(['--seed', '1', '--injections', '0', '--sabotage', c], 40_000));
      runs.push(...(await Promise.all(batch)));
    }
    COUNTERS.forEach((c, i) => {
      const r = runs[i]!;
      expect(r.counts, `--sabotage ${c}:\n${r.out}`).not.toBeNull();
      for (const other of COUNTERS) {
        if (other === c) expect(r.counts![other], `--sabotage ${c}: ${other}\n${r.out}`).toBeGreaterThan(0);
        else expect(r.counts![other], `--sabotage ${c}: ${other}\n${r.out}`).toBe(0);
      }
      expect(r.code, `--sabotage ${c}\n${r.out}`).not.toBe(0);
    });
  }, 150_000);
});

if (skip && IN_CI) throw new Error('unreachable: plan() never skips under CI');
