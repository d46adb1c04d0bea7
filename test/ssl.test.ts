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
  spawn,
  SSLError,
  StopServe,
  withTimeout,
  Timeout,
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

  it('errors: the old socket is unusable after wrapping; wrong sides are refused', async () => {
    const [l, addr] = await tlsListener();
    const plain = await connect(addr);
    const c = await wrapSsl(plain, { ca: certs.caCert, servername: 'localhost' });
    await expect(plain.recv(1)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(wrapSsl(plain)).rejects.toMatchObject({ code: 'EBADF' });
    const l2 = await listen(['127.0.0.1', 0]);
    await expect(wrapSsl(l2)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(wrapSsl(c, { serverSide: true })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(wrapSsl({} as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(net.isIP(addr[0])).toBe(4);
    for (const x of [c, l, l2]) x.close();
  });
});
