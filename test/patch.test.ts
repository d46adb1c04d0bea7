// monkeyPatch in this process (vitest's forks pool: one process per file); every test undoes its patch.
import timers from 'node:timers';
import timersPromises from 'node:timers/promises';
import fs from 'node:fs';
import childProcess from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { promisify } from 'node:util';
import https from 'node:https';
import { createRequire } from 'node:module';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeCerts, type Certs } from './helpers/certs.js';
import {
  Event,
  GreenletExit,
  Timeout,
  isMonkeyPatched,
  is_monkey_patched,
  monkeyPatch,
  monkey_patch,
  original,
  sleep,
  spawn,
  unowned,
  withTimeout,
} from '../src/index.js';

const ORIGINAL = {
  setTimeout: globalThis.setTimeout,
  timersSetTimeout: timers.setTimeout,
  promisesSetTimeout: timersPromises.setTimeout,
  createReadStream: fs.createReadStream,
  readFileP: fs.promises.readFile,
  spawn: childProcess.spawn,
  socketWrite: net.Socket.prototype.write,
  socketConnect: net.Socket.prototype.connect,
  pgQuery: pg.Client.prototype.query,
  loadJs: (createRequire(import.meta.url).extensions as Record<string, unknown>)['.js'],
};

let handles: { undo(): void }[] = [];
function patch(opts?: Parameters<typeof monkeyPatch>[0]) {
  const h = monkeyPatch(opts);
  handles.push(h);
  return h;
}
afterEach(() => {
  vi.useRealTimers();
  for (const h of handles.reverse()) h.undo();
  handles = [];
});

const patched = () => (['net', 'tls', 'timers', 'fs', 'child_process'] as const).filter((m) => isMonkeyPatched(m));

