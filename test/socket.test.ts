import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  connect,
  Event,
  EvyError,
  GreenletExit,
  GreenSocket,
  listen,
  SHUT_WR,
  sleep,
  SocketError,
  SocketTimeout,
  spawn,
  Timeout,
  withTimeout,
} from '../src/index.js';
import {
  closeServer,
  countResources,
  delay,
  expectNoLeaks,
  payload,
  rawConnect,
  rawServer,
  readAll,
  rng,
  sha,
  tempDir,
} from './helpers/sockets.js';

let before: Record<string, number>;
beforeEach(() => {
  before = countResources();
});
afterEach(async () => {
  await expectNoLeaks(before);
});

/** Occupies every libuv thread-pool thread (each blocks opening a FIFO for reading) until the returned release(). */
function holdThreadPool(): () => void {
  const { dir } = tempDir('evy-pool-');
  const n = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = join(dir, `fifo${i}`);
    execFileSync('mkfifo', [f]);
    fifos.push(f);
    fs.open(f, 'r', (err, fd) => {
      if (err === null) fs.close(fd, () => {});
    });
  }
  return () => {
    // A writer that opens (non-blocking, now that a reader waits) lets each blocked open return.
    for (const f of fifos) fs.closeSync(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
  };
}

/** A listening GreenSocket and a connected pair [client, server side]. */
async function pair(host = '127.0.0.1'): Promise<[GreenSocket, GreenSocket, GreenSocket]> {
  const l = await listen([host, 0]);
  const port = (l.getsockname() as [string, number])[1];
  const [c, [s]] = await Promise.all([connect([host, port]), l.accept()]);
  return [l, c, s];
}

function closeAll(...socks: GreenSocket[]): void {
  for (const s of socks) s.close();
}

