// evy.debug: thread dump, SIGUSR2 dump, blocking watchdog (real child processes), leak report on real fixtures.
import { spawn as spawnProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as evy from '../src/index.js';
import { debug, Event, listen, connect, Queue, sleep, spawn, type GreenSocket } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = join(root, 'fixtures/debug');
const tmp = mkdtempSync(join(tmpdir(), 'evy-debug-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function runFixture(file: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnProcess(process.execPath, [join(fixtures, file)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('formatThreads / threads', () => {
  it('lists every live thread with no setup: name, state, what it is parked on, what it owns', async () => {
    // No trackThreads() anywhere before this test: the dump must still see every thread.
    const q = new Queue<number>();
    const consumer = spawn(() => q.get());
    consumer.name = 'consumer';
    let l: GreenSocket | null = null;
    const acceptor = spawn(async () => {
      l = await listen(['127.0.0.1', 0]); // made here: the acceptor owns it
      return l.accept();
    });
    acceptor.name = 'acceptor';
    const notYet = spawn(() => 1);
    notYet.name = 'not-started';
    expect(debug.threads().find((t) => t.name === 'not-started')?.state).toBe('ready');
    await sleep(0.01);
    const list = debug.threads();
    expect(list[0]).toBe(list.find((t) => t.id === evy.getcurrent().id));
    const c = list.find((t) => t.name === 'consumer')!;
    expect(c).toMatchObject({ state: 'parked', parkedOn: ['Queue.get'], spawnSite: null, age: null });
    const a = list.find((t) => t.name === 'acceptor')!;
    expect(a.parkedOn).toEqual(['GreenSocket.accept']);
    expect(a.owned.join(' ')).toMatch(/GreenSocket|listen|Server/);
    expect(list.some((t) => t.name === 'not-started')).toBe(false); // finished threads leave the list
    const dump = debug.formatThreads();
    expect(dump).toMatch(/- consumer \[#\d+\] parked on Queue\.get/);
    expect(dump).toMatch(/- acceptor \[#\d+\] parked on GreenSocket\.accept/);
    q.put(1);
    await consumer.wait();
    await acceptor.kill(); // (the kill destroys the listening socket the acceptor owned)
    expect(((l as GreenSocket | null)!.raw as net.Server).listening).toBe(false);
    await sleep(0.02);
    const names = debug.threads().map((t) => t.name);
    expect(names).not.toContain('consumer');
    expect(names).not.toContain('acceptor');
  });

  it('lists live threads with state, primitive, owned resources, age and spawn site', async () => {
    debug.trackThreads(true);
    try {
      const q = new Queue<number>();
      const gate = new Event<void>();
      const server = await listen(['127.0.0.1', 0]);
      const consumer = spawn(async function consumeJobs() {
        return q.get();
      });
      consumer.name = 'consumer';
      const sleeper = spawn(() => sleep(30));
      sleeper.name = 'sleeper';
      let release!: () => void;
      const foreign = spawn(() => new Promise<void>((r) => (release = r)));
      foreign.name = 'foreigner';
      const reader = spawn(async () => {
        const sock = await connect(server.getsockname() as [string, number]);
        try {
          return await sock.recv(10);
        } finally {
          sock.close();
        }
      });
      reader.name = 'reader';
      const waiter = spawn(() => gate.wait());
      waiter.name = 'gatekeeper';
      const [client] = await server.accept();
      await sleep(0.05);
      const notYet = spawn(() => 1);
      notYet.name = 'not-started';

      const dump = debug.formatThreads();
      const list = debug.threads();
      const by = (name: string) => list.find((t) => t.name === name)!;
      expect(list[0]!.name).toBe('MainThread');
      expect(by('consumer')).toMatchObject({ state: 'parked', parkedOn: ['Queue.get'] });
      expect(by('sleeper')).toMatchObject({ state: 'parked', parkedOn: ['sleep'] });
      expect(by('foreigner')).toMatchObject({ state: 'foreign', parkedOn: [] });
      expect(by('gatekeeper').parkedOn).toEqual(['Event.wait']);
      expect(by('not-started').state).toBe('ready');
      const r = by('reader');
      expect(r.state).toBe('parked');
      expect(r.parkedOn[0]).toMatch(/recv/i);
      expect(r.owned.join()).toMatch(/GreenSocket\(Socket 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\)/);
      expect(r.age).toBeGreaterThan(0.04);
      expect(r.spawnSite).toContain('debug.test.ts');
      expect(r.parent).toBe('MainThread');
      expect(dump).toMatch(/- consumer \[#\d+\] parked on Queue\.get, age [\d.]+ms, spawned by MainThread/);
      expect(dump).toMatch(/- foreigner .*foreign promise/);
      expect(dump).toMatch(/owns GreenSocket\(Socket/);
      expect(dump).toMatch(/spawned at .*debug\.test\.ts:\d+:\d+/);

      // Dead threads drop out of the dump.
      q.put(1);
      await consumer.wait();
      await sleeper.kill();
      release();
      await foreign.wait();
      gate.send();
      await waiter.wait();
      await client.sendall(Buffer.from('x'));
      await reader.wait();
      await notYet.wait();
      client.close();
      server.close();
      const names = debug.threads().map((t) => t.name);
      for (const n of ['consumer', 'sleeper', 'foreigner', 'gatekeeper', 'reader', 'not-started']) expect(names).not.toContain(n);
    } finally {
      debug.trackThreads(false);
    }
  });

  it('names the threads spawned by a thread and says how to get spawn sites', async () => {
    expect(debug.formatThreads()).toMatch(/spawn sites and ages: call evy\.debug\.trackThreads\(\)/);
    debug.trackThreads(true, { stacks: false });
    try {
      const parent = spawn(async () => {
        const child = spawn(() => sleep(10));
        child.name = 'child';
        await sleep(10);
      });
      parent.name = 'parent';
      await sleep(0.01);
      const child = debug.threads().find((t) => t.name === 'child')!;
      expect(child.parent).toBe('parent');
      expect(child.spawnSite).toBeNull();
      await parent.kill();
      await sleep(0);
    } finally {
      debug.trackThreads(false);
    }
  });

  it('formatHub lists what the event loop waits on, by type', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const timer = setInterval(() => {}, 60_000);
    try {
      const hub = debug.formatHub();
      expect(hub).toMatch(/^evy hub: \d+ green threads? ready to start; the event loop is waiting on/);
      expect(hub).toMatch(/\n {2}TCPServerWrap x\d+/);
      expect(hub).toMatch(/\n {2}Timeout x\d+/);
    } finally {
      clearInterval(timer);
      server.close();
    }
  });

  it('rejects bad arguments with codes', () => {
    expect(() => debug.trackThreads('yes' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => debug.dumpOnSignal(5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => debug.blockingDetection(true, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => debug.blockingDetection(true, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('dumpOnSignal', () => {
  it('writes the thread dump to stderr on SIGUSR2 (a real child process)', async () => {
    const child = spawnProcess(process.execPath, [join(fixtures, 'dump.mjs')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    try {
      let out = '';
      for await (const d of child.stdout) {
        out += d;
        if (out.includes('ready')) break;
      }
      child.kill('SIGUSR2');
      while (!stderr.includes('napper')) await new Promise((r) => setTimeout(r, 20));
      expect(stderr).toMatch(/evy: 3 live green threads/);
      expect(stderr).toMatch(/consumer \[#\d+\] parked on Queue\.get/);
      expect(stderr).toMatch(/spawned at .*dump\.mjs:\d+/);
      expect(stderr).toMatch(/napper \[#\d+\] parked on sleep/);
      while (!stderr.includes('evy hub:')) await new Promise((r) => setTimeout(r, 20));
      expect(stderr).toMatch(/evy hub: [\s\S]*\n {2}Timeout x\d+/);
      expect(child.exitCode).toBeNull(); // the signal did not kill it
    } finally {
      child.kill();
      await once(child, 'close');
    }
  });
});

describe('blockingDetection', () => {
  it('names the running thread and the stack of a CPU block, and reports a slow *Sync call at its call site', async () => {
    const { code, stdout, stderr } = await runFixture('blocking.mjs');
    expect(code, stderr).toBe(0);
    expect(stderr).toBe('');
    // A loaded machine may add a stray block of its own (a slow module load, a descheduled process): look for ours.
    const reports = stdout.trim().split('\n').map((l) => JSON.parse(l));
    const cpu = reports.find((r) => r.thread === 'cruncher');
    const sync = reports.find((r) => r.thread === 'syncer');
    expect(reports.filter((r) => r.thread === 'brief')).toEqual([]); // 5 ms: under the threshold
    expect(cpu).toMatchObject({ kind: 'loop', thread: 'cruncher' });
    expect(cpu.seconds).toBeGreaterThan(0.3);
    expect(cpu.stack.split('\n')[0]).toMatch(/at crunchNumbers \(file:.*blocking\.mjs:\d+:\d+\)/);
    expect(sync).toMatchObject({ kind: 'sync-call', thread: 'syncer' });
    expect(sync.call).toMatch(/^child_process\.execFileSync\(".*node"\)$/);
    expect(sync.stack.split('\n')[0]).toMatch(/at shellOut \(file:.*blocking\.mjs:\d+:\d+\)/);
    expect(sync.seconds).toBeGreaterThan(0.3);
    // A loop of fast statSync calls: one 'loop' report, named, even when the pause lands in node internals.
    const statter = reports.filter((r) => r.thread === 'statter');
    expect(statter).toHaveLength(1);
    expect(statter[0].kind).toBe('loop');
    expect(statter[0].stack).toMatch(/blocking\.mjs:\d+:\d+/);
  });

  it('in patched mode (monkeyPatch), a slow *Sync call in a green thread is reported at its call site', async () => {
    const { code, stdout, stderr } = await runFixture('blocking.mjs', { PATCHED: '1' });
    expect(code, stderr).toBe(0);
    const reports = stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.thread === 'cruncher' || r.thread === 'syncer');
    expect(reports.map((r) => [r.kind, r.thread])).toEqual([
      ['loop', 'cruncher'],
      ['sync-call', 'syncer'],
    ]);
    expect(reports[1].call).toMatch(/^child_process\.execFileSync\(/);
    expect(reports[1].stack.split('\n')[0]).toMatch(/at shellOut \(file:.*blocking\.mjs:\d+:\d+\)/);
  });

  it('the watchdog alone (syncCalls: false) still sees the caller of a blocking *Sync call', async () => {
    const { code, stdout, stderr } = await runFixture('blocking.mjs', { SYNC_CALLS: '0' });
    expect(code, stderr).toBe(0);
    const reports = stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.thread === 'cruncher' || r.thread === 'syncer');
    expect(reports.map((r) => [r.kind, r.thread])).toEqual([
      ['loop', 'cruncher'],
      ['loop', 'syncer'],
    ]);
    expect(reports[1].stack).toMatch(/at execFileSync \(node:child_process/);
    expect(reports[1].stack).toMatch(/at shellOut \(file:.*blocking\.mjs:\d+:\d+\)/);
  });

  it('a loop still stuck long after the catch is reported from the watchdog itself, while stuck', async () => {
    const { code, stderr } = await runFixture('stuck.mjs');
    expect(code, stderr).toBe(0);
    const soFar = stderr.indexOf('so far in green thread "spinner"');
    expect(soFar).toBeGreaterThan(-1);
    expect(soFar).toBeLessThan(stderr.indexOf('unstuck')); // written during the block, not after
    expect(stderr).toMatch(/blocked for [\d.]+s so far in green thread "spinner"\n {4}at spinForever \(file:.*stuck\.mjs:\d+:\d+\)/);
    // And the normal report once the loop is free again.
    expect(stderr.slice(stderr.indexOf('unstuck'))).toMatch(/event loop blocked for [\d.]+s in green thread "spinner"\n {4}at spinForever/);
  });

  it('restores the builtin *Sync functions when turned off', async () => {
    const fs = process.getBuiltinModule('fs');
    const orig = fs.readFileSync;
    debug.blockingDetection(true, 0.5);
    expect(fs.readFileSync).not.toBe(orig);
    expect(debug.blockingDetectionStatus()).toEqual({ on: true, seconds: 0.5 });
    expect(fs.readFileSync(join(fixtures, 'clean.mjs'), 'utf8')).toContain('cleanStart');
    debug.blockingDetection(false);
    expect(fs.readFileSync).toBe(orig);
    expect(debug.blockingDetectionStatus().on).toBe(false);
  });
});

describe('leaks', () => {
  it('reports what a leaky library left open, by kind, thread and call site', async () => {
    const { leakyStart } = await import(pathToFileURL(join(fixtures, 'leaky.mjs')).href);
    const file = join(tmp, 'leaky.txt');
    const report = await debug.leaks(() => leakyStart(file));
    try {
      expect(report.ok).toBe(false);
      expect(report.error).toBeUndefined();
      const info = report.result as { port: number; pid: number; handleFd: number; fd: number };
      const kinds = report.leaked.map((l) => l.kind).sort();
      expect(kinds).toEqual(expect.arrayContaining(['child process', 'file descriptor', 'file handle', 'interval', 'tcp server', 'tcp socket']));
      const server = report.leaked.find((l) => l.kind === 'tcp server')!;
      expect(server.detail).toBe(`127.0.0.1:${info.port}`);
      expect(server.thread).toBe('leaks');
      expect(server.site).toMatch(/leaky\.mjs:\d+:\d+/);
      expect(report.leaked.find((l) => l.kind === 'interval')!.detail).toMatch(/setInterval 60000ms -> pollForever\(\)/);
      expect(report.leaked.find((l) => l.kind === 'child process')!.detail).toBe(`pid ${info.pid}`);
      expect(report.leaked.find((l) => l.kind === 'file handle')!.detail).toBe(`fd ${info.handleFd}`);
      expect(report.leaked.find((l) => l.kind === 'file descriptor')!.detail).toBe(`fd ${info.fd} ${file}`);
      expect(report.leaked.some((l) => l.kind === 'tcp socket' && l.detail.endsWith(`-> 127.0.0.1:${info.port}`))).toBe(true);
      // Every handle has its call site in the leaky module (the accepted socket: the server's listen).
      for (const l of report.leaked.filter((x) => x.type !== 'fd')) expect(l.site, l.kind).toMatch(/leaky\.mjs:\d+:\d+/);
      expect(report.activeDiff.TCPServerWrap).toBe(1);
      expect(report.summary).toMatch(/resources left open:\n {2}- /);
    } finally {
      await report.cleanup();
    }
    // cleanup() really closed them.
    const again = process.getActiveResourcesInfo();
    expect(again).not.toContain('TCPServerWrap');
    expect(again).not.toContain('ProcessWrap');
  });

  it('finds nothing in the same work done cleanly', async () => {
    const { cleanStart } = await import(pathToFileURL(join(fixtures, 'clean.mjs')).href);
    const report = await debug.leaks(() => cleanStart(join(tmp, 'clean.txt')));
    expect(report.summary).toBe('no leaks');
    expect(report.leaked).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.result).toBe('done');
  });

  it('follows the threads fn spawned, and ignores what other threads open meanwhile', async () => {
    let outsider: NodeJS.Timeout | undefined;
    const bystander = spawn(async () => {
      await sleep(0.01);
      outsider = setTimeout(() => {}, 60_000);
    });
    const report = await debug.leaks(async () => {
      const inner = spawn(async function innerWork() {
        await sleep(0);
        setTimeout(function forgotten() {}, 60_000);
      });
      await inner.wait();
      await sleep(0.02);
    });
    await bystander.wait();
    clearTimeout(outsider);
    try {
      expect(report.leaked).toHaveLength(1);
      expect(report.leaked[0]).toMatchObject({ kind: 'timer', detail: 'setTimeout 60000ms -> forgotten()' });
      expect(report.leaked[0]!.thread).toMatch(/^GreenThread-\d+$/);
      expect(report.leaked[0]!.site).toMatch(/debug\.test\.ts/);
    } finally {
      await report.cleanup();
    }
  });

  it("names a killed thread's private connection, still open, with its creation site", async () => {
    const srv = net.createServer((c) => c.on('data', (d) => c.write(d)));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const report = await debug.leaks(async () => {
      const ready = new Event();
      const t = spawn(async function privateConnection() {
        const gs = await connect(['127.0.0.1', port]);
        await gs.sendall('hi');
        await gs.recv(10);
        ready.send();
        await sleep(60);
      });
      await ready.wait();
      await t.kill();
    });
    try {
      const mine = report.leaked.filter((l) => l.kind === 'tcp socket');
      expect(mine).toHaveLength(1);
      expect(mine[0]!.detail).toMatch(/-> 127\.0\.0\.1:\d+ \(a killed thread's private connection: closes once unreachable\)$/);
      expect(mine[0]!.site).toMatch(/debug\.test\.ts/);
    } finally {
      await report.cleanup();
      srv.close();
    }
  });

  it('assertNoLeaks throws a coded error listing the leak, and passes a clean fn through', async () => {
    await expect(
      debug.assertNoLeaks(() => {
        const s = net.createServer().listen(0, '127.0.0.1');
        void s;
      }),
    ).rejects.toMatchObject({ code: 'ERR_EVY_LEAKS', message: expect.stringMatching(/tcp server 127\.0\.0\.1:\d+/) });
    expect(process.getActiveResourcesInfo()).not.toContain('TCPServerWrap'); // cleaned up before throwing
    expect(await debug.assertNoLeaks(async () => 42)).toBe(42);
    await expect(debug.assertNoLeaks(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const r = await debug.leaks(() => {
      throw new TypeError('bad');
    });
    expect(r.ok).toBe(true);
    expect(r.error).toBeInstanceOf(TypeError);
    await expect(debug.leaks('nope' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });
});

it('is on the evy namespace', () => {
  expect(evy.debug).toBe(debug);
  expect(typeof evy.debug.blockingDetection).toBe('function');
});
