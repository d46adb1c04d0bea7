// The shared-connection rule (docs/patching.md, "Sockets: a state table"): a raw connection on which two
// threads' requests are outstanding at once serves several threads, and no kill destroys it. Both sides are
// proved here, over plain net and over TLS, under monkeyPatch() (vitest's forks pool: one process per file):
// a lone thread's unanswered request dies with it; with two threads' requests outstanding, killing either one
// leaves the other its reply, and the connection serves a third thread afterwards.
//
// http(s) does not reach this rule: Node's http client never pipelines (one request per socket at a time, the
// agent queues the rest) and its requests are owned one level up, by the ClientRequest
// (fixtures/real/kill-agent-queue.mjs and fixtures/register/keepalive.mjs prove that side).
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from './helpers/certs.js';
import { Event, GreenletExit, monkeyPatch, sleep, spawn, unowned, type GreenThread } from '../src/index.js';

let undo: (() => void) | null = null;
let teardown: (() => Promise<void>) | null = null;
afterEach(async () => {
  await teardown?.();
  teardown = null;
  undo?.();
  undo = null;
});

let certs: Certs;
beforeAll(() => {
  certs = makeCerts();
});
afterAll(() => certs.cleanup());

/** Calls `onLine` with each newline-terminated line `s` receives (without the newline). */
function eachLine(s: net.Socket, onLine: (line: string) => void): void {
  let buf = '';
  s.on('data', (d) => {
    buf += String(d);
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
  });
}

/**
 * A line server that answers nothing by itself: the test sees each request arrive (`arrived(line)`) and
 * decides when to answer it (`answer(line)`), so which requests are outstanding is never a matter of timing.
 */