describe('monkeyPatch options (eventlet rules)', () => {
  it('no key patches all five; naming some with true patches only those', () => {
    const h = patch();
    expect(patched()).toEqual(['net', 'tls', 'timers', 'fs', 'child_process']);
    h.undo();
    expect(patched()).toEqual([]);
    patch({ timers: true, fs: true });
    expect(patched()).toEqual(['timers', 'fs']);
  });

  it('false excludes from everything; all: true with an exclusion', () => {
    patch({ net: false, child_process: false });
    expect(patched()).toEqual(['tls', 'timers', 'fs']);
    handles.pop()!.undo();
    patch({ all: true, fs: false });
    expect(patched()).toEqual(['net', 'tls', 'timers', 'child_process']);
  });

  it('aliases socket/time/os; select and thread are accepted and do nothing', () => {
    patch({ socket: true });
    expect(patched()).toEqual(['net', 'tls']);
    expect(isMonkeyPatched('socket')).toBe(true);
    handles.pop()!.undo();
    patch({ time: true, os: true, select: true, thread: true });
    expect(patched()).toEqual(['timers', 'fs', 'child_process']);
    expect(isMonkeyPatched('os')).toBe(true);
    expect(isMonkeyPatched('select')).toBe(false);
    handles.pop()!.undo();
    patch({ select: true });
    expect(patched()).toEqual([]);
  });

  it('an unknown key is a TypeError naming it; a non-object is ERR_INVALID_ARG_TYPE', () => {
    expect(() => monkeyPatch({ sockets: true } as never)).toThrowError(/"sockets"/);
    try {
      monkeyPatch({ sockets: true } as never);
    } catch (e) {
      expect(e).toBeInstanceOf(TypeError);
      expect((e as { code: string }).code).toBe('ERR_INVALID_ARG_VALUE');
    }
    expect(() => monkeyPatch('net' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => isMonkeyPatched('nett')).toThrowError(/"nett"/);
    expect(() => original('https')).toThrowError(/"https"/);
    expect(original('http')).toBe(process.getBuiltinModule('http')); // nothing exported is replaced: request threads hook net.Server.prototype.emit
    expect(patched()).toEqual([]); // a failed call patched nothing
  });

  // Issue 20: `{ net: 1 }` patched all five (only `=== true` counted as naming a module) and null patched
  // everything. A value is what Boolean() makes of it; undefined is an absent key; options are an object or nothing.
  it('a truthy value names a module as true does, a falsy one excludes it as false does', () => {
    patch({ net: 1 } as never);
    expect(patched()).toEqual(['net']);
    handles.pop()!.undo();
    patch({ timers: 'yes', fs: {} } as never);
    expect(patched()).toEqual(['timers', 'fs']);
    handles.pop()!.undo();
    for (const falsy of [0, '', null, false]) {
      patch({ net: falsy } as never);
      expect(patched(), String(falsy)).toEqual(['tls', 'timers', 'fs', 'child_process']);
      handles.pop()!.undo();
    }
    patch({ net: undefined, tls: undefined });
    expect(patched()).toEqual(['net', 'tls', 'timers', 'fs', 'child_process']);
    handles.pop()!.undo();
    patch({ all: 1, fs: 0 } as never);
    expect(patched()).toEqual(['net', 'tls', 'timers', 'child_process']);
    handles.pop()!.undo();
    patch({ all: 0, socket: 1 } as never);
    expect(patched()).toEqual(['net', 'tls']);
  });

  it('options that are not an object (null included) are ERR_INVALID_ARG_TYPE and patch nothing; undefined is no options', () => {
    for (const bad of [null, 'net', 1, true, ['net'], () => {}]) {
      expect(() => monkeyPatch(bad as never), String(bad)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
      expect(patched()).toEqual([]);
    }
    patch(undefined);
    expect(patched()).toEqual(['net', 'tls', 'timers', 'fs', 'child_process']);
  });

  it('snake_case aliases are the same functions', () => {
    expect(monkey_patch).toBe(monkeyPatch);
    expect(is_monkey_patched).toBe(isMonkeyPatched);
  });
});

describe('patching in place, idempotence and undo', () => {
  it('replaces the builtin functions, the timer globals and the prototypes; undo restores every original', () => {
    const h = patch();
    expect(globalThis.setTimeout).not.toBe(ORIGINAL.setTimeout);
    expect(timers.setTimeout).not.toBe(ORIGINAL.timersSetTimeout);
    expect(globalThis.setTimeout).toBe(timers.setTimeout);
    expect(timersPromises.setTimeout).not.toBe(ORIGINAL.promisesSetTimeout);
    expect(fs.createReadStream).not.toBe(ORIGINAL.createReadStream);
    expect(fs.promises.readFile).not.toBe(ORIGINAL.readFileP);
    expect(childProcess.spawn).not.toBe(ORIGINAL.spawn); // child_process was loaded: patched at once
    expect(net.Socket.prototype.write).not.toBe(ORIGINAL.socketWrite);
    expect(pg.Client.prototype.query).not.toBe(ORIGINAL.pgQuery); // loaded before the patch: found in the cache
    h.undo();
    expect(globalThis.setTimeout).toBe(ORIGINAL.setTimeout);
    expect(timers.setTimeout).toBe(ORIGINAL.timersSetTimeout);
    expect(timersPromises.setTimeout).toBe(ORIGINAL.promisesSetTimeout);
    expect(fs.createReadStream).toBe(ORIGINAL.createReadStream);
    expect(fs.promises.readFile).toBe(ORIGINAL.readFileP);
    expect(childProcess.spawn).toBe(ORIGINAL.spawn);
    expect(net.Socket.prototype.write).toBe(ORIGINAL.socketWrite);
    expect(Object.prototype.hasOwnProperty.call(net.Socket.prototype, 'write')).toBe(false); // inherited again
    expect(net.Socket.prototype.connect).toBe(ORIGINAL.socketConnect);
    expect(pg.Client.prototype.query).toBe(ORIGINAL.pgQuery);
    expect((createRequire(import.meta.url).extensions as Record<string, unknown>)['.js']).toBe(ORIGINAL.loadJs);
  });

  it('is idempotent: a second call patches nothing more and its undo leaves the first in place', () => {
    patch({ timers: true });
    const green = globalThis.setTimeout;
    const second = monkeyPatch({ timers: true });
    expect(globalThis.setTimeout).toBe(green);
    second.undo();
    expect(isMonkeyPatched('timers')).toBe(true);
    expect(globalThis.setTimeout).toBe(green);
  });

  it('undo() twice is harmless; original() gives the unpatched functions while patched', () => {
    const h = patch();
    const o = original('timers');
    expect(o.setTimeout).toBe(ORIGINAL.timersSetTimeout);
    expect(o.promises.setTimeout).toBe(ORIGINAL.promisesSetTimeout);
    expect(Object.getPrototypeOf(o)).toBe(timers); // the rest comes from the module itself
    expect(original('fs').createReadStream).toBe(ORIGINAL.createReadStream);
    expect(original('fs').readFileSync).toBe(fs.readFileSync);
    expect(original('node:fs/promises').readFile).toBe(ORIGINAL.readFileP);
    expect(original('child_process').spawn).toBe(ORIGINAL.spawn);
    expect(original('net')).toBe(net);
    h.undo();
    h.undo();
    expect(patched()).toEqual([]);
  });

  it('ESM named imports bound earlier see the patch (syncBuiltinESMExports)', async () => {
    const esm = await import('node:timers');
    patch({ timers: true });
    expect(esm.setTimeout).toBe(globalThis.setTimeout);
    handles.pop()!.undo();
    expect(esm.setTimeout).toBe(ORIGINAL.timersSetTimeout);
  });
});

describe('code that knows nothing of evy', () => {
  it('behaves the same patched, in the main thread and inside a green thread', async () => {
    // @ts-expect-error: a plain .mjs fixture without types
    const { exercise } = await import('../fixtures/register/unaware-lib.mjs');
    const plain = await exercise();
    patch();
    const inMain = await exercise();
    const inThread = await spawn(exercise).wait();
    expect(inMain).toEqual(plain);
    expect(inThread).toEqual(plain);
    expect(plain).toContain('piped through cat (exit 0)');
  });
});

describe('timers under monkeyPatch', () => {
  it('setTimeout/setInterval/setImmediate created in a thread are cleared when it is killed', async () => {
    patch({ timers: true });
    const fired: string[] = [];
    const t = spawn(async () => {
      setTimeout(() => fired.push('timeout'), 30);
      timers.setTimeout(() => fired.push('timers.setTimeout'), 30);
      setInterval(() => fired.push('interval'), 10);
      await sleep(1);
    });
    await sleep(0.005);
    await t.kill();
    setImmediate(() => fired.push('main immediate')); // main thread: not owned by anyone
    await sleep(0.08);
    expect(fired).toEqual(['main immediate']);
  });

  it("an unref'd timer is housekeeping nobody waits on: a library's heartbeat made inside a thread survives its kill", async () => {
    patch({ timers: true });
    const ticks: string[] = [];
    let heartbeat: NodeJS.Timeout | undefined;
    const t = spawn(async () => {
      // e.g. a client library lazily starting its heartbeat inside the first thread that used it
      heartbeat = setInterval(() => ticks.push('heartbeat'), 5).unref();
      setInterval(() => ticks.push('owned'), 5); // ref'd: the thread's own
      await sleep(10);
    });
    await sleep(0.002);
    await t.kill();
    ticks.length = 0;
    await sleep(0.05);
    clearInterval(heartbeat);
    expect(ticks.length).toBeGreaterThan(0);
    expect(new Set(ticks)).toEqual(new Set(['heartbeat']));
  });

  it('a killed thread that queued an immediate in the same turn never runs it', async () => {
    patch({ timers: true });
    const fired: string[] = [];
    const t = spawn(() => {
      setImmediate(() => fired.push('immediate'));
      return new Promise(() => {});
    });
    await Promise.resolve(); // the thread has started and queued its immediate
    await Promise.resolve();
    void t.kill();
    await sleep(0.02);
    expect(fired).toEqual([]);
  });

  it('timers that fired or were cleared are released: a thread that ends normally leaves its timers running', async () => {
    patch({ timers: true });
    const fired: string[] = [];
    const t = spawn(() => {
      setTimeout((a: string) => fired.push(a), 20, 'after exit');
      const c = setTimeout(() => fired.push('cleared'), 5);
      clearTimeout(c);
      return 'done';
    });
    expect(await t.wait()).toBe('done');
    await sleep(0.05);
    expect(fired).toEqual(['after exit']); // a normal exit releases, never destroys
  });

  it('timers/promises and util.promisify(setTimeout) reject with the kill error', async () => {
    patch({ timers: true });
    const seen: unknown[] = [];
    const t = spawn(async () => {
      const a = timersPromises.setTimeout(10_000).catch((e) => seen.push(e));
      const b = promisify(setTimeout)(10_000).catch((e) => seen.push(e));
      const c = timersPromises.setImmediate('x');
      expect(await c).toBe('x');
      const it = timersPromises.setInterval(5, 'tick');
      expect((await it.next()).value).toBe('tick');
      const d = (async () => {
        try {
          for (;;) await it.next();
        } catch (e) {
          seen.push(e);
        }
      })();
      await Promise.all([a, b, d]);
    });
    await sleep(0.02);
    const err = new Error('stop');
    await t.kill(err);
    for (let i = 0; i < 500 && seen.length < 3; i++) await sleep(0.01); // the rejections settle after the kill (bounded)
    expect(seen).toHaveLength(3);
    for (const e of seen) expect(e).toBe(err);
  });

  it("a user's own AbortSignal still gives Node's AbortError", async () => {
    patch({ timers: true });
    const t = spawn(async () => {
      const ac = new AbortController();
      const p = timersPromises.setTimeout(10_000, null, { signal: ac.signal });
      ac.abort();
      return p.catch((e) => [e.name, e.code]);
    });
    expect(await t.wait()).toEqual(['AbortError', 'ABORT_ERR']);
  });

  it('withTimeout around a timers/promises wait returns at the deadline with Timeout', async () => {
    patch({ timers: true });
    const t0 = performance.now();
    await expect(withTimeout(0.05, () => timersPromises.setTimeout(10_000))).rejects.toBeInstanceOf(Timeout);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('outside any thread the patched functions behave as the originals (arguments, this, errors)', async () => {
    patch({ timers: true });
    const got = await new Promise((resolve) => setTimeout((a: number, b: number) => resolve(a + b), 1, 2, 3));
    expect(got).toBe(5);
    expect(() => setTimeout('not a function' as never, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const h = setTimeout(() => {}, 1000);
    expect(typeof h.ref).toBe('function');
    expect(typeof (h as unknown as number)[Symbol.toPrimitive as never]).toBe('function');
    clearTimeout(h);
  });

  it('inside unowned() nothing is owned', async () => {
    patch({ timers: true });
    const fired: string[] = [];
    const t = spawn(async () => {
      unowned(() => setTimeout(() => fired.push('unowned'), 20));
      await sleep(10);
    });
    await sleep(0.005);
    await t.kill();
    await sleep(0.04);
    expect(fired).toEqual(['unowned']);
  });
});

describe('fake timers (vi.useFakeTimers) and evy', () => {
  it("evy's sleep and Timeout keep running on real time while the timer functions are fake", async () => {
    patch({ timers: true });
    vi.useFakeTimers();
    const t = spawn(async () => {
      await sleep(0.02); // not driven by the fake clock: it runs on real time
      return 'woke';
    });
    expect(await t.wait()).toBe('woke');
    await expect(withTimeout(0.02, () => sleep(10))).rejects.toBeInstanceOf(Timeout);
  });

  it('the fake clock drives setTimeout; useRealTimers() puts the green functions back; undo() the originals', () => {
    const h = patch({ timers: true });
    const green = globalThis.setTimeout;
    vi.useFakeTimers();
    expect(globalThis.setTimeout).not.toBe(green);
    let fired = false;
    setTimeout(() => (fired = true), 1000);
    vi.advanceTimersByTime(1000);
    expect(fired).toBe(true);
    vi.useRealTimers();
    expect(globalThis.setTimeout).toBe(green);
    h.undo();
    expect(globalThis.setTimeout).toBe(ORIGINAL.setTimeout);
  });

  it('undo() while fake timers are installed leaves them in place (documented order: useRealTimers first)', () => {
    const h = patch({ timers: true });
    vi.useFakeTimers();
    const fake = globalThis.setTimeout;
    h.undo();
    expect(globalThis.setTimeout).toBe(fake);
    expect(isMonkeyPatched('timers')).toBe(false);
  });
});

describe('fs and child_process under monkeyPatch', () => {
  it('fs.promises.readFile in a killed thread rejects with the kill error; a stream is destroyed', async () => {
    patch({ fs: true });
    let stream: fs.ReadStream | undefined;
    const seen: unknown[] = [];
    const t = spawn(async () => {
      stream = fs.createReadStream(new URL(import.meta.url), { highWaterMark: 16 });
      stream.pause();
      const p = fs.promises.readFile('/dev/zero', { encoding: null }).catch((e) => seen.push(e)); // never ends by itself
      await Promise.all([p, once(stream, 'end')]);
    });
    while (stream === undefined) await sleep(0.005); // the thread has made both calls
    if (stream.pending) await once(stream, 'open'); // the stream has a file descriptor to close
    await t.kill();
    // The rejection and the stream's close are asynchronous: wait for them (bounded), then check.
    for (let i = 0; i < 500 && !(seen.length === 1 && stream.closed); i++) await sleep(0.01);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(GreenletExit);
    expect(stream!.destroyed).toBe(true);
    expect(stream!.closed).toBe(true);
  });

  it('a FileHandle is closed by the kill; one closed by the thread is released', async () => {
    patch({ fs: true });
    let kept: fs.promises.FileHandle | undefined;
    let closed: fs.promises.FileHandle | undefined;
    const opened = new Event<void>();
    const t = spawn(async () => {
      closed = await fs.promises.open(new URL(import.meta.url));
      await closed.close();
      kept = await fs.promises.open(new URL(import.meta.url));
      opened.send();
      await sleep(10);
    });
    await opened.wait(); // not a fixed sleep: opening is slow on a loaded machine
    expect(kept!.fd).toBeGreaterThan(0);
    await t.kill();
    for (let i = 0; i < 100 && kept!.fd !== -1; i++) await sleep(0.01); // close() completes asynchronously
    expect(kept!.fd).toBe(-1);
  });

  it("a shared worker process's stdin, written by a thread, survives that thread's kill", async () => {
    patch({ net: true, child_process: true });
    const worker = childProcess.spawn('cat'); // spawned by main: a shared worker
    worker.stdout!.setEncoding('utf8');
    const t = spawn(async () => {
      worker.stdin!.write('job from thread\n');
      await sleep(10);
    });
    expect(String((await once(worker.stdout!, 'data'))[0])).toBe('job from thread\n');
    await t.kill();
    expect(worker.stdin!.destroyed).toBe(false);
    worker.stdin!.write('job from main\n');
    expect(String((await once(worker.stdout!, 'data'))[0])).toBe('job from main\n');
    worker.stdin!.end();
    await once(worker, 'exit');
  });

  it('proc.wait() and proc.communicate(input) on children of the patched module', async () => {
    patch({ child_process: true });
    const t = spawn(async () => {
      const cat = childProcess.spawn('cat') as childProcess.ChildProcess & {
        communicate(i?: string): Promise<[Buffer | null, Buffer | null]>;
      };
      const [out, err] = await cat.communicate('hello through cat');
      const sh = childProcess.spawn('sh', ['-c', 'exit 3']) as childProcess.ChildProcess & { wait(): Promise<number> };
      const code = await sh.wait();
      const killed = childProcess.spawn('sleep', ['10']) as childProcess.ChildProcess & { wait(): Promise<number> };
      killed.kill('SIGTERM');
      return [out!.toString(), err!.length, code, await killed.wait()];
    });
    expect(await t.wait()).toEqual(['hello through cat', 0, 3, -15]);
  });

  it("proc.wait() is a killable evy wait; the kill also ends the child", async () => {
    patch({ child_process: true });
    let child: childProcess.ChildProcess | undefined;
    const t = spawn(async () => {
      child = childProcess.spawn('sleep', ['100']);
      await (child as childProcess.ChildProcess & { wait(): Promise<number> }).wait();
    });
    await sleep(0.05);
    const t0 = performance.now();
    await t.kill();
    expect(performance.now() - t0).toBeLessThan(500); // parked at an evy wait: the kill is immediate
    const c = child!;
    const signal = c.exitCode !== null || c.signalCode !== null ? c.signalCode : (await once(c, 'exit'))[1];
    expect(signal).toBe('SIGTERM');
  });
});

describe('net under monkeyPatch', () => {
  it('a server a thread made listen is closed by its kill, with its connections', async () => {
    patch({ net: true });
    let server: net.Server | undefined;
    let accepted: net.Socket | undefined;
    const listening = new Event<void>();
    const connected = new Event<void>();
    const t = spawn(async () => {
      server = net.createServer((s) => {
        accepted = s;
        connected.send();
      }).listen(0, '127.0.0.1');
      await once(server, 'listening');
      listening.send();
      await sleep(10);
    });
    await listening.wait();
    const client = net.connect((server!.address() as net.AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    await once(client, 'connect');
    await connected.wait(); // the server side has accepted it
    await t.kill();
    await once(client, 'close'); // the server side was destroyed
    expect(server!.listening).toBe(false);
    expect(accepted!.destroyed).toBe(true);
  });

  it('a server listened on by thread after thread (a fixture per test) gets one connection tracker, not one per listen', async () => {
    patch({ net: true });
    const server = net.createServer((s) => s.end());
    for (let i = 0; i < 12; i++) {
      await spawn(async () => {
        server.listen(0, '127.0.0.1');
        await once(server, 'listening');
        const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
        await once(c, 'close');
        await new Promise((r) => server.close(r));
      }).wait();
    }
    expect(server.listenerCount('connection')).toBe(2); // the app's and evy's (was 13: a MaxListeners warning)
  });

  it("a pooled connection created by A, now waiting on B's request, survives A's kill", async () => {
    patch({ net: true });
    // 'first' is answered at once; 'slow' only when the test says so (after the kill)
    const slowArrived = new Event<void>();
    const answerSlow = new Event<void>();
    const server = net.createServer((s) =>
      s.on('data', (d) => {
        const q = String(d);
        if (q !== 'slow') return void s.write(`re:${q}`);
        slowArrived.send();
        void answerSlow.wait().then(() => s.write(`re:${q}`));
      }),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    let conn: net.Socket | undefined; // the "pool": one lazily created connection
    const query = async (q: string): Promise<string> => {
      conn ??= net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      conn.write(q);
      const [reply] = await once(conn, 'data');
      return String(reply);
    };
    const answered = new Event<string>();
    const a = spawn(async () => {
      answered.send(await query('first')); // A creates the connection
      await sleep(10);
    });
    expect(await answered.wait()).toBe('re:first');
    const b = spawn(() => query('slow')); // B's request is in flight on A's connection
    await slowArrived.wait();
    await a.kill();
    expect(conn!.destroyed).toBe(false);
    answerSlow.send();
    expect(await b.wait()).toBe('re:slow');
    expect(conn!.destroyed).toBe(false);
    conn!.destroy();
    server.close();
  });

  it('an idle socket (reply received) is not owned: a kill leaves it to the other threads', async () => {
    patch({ net: true });
    const bArrived = new Event<void>();
    const server = net.createServer((s) => s.on('data', (d) => (String(d) === 'a' ? s.write(`re:${d}`) : bArrived.send()))); // 'b' gets no reply
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sock.setEncoding('utf8');
    const replies: string[] = [];
    sock.on('data', (d) => replies.push(String(d)));
    const ask = (q: string) =>
      new Promise<void>((resolve) => {
        sock.write(q);
        sock.once('data', () => resolve());
      });
    const answered = new Event<void>();
    const a = spawn(async () => {
      await ask('a'); // A writes and gets its reply: the socket is idle again
      answered.send();
      await sleep(10);
    });
    await answered.wait();
    await a.kill();
    expect(sock.destroyed).toBe(false);
    const b = spawn(async () => {
      sock.write('b'); // B's request is outstanding when B is killed: the socket dies with it
      await new Promise(() => {});
    });
    await bArrived.wait();
    await b.kill();
    expect(sock.destroyed).toBe(true); // destroyed by the kill itself
    expect(replies[0]).toBe('re:a');
    server.close();
  });

  describe('https (TLS sockets inherit the hooks)', () => {
    let certs: Certs;
    beforeAll(() => {
      certs = makeCerts();
    });
    afterAll(() => certs.cleanup());

    it('withTimeout around an https request to a silent server: Timeout, and the TLS socket is destroyed', async () => {
      patch({ tls: true, net: true });
      const server = https.createServer({ key: certs.serverKey, cert: certs.serverCert }, () => {}).listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as net.AddressInfo).port;
      let req: import('node:http').ClientRequest | undefined;
      let secured = false;
      const t0 = performance.now();
      await expect(
        withTimeout(0.3, () => new Promise((resolve, reject) => {
          req = https.get({ host: '127.0.0.1', port, ca: certs.caCert, servername: 'localhost' }, resolve);
          req.on('error', reject);
          req.on('socket', (s) => s.once('secureConnect', () => (secured = true)));
        })),
      ).rejects.toBeInstanceOf(Timeout);
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(secured).toBe(true); // the handshake was done: the request itself was in flight
      expect(req!.socket!.destroyed).toBe(true);
      server.closeAllConnections();
      server.close();
    });
  });
});
