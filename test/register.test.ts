// `node --import ./register.mjs` / `--require ./register.cjs` on real fixture apps, in real processes.
import childProcess, { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import timers from 'node:timers';
import tls from 'node:tls';
import http from 'node:http';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = fileURLToPath(new URL('../fixtures/register/', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function node(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: FIX, env: { ...process.env, NODE_OPTIONS: '', ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

const IMPORT = ['--import', `${ROOT}register.mjs`];
const REQUIRE = ['--require', `${ROOT}register.cjs`];
// By package name, as users write it (the fixtures sit inside the package: self-reference resolves it).
const IMPORT_BY_NAME = ['--import', 'evy/register'];
const REQUIRE_BY_NAME = ['--require', 'evy/register'];

function json(r: Run): any {
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`no JSON from the fixture (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// A server that accepts requests and never answers, in this (other) process: the fixture's own
// getActiveResourcesInfo() then only shows what the fixture itself holds.
let slow: http.Server;
let slowUrl = '';
beforeAll(async () => {
  slow = http.createServer(() => {}).listen(0, '127.0.0.1');
  await once(slow, 'listening');
  slowUrl = `http://127.0.0.1:${(slow.address() as { port: number }).port}/`;
});
afterAll(() => {
  slow.closeAllConnections();
  slow.close();
});

describe('node --import ./register.mjs', () => {
  it('an unaware ESM app runs unchanged', async () => {
    const [plain, patched] = await Promise.all([node(['unaware.mjs']), node([...IMPORT, 'unaware.mjs'])]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(patched.code, patched.stderr).toBe(0);
    expect(json(patched)).toEqual(json(plain));
    expect(json(plain)).toContain('net echo me'); // the transcript really exercised the modules
    expect(patched.stderr).toBe('');
  });

  it('register creates no ALS and does not load tls; net and child_process are patched before the app runs', async () => {
    const out = json(await node([...IMPORT, 'startup-state.mjs']));
    expect(out).toEqual({
      registered: 'import',
      alsBeforeSpawn: null,
      loadedAtStart: ['net', 'child_process'],
      timersGreen: true,
      netHooksAtStart: true,
      childHooksAtStart: true,
      alsAfterSpawn: true,
    });
    const timersOnly = json(await node([...IMPORT, 'startup-state.mjs'], { EVY_PATCH: 'timers' }));
    expect(timersOnly.loadedAtStart).toEqual([]);
    expect(timersOnly.netHooksAtStart).toBe(false);
    expect(timersOnly.childHooksAtStart).toBe(false);
  });

  it("what a CJS app copies on its first line is what isMonkeyPatched says (--require and --import; EVY_PATCH)", async () => {
    // Fingerprints of the originals, taken in this process (which register never patched).
    const sha1 = (fn: unknown): string => createHash('sha1').update(String(fn)).digest('hex');
    const originals: Record<string, string> = {
      child_process: sha1(childProcess.spawn),
      net: sha1(net.Socket.prototype.connect),
      tls: sha1(tls.TLSSocket.prototype.connect),
      timers: sha1(timers.setTimeout),
      fs: sha1(fs.promises.readFile),
    };
    for (const [args, env] of [[REQUIRE, {}], [IMPORT, {}], [REQUIRE, { EVY_PATCH: 'timers,fs' }]] as const) {
      const out = json(await node([...args, 'early-copies.cjs'], env));
      for (const name of Object.keys(originals)) {
        // patched <=> the function the app holds is not Node's own
        expect({ name, patched: out.patched[name] }).toEqual({ name, patched: out.fingerprints[name] !== originals[name] });
      }
      const all = Object.keys(env).length === 0;
      expect(out.patched.child_process).toBe(all);
      expect(out.childHasWait).toBe(all);
      expect(out.childHasCommunicate).toBe(all);
      if (all) {
        expect(out.childOutput).toBe('hi from the child');
        expect(out.returncode).toBe(0);
      }
    }
  });

  it('withTimeout(0.5) around http.get to a silent server: ~0.5 s, and nothing of the thread is left', async () => {
    const r = await node([...IMPORT, 'http-timeout.mjs'], { SLOW_URL: slowUrl });
    const out = json(r);
    expect(out.error).toBe('Timeout');
    expect(out.elapsedMs).toBeGreaterThanOrEqual(450);
    expect(out.elapsedMs).toBeLessThan(2000);
    expect(out.promisesError).toBe('Timeout'); // timers/promises rejected with the kill error
    const leftovers = out.resources.filter((k: string) => /TCP|Timeout|Process|Immediate/.test(k));
    expect(leftovers).toEqual([]);
    expect(out.alive).toEqual([]); // the `sleep 100` child is gone (checked by pid)
    for (const pid of out.pids) expect(alive(pid)).toBe(false);
  });

  it('the same fixture unpatched (EVY_PATCH=none) leaks: the check above can fail', async () => {
    const r = await node([...IMPORT, 'http-timeout.mjs'], { SLOW_URL: slowUrl, EVY_PATCH: 'none' });
    const out = json(r);
    try {
      expect(out.resources).toContain('TCPSocketWrap');
      expect(out.resources).toContain('ProcessWrap');
    } finally {
      for (const pid of out.pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  it('ownership follows use: a shared keep-alive socket survives the kill of the thread that created it', async () => {
    const out = json(await node([...IMPORT, 'keepalive.mjs']));
    expect(out.a.body).toBe('ok /a');
    expect(out.a.reused).toBe(false);
    // B ran on A's socket (same local port, reused) and finished although A was killed meanwhile.
    expect(out.b).toEqual({ body: 'ok /b?delay=400', reused: true, port: out.a.port });
    // B2, killed in flight: its request died at once, and the server saw the client go.
    expect(out.b2.error).toBe('GreenletExit');
    expect(out.b2.detached).toBe(false); // its foreign await settled: the thread was not given up on
    expect(out.b2.ms).toBeLessThan(2000);
    expect(out.aborted).toEqual(['/b2?delay=5000', '/c?delay=5000']);
    expect(out.cDead).toBe(true); // C had no 'error' listener: no crash
    expect(out.after.body).toBe('ok /after');
  });

  it('killing a thread ends every child it started (spawn, exec via a shell, execFile, promisified, fork ignoring SIGTERM)', async () => {
    const r = await node([...IMPORT, 'child-kill.mjs']);
    const out = json(r);
    expect(out.before).toBe(4); // four `sleep` processes carried the marker
    expect(out.alive).toEqual([]);
    expect(out.left).toEqual([]); // no orphaned grandchild of exec's shell
    expect(out.gone).toBeLessThan(2900); // SIGKILL after the 1 s grace for the one ignoring SIGTERM
    for (const pid of Object.values(out.pids) as number[]) expect(alive(pid)).toBe(false);
  });

  it('killing threads that own shell trees does not block the event loop: the trees are frozen on later turns', async () => {
    const out = json(await node([...IMPORT, 'kill-tree-stall.mjs'], { TREES: '8' }));
    expect(out.left).toBe(0);
    // CPU time spent between two turns of a 1 ms timer: what the machine's load does not inflate. The synchronous
    // freeze (a full /proc scan per round, busy-waiting until each process is stopped) spent 150-300 ms on 8
    // trees here, 35-65 ms on one; now it is the kill calls themselves (~0.3 ms each) or one turn of the rounds.
    expect(out.maxTurnCpuMs).toBeLessThan(25);
    // The kills return before the trees are frozen (only each shell is stopped in the kill): however cheap a
    // freeze inside the kill, it waits for the processes to stop, which a loaded machine delays.
    expect(out.touchedInKill).toBe(0);
    expect(out.goneMs).toBeLessThan(1000); // of their SIGTERM, not the SIGKILL at the end of the grace
    process.stdout.write(`[evy kill-tree-stall] ${JSON.stringify(out)}\n`);
  });

  it.each(['call', 'listener'])('a thread killed as the process exits (process.exit() right after the kill, or from an earlier exit listener: %s): its tree gets its SIGTERM, none left stopped', async (mode) => {
    const r = await node([...IMPORT, 'exit-after-kill.mjs'], { EXIT_MODE: mode });
    expect(r.code, r.stderr).toBe(0);
    const { pids } = json(r) as { pids: number[] };
    expect(pids).toHaveLength(3);
    // Dead of the SIGTERM (gone, or a zombie until its new parent reaps it), none stopped or still sleeping.
    const state = (pid: number): string => {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
        return stat.charAt(stat.lastIndexOf(')') + 2);
      } catch {
        return 'gone';
      }
    };
    const t0 = performance.now();
    while (pids.some((p) => !['gone', 'Z', 'X'].includes(state(p))) && performance.now() - t0 < 3000) await new Promise((res) => setTimeout(res, 20));
    const states = pids.map(state);
    for (const pid of pids) if (!['gone', 'Z', 'X'].includes(state(pid))) process.kill(pid, 'SIGKILL');
    expect(states.filter((s) => !['gone', 'Z', 'X'].includes(s))).toEqual([]);
  });

  it('a socket killed while its lookup never answers does not keep the process up', async () => {
    const t0 = performance.now();
    const r = await node([...IMPORT, 'connect-never.mjs'], {}, 10_000);
    expect(json(r)).toEqual({ connecting: true, destroyed: false }); // evy still waits for its setup to settle
    expect(r.code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(5000); // hung until killed before
  });

  it('a killed shell tree does not keep the process up for the SIGKILL grace once it is gone', async () => {
    const out = json(await node([...IMPORT, 'shell-tree-exit.mjs']));
    // Gone or a zombie (its exit status waits for whoever adopted the orphan).
    let state = 'gone';
    try {
      const stat = fs.readFileSync(`/proc/${out.grandchild}/stat`, 'latin1');
      state = stat.charAt(stat.lastIndexOf(')') + 2);
    } catch {
      // gone
    }
    expect(state).toMatch(/^(gone|Z|X)$/);
    // The old code stayed up for the whole 1 s SIGKILL grace (the grandchild dies after the shell): any exit
    // before the grace ends proves the tree was watched; the bound is the grace itself, the room is all of it.
    expect(out.exitMs).toBeLessThan(1000);
  });

  it('an fs read stream (and write stream, FileHandle, watcher) of a killed thread is closed', async () => {
    const out = json(await node([...IMPORT, 'fs-stream.mjs']));
    expect(out.firstChunk).toBe(1024);
    expect(out.openDuring).toBeGreaterThanOrEqual(3);
    expect(out.rs).toEqual({ destroyed: true, closed: true });
    expect(out.ws).toEqual({ destroyed: true, closed: true });
    expect(out.fhClosed).toBe(true);
    expect(out.watcherClosed).toBe(true);
    expect(out.openAfter).toBe(0);
  });

  it('a thread that logged to a piped stdout and is killed leaves stdout and stderr alone', async () => {
    const out = json(await node([...IMPORT, 'stdio.mjs']));
    expect(out).toEqual({ destroyCalls: 0, errors: 0, stdoutIsSocket: 'Socket' });
  });

  it('EVY_PATCH selects modules; none patches nothing; an unknown name fails loudly', async () => {
    const sel = json(await node([...IMPORT_BY_NAME, 'cjs-kill.cjs'], { EVY_PATCH: 'timers,net' }));
    expect(sel.patched).toEqual(['net', 'timers']);
    expect(sel.timerCleared).toBe(true);
    expect(sel.socketDestroyed).toBe(true);
    expect(sel.childGone).toBe(false); // child_process was not patched
    const none = json(await node([...IMPORT, 'cjs-kill.cjs'], { EVY_PATCH: 'none' }));
    expect(none.patched).toEqual([]);
    expect(none.timerCleared).toBe(false);
    const bad = await node([...IMPORT, 'cjs-kill.cjs'], { EVY_PATCH: 'net,bogus' });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('EVY_PATCH=net,bogus');
    expect(bad.stderr).toContain('"bogus"');
  });
});

describe('node --require ./register.cjs', () => {
  it('an unaware CJS app runs unchanged', async () => {
    const [plain, patched] = await Promise.all([node(['unaware.cjs']), node([...REQUIRE_BY_NAME, 'unaware.cjs'])]);
    expect(patched.code, patched.stderr).toBe(0);
    expect(json(patched)).toEqual(json(plain));
    expect(json(plain)).toContain('net ok');
  });

  it("a CJS app's thread: its timer, socket and child die with it", async () => {
    const out = json(await node([...REQUIRE, 'cjs-kill.cjs']));
    expect(out).toEqual({
      patched: ['net', 'tls', 'timers', 'fs', 'child_process'],
      timerCleared: true,
      socketDestroyed: true,
      childGone: true,
    });
  });

  // The client finder tests the shape of every CommonJS file's exports. Node's test/common exports a Proxy that
  // throws on an unknown name: every test of Node's own suite died at its first require under the hook.
  it("loading a module reads none of its exports' accessors and no Proxy's (the client finder's shape test)", async () => {
    const [plain, imported, required] = await Promise.all([
      node(['strict-exports.cjs']),
      node([...IMPORT, 'strict-exports.cjs']),
      node([...REQUIRE, 'strict-exports.cjs']),
    ]);
    expect(json(plain)).toEqual({ answer: 42, reads: [] });
    for (const r of [imported, required]) {
      expect(r.code, r.stderr).toBe(0);
      expect(json(r)).toEqual({ answer: 42, reads: [] });
    }
  });

  it('a second registration is a no-op with a warning', async () => {
    const r = await node([...REQUIRE, ...IMPORT_BY_NAME, 'cjs-kill.cjs']);
    expect(r.stderr).toContain('EVY_REGISTER_TWICE');
    expect(json(r).timerCleared).toBe(true); // the first one took effect
  });
});

describe('an app that destructured its imports before monkeyPatch()', () => {
  it('is reached where it can be: ESM bindings, sockets and children; a copied CJS function is not', async () => {
    const out = json(await node(['destructured.mjs']));
    expect(out).toEqual({
      before: { esmSetTimeoutIsOriginal: true },
      esmBindingUpdated: true,
      esmTimerCleared: true,
      cjsTimerCleared: false, // documented limit: nothing can reach a copied function value
      socketDestroyed: true,
      childKilled: true,
    });
  });
});
