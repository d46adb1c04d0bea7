// The chaos harness (chaos/run.mjs, docs/chaos.md) as part of `npm test`: a short seeded run under the
// hook must end with every counter at 0; a run without uncaughtException/unhandledRejection listeners
// must end normally; and each --sabotage mode must make exactly its own counter non-zero (the harness can
// fail). PostgreSQL, Redis and MariaDB are started once for the file; under CI their absence is a failure.
// The classification rule itself (chaos/classify.mjs) is checked first, without servers.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
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

const COUNTERS = ['collateral', 'integrity', 'unsettled', 'leaked', 'orphans', 'unhandled', 'wrongerror', 'lingering', 'misdirected', 'fallback'] as const;
// Every --sabotage mode and the one counter it must move: one per counter, plus kill-shared (a kill destroys a
// connection another thread's request is outstanding on: what evy did without its shared-connection rule),
// orphan-ref (a killed thread's private idle connection still ref'd: what evy did before it orphaned them) and
// orphan-shared (the kill of a lazily shared client's creator closes it while it sits idle) and request-unowned
// (the app server's requests run in no thread: a client's abort stops none of their work), cancel-skip (a
// statement issued inside unowned(): its thread's kill cancels nothing), unblock-skip (the same for an ioredis
// BLPOP: it takes the item pushed after the kill) and pool-twice (a pool lends one client to two borrowers at
// once).
const SABOTAGES: [string, (typeof COUNTERS)[number]][] = [
  ...COUNTERS.map((c) => [c, c] as [string, (typeof COUNTERS)[number]]),
  ['kill-shared', 'collateral'],
  ['orphan-ref', 'lingering'],
  ['orphan-shared', 'collateral'],
  ['request-unowned', 'lingering'],
  ['cancel-skip', 'lingering'],
  ['unblock-skip', 'lingering'],
  ['pool-twice', 'integrity'],
];
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

