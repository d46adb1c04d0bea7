// Request threads in this process (monkeyPatch({ http: true }), undone after each test): started within
// the emit, named after the request, ended with the response; killed only when the response closes before
// the app ended it (pipelined and keep-alive requests included); undo() restores net.Server's emit.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { makeCerts } from './helpers/certs.js';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { getcurrent, isMonkeyPatched, monkeyPatch, requestDeadline, spawn, type GreenThread } from '../src/index.js';

let handles: { undo(): void }[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const h of handles.reverse()) h.undo();
  handles = [];
});

function patch(opts: Parameters<typeof monkeyPatch>[0]): void {
  handles.push(monkeyPatch(opts));
}

async function serve(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** Sends `raw` on a new connection; resolves with everything received until the server closes or `ms`. */
function rawClient(port: number): { sock: net.Socket; data: () => string } {
  const sock = net.connect(port, '127.0.0.1');
  let data = '';
  sock.on('data', (d) => (data += d));
  sock.on('error', () => {});
  return { sock, data: () => data };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleepMs(5);
  }
}

describe('request threads (the http patch key)', () => {
  it('isMonkeyPatched("http") follows the patch; undo() restores net.Server.prototype.emit', () => {
    const before = Object.hasOwn(net.Server.prototype, 'emit');
    const emit = net.Server.prototype.emit;
    const h = monkeyPatch({ http: true });
    expect(isMonkeyPatched('http')).toBe(true);
    expect(net.Server.prototype.emit).not.toBe(emit);
    h.undo();
    expect(isMonkeyPatched('http')).toBe(false);
    expect(net.Server.prototype.emit).toBe(emit);
    expect(Object.hasOwn(net.Server.prototype, 'emit')).toBe(before);
    expect(net.Server.prototype.emit).toBe(EventEmitter.prototype.emit);
  });

  it('the listeners run in a new thread, started within the emit (no scheduler turn), named after the request', () => {
    patch({ http: true });
    const server = http.createServer();
    const seen: string[] = [];
    let first: GreenThread | null = null;
    server.on('request', () => {
      first = getcurrent();
      seen.push(`1:${getcurrent().name}`);
    });
    server.on('request', (req, res) => {
      seen.push(`2:${getcurrent() === first}`);
      res.end();
    });
    const req = new http.IncomingMessage(new net.Socket());
    req.method = 'GET';
    req.url = '/orders/42';
    const res = new http.ServerResponse(req);
    const r = server.emit('request', req, res);
    seen.push('after emit');
    expect(r).toBe(true);
    expect(seen).toEqual(['1:GET /orders/42', '2:true', 'after emit']);
    expect(first!.dead).toBe(true); // answered synchronously: the thread ended with the emit
    expect(getcurrent().name).toBe('MainThread');
  });

  it("after the emit the caller's code is its own again: main's, a thread's, also while the request's thread still runs", async () => {
    patch({ http: true, timers: true });
    const main = getcurrent();
    const server = http.createServer();
    const held: GreenThread[] = [];
    server.on('request', (req, res) => {
      if (req.url === '/hold') held.push(getcurrent());
      else res.end();
    });
    const emitRequest = (url: string): void => {
      const req = new http.IncomingMessage(new net.Socket());
      req.method = 'GET';
      req.url = url;
      server.emit('request', req, new http.ServerResponse(req));
    };
    // Answered within the emit, one after another (each emit finds the previous request's ended thread).
    for (let i = 0; i < 3; i++) {
      emitRequest('/');
      expect(getcurrent()).toBe(main);
    }
    // A request still running: what the caller makes after the emit is not that request's.
    emitRequest('/hold');
    expect(getcurrent()).toBe(main);
    let fired = false;
    setTimeout(() => (fired = true), 30);
    await held[0]!.kill();
    await until(() => fired);
    // Emitted from a thread's code: the rest of that code is still the thread's, its timer killed with it.
    let inThread: GreenThread | null = null;
    let threadTimerFired = false;
    const t = spawn(async () => {
      emitRequest('/');
      emitRequest('/hold');
      inThread = getcurrent();
      setTimeout(() => (threadTimerFired = true), 30);
      await sleepMs(5000);
    });
    await until(() => inThread !== null);
    expect(inThread).toBe(t);
    await t.kill();
    await held[1]!.kill();
    await sleepMs(60);
    expect(threadTimerFired).toBe(false);
  });

  it('without the key (or after undo) the listeners run as before, in the calling thread', () => {
    const server = http.createServer();
    let name = '';
    server.on('request', () => (name = getcurrent().name));
    const req = new http.IncomingMessage(new net.Socket());
    server.emit('request', req, new http.ServerResponse(req));
    expect(name).toBe('MainThread');
  });

  it('the thread lives until the app ends the response, then ends (not killed); keep-alive requests get one thread each', async () => {
    patch({ http: true });
    const threads: GreenThread[] = [];
    const { port } = await serve(async (req, res) => {
      threads.push(getcurrent());
      await sleepMs(30);
      res.end(req.url);
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (const p of ['/a', '/b']) {
      const body = await new Promise<string>((resolve, reject) => {
        http.get({ port, host: '127.0.0.1', path: p, agent }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        }).on('error', reject);
      });
      expect(body).toBe(p);
    }
    agent.destroy();
    expect(threads.map((t) => t.name)).toEqual(['GET /a', 'GET /b']);
    await until(() => threads.every((t) => t.dead));
    for (const t of threads) await expect(t.wait()).resolves.toBeUndefined(); // ended, not killed
  });

  it('the client leaves: the thread is killed, its timer cleared, gt.signal aborted', async () => {
    patch({ http: true, timers: true });
    let thread: GreenThread | null = null;
    let fired = false;
    const { port } = await serve((req, res) => {
      thread = getcurrent();
      setTimeout(() => {
        fired = true;
        res.end();
      }, 300);
    });
    const c = rawClient(port);
    c.sock.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => thread !== null);
    c.sock.destroy();
    await until(() => thread!.dead);
    expect(thread!.signal.aborted).toBe(true);
    await expect(thread!.wait()).rejects.toThrow('GET /slow: the client closed the connection');
    await sleepMs(400);
    expect(fired).toBe(false);
  });

  it('pipelined requests on one connection: when the client leaves, only those whose response the app had not ended are killed', async () => {
    patch({ http: true, timers: true });
    const threads = new Map<string, GreenThread>();
    const { port } = await serve((req, res) => {
      threads.set(req.url!, getcurrent());
      if (req.url === '/slow') setTimeout(() => res.end('slow'), 5000);
      else res.end('fast'); // ended, its bytes wait behind /slow's response
    });
    const c = rawClient(port);
    c.sock.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => threads.size === 2);
    c.sock.destroy();
    await until(() => threads.get('/slow')!.dead);
    await expect(threads.get('/slow')!.wait()).rejects.toThrow('the client closed the connection');
    await expect(threads.get('/fast')!.wait()).resolves.toBeUndefined();
  });

  it('Expect: 100-continue: the default path and a checkContinue listener that emits request itself both run one thread', async () => {
    patch({ http: true });
    const names: string[] = [];
    const { server, port } = await serve((req, res) => {
      names.push(getcurrent().name);
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const send = (): Promise<string> => {
      const c = rawClient(port);
      c.sock.write('POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n');
      return until(() => c.data().includes('100 Continue'))
        .then(() => c.sock.write('hi'))
        .then(() => until(() => c.data().endsWith('ok')))
        .then(() => c.data());
    };
    expect(await send()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    let inContinue: GreenThread | null = null;
    server.on('checkContinue', (req, res) => {
      inContinue = getcurrent();
      res.writeContinue();
      server.emit('request', req, res);
      expect(getcurrent()).toBe(inContinue);
    });
    expect(await send()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    expect(names).toEqual(['POST /up', 'POST /up']);
    expect(inContinue!.name).toBe('POST /up');
  });

  it('requestDeadline(server, s): 503 with Connection: close at the deadline, the thread killed; 0 turns it off; bad arguments throw', async () => {
    patch({ http: true, timers: true });
    let thread: GreenThread | null = null;
    const { server, port } = await serve((req, res) => {
      thread = getcurrent();
      res.setHeader('Content-Type', 'application/json');
      setTimeout(() => res.end('{}'), 2000);
    });
    expect(requestDeadline(server, 0.2)).toBe(server);
    const c = rawClient(port);
    c.sock.write('GET /r HTTP/1.1\r\nHost: x\r\n\r\n');
    const t0 = Date.now();
    await until(() => c.data().includes('Service Unavailable'));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(c.data()).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(c.data()).toMatch(/\r\nConnection: close\r\n/);
    expect(c.data()).toMatch(/\r\nContent-Type: text\/plain; charset=utf-8\r\n/); // the app's header is gone
    await expect(thread!.wait()).rejects.toThrow('GET /r: killed at its 0.2 s deadline');
    c.sock.destroy();
    expect(() => requestDeadline(server, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => requestDeadline({} as never, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    requestDeadline(server, 0);
    const d = rawClient(port);
    d.sock.write('GET /r HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleepMs(400);
    expect(d.data()).toBe('');
    d.sock.destroy();
  });
});

describe('https', () => {
  it('an https server: keep-alive requests run in threads of their own; a client that leaves mid-request kills its thread', async () => {
    patch({ http: true, timers: true });
    const certs = makeCerts();
    try {
      const threads: GreenThread[] = [];
      const server = https.createServer({ key: certs.serverKey, cert: certs.serverCert }, (req, res) => {
        threads.push(getcurrent());
        if (req.url === '/slow') setTimeout(() => res.end('late'), 5000);
        else res.end(req.url);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as net.AddressInfo).port;
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: certs.caCert, servername: 'localhost' });
      const get = (p: string): Promise<string> =>
        new Promise((resolve, reject) => {
          https.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve(b));
          }).on('error', reject);
        });
      expect(await get('/a')).toBe('/a');
      expect(await get('/b')).toBe('/b');
      const sock = tls.connect({ host: '127.0.0.1', port, ca: certs.caCert, servername: 'localhost' });
      await new Promise((r) => sock.once('secureConnect', r));
      sock.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => threads.length === 3);
      sock.destroy();
      await until(() => threads[2]!.dead);
      expect(threads.map((t) => t.name)).toEqual(['GET /a', 'GET /b', 'GET /slow']);
      await expect(threads[0]!.wait()).resolves.toBeUndefined();
      await expect(threads[2]!.wait()).rejects.toThrow('GET /slow: the client closed the connection');
      agent.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    } finally {
      certs.cleanup();
    }
  });
});

describe('fetch (undici) in a request thread', () => {
  // The chaos harness's deadline server found it (docs/chaos.md): a thread killed while undici was still
  // connecting left the connection to its killed connector's abandoned setup, which waits (up to 5 s) for the
  // answer to what undici then wrote from the connect callback: the killed thread's own request, sent anyway.
  it("killed while undici's connect is in progress: its request is never sent, its connection is closed at once; another request's fetch on the same pool is untouched", async () => {
    patch({ http: true, net: true, timers: true });
    const upSeen = new Map<string, { closed: number | null }>();
    const upConns = new Set<net.Socket>();
    const up = http.createServer((req, res) => {
      const rid = req.url!.slice(1);
      const rec = { closed: null as number | null };
      upSeen.set(rid, rec);
      res.on('close', () => (rec.closed = performance.now()));
      res.setHeader('Connection', 'close'); // undici keeps no idle connection: every one the test sees is a request's
      setTimeout(() => res.end(`up ${rid}`), rid === 'victim' ? 4000 : 400);
    });
    servers.push(up);
    up.on('connection', (s) => {
      upConns.add(s);
      s.on('close', () => upConns.delete(s));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const upPort = (up.address() as net.AddressInfo).port;

    // Kills the armed thread right after its fetch's socket starts connecting: the kill always lands while
    // undici's connect is in progress (on loopback it completes at the event loop's next poll).
    const SP = net.Socket.prototype as unknown as { connect: (...a: unknown[]) => unknown };
    const hooked = SP.connect;
    let armed: GreenThread | null = null;
    let killedAt = 0;
    let connectingAtKill: boolean | null = null;
    SP.connect = function (this: net.Socket, ...a: unknown[]) {
      const r = hooked.apply(this, a);
      const t = armed;
      if (t !== null && this.remotePort === undefined) {
        armed = null;
        process.nextTick(() => {
          connectingAtKill = this.connecting;
          killedAt = performance.now();
          void t.kill();
        });
      }
      return r;
    };
    try {
      const threads = new Map<string, GreenThread>();
      const { port } = await serve(async (req, res) => {
        const rid = req.url!.slice(1);
        threads.set(rid, getcurrent());
        if (rid === 'victim') armed = getcurrent();
        const r = await fetch(`http://127.0.0.1:${upPort}/${rid}`);
        res.end(await r.text());
      });
      const other = fetch(`http://127.0.0.1:${port}/other`).then(async (r) => [r.status, await r.text()]);
      await until(() => upSeen.has('other'));
      const victim = rawClient(port);
      victim.sock.write('GET /victim HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => killedAt > 0);
      expect(connectingAtKill).toBe(true);
      await expect(threads.get('victim')!.wait()).rejects.toThrow('killed');
      // Within 1 s of the kill only the other request's connection is left on the upstream, if any (the old
      // code: the killed thread's request sent, and open until the upstream answered it at 4 s).
      await until(() => upConns.size <= (upSeen.get('other')!.closed === null ? 1 : 0), 1000);
      expect(performance.now() - killedAt).toBeLessThan(1000);
      expect(upSeen.has('victim')).toBe(false);
      expect(await other).toEqual([200, 'up other']);
      expect(upSeen.get('other')!.closed).not.toBeNull();
      await until(() => upConns.size === 0, 1000);
      // The pool serves the next request.
      const next = await fetch(`http://127.0.0.1:${port}/next`);
      expect(await next.text()).toBe('up next');
      victim.sock.destroy();
    } finally {
      SP.connect = hooked;
    }
  });
});

describe('what stays as it was', () => {
  it("'upgrade' listeners run outside request threads (a WebSocket outlives its handler)", async () => {
    patch({ http: true });
    const { server, port } = await serve((req, res) => res.end());
    let name = '';
    server.on('upgrade', (req, socket) => {
      name = getcurrent().name;
      socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n');
    });
    const c = rawClient(port);
    c.sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n');
    await until(() => c.data().includes('101'));
    expect(name).toBe('MainThread');
    c.sock.destroy();
  });

  it('a bad EVY_REQUEST_DEADLINE or EVY_SHUTDOWN_DRAIN stops the app at startup with a TypeError naming it', async () => {
    const { spawnSync } = await import('node:child_process');
    const root = new URL('..', import.meta.url).pathname;
    for (const [name, value] of [['EVY_REQUEST_DEADLINE', 'abc'], ['EVY_SHUTDOWN_DRAIN', '-1']]) {
      const r = spawnSync(process.execPath, ['--import', './register.mjs', '-e', 'console.log("ran")'], { cwd: root, encoding: 'utf8', env: { ...process.env, [name]: value } });
      expect(r.status).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`TypeError: The "${name}" argument must be a number of seconds >= 0.`);
    }
  });

  // Node's test-http-server-keepalive-req-gc.js timed out under the hook: the finished thread kept its request
  // (to be named after it), and a killed one its kill error, whose unread stack held the response's frames.
  it('a request is garbage-collected once over (answered, or abandoned by its client) while its context is still held', async () => {
    const { execFileSync } = await import('node:child_process');
    const root = new URL('..', import.meta.url).pathname;
    for (const args of [[], ['--import', './register.mjs']]) {
      const out = execFileSync(process.execPath, ['--expose-gc', ...args, 'fixtures/http/req-gc.mjs'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
      expect(JSON.parse(out.trim().split('\n').pop()!), args.join(' ')).toEqual({ closed: 2, collected: ['/abandoned', '/answered'], held: 2 });
    }
  });

  it("an async listener's own rejection (no kill) is still an unhandled rejection, under the hook as without it", async () => {
    const { execFileSync } = await import('node:child_process');
    const root = new URL('..', import.meta.url).pathname;
    for (const args of [[], ['--import', './register.mjs']]) {
      const out = execFileSync(process.execPath, [...args, 'fixtures/http/rejection.mjs'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
      expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ unhandled: "the app's own bug" });
    }
  });
});

describe('startedThread (internal: a thread whose code the caller runs)', () => {
  it('runs the caller\'s code as the thread at once; _finish ends it; a kill detaches it at once and stays sticky for its code', async () => {
    const { startedThread } = await import('../src/greenthread.js');
    const { rt } = await import('../src/runtime.js');
    const { own } = await import('../src/ownership.js');
    const { sleep } = await import('../src/index.js');
    const a = startedThread();
    expect(a.dead).toBe(false);
    expect(rt.als!.run(a, () => getcurrent())).toBe(a);
    a._finish(7, false);
    expect(a.dead).toBe(true);
    await expect(a.wait()).resolves.toBe(7);

    const b = startedThread();
    const later = rt.als!.run(b, async () => {
      await new Promise((r) => setTimeout(r, 20)); // a foreign await: the kill cannot interrupt it
      const destroyed: unknown[] = [];
      own({}, (_r, e) => destroyed.push(e)); // made after the kill: destroyed at once
      let slept = 'no';
      await sleep(0).then(() => (slept = 'yes'), (e) => (slept = (e as Error).message));
      return { destroyed: destroyed.length, slept, current: getcurrent() === b };
    });
    const t0 = Date.now();
    await b.kill(new Error('stop'));
    expect(Date.now() - t0).toBeLessThan(50); // no grace to wait out: nothing of evy's runs its code
    expect(b.dead).toBe(true);
    await expect(b.wait()).rejects.toThrow('stop');
    expect(await later).toEqual({ destroyed: 1, slept: 'stop', current: true });
  });
});
