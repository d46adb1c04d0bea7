// wrapSsl: TLS over a connected GreenSocket (client side) or a listening one (server side).
import type net from 'node:net';
import type tls from 'node:tls';
import { netModule, tlsModule } from './builtins.js';
import { invalidArgType } from './errors.js';
import { GreenSocket, SocketError, _internal } from './socket.js';
import { until } from './until.js';
import { checkInterrupt } from './waiter.js';

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
 * `SSLError` carrying OpenSSL's code. Server side (`serverSide: true`, `sock` from `listen`): `accept()`
 * on the returned socket yields clients whose handshake has completed; handshakes run concurrently, so
 * a slow or bad client never holds up the accept loop (a failed one is dropped).
 */
export async function wrapSsl(sock: GreenSocket, opts: WrapSslOptions = {}): Promise<GreenSocket> {
  if (!(sock instanceof GreenSocket)) throw invalidArgType('sock', 'a GreenSocket', sock);
  if (opts === null || typeof opts !== 'object') throw invalidArgType('opts', 'an object', opts);
  if (sock.closed) throw new SocketError('wrapSsl: socket is closed', 'EBADF');
  const serverSide = opts.serverSide ?? opts.server_side ?? false;
  const options = await load(opts);
  checkInterrupt();
  if (serverSide) return wrapServer(sock, options);
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
  g._host = host;
  g.settimeout(timeout);
  await g._waitFor('secureConnect', 'wrapSsl.handshake');
  return g;
}

function absorb(): void {}

function wrapServer(sock: GreenSocket, options: tls.TlsOptions): GreenSocket {
  if (!(sock.raw instanceof netModule().Server)) throw new SocketError('wrapSsl: serverSide needs a listening socket (from listen)', 'EINVAL');
  const server = sock.raw;
  const timeout = sock.gettimeout();
  const pending = sock._takePending();
  sock._detach();
  // Half-open TCP under TLS leaks (a client that fails the handshake and leaves is never closed).
  (server as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = false;
  const tlsServer = tlsModule().createServer(options);
  const g = new GreenSocket(server);
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