describe('chaos classification rule (chaos/classify.mjs)', () => {
  const kill = new Error('kill');
  const isKillError = (e: unknown) => e === kill;
  const load = async () => (await import(pathToFileURL(path.join(ROOT, 'chaos', 'classify.mjs')).href)).classifyFailure;
  const verdict = async (thread: object, f: object) => (await load())(thread, { err: new Error('closed'), ...f }, isKillError).verdict;

  it("a thread's failure is expected only from the moment of its own kill or fired deadline", async () => {
    expect(await verdict({ killedAt: 10 }, { at: 12 })).toBe('expected');
    expect(await verdict({ killedAt: 10 }, { at: 8 })).toBe('collateral');
    expect(await verdict({ firedAt: 10 }, { at: 12 })).toBe('expected');
    expect(await verdict({ firedAt: 10 }, { at: 8 })).toBe('collateral');
    expect(await verdict({}, { at: 8 })).toBe('collateral');
  });

  it('a doom excuses only later failures of requests that never reached the open connection', async () => {
    const gen = { dooms: [{ at: 10, by: '#1' }] };
    expect(await verdict({}, { at: 12, gen })).toBe('excused'); // never sent (it waited for the connection)
    expect(await verdict({}, { at: 9, gen })).toBe('collateral'); // failed before the kill
    expect(await verdict({}, { at: 12, gen, note: { sentAt: 9 } })).toBe('collateral'); // it was shared
    // Sent after the kill on a connection still open (an abandoned setup): that thread took it over.
    expect(await verdict({}, { at: 12, gen, note: { sentAt: 11 } })).toBe('collateral');
    // A command queued in a live watched client (pg, mysql2) that dies of a kill error: evy saw the queue.
    expect(await verdict({}, { at: 12, gen, note: { queued: true, sentAt: 11 }, err: kill })).toBe('collateral');
    // A victim's failure before its own kill may still be excused by another thread's doom.
    expect(await verdict({ killedAt: 20 }, { at: 12, gen })).toBe('excused');
  });

  it("a failure nothing explains is misdirected when the server cancelled the command, collateral otherwise", async () => {
    const cancelled = Object.assign(new Error('canceling statement due to user request'), { code: '57014' });
    const interrupted = Object.assign(new Error('Query execution was interrupted'), { code: 'ER_QUERY_INTERRUPTED', errno: 1317 });
    const unblocked = new Error('UNBLOCKED client unblocked via CLIENT UNBLOCK');
    for (const err of [cancelled, interrupted, unblocked]) {
      expect(await verdict({}, { at: 8, err })).toBe('misdirected');
      expect(await verdict({ killedAt: 10 }, { at: 8, err })).toBe('misdirected'); // before its own kill
      expect(await verdict({ killedAt: 10 }, { at: 12, err })).toBe('expected'); // its own kill's cancel
    }
    expect(await verdict({}, { at: 8, err: Object.assign(new Error('x'), { code: '57P01' }) })).toBe('collateral');
  });
});

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

  // chaos/main.mjs starts the servers itself: a SIGTERM while they start (a CI job cancelled, ^C) must stop what
  // is already running. Before, a server's stop existed only once it was ready: main.mjs killed during startup
  // left redis-server and mariadbd running, with their temp dirs. Each start now hands its stop over first.
  it("a chaos server's start hands over its stop before the server is ready, and that stop ends it", async () => {
    const { startRedis } = await import(pathToFileURL(path.join(ROOT, 'chaos', 'servers.mjs')).href);
    const dirs = () => readdirSync(os.tmpdir()).filter((d) => d.startsWith('evy-chaos-redis-')).map((d) => path.join(os.tmpdir(), d));
    const before = new Set(dirs());
    let stop: (() => void) | undefined;
    const starting: Promise<unknown> = startRedis((s: () => void) => (stop = s));
    starting.catch(() => {});
    expect(stop, 'no stop until the server is ready').toBeTypeOf('function');
    const [dir] = dirs().filter((d) => !before.has(d));
    expect(dir).toBeDefined();
    // Processes whose working directory is that dir (redis-server runs in its --dir).
    const inside = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return readlinkSync(`/proc/${p}/cwd`).replace(/ \(deleted\)$/, '') === dir;
          } catch {
            return false;
          }
        });
    const until = async (cond: () => boolean) => {
      for (const t0 = Date.now(); !cond() && Date.now() - t0 < 15_000; ) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => inside().length > 0);
    expect(inside().length, 'redis-server never started').toBeGreaterThan(0);
    stop!();
    // It may have become ready in between (then it resolved): either way the stop ends it.
    await starting.then(
      () => {},
      (e: Error) => expect(e.message).toMatch(/stopped while starting/),
    );
    await until(() => inside().length === 0);
    expect(inside()).toEqual([]);
    expect(existsSync(dir!)).toBe(false);
  });

  // Each sabotage runs alone (no waves): its counter, and only it, must go non-zero, whatever the state
  // of the library, so this proves the harness can see that kind of failure.
  it('each --sabotage mode makes exactly its own counter non-zero', async () => {
    // Three at a time: eight harness processes at once on a 2-core machine, beside the suite's other
    // files, could outlast any sane timeout.
    const runs: Run[] = [];
    for (let i = 0; i < SABOTAGES.length; i += 3) {
      // A run takes 1-8 s; the bound has room for a 2-core machine loaded 20 deep (one run hit 40 s there).
      const batch = SABOTAGES.slice(i, i + 3).map(([mode]) => chaos(['--seed', '1', '--injections', '0', '--sabotage', mode], 70_000));
      runs.push(...(await Promise.all(batch)));
    }
    SABOTAGES.forEach(([mode, c], i) => {
      const r = runs[i]!;
      expect(r.counts, `--sabotage ${mode}:\n${r.out}`).not.toBeNull();
      for (const other of COUNTERS) {
        if (other === c) expect(r.counts![other], `--sabotage ${mode}: ${other}\n${r.out}`).toBeGreaterThan(0);
        else expect(r.counts![other], `--sabotage ${mode}: ${other}\n${r.out}`).toBe(0);
      }
      expect(r.code, `--sabotage ${mode}\n${r.out}`).not.toBe(0);
    });
    // The leak check runs while the harness's servers still hold their ends: a client socket left open is seen
    // (once the echo server's end closes, it would get EOF and close by itself).
    expect(runs[COUNTERS.indexOf('leaked')]!.out).toMatch(/socket to echo: destroyed=false/);
    const out = (mode: string) => runs[SABOTAGES.findIndex(([m]) => m === mode)]!.out;
    // kill-shared: the victim's kill came after the survivor's request was on the connection.
    expect(out('kill-shared')).toMatch(/its request reached the open connection [\d.]+ ms before #\d+ \(kill/);
    // A killed thread's private connection the harness keeps reachable is never closed; one re-ref'd keeps the process up.
    expect(out('lingering')).toMatch(/private net connection of a killed thread \(parked at the kill\) still open on the server/);
    expect(out('orphan-ref')).toMatch(/private net connection \(parked when its thread was killed\) still keeps the process alive/);
    expect(out('orphan-shared')).toMatch(/lazy pg\.Client.* \(created by #\d+ victim\)/);
    // The aborted request's timer fires, its upstream request stays open, its thread is not killed.
    expect(out('request-unowned')).toMatch(/its timer fired \d+ ms after the request was aborted by its client/);
    expect(out('request-unowned')).toMatch(/still there: its request thread \(not killed\), its upstream request/);
    // Server-side cancel: each new check names what it saw.
    expect(out('misdirected')).toMatch(/\(survivor\): cancel\.pg\.query failed with the server's cancel.*canceling statement due to user request/s);
    expect(out('fallback')).toMatch(/connection was destroyed by a kill .* where evy cancels the statement/);
    expect(out('cancel-skip')).toMatch(/its sleep statement \(pg, chaos-op:[\d-]+\) still runs on the server/);
    expect(out('unblock-skip')).toMatch(/an item pushed on the key of its BLPOP [\d.]+ s after its kill was taken/);
    expect(out('pool-twice')).toMatch(/a client lent twice at once/);
  }, 240_000);
});

if (skip && IN_CI) throw new Error('unreachable: plan() never skips under CI');
