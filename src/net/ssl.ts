// wrapSsl: TLS over a connected GreenSocket (client side) or a listening one (server side).
import type net from 'node:net';
import type tls from 'node:tls';
import { netModule, tlsModule } from '../builtins.js';
import { invalidArgType, SocketTimeout } from '../errors.js';
import { disown, own } from '../ownership.js';
import { GreenSocket, SocketError, SSLError, toSocketError, _internal } from './socket.js';
import { until } from '../until.js';
import { checkInterrupt } from '../waiter.js';

export interface WrapSslOptions extends Omit<tls.ConnectionOptions & tls.TlsOptions, 'socket'> {
  /** PEM private key / certificate chain (or give `keyfile` / `certfile` paths). */
  key?: string | Buffer;
  cert?: string | Buffer;
  keyfile?: string;
  certfile?: string;
  /** PEM CA certificate(s) to trust (or `cafile`, Python's `ca_certs`). */
  ca?: string | Buffer | (string | Buffer)[];
  cafile?: string;
  ca_certs?: string;
  serverSide?: boolean;
  server_side?: boolean;
  /** SNI and the name the server certificate must match (client side); defaults to the host connected to. */
  servername?: string;
  /** Client side: default true (a certificate that does not verify fails the handshake with an SSLError). */
  rejectUnauthorized?: boolean;
}

async function load(opts: WrapSslOptions): Promise<tls.ConnectionOptions & tls.TlsOptions> {
  const {
    keyfile,
    certfile,
    cafile,
    ca_certs,
    serverSide: _s,
    server_side: _s2,
    ...rest
  } = opts;
  const out: tls.ConnectionOptions & tls.TlsOptions = { ...rest };
  const { readFile } = process.getBuiltinModule('fs/promises') as typeof import('node:fs/promises');
  const read = (p: string): Promise<Buffer> => until(readFile(p));
  if (keyfile !== undefined && out.key === undefined) out.key = await read(keyfile);
  if (certfile !== undefined && out.cert === undefined) out.cert = await read(certfile);
  const caPath = cafile ?? ca_certs;
  if (caPath !== undefined && out.ca === undefined) out.ca = await read(caPath);
  return out;
}

/**
 * Wraps `sock` in TLS and returns the new GreenSocket (the old one must not be used any more).
 * Client side (`sock` from `connect`): performs the handshake; a failed verification rejects with an
 * `SSLError` carrying OpenSSL's code. Server side (`serverSide: true`) on a listening socket (from
 * `listen`): `accept()` on the returned socket yields clients whose handshake has completed; handshakes
 * run concurrently, so a slow or bad client never holds up the accept loop (a failed one is dropped).
 * Server side on a connected socket (from `accept()`, e.g. after a STARTTLS exchange in plaintext):
 * performs the server's handshake on it; a failed one rejects with an `SSLError`.
 */
export async function wrapSsl(sock: GreenSocket, opts: WrapSslOptions = {}): Promise<GreenSocket> {
  if (!(sock instanceof GreenSocket)) throw invalidArgType('sock', 'a GreenSocket', sock);
  if (opts === null || typeof opts !== 'object') throw invalidArgType('opts', 'an object', opts);
  if (sock.closed) throw new SocketError('wrapSsl: socket is closed', 'EBADF');
  const serverSide = opts.serverSide ?? opts.server_side ?? false;
  const options = await load(opts);
  checkInterrupt();
  if (serverSide) return sock.raw instanceof netModule().Server ? wrapServer(sock, options) : wrapAccepted(sock, options);
  if (sock.raw instanceof netModule().Server) throw new SocketError('wrapSsl: a listening socket needs serverSide: true', 'EINVAL');

  const raw = sock.raw as net.Socket;
  const host = sock._host;
  if (options.servername === undefined && host !== undefined && netModule().isIP(host) === 0) options.servername = host;
  const timeout = sock.gettimeout();
  sock._detach();
  // Half-open TCP under TLS leaks: a peer that fails the handshake and leaves would never be closed.
  raw.allowHalfOpen = false;
  const t = tlsModule().connect({ ...options, socket: raw });
  const g = new GreenSocket(t);
  sock._successor = g;
  g._host = host;
  g.settimeout(timeout);
  await g._waitFor('secureConnect', 'wrapSsl.handshake');
  return g;
}