describe('GreenSocket basics', () => {
  it('echoes over IPv4, with addresses on both sides', async () => {
    const [l, c, s] = await pair();
    await c.sendall('ping');
    expect((await s.recv(10)).toString()).toBe('ping');
    await s.sendall(Buffer.from('pong'));
    expect((await c.recv(10)).toString()).toBe('pong');
    const [lh, lp] = l.getsockname() as [string, number];
    expect(lh).toBe('127.0.0.1');
    expect(c.getpeername()).toEqual(['127.0.0.1', lp]);
    expect(s.getsockname()).toEqual(['127.0.0.1', lp]);
    expect(s.getpeername()).toEqual(c.getsockname());
    expect(c.family).toBe('IPv4');
    expect(c.raw).toBeInstanceOf(net.Socket);
    expect(l.raw).toBeInstanceOf(net.Server);
    closeAll(c, s, l);
  });

  it("infers IPv6 from '::1'", async () => {
    const [l, c, s] = await pair('::1');
    expect(l.family).toBe('IPv6');
    expect(c.family).toBe('IPv6');
    expect((c.getpeername() as [string, number])[0]).toBe('::1');
    await c.sendall('six');
    expect((await s.recv(3)).toString()).toBe('six');
    closeAll(c, s, l);
  });

  it('works over a Unix socket path', async () => {
    const { dir, cleanup } = tempDir();
    const path = join(dir, 'sock');
    const l = await listen(path);
    expect(l.family).toBe('unix');
    expect(l.getsockname()).toBe(path);
    const [c, [s, addr]] = await Promise.all([connect(path), l.accept()]);
    expect(addr).toBe('');
    expect(c.getpeername()).toBe(path);
    await c.sendall('unix');
    expect((await s.recv(10)).toString()).toBe('unix');
    closeAll(c, s, l);
    cleanup();
  });

  it("listen(['', port]) binds every interface; connect(addr, family, bind) picks the local address", async () => {
    const l = await listen(['', 0]);
    const [host, port] = l.getsockname() as [string, number];
    expect(host).toBe('0.0.0.0');
    const local = await listen(['127.0.0.1', 0]); // only to find a free port to bind the client to
    const freePort = (local.getsockname() as [string, number])[1];
    local.close();
    await sleep(0.01);
    const [c, [s, addr]] = await Promise.all([connect(['127.0.0.1', port], 4, ['127.0.0.1', freePort]), l.accept()]);
    expect(c.getsockname()).toEqual(['127.0.0.1', freePort]);
    expect(addr).toEqual(['127.0.0.1', freePort]);
    closeAll(c, s, l);
  });

  it('a kill or timeout that lands while listen() is still resolving its host leaves no server behind', async () => {
    // The host lookup runs on libuv's thread pool: holding every pool thread makes sure the kill lands
    // while the lookup is still queued (without it, 'localhost' often resolves within the 1 ms deadline).
    const release = holdThreadPool();
    try {
      const err = await withTimeout(0.001, () => listen(['localhost', 0])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Timeout);
      const gt = spawn(() => listen(['localhost', 0]));
      await Promise.resolve();
      await gt.kill();
      await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
    } finally {
      release();
    }
    await delay(100); // the host lookup has long finished: a server that started listening would show now
    expect(countResources().TCPServerWrap).toBe(before.TCPServerWrap);
  });

  it('a kill that lands after listen() succeeded but before the thread resumed leaves nothing behind', async () => {
    // The kill is queued (a nextTick) from the server's first 'listening' listener: it runs after the
    // listener that wakes listen()'s wait and before the woken thread resumes (a microtask).
    const realListen = net.Server.prototype.listen;
    let gt: ReturnType<typeof spawn> | undefined;
    net.Server.prototype.listen = function (this: net.Server, ...args: any[]) {
      this.once('listening', () => process.nextTick(() => void gt!.kill()));
      return (realListen as any).apply(this, args);
    } as any;
    try {
      gt = spawn(() => listen(['127.0.0.1', 0]));
      await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
    } finally {
      net.Server.prototype.listen = realListen;
    }
    await delay(50);
    expect(countResources().TCPServerWrap).toBe(before.TCPServerWrap);
  });

  it('reusePort: shares a port where Node supports it, a clear error where it does not', async () => {
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    const supported = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
    if (!supported) {
      await expect(listen(['127.0.0.1', 0], undefined, 50, true)).rejects.toMatchObject({ code: 'ERR_EVY_REUSEPORT_UNSUPPORTED' });
      return;
    }
    const a = await listen(['127.0.0.1', 0], undefined, 50, true);
    const port = (a.getsockname() as [string, number])[1];
    const b = await listen(['127.0.0.1', port], undefined, 50, true);
    expect((b.getsockname() as [string, number])[1]).toBe(port);
    closeAll(a, b);
  });

  it('recv returns an empty Buffer at EOF, every time after', async () => {
    const [l, c, s] = await pair();
    await c.sendall('last words');
    c.close();
    expect((await s.recv(100)).toString()).toBe('last words');
    for (let i = 0; i < 3; i++) {
      const b = await s.recv(100);
      expect(Buffer.isBuffer(b)).toBe(true);
      expect(b.length).toBe(0);
    }
    closeAll(s, l);
  });

  it('recv(n) returns at most n bytes and keeps the rest, in order', async () => {
    const [l, c, s] = await pair();
    await c.sendall('abcdefghij');
    await sleep(0.02);
    expect((await s.recv(3)).toString()).toBe('abc');
    expect((await s.recv(3)).toString()).toBe('def');
    expect((await s.recv(100)).toString()).toBe('ghij');
    expect((await s.recv(0)).length).toBe(0);
    const into = Buffer.alloc(4);
    await c.sendall('wxyz!');
    await sleep(0.02);
    expect(await s.recvInto(into)).toBe(4);
    expect(into.toString()).toBe('wxyz');
    expect((await s.recv(10)).toString()).toBe('!');
    closeAll(c, s, l);
  });

  it('send returns the byte count', async () => {
    const [l, c, s] = await pair();
    expect(await c.send('héllo')).toBe(6);
    expect((await s.recv(10)).toString()).toBe('héllo');
    closeAll(c, s, l);
  });
});