async function lineServer(kind: 'net' | 'tls') {
  const conns: net.Socket[] = [];
  const received: string[] = [];
  const arrivals = new Map<string, Event<void>>();
  const arrival = (line: string): Event<void> => {
    let e = arrivals.get(line);
    if (e === undefined) arrivals.set(line, (e = new Event<void>()));
    return e;
  };
  const onConn = (s: net.Socket): void => {
    conns.push(s);
    s.on('error', () => {});
    eachLine(s, (line) => {
      received.push(line);
      const e = arrival(line);
      if (!e.ready()) e.send();
    });
  };
  const server =
    kind === 'net' ? net.createServer(onConn) : tls.createServer({ key: certs.serverKey, cert: certs.serverCert }, onConn);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    received,
    conns,
    /** Resolves once `line` reached the server. */
    arrived: (line: string) => arrival(line).wait(10),
    /** Sends the reply to `line` on the one connection. */
    answer(line: string): void {
      expect(conns).toHaveLength(1);
      conns[0]!.write(`re:${line}\n`);
    },
    close(): Promise<void> {
      for (const c of conns) c.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

type Server = Awaited<ReturnType<typeof lineServer>>;

/** The client side of one connection to `server`, errors ignored (a kill's destroy is what the tests look at). */
function connectTo(kind: 'net' | 'tls', server: Server): net.Socket {
  const s =
    kind === 'net'
      ? net.connect(server.port, '127.0.0.1')
      : tls.connect({ port: server.port, host: '127.0.0.1', ca: certs.caCert, servername: 'localhost' });
  s.on('error', () => {});
  return s;
}

/**
 * A client connection that any thread may use: `ask(line)` writes a request and resolves with its reply,
 * rejects when the connection closes first. Created lazily by the first thread that asks (as a library's
 * module-level client is).
 */
function client(kind: 'net' | 'tls', server: Server) {
  let sock: net.Socket | null = null;
  const pending = new Map<string, { resolve(v: string): void; reject(e: unknown): void }>();
  const open = (): net.Socket => {
    const s = connectTo(kind, server);
    eachLine(s, (line) => {
      const p = pending.get(line.replace(/^re:/, ''));
      pending.delete(line.replace(/^re:/, ''));
      p?.resolve(line);
    });
    s.on('close', () => {
      for (const p of pending.values()) p.reject(new Error('the connection closed before the reply'));
      pending.clear();
    });
    return s;
  };
  return {
    get socket(): net.Socket | null {
      return sock;
    },
    ask(line: string): Promise<string> {
      sock ??= open();
      return new Promise((resolve, reject) => {
        pending.set(line, { resolve, reject });
        sock!.write(`${line}\n`);
      });
    },
  };
}

/**
 * A client that queues in JavaScript, as pg and mysql2 do (evy watches only their queues): one request on the
 * wire at a time; the next one is written from the socket's 'data' handler, synchronously, as the reply to
 * the previous one is delivered. (A client that writes it from a promise continuation instead writes it in
 * the context of the thread whose code started that chain: docs/patching.md, the case the socket cannot show.)
 */
function queueingClient(kind: 'net' | 'tls', server: Server) {
  let sock: net.Socket | null = null;
  const queue: { line: string; resolve(v: string): void; reject(e: unknown): void }[] = [];
  let inFlight: (typeof queue)[number] | null = null;
  const send = (): void => {
    inFlight = queue.shift() ?? null;
    if (inFlight !== null) sock!.write(`${inFlight.line}\n`);
  };
  const open = (): net.Socket => {
    const s = connectTo(kind, server);
    eachLine(s, (line) => {
      const done = inFlight;
      send(); // the next queued request, written from this callback
      done?.resolve(line);
    });
    s.on('close', () => {
      for (const j of [inFlight, ...queue]) j?.reject(new Error('the connection closed before the reply'));
      inFlight = null;
      queue.length = 0;
    });
    return s;
  };
  return {
    get socket(): net.Socket | null {
      return sock;
    },
    ask(line: string): Promise<string> {
      sock ??= open();
      return new Promise((resolve, reject) => {
        queue.push({ line, resolve, reject });
        if (inFlight === null) send(); // idle: written now, by the asking thread's own code
      });
    },
  };
}

async function expectKilled(t: GreenThread): Promise<void> {
  await t.kill();
  await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
}

type Client = ReturnType<typeof client>;

/** Patches, starts a line server and a client of it (`make`: client or queueingClient); afterEach closes both. */
async function setUp(kind: 'net' | 'tls', make: (kind: 'net' | 'tls', server: Server) => Client = client): Promise<{ server: Server; c: Client }> {
  undo = monkeyPatch().undo;
  const server = await lineServer(kind);
  const c = make(kind, server);
  teardown = async () => {
    c.socket?.destroy();
    await server.close();
  };
  return { server, c };
}

/** A thread that asks `line` on `c`, returned once its request has reached the server (is outstanding). */
async function asking(server: Server, c: Client, line: string): Promise<GreenThread<string>> {
  const t = spawn(() => c.ask(line));
  await server.arrived(line);
  return t;
}

/** The server answers `line`: thread `t`, which asked it, gets the reply. */
async function expectReply(server: Server, t: GreenThread<string>, line: string): Promise<void> {
  server.answer(line);
  expect(await t.wait()).toBe(`re:${line}`);
}

for (const kind of ['net', 'tls'] as const) {
  describe(`two threads' requests outstanding at once on one ${kind === 'net' ? 'plain TCP' : 'TLS'} connection`, () => {
    it("control: a lone thread's unanswered request dies with it (the connection is owned while it waits)", async () => {
      const { server, c } = await setUp(kind);
      const a = await asking(server, c, 'a');
      await expectKilled(a);
      if (!c.socket!.destroyed) await once(c.socket!, 'close');
      expect(c.socket!.destroyed).toBe(true);
    });

    it("the kill of the thread that connected and wrote first leaves the other thread its reply; the connection lives on", async () => {
      const { server, c } = await setUp(kind);
      const a = await asking(server, c, 'a'); // A creates the connection and writes first
      const b = await asking(server, c, 'b'); // B's request, while A's is still outstanding
      await expectKilled(a);
      expect(c.socket!.destroyed).toBe(false);
      await expectReply(server, b, 'b');
      // Still usable by a third thread: the kill touched nothing.
      await expectReply(server, await asking(server, c, 'd'), 'd');
      expect(server.received).toEqual(['a', 'b', 'd']);
    });

    it('the kill of the thread that wrote second leaves the first thread its reply', async () => {
      const { server, c } = await setUp(kind);
      const a = await asking(server, c, 'a');
      const b = await asking(server, c, 'b');
      await expectKilled(b);
      expect(c.socket!.destroyed).toBe(false);
      await expectReply(server, a, 'a');
    });

    it("a client that queues in JavaScript: the request it writes for B from A's reply makes the connection shared; no later kill touches it", async () => {
      const { server, c } = await setUp(kind, queueingClient);
      const answered = new Event<string>();
      const a = spawn(async () => {
        answered.send(await c.ask('a')); // A connects and writes first, from its own code
        await sleep(10); // then idles, alive
      });
      await server.arrived('a');
      const b = spawn(() => c.ask('b')); // queued in the client: nothing written yet
      server.answer('a'); // the client writes B's request from the socket's 'data' callback
      expect(await answered.wait()).toBe('re:a');
      await server.arrived('b');
      await expectKilled(a); // B's request is on A's connection: A's kill must not cut it
      expect(c.socket!.destroyed).toBe(false);
      await expectReply(server, b, 'b');
      // The connection serves a queue evy cannot see: marked shared for good. C's own request with D's queued
      // behind it in the client: C's kill must leave the connection to D.
      const cT = await asking(server, c, 'c');
      const d = spawn(() => c.ask('d'));
      await cT.kill();
      expect(c.socket!.destroyed).toBe(false);
      server.answer('c');
      await server.arrived('d');
      await expectReply(server, d, 'd');
    });

    it('a connection made inside unowned() is never destroyed by a kill, even with the killed thread\'s request outstanding', async () => {
      const { server, c } = await setUp(kind);
      const made = spawn(() => unowned(() => c.ask('hello'))); // a client meant for everyone, made lazily in a thread
      await server.arrived('hello');
      await expectReply(server, made, 'hello');
      const a = await asking(server, c, 'a'); // A's own request, outstanding when A is killed
      await expectKilled(a);
      expect(c.socket!.destroyed).toBe(false);
      await expectReply(server, await asking(server, c, 'b'), 'b');
    });

    it('a connection made in the main thread, written by two threads at once: a kill of either spares it', async () => {
      const { server, c } = await setUp(kind);
      const warm = c.ask('warm'); // main connects and makes the first request
      await server.arrived('warm');
      server.answer('warm');
      expect(await warm).toBe('re:warm');
      const a = await asking(server, c, 'a');
      const b = await asking(server, c, 'b');
      const x = await asking(server, c, 'x');
      await expectKilled(b);
      await expectKilled(x);
      await expectReply(server, a, 'a');
      expect(c.socket!.destroyed).toBe(false);
    });
  });
}