function absorb(): void {}

/** The server side of the handshake on an already connected socket (STARTTLS, SSLRequest, a per-client wrap). */
async function wrapAccepted(sock: GreenSocket, options: tls.TlsOptions): Promise<GreenSocket> {
  const tlsm = tlsModule();
  if (sock.raw instanceof tlsm.TLSSocket) throw new SocketError('wrapSsl: the socket already speaks TLS', 'EINVAL');
  const raw = sock.raw as net.Socket;
  const reject = options.rejectUnauthorized !== false;
  const timeout = sock.gettimeout();
  // A tls.Server that never listens runs the handshake: it is what checks the client's certificate
  // (a bare server-side TLSSocket never sets `authorized`). Built before the socket is detached, so
  // options that do not parse (a bad key) leave the plain socket usable.
  let tlsServer: tls.Server;
  try {
    tlsServer = tlsm.createServer({
      ...options,
      rejectUnauthorized: false, // decided below, so the refusal carries OpenSSL's reason
      ...(timeout !== null ? { handshakeTimeout: Math.max(1, Math.round(timeout * 1000)) } : {}),
    });
  } catch (e) {
    throw toSocketError(e);
  }
  sock._detach();
  raw.allowHalfOpen = false; // half-open TCP under TLS leaks (see wrapSsl)
  raw.on('error', absorb); // the TLS socket reports; the TCP socket under it must never crash the process
  const handshake = new Promise<tls.TLSSocket>((resolve, fail) => {
    tlsServer.once('secureConnection', resolve);
    tlsServer.once('tlsClientError', (err: Error & { code?: string }, t: tls.TLSSocket) => {
      t.destroy();
      fail(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? new SocketTimeout() : toSocketError(err));
    });
    raw.once('close', () => fail(new SSLError('wrapSsl: the peer closed the connection during the handshake', 'ECONNRESET')));
  });
  tlsServer.on('error', absorb);
  // Owned for the handshake: a kill or Timeout of this thread destroys the connection.
  const owner = own(raw, destroyRaw);
  tlsServer.emit('connection', raw);
  let t: tls.TLSSocket;
  try {
    t = await until(handshake);
  } catch (e) {
    raw.destroy();
    throw e;
  } finally {
    disown(raw, owner);
    tlsServer.removeAllListeners();
  }
  if (options.requestCert === true && reject && !t.authorized) {
    const code = String(t.authorizationError ?? 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
    t.destroy();
    throw new SSLError(`wrapSsl: client certificate rejected (${code})`, code);
  }
  const g = new GreenSocket(t);
  sock._successor = g; // serve closes its client: that is this socket now
  g.settimeout(timeout);
  g._readPeer();
  return g;
}

function destroyRaw(raw: net.Socket, error: unknown): void {
  raw.destroy(error instanceof Error ? error : undefined);
}

function wrapServer(sock: GreenSocket, options: tls.TlsOptions): GreenSocket {
  const server = sock.raw;
  const timeout = sock.gettimeout();
  const pending = sock._takePending();
  sock._detach();
  // Half-open TCP under TLS leaks (a client that fails the handshake and leaves is never closed).
  (server as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = false;
  const tlsServer = tlsModule().createServer(options);
  const g = new GreenSocket(server);
  sock._successor = g;
  g.settimeout(timeout);
  // Connections go through the TLS server (which runs the handshake) before they reach accept().
  server.off('connection', _internal.onConnection);
  server.on('connection', (c: net.Socket) => {
    c.on('error', absorb); // the TLS socket reports; the TCP socket under it must never crash the process
    tlsServer.emit('connection', c);
  });
  server.once('close', () => tlsServer.removeAllListeners());
  tlsServer.on('secureConnection', (c: tls.TLSSocket) => {
    const gs = new GreenSocket(c);
    gs._readPeer();
    g._onConnection(gs);
  });
  tlsServer.on('tlsClientError', (_err: Error, c: tls.TLSSocket) => c.destroy());
  tlsServer.on('error', absorb); // the listening socket's errors reach g through the net.Server
  for (const c of pending) {
    c._detach();
    (c.raw as net.Socket).allowHalfOpen = false;
    tlsServer.emit('connection', c.raw);
  }
  return g;
}
