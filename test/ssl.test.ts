import net from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  connect,
  GreenletExit,
  GreenSocket,
  listen,
  serve,
  sleep,
  SocketError,
  SHUT_WR,
  SocketTimeout,
  spawn,
  SSLError,
  StopServe,
  withTimeout,
  Timeout,
  until,
  wrapSsl,
  wrap_ssl,
} from '../src/index.js';
import { type Certs, makeCerts } from './helpers/certs.js';
import { countResources, expectNoLeaks, payload, sha } from './helpers/sockets.js';

let certs: Certs;
beforeAll(() => {
  certs = makeCerts();
});
afterAll(() => certs.cleanup());

let before: Record<string, number>;
beforeEach(() => {
  before = countResources();
});
afterEach(async () => {
  await expectNoLeaks(before);
});

async function tlsListener(extra: Record<string, unknown> = {}): Promise<[GreenSocket, [string, number]]> {
  const l = await listen(['127.0.0.1', 0]);
  const addr = l.getsockname() as [string, number];
  const s = await wrapSsl(l, { serverSide: true, key: certs.serverKey, cert: certs.serverCert, ...extra });
  return [s, addr];
}

describe('wrapSsl', () => {
  it('is exported as wrap_ssl too', () => {
    expect(wrap_ssl).toBe(wrapSsl);
  });

  it('echo through serve over TLS, verified against the test CA', async () => {
    const [l, addr] = await tlsListener();
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      expect(c.raw).toBeInstanceOf(tls.TLSSocket);
      for (;;) {
        const d = await c.recv(65536);
        if (d.length === 0) return;
        if (d.toString() === 'stop') throw new StopServe();
        await c.sendall(d);
      }
    });
    const c = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' });
    expect((c.raw as tls.TLSSocket).authorized).toBe(true);
    await c.sendall('secret');
    expect((await c.recv(100)).toString()).toBe('secret');
    // a larger transfer, read back in whatever chunks TLS records give
    const data = payload(1024 * 1024);
    const reader = spawn(async () => {
      const parts: Buffer[] = [];
      let n = 0;
      while (n < data.length) {
        const b = await c.recv(65536);
        parts.push(b);
        n += b.length;
      }
      return sha(parts);
    });
    await c.sendall(data);
    expect(await reader.wait()).toBe(sha(data));
    await c.sendall('stop');
    await gt.wait();
    expect((await c.recv(10)).length).toBe(0);
    c.close();
    l.close();
  });

  it('readline over a TLS socket file, then EOF; keyfile / certfile / cafile paths', async () => {
    const l0 = await listen(['127.0.0.1', 0]);
    const addr = l0.getsockname() as [string, number];
    const l = await wrapSsl(l0, { serverSide: true, keyfile: certs.files.serverKey, certfile: certs.files.serverCert });
    const gt = spawn(async () => {
      const [c] = await l.accept();
      const f = c.makefile('w');
      await f.write('first line\nsecond line\n');
      await f.close();
      c.close();
    });
    const c = await wrapSsl(await connect(['127.0.0.1', addr[1]]), { cafile: certs.files.caCert });
    const f = c.makefile('r');
    expect(await f.readline()).toBe('first line\n');
    expect(await f.readline()).toBe('second line\n');
    expect(await f.readline()).toBe('');
    await f.close();
    await gt.wait();
    c.close();
    l.close();
  });

  it('connecting by host name: servername defaults to it', async () => {
    const l0 = await listen(['127.0.0.1', 0]);
    const port = (l0.getsockname() as [string, number])[1];
    const l = await wrapSsl(l0, { serverSide: true, key: certs.serverKey, cert: certs.serverCert });
    const gt = spawn(async () => {
      const [c] = await l.accept();
      await c.sendall(`hello ${(c.raw as tls.TLSSocket).servername}`);
      c.close();
    });
    const c = await wrapSsl(await connect(['localhost', port]), { ca: certs.caCert });
    expect((await c.recv(100)).toString()).toBe('hello localhost');
    await gt.wait();
    c.close();
    l.close();
  });

  it('a failed verification rejects with an SSLError that keeps OpenSSL’s code, and leaks nothing', async () => {
    const [l, addr] = await tlsListener({ key: certs.rogueKey, cert: certs.rogueCert });
    const acceptor = spawn(() => l.accept());
    const e = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SSLError);
    expect(e).toBeInstanceOf(SocketError);
    expect((e as SSLError).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect((e as Error).message).toMatch(/self.signed/i);
    await acceptor.kill();
    l.close();
  });

  it('a name mismatch fails too (ERR_TLS_CERT_ALTNAME_INVALID)', async () => {
    const [l, addr] = await tlsListener();
    const e = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'example.org' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SSLError);
    expect((e as SSLError).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    l.close();
  });

  it('an untrusted CA fails by default; rejectUnauthorized: false lets it through', async () => {
    const [l, addr] = await tlsListener();
    const e = await wrapSsl(await connect(addr)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SSLError);
    expect((e as SSLError).code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const c = await wrapSsl(await connect(addr), { rejectUnauthorized: false });
    expect((c.raw as tls.TLSSocket).authorized).toBe(false);
    c.close();
    l.close();
  });

  it('client certificates: a server that requires one drops a client without, accepts one with', async () => {
    const [l, addr] = await tlsListener({ ca: certs.caCert, requestCert: true, rejectUnauthorized: true });
    const gt = spawn(async () => {
      const [c] = await l.accept();
      await c.sendall(`hi ${(c.raw as tls.TLSSocket).getPeerCertificate().subject.CN}`);
      c.close();
    });
    // without a certificate: TLS 1.3 completes the client's side, then the server's alert arrives
    const anon = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' }).catch((x: unknown) => x);
    if (anon instanceof GreenSocket) {
      await expect(anon.recv(10)).rejects.toBeInstanceOf(SSLError);
      anon.close();
    } else {
      expect(anon).toBeInstanceOf(SSLError);
    }
    const c = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost', key: certs.clientKey, cert: certs.clientCert });
    expect((await c.recv(100)).toString()).toBe('hi evy client');
    await gt.wait();
    c.close();
    l.close();
  });

  it('a server that does not speak TLS fails the handshake with an SSLError', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const t = spawn(async () => {
      const [c] = await l.accept();
      await c.recv(1 << 16);
      await c.sendall('HTTP/1.1 400 Bad Request\r\n\r\n');
      c.close();
    });
    const e = await wrapSsl(await connect(addr), { ca: certs.caCert }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SSLError);
    expect((e as SSLError).code).toMatch(/^ERR_SSL_/);
    await t.wait();
    l.close();
  });

  it('a plain-TCP client that never handshakes does not hold up accept', async () => {
    const [l, addr] = await tlsListener();
    const silent = await connect(addr); // never speaks TLS
    const acc = spawn(() => l.accept());
    const c = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' });
    const [s] = await acc.wait();
    await s.sendall('served');
    expect((await c.recv(10)).toString()).toBe('served');
    for (const x of [silent, c, s, l]) x.close();
  });

  it('a kill (or withTimeout) during the handshake destroys the socket', async () => {
    // a TCP server that accepts and never answers the ClientHello
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const holder = spawn(async () => {
      const [c] = await l.accept();
      try {
        await c.recv(1 << 20); // the ClientHello, then nothing
        await c.recv(1 << 20);
      } finally {
        c.close();
      }
    });
    const e = await withTimeout(0.1, async () => wrapSsl(await connect(addr), { ca: certs.caCert })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Timeout);
    await holder.wait(); // the holder saw the client go away
    const t = spawn(async () => wrapSsl(await connect(addr), { ca: certs.caCert }));
    const holder2 = spawn(async () => {
      const [c] = await l.accept();
      await c.recv(1 << 20);
      const end = await c.recv(1 << 20);
      c.close();
      return end.length;
    });
    await sleep(0.05);
    await t.kill();
    await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect(await holder2.wait()).toBe(0);
    l.close();
  });

  it('serverSide on an accepted connection: STARTTLS through serve, PEM or keyfile/certfile, per client', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const served: string[] = [];
    let n = 0;
    const server = spawn(serve, l, async (c: GreenSocket) => {
      const f = c.makefile('rw');
      await f.write('220 ready\r\n');
      await f.flush();
      expect(await f.readline()).toBe('STARTTLS\r\n');
      await f.write('220 go ahead\r\n');
      await f.flush();
      f.close();
      // odd clients get PEM strings, even ones the file paths
      const keys = n++ % 2 === 0 ? { key: certs.serverKey, cert: certs.serverCert } : { keyfile: certs.files.serverKey, certfile: certs.files.serverCert };
      const peer = c.getpeername();
      const s = await wrapSsl(c, { serverSide: true, ...keys });
      expect(s.raw).toBeInstanceOf(tls.TLSSocket);
      expect(s.getpeername()).toEqual(peer);
      const sf = s.makefile('r');
      const line = await sf.readline();
      sf.close();
      served.push(line);
      if (line === 'quit\n') {
        s.close();
        throw new StopServe();
      }
      await s.sendall(`secure ${line}`);
      s.close();
    });
    for (const word of ['one', 'two', 'quit']) {
      const plain = await connect(addr);
      const f = plain.makefile('rw');
      expect(await f.readline()).toBe('220 ready\r\n');
      await f.write('STARTTLS\r\n');
      await f.flush();
      expect(await f.readline()).toBe('220 go ahead\r\n');
      f.close();
      const c = await wrapSsl(plain, { ca: certs.caCert, servername: 'localhost' });
      expect((c.raw as tls.TLSSocket).authorized).toBe(true);
      await c.sendall(`${word}\n`);
      if (word !== 'quit') {
        const cf = c.makefile('r');
        expect((await cf.read()).toString()).toBe(`secure ${word}\n`);
        cf.close();
      }
      c.close();
    }
    await server.wait();
    expect(served).toEqual(['one\n', 'two\n', 'quit\n']);
    l.close();
  });

  it('serverSide on an accepted connection: a client that fails verification gets an SSLError naming why', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const cases = [
      // no CA given: the leaf cannot be checked against anything the client trusts
      { cert: certs.serverCert, client: {}, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
      // the server sends its CA along, which the client does not trust
      { cert: certs.serverCert + certs.caCert, client: {}, code: 'SELF_SIGNED_CERT_IN_CHAIN' },
      { cert: certs.rogueCert, key: certs.rogueKey, client: { ca: certs.caCert, servername: 'localhost' }, code: 'DEPTH_ZERO_SELF_SIGNED_CERT' },
    ];
    for (const k of cases) {
      const srv = spawn(async () => {
        const [c] = await l.accept();
        return wrapSsl(c, { serverSide: true, key: k.key ?? certs.serverKey, cert: k.cert }).catch((x: unknown) => x);
      });
      const e = await wrapSsl(await connect(addr), k.client).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(SSLError);
      expect((e as SSLError).code).toBe(k.code);
      // the server's side of the handshake fails too (the client's alert), it does not hang
      const se = await srv.wait();
      expect(se).toBeInstanceOf(SocketError);
      expect(se).not.toBeInstanceOf(GreenSocket);
    }
    l.close();
  });

  it('serverSide on an accepted connection with requestCert: a client without a certificate is refused', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const opts = { serverSide: true, key: certs.serverKey, cert: certs.serverCert, ca: certs.caCert, requestCert: true };
    const srv = spawn(async () => {
      const results: unknown[] = [];
      for (let i = 0; i < 2; i++) {
        const [c] = await l.accept();
        const s = await wrapSsl(c, opts).catch((x: unknown) => x);
        if (s instanceof GreenSocket) {
          results.push((s.raw as tls.TLSSocket).getPeerCertificate().subject.CN);
          await s.sendall('welcome');
          s.close();
        } else results.push(s);
      }
      return results;
    });
    const anon = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' }).catch((x: unknown) => x);
    if (anon instanceof GreenSocket) {
      // TLS 1.3: the client's side completes before the server has looked at its (missing) certificate
      expect((await anon.recv(10).catch((x: unknown) => x)) as Buffer).not.toEqual(Buffer.from('welcome'));
      anon.close();
    } else expect(anon).toBeInstanceOf(SSLError);
    const c = await wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost', key: certs.clientKey, cert: certs.clientCert });
    expect((await c.recv(100)).toString()).toBe('welcome');
    c.close();
    const [refused, cn] = await srv.wait();
    expect(refused).toBeInstanceOf(SSLError);
    expect((refused as SSLError).code).toMatch(/CERT|CERTIFICATE/);
    expect(cn).toBe('evy client');
    l.close();
  });

  it('serverSide on an accepted connection: a client that never handshakes is cut by withTimeout or settimeout', async () => {
    const l = await listen(['127.0.0.1', 0]);
    const addr = l.getsockname() as [string, number];
    const mute = await connect(addr);
    const [c] = await l.accept();
    const e = await withTimeout(0.1, () => wrapSsl(c, { serverSide: true, key: certs.serverKey, cert: certs.serverCert })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Timeout);
    expect((await mute.recv(10)).length).toBe(0); // the server side was destroyed
    mute.close();
    const mute2 = await connect(addr);
    const [c2] = await l.accept();
    c2.settimeout(0.1);
    await expect(wrapSsl(c2, { serverSide: true, key: certs.serverKey, cert: certs.serverCert })).rejects.toBeInstanceOf(SocketTimeout);
    mute2.close();
    l.close();
  });

  // Issue 20, item 1: a graceful close of a socket wrapped on the server side must reach the client
  // (close_notify, then FIN), whoever closes it: the handler, or serve when the handler returns.
  describe('serverSide on an accepted connection: the close reaches the client', () => {
    const keys = (): { serverSide: true; key: string; cert: string } => ({ serverSide: true, key: certs.serverKey, cert: certs.serverCert });
    /** Raw sockets the handlers had (the accepted TCP socket and the TLS socket over it), to check they closed. */
    let raws: (net.Socket | net.Server)[];
    beforeEach(() => {
      raws = [];
    });
    const allClosed = async (): Promise<void> => {
      for (let i = 0; i < 100 && raws.some((r) => !(r as net.Socket).destroyed); i++) await sleep(0.02);
      expect(raws.map((r) => (r as net.Socket).destroyed)).toEqual(raws.map(() => true));
    };
    /** serve with `handler` (after the wrap); a client that sends 'stop\n' ends it through StopServe. */
    const server = async (
      handler: (s: GreenSocket, line: string) => Promise<void>,
    ): Promise<[GreenSocket, [string, number], ReturnType<typeof spawn<[], void>>]> => {
      const l = await listen(['127.0.0.1', 0]);
      const addr = l.getsockname() as [string, number];
      const gt = spawn(serve, l, async (c: GreenSocket) => {
        const s = await wrapSsl(c, keys());
        raws.push(c.raw, s.raw);
        // read a line and leave the file open, as a handler written the Python way does
        const line: string = await s.makefile('r').readline();
        if (line === 'stop\n') throw new StopServe();
        await handler(s, line);
      }) as any;
      return [l, addr, gt];
    };
    const client = async (addr: [string, number]): Promise<GreenSocket> => wrapSsl(await connect(addr), { ca: certs.caCert, servername: 'localhost' });
    /** Ends serve through StopServe, waits for it to return and for the handlers' sockets to close; closes `l`. */
    const stop = async (l: GreenSocket, addr: [string, number], gt: { wait(): Promise<unknown> }): Promise<void> => {
      const c = await client(addr);
      await c.sendall('stop\n');
      expect((await c.recv(10)).length).toBe(0);
      c.close();
      await gt.wait(); // serve returned through StopServe
      await allClosed();
      l.close();
    };
    /** The client's next recv() after the reply: EOF, within a bound (the bug: it waited forever). */
    const eof = (c: GreenSocket): Promise<number> => withTimeout(5, () => c.recv(10)).then((b) => b.length);
    /** A client sends 'hello\n': it gets 'got hello\n' back, then EOF. */
    const expectReplyThenEof = async (addr: [string, number]): Promise<void> => {
      const c = await client(addr);
      await c.sendall('hello\n');
      expect((await c.recv(100)).toString()).toBe('got hello\n');
      expect(await eof(c)).toBe(0);
      c.close();
    };

    it('the handler reads a line, sendalls a reply and closes: the client gets the reply, then EOF', async () => {
      const [l, addr, gt] = await server(async (s, line) => {
        await s.sendall(`got ${line}`);
        s.close();
      });
      const c = await client(addr);
      await c.sendall('hello\n');
      const f = c.makefile('r');
      expect(await f.readline()).toBe('got hello\n');
      f.close();
      expect(await eof(c)).toBe(0);
      c.close();
      await stop(l, addr, gt);
    });

    it('a plain tls.connect client gets every byte of a large reply, then end', async () => {
      const data = payload(4 * 1024 * 1024);
      const [l, addr, gt] = await server(async (s) => {
        await s.sendall(data);
        s.close();
      });
      const t = tls.connect({ host: addr[0], port: addr[1], ca: certs.caCert, servername: 'localhost' });
      t.on('error', () => {});
      const got = await until(
        new Promise<[string, Buffer[]]>((resolve) => {
          const parts: Buffer[] = [];
          t.once('secureConnect', () => {
            t.write('send\n');
            // read slowly at first, so the server's close comes while its reply is still queued
            t.pause();
            setTimeout(() => t.resume(), 200);
          });
          t.on('data', (d: Buffer) => parts.push(d));
          t.on('end', () => resolve(['end', parts]));
          t.on('close', () => resolve(['close without end', parts]));
        }),
      );
      expect(got[0]).toBe('end');
      expect(sha(got[1])).toBe(sha(data));
      t.end();
      await stop(l, addr, gt);
    });

    it('a handler that returns without closing: serve closes the TLS socket gracefully', async () => {
      const [l, addr, gt] = await server(async (s, line) => {
        await s.sendall(`got ${line}`);
      });
      await expectReplyThenEof(addr);
      await stop(l, addr, gt);
    });

    it('shutdown(SHUT_WR) ends the TLS write side only: the client sees EOF, the server socket stays open', async () => {
      const [l, addr, gt] = await server(async (s, line) => {
        await s.sendall(`got ${line}`);
        s.shutdown(SHUT_WR);
        await expect(s.sendall('late')).rejects.toMatchObject({ code: 'EPIPE' });
        // not closed by its shutdown: the read side still works, and sees the client's own end
        expect((await s.recv(10)).length).toBe(0);
        s.close();
      });
      await expectReplyThenEof(addr);
      await stop(l, addr, gt);
    });

    it('a file of the plain socket closed after the wrap leaves the TLS connection alone', async () => {
      const l = await listen(['127.0.0.1', 0]);
      const addr = l.getsockname() as [string, number];
      const data = payload(1024 * 1024);
      const gt = spawn(serve, l, async (c: GreenSocket) => {
        const plainFile = c.makefile('rw');
        await plainFile.write('220 ready\r\n');
        await plainFile.flush();
        const s = await wrapSsl(c, keys());
        raws.push(c.raw, s.raw);
        await s.sendall(data);
        plainFile.close(); // a stale file: the connection is the TLS socket's now
        s.close();
        throw new StopServe();
      });
      const plain = await connect(addr);
      expect((await plain.recv(100)).toString()).toBe('220 ready\r\n');
      const c = await wrapSsl(plain, { ca: certs.caCert, servername: 'localhost' });
      const parts: Buffer[] = [];
      for (;;) {
        const b = await withTimeout(5, () => c.recv(65536));
        if (b.length === 0) break;
        parts.push(b);
      }
      expect(sha(parts)).toBe(sha(data));
      c.close();
      await gt.wait();
      await allClosed();
      l.close();
    });
  });

  it('errors: the old socket is unusable after wrapping; wrong sides are refused', async () => {
    const [l, addr] = await tlsListener();
    const plain = await connect(addr);
    const c = await wrapSsl(plain, { ca: certs.caCert, servername: 'localhost' });
    await expect(plain.recv(1)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(wrapSsl(plain)).rejects.toMatchObject({ code: 'EBADF' });
    const l2 = await listen(['127.0.0.1', 0]);
    await expect(wrapSsl(l2)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(wrapSsl(c, { serverSide: true })).rejects.toMatchObject({ code: 'EINVAL' }); // already TLS
    await expect(wrapSsl({} as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(net.isIP(addr[0])).toBe(4);
    for (const x of [c, l, l2]) x.close();
  });
});