describe('no byte lost or reordered', () => {
  it('a large transfer with random write and read sizes arrives intact (hash)', async () => {
    const [l, c, s] = await pair();
    const data = payload(6 * 1024 * 1024);
    const rand = rng(12345);
    const writer = spawn(async () => {
      let off = 0;
      while (off < data.length) {
        const n = 1 + Math.floor(rand() * 70_000);
        await c.sendall(data.subarray(off, off + n));
        off += n;
        if (rand() < 0.05) await sleep(0);
      }
      c.close();
    });
    const parts: Buffer[] = [];
    const rand2 = rng(999);
    for (;;) {
      const b = await s.recv(1 + Math.floor(rand2() * 100_000));
      if (b.length === 0) break;
      parts.push(b);
    }
    await writer.wait();
    expect(Buffer.concat(parts).length).toBe(data.length);
    expect(sha(parts)).toBe(sha(data));
    closeAll(s, l);
  });

  it('tiny random chunks from a raw peer, mixed recv / makefile reads, stay in order', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} ${'x'.repeat(i % 37)}\n`);
    const text = lines.join('');
    const rand = rng(7);
    const [srv, port] = await rawServer(async (sock) => {
      const b = Buffer.from(text);
      for (let off = 0; off < b.length; ) {
        const n = 1 + Math.floor(rand() * 40);
        sock.write(b.subarray(off, off + n));
        off += n;
        if (rand() < 0.1) await delay(1);
      }
      sock.end();
    });
    const c = await connect(['127.0.0.1', port]);
    const f = c.makefile('r');
    const got: string[] = [];
    for (let i = 0; i < lines.length; i++) {
      if (i % 3 === 2) {
        // the first bytes of this line through recv, the rest through the file
        const head = (await c.recv(1)).toString();
        got.push(head + (await f.readline()));
      } else {
        got.push(await f.readline());
      }
    }
    expect(got).toEqual(lines);
    expect(await f.readline()).toBe('');
    await f.close();
    c.close();
    await closeServer(srv);
  });

  it('full duplex: one thread writes while another reads the same socket, both parked on backpressure', async () => {
    const [l, c, s] = await pair();
    const echo = spawn(async () => {
      for (let b = await s.recv(65536); b.length > 0; b = await s.recv(65536)) await s.sendall(b);
      s.close();
    });
    const data = payload(4 * 1024 * 1024);
    const writer = spawn(async () => {
      for (let off = 0; off < data.length; off += 100_000) await c.sendall(data.subarray(off, off + 100_000));
      c.shutdown(SHUT_WR);
    });
    const reader = spawn(async () => {
      const parts: Buffer[] = [];
      for (let b = await c.recv(30_000); b.length > 0; b = await c.recv(30_000)) parts.push(b);
      return parts;
    });
    const parts = await reader.wait();
    await writer.wait();
    await echo.wait();
    expect(sha(parts)).toBe(sha(data));
    closeAll(c, l);
  });

  it('reading is paused above the high-water mark: memory stays bounded, nothing is lost', async () => {
    const data = payload(8 * 1024 * 1024);
    const [srv, port] = await rawServer((sock) => sock.end(data));
    const c = await connect(['127.0.0.1', port]);
    await sleep(0.3); // nobody reads: the peer's 8 MiB must wait in the kernel, not in our buffer
    expect(c._buffered).toBeLessThanOrEqual(128 * 1024 + 65536);
    expect((c.raw as net.Socket).isPaused()).toBe(true);
    const parts: Buffer[] = [];
    for (let b = await c.recv(65536); b.length > 0; b = await c.recv(65536)) parts.push(b);
    expect(sha(parts)).toBe(sha(data));
    c.close();
    await closeServer(srv);
  });

  it('sendall waits on backpressure: a peer that does not read holds the writer back', async () => {
    let peer!: net.Socket;
    const [srv, port] = await rawServer((sock) => {
      peer = sock;
      sock.pause();
    });
    const c = await connect(['127.0.0.1', port]);
    const chunk = payload(64 * 1024);
    let sent = 0;
    const writer = spawn(async () => {
      for (let i = 0; i < 400; i++) {
        await c.sendall(chunk);
        sent++;
      }
    });
    await sleep(0.3);
    // 400 x 64 KiB = 25 MiB: kernel buffers take a few MiB at most, the writer must be parked.
    expect(writer.dead).toBe(false);
    expect(sent).toBeLessThan(200);
    expect((c.raw as net.Socket).writableLength).toBeLessThanOrEqual(2 * 64 * 1024);
    const all = readAll(peer);
    peer.resume();
    await writer.wait();
    c.close();
    expect((await all).length).toBe(400 * chunk.length);
    await closeServer(srv);
  });

  it('close() after sendall() still delivers every byte (graceful end)', async () => {
    const data = payload(4 * 1024 * 1024);
    let got!: Promise<Buffer>;
    const [srv, port] = await rawServer((sock) => {
      got = readAll(sock);
    });
    const c = await connect(['127.0.0.1', port]);
    await c.sendall(data);
    c.close();
    expect(sha(await got)).toBe(sha(data));
    await closeServer(srv);
  });
});

describe('timeouts', () => {
  it('settimeout / gettimeout / setblocking, validated', async () => {
    const [l, c, s] = await pair();
    expect(c.gettimeout()).toBe(null);
    c.settimeout(1);
    expect(c.gettimeout()).toBe(1);
    c.settimeout(0.25);
    expect(c.gettimeout()).toBe(0.25);
    c.setblocking(false);
    expect(c.gettimeout()).toBe(0);
    c.setblocking(true);
    expect(c.gettimeout()).toBe(null);
    for (const bad of ['', [], {}, () => 1]) expect(() => c.settimeout(bad as any)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => c.settimeout(-1)).toThrow(RangeError);
    expect(() => c.settimeout(NaN)).toThrow(RangeError);
    closeAll(c, s, l);
  });

  it('a recv past the socket timeout throws SocketTimeout; the socket stays usable', async () => {
    const [l, c, s] = await pair();
    c.settimeout(0.05);
    const err = await c.recv(10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketTimeout);
    expect((err as SocketTimeout).code).toBe('ERR_EVY_SOCKET_TIMEOUT');
    expect((err as Error).message).toBe('timed out');
    await s.sendall('late');
    expect((await c.recv(10)).toString()).toBe('late');
    closeAll(c, s, l);
  });

  it('accept honours the timeout; a non-blocking socket gives EAGAIN instead of waiting', async () => {
    const l = await listen(['127.0.0.1', 0]);
    l.settimeout(0.03);
    await expect(l.accept()).rejects.toBeInstanceOf(SocketTimeout);
    l.setblocking(false);
    await expect(l.accept()).rejects.toMatchObject({ code: 'EAGAIN' });
    const port = (l.getsockname() as [string, number])[1];
    const c = await connect(['127.0.0.1', port]);
    c.setblocking(false);
    await expect(c.recv(10)).rejects.toMatchObject({ code: 'EAGAIN' });
    await sleep(0.02);
    const [s] = await l.accept(); // queued by now: no wait needed
    await s.sendall('x');
    await sleep(0.02);
    expect((await c.recv(10)).toString()).toBe('x');
    closeAll(c, s, l);
  });

  it('an evy Timeout interrupts recv without destroying the socket, and leaves no stale reader', async () => {
    const [l, c, s] = await pair();
    const t = spawn(async () => {
      const f = c.makefile('r');
      const t1 = new Timeout(0.05);
      const e = await f.readline().catch((x: unknown) => x);
      expect(e).toBe(t1);
      await s.sendall('after\n');
      const line = await f.readline(); // the data goes to this read, not to the abandoned one
      await f.close();
      return line;
    });
    expect(await t.wait()).toBe('after\n');
    expect((c.raw as net.Socket).destroyed).toBe(false);
    await s.sendall('more');
    expect((await c.recv(10)).toString()).toBe('more');
    closeAll(c, s, l);
  });

  it('withTimeout kills a reader on a socket it made: the socket dies with it, the peer sees the end', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    let made: GreenSocket | null = null;
    const err = await withTimeout(0.1, async () => {
      made = await connect(['127.0.0.1', port]);
      await made.recv(10);
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    const c = made as unknown as GreenSocket;
    expect((c.raw as net.Socket).destroyed).toBe(true);
    const [s] = await l.accept();
    expect((await s.recv(10)).length).toBe(0);
    await expect(c.recv(1)).rejects.toMatchObject({ code: 'EBADF' });
    closeAll(c, s, l);
  });

  it('withTimeout around recv/sendall/accept on sockets the thread did not make: they stay open, no byte lost', async () => {
    const [l, c, s] = await pair();
    // recv interrupted, then the data that arrives afterwards is all there, in order.
    expect(await withTimeout(0.03, () => c.recv(10)).catch((e: unknown) => e)).toBeInstanceOf(Timeout);
    expect((c.raw as net.Socket).destroyed).toBe(false);
    await s.sendall('after the timeout');
    const f = c.makefile('r');
    expect((await f.read(17)).toString()).toBe('after the timeout');
    await f.close();
    // sendall interrupted while the peer does not read: every byte still arrives (eventlet's final write).
    // Larger than loopback's autotuned buffers (tcp_rmem + tcp_wmem maxima: 32 + 4 MB on CI) so it must block.
    const big = payload(80 * 1024 * 1024);
    expect(await withTimeout(0.02, () => c.sendall(big)).catch((e: unknown) => e)).toBeInstanceOf(Timeout);
    const reader = spawn(async () => {
      const got: Buffer[] = [];
      for (let n = 0; n < big.length + 3; ) {
        const b = await s.recv(65536);
        got.push(b);
        n += b.length;
      }
      return got;
    });
    await c.sendall('END');
    expect(sha(await reader.wait())).toBe(sha([big, Buffer.from('END')]));
    // accept interrupted: the listener keeps accepting.
    expect(await withTimeout(0.02, () => l.accept()).catch((e: unknown) => e)).toBeInstanceOf(Timeout);
    const port = (l.getsockname() as [string, number])[1];
    const [c2, [s2]] = await Promise.all([connect(['127.0.0.1', port]), l.accept()]);
    await c2.sendall('x');
    expect((await s2.recv(1)).toString()).toBe('x');
    closeAll(c, s, l, c2, s2);
  });
});

describe('threads and ownership', () => {
  it('one reader and one writer at a time; a second concurrent reader gets a clear error', async () => {
    const [l, c, s] = await pair();
    const r1 = spawn(() => c.recv(10));
    await sleep(0.01);
    const e = await c.recv(10).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EvyError);
    expect((e as EvyError).code).toBe('ERR_EVY_CONCURRENT_READ');
    expect((e as Error).message).toMatch(/second simultaneous read/);
    // a writer in another thread meanwhile is fine
    await c.sendall('hello');
    expect((await s.recv(10)).toString()).toBe('hello');
    await s.sendall('for r1');
    expect((await r1.wait()).toString()).toBe('for r1');
    // a file's readline parked on half a line: that half is not another reader's to take
    const f = c.makefile('r');
    const r2 = spawn(() => f.readline());
    await s.sendall('half ');
    await sleep(0.02);
    await expect(c.recv(10)).rejects.toMatchObject({ code: 'ERR_EVY_CONCURRENT_READ' });
    await s.sendall('a line\n');
    expect(await r2.wait()).toBe('half a line\n');
    await f.close();
    closeAll(c, s, l);
  });

  it('killing a thread parked on recv rejects it with GreenletExit; a socket it did not make stays open', async () => {
    const [l, c, s] = await pair();
    let finallyRan = false;
    const t = spawn(async () => {
      try {
        await c.recv(10);
      } finally {
        finallyRan = true;
      }
    });
    await sleep(0.01);
    await t.kill();
    expect(finallyRan).toBe(true);
    await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect((c.raw as net.Socket).destroyed).toBe(false);
    await s.sendall('kept');
    expect((await c.recv(10)).toString()).toBe('kept');
    closeAll(c, s, l);
  });

  it('killing a thread parked on recv on a socket it made destroys that socket', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    let made: GreenSocket | null = null;
    const t = spawn(async () => {
      made = await connect(['127.0.0.1', port]);
      await made.recv(10);
    });
    const [s] = await l.accept();
    await sleep(0.01);
    await t.kill();
    await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect(((made as unknown as GreenSocket).raw as net.Socket).destroyed).toBe(true);
    expect((await s.recv(10)).length).toBe(0);
    closeAll(s, l);
  });

  it('the kill of a thread that merely created a socket leaves another thread’s use of it alone', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    let made: GreenSocket | null = null;
    const creator = spawn(async () => {
      made = await connect(['127.0.0.1', port]); // created (and connected) in this thread
      await sleep(10);
    });
    const [s] = await l.accept();
    while (made === null) await sleep(0.005);
    const c = made as GreenSocket;
    const reader = spawn(() => c.recv(10)); // now used by another thread
    await sleep(0.01);
    await creator.kill();
    expect((c.raw as net.Socket).destroyed).toBe(false);
    await s.sendall('still here');
    expect((await reader.wait()).toString()).toBe('still here');
    closeAll(c, s, l);
  });

  it('a killed writer parked on backpressure destroys the socket it made and alone used; its peer sees it go', async () => {
    let peer!: net.Socket;
    const [srv, port] = await rawServer((sock) => {
      peer = sock;
      sock.pause();
    });
    let made: GreenSocket | null = null;
    const writer = spawn(async () => {
      made = await connect(['127.0.0.1', port]);
      for (;;) await made.sendall(payload(256 * 1024));
    });
    await sleep(0.2);
    await writer.kill();
    await expect(writer.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect(((made as unknown as GreenSocket).raw as net.Socket).destroyed).toBe(true);
    await expect((made as unknown as GreenSocket).recv(1)).rejects.toMatchObject({ code: 'EBADF' });
    peer.destroy();
    await closeServer(srv);
  });

  it('a socket another thread also uses is never destroyed by a kill: that thread keeps it', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    let made: GreenSocket | null = null;
    const writer = spawn(async () => {
      made = await connect(['127.0.0.1', port]);
      await new Event().wait(); // made it, and waits on something else
    });
    const [s] = await l.accept();
    while (made === null) await sleep(0.005);
    const c = made as GreenSocket;
    const reader = spawn(() => c.recv(10));
    await sleep(0.01);
    const writer2 = spawn(async () => {
      await c.sendall('from the creator side');
      await new Event().wait();
    });
    await sleep(0.01);
    await writer.kill();
    await writer2.kill(); // its sendall is long done: nothing of its own is outstanding
    expect((c.raw as net.Socket).destroyed).toBe(false);
    expect((await s.recv(100)).toString()).toBe('from the creator side');
    await s.sendall('still here');
    expect((await reader.wait()).toString()).toBe('still here');
    closeAll(c, s, l);
  });

  it('a kill during connect abandons and destroys the attempt', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    let started = false;
    const t = spawn(() => {
      started = true;
      return connect(['127.0.0.1', port]);
    });
    // let the thread start and park on the connect, but give the loop no turn to complete it
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(started).toBe(true);
    await t.kill();
    await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
    l.close();
  });

  it('close() from another thread fails a parked reader with EBADF', async () => {
    const [l, c, s] = await pair();
    const r = spawn(() => c.recv(10));
    await sleep(0.01);
    c.close();
    const e = await r.wait().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect((e as SocketError).code).toBe('EBADF');
    closeAll(s, l);
  });
});

describe('faults are typed errors, never hangs or crashes', () => {
  it('connection refused', async () => {
    const [srv, port] = await rawServer(() => {});
    await closeServer(srv);
    const e = await connect(['127.0.0.1', port]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect(e).toMatchObject({ code: 'ECONNREFUSED', syscall: 'connect', port });
    expect((e as Error).message).toMatch(/ECONNREFUSED/);
  });

  it('a port in use, and listening again once it is closed', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const port = (l.getsockname() as [string, number])[1];
    const e = await listen(['127.0.0.1', port]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect(e).toMatchObject({ code: 'EADDRINUSE' });
    l.close();
    await sleep(0.01);
    const again = await listen(['127.0.0.1', port]);
    expect((again.getsockname() as [string, number])[1]).toBe(port);
    again.close();
  });

  it('bad addresses', async () => {
    await expect(connect(['127.0.0.1', 70000])).rejects.toMatchObject({ code: 'ERR_SOCKET_BAD_PORT' });
    await expect(connect(42 as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(listen(['127.0.0.1', -1])).rejects.toBeInstanceOf(RangeError);
    await expect(connect(['127.0.0.1', 80], 'bogus' as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(connect(['::1', 80], 4)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    const e = await connect(['host.that.does.not.exist.invalid', 80]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect(['ENOTFOUND', 'EAI_AGAIN']).toContain((e as SocketError).code);
    const { dir, cleanup } = tempDir();
    await expect(connect(join(dir, 'nobody-here'))).rejects.toMatchObject({ code: 'ENOENT' });
    cleanup();
  });

  it('recv, send and accept on a closed socket throw EBADF', async () => {
    const [l, c, s] = await pair();
    c.close();
    l.close();
    for (const p of [c.recv(1), c.sendall('x'), c.send('x'), l.accept()]) {
      const e = await p.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SocketError);
      expect((e as SocketError).code).toBe('EBADF');
    }
    expect(() => c.getpeername()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    c.close(); // idempotent
    s.close();
  });

  it('a peer reset in the middle of sendall rejects the sendall with ECONNRESET or EPIPE', async () => {
    const [srv, port] = await rawServer((sock) => {
      sock.once('data', () => sock.resetAndDestroy());
    });
    const c = await connect(['127.0.0.1', port]);
    const chunk = payload(256 * 1024);
    const e = await (async () => {
      for (let i = 0; i < 1000; i++) await c.sendall(chunk);
    })().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect(['ECONNRESET', 'EPIPE']).toContain((e as SocketError).code);
    // the error stays: the next operation gets it too
    await expect(c.recv(10)).rejects.toBe(e);
    c.close();
    await closeServer(srv);
  });

  it('a reset that hits an idle socket crashes nothing; the next operation gets ECONNRESET', async () => {
    const [srv, port] = await rawServer((sock) => {
      sock.write('bye');
      setTimeout(() => sock.resetAndDestroy(), 20);
    });
    const c = await connect(['127.0.0.1', port]);
    await sleep(0.1); // the RST arrives while no one waits on c
    expect((await c.recv(10)).toString()).toBe('bye'); // data before the reset is still delivered
    const e = await c.recv(10).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SocketError);
    expect((e as SocketError).code).toBe('ECONNRESET');
    c.close();
    await closeServer(srv);
  });

  it('a half-closed peer: recv gives EOF, and we can still send to it', async () => {
    let got!: Promise<Buffer>;
    const [srv, port] = await rawServer((sock) => {
      got = readAll(sock);
      sock.end('request');
    });
    const c = await connect(['127.0.0.1', port]);
    const f = c.makefile('rb');
    expect((await f.read()).toString()).toBe('request');
    await f.close();
    await c.sendall('reply after your FIN');
    c.close();
    expect((await got).toString()).toBe('reply after your FIN');
    await closeServer(srv);
  });

  it('shutdown(SHUT_WR) sends EOF and keeps reading; sending afterwards is EPIPE', async () => {
    const [l, c, s] = await pair();
    await c.sendall('question');
    c.shutdown(SHUT_WR);
    const f = s.makefile('rb');
    expect((await f.read()).toString()).toBe('question');
    await f.close();
    await s.sendall('answer');
    expect((await c.recv(10)).toString()).toBe('answer');
    await expect(c.sendall('more')).rejects.toMatchObject({ code: 'EPIPE' });
    expect(() => c.shutdown(7)).toThrow(RangeError);
    closeAll(c, s, l);
  });

  it('recv on a listening socket and accept on a connected one are errors', async () => {
    const [l, c, s] = await pair();
    await expect(l.recv(1)).rejects.toMatchObject({ code: 'ENOTCONN' });
    await expect(c.accept()).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(c.sendall(42 as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    closeAll(c, s, l);
  });
});

describe('makefile', () => {
  it('readline keeps the newline, read(n), read() to EOF, text and binary', async () => {
    const [l, c, s] = await pair();
    const w = s.makefile('w');
    await w.write('hello\nwörld\n');
    await w.write('tail without newline');
    await w.flush();
    await w.close();
    s.close();
    const f = c.makefile('r');
    expect(await f.readline()).toBe('hello\n');
    expect(await f.read(3)).toBe('wö'); // 3 bytes: 'w' + the two bytes of 'ö'
    expect(await f.readline()).toBe('rld\n');
    expect(await f.read()).toBe('tail without newline');
    expect(await f.readline()).toBe('');
    expect(await f.read()).toBe('');
    await f.close();
    await expect(f.readline()).rejects.toMatchObject({ code: 'ERR_EVY_FILE_CLOSED' });
    closeAll(c, l);
  });

  it('async iteration over lines; binary mode gives Buffers', async () => {
    const [l, c, s] = await pair();
    await s.sendall('a\nbb\nccc\n');
    s.close();
    const f = c.makefile('rb');
    const lines: Buffer[] = [];
    for await (const line of f) lines.push(line);
    expect(lines.map((b) => b.toString())).toEqual(['a\n', 'bb\n', 'ccc\n']);
    expect(Buffer.isBuffer(lines[0])).toBe(true);
    await f.close();
    closeAll(c, l);
  });

  it('the file outlives the socket’s close(); the socket really closes with its last file', async () => {
    const [l, c, s] = await pair();
    const f = c.makefile('r');
    c.close();
    await expect(c.recv(1)).rejects.toMatchObject({ code: 'EBADF' });
    await s.sendall('hello\n');
    s.close();
    expect(await f.readline()).toBe('hello\n');
    expect(await f.readline()).toBe('');
    expect((c.raw as net.Socket).destroyed).toBe(false);
    await f.close();
    await delay(20);
    expect((c.raw as net.Socket).destroyed).toBe(true);
    l.close();
  });

  it('write buffers until flush; write after close rejects', async () => {
    const [l, c, s] = await pair();
    const w = c.makefile('wb');
    await w.write(Buffer.from('buffered'));
    s.settimeout(0.05);
    await expect(s.recv(10)).rejects.toBeInstanceOf(SocketTimeout);
    await w.flush();
    expect((await s.recv(10)).toString()).toBe('buffered');
    await expect(w.write('text' as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await w.close();
    await expect(w.write(Buffer.from('x'))).rejects.toMatchObject({ code: 'ERR_EVY_FILE_CLOSED' });
    await expect(w.flush()).rejects.toMatchObject({ code: 'ERR_EVY_FILE_CLOSED' });
    closeAll(c, s, l);
  });

  it('Symbol.dispose closes a socket, Symbol.asyncDispose flushes and closes a file', async () => {
    const [l, c, s] = await pair();
    const f = c.makefile('w');
    await f.write('flushed on dispose');
    await f[Symbol.asyncDispose]();
    expect(f.closed).toBe(true);
    c[Symbol.dispose]();
    expect(c.closed).toBe(true);
    const r = s.makefile('r');
    expect(await r.read()).toBe('flushed on dispose');
    await r.close();
    closeAll(s, l);
  });

  it('wraps an existing net.Socket', async () => {
    const [srv, port] = await rawServer((sock) => sock.end('raw hello'));
    const raw = await rawConnect(port);
    const g = new GreenSocket(raw);
    const f = g.makefile('r');
    expect(await f.read()).toBe('raw hello');
    await f.close();
    g.close();
    await closeServer(srv);
    expect(() => new GreenSocket({} as any)).toThrow(TypeError);
  });
});
