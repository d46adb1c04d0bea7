// GreenSocket: eventlet's blocking-style socket over a net.Socket / tls.TLSSocket / net.Server.
// Reads are pushed by 'data' into an internal buffer (paused above READ_HWM, so memory stays bounded) and
// pulled by recv(). Every wait is a Waiter of the core, so a kill or a Timeout rejects it; while a wait is
// outstanding the socket is owned by the waiting thread, and a kill destroys it.
import type net from 'node:net';
import type tls from 'node:tls';
import { netModule } from '../builtins.js';
import { brand, EvyError, invalidArgType, outOfRange, SocketTimeout } from '../errors.js';
import { type GreenThread } from '../greenthread.js';
import { disown, endSolo, own, owningThread, soloUse } from '../ownership.js';
import { current, rt } from '../runtime.js';
import { countError } from '../validate.js';
import { Waiter } from '../waiter.js';
import { orphanSocket } from './orphan.js';
import { SocketFile } from './socketfile.js';

/** Address of a TCP endpoint (`[host, port]`) or a Unix socket path. */
export type Address = [host: string, port: number] | string;
/** Address family: 4 (AF_INET), 6 (AF_INET6) or 'unix' (AF_UNIX); inferred from the address when omitted. */
export type Family = 4 | 6 | 'unix';

export const AF_INET = 4 as const;
export const AF_INET6 = 6 as const;
export const AF_UNIX = 'unix' as const;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/** Pause reading once this many unread bytes are buffered; resume when a reader drains below it. */
const READ_HWM = 128 * 1024;
const EMPTY = Buffer.alloc(0);
// One settled promise for every write that needs no wait: an allocation (and, with async hooks on,
// a hook call) saved per sendall. A fulfilled promise is immutable, so sharing it is safe.
const DONE: Promise<void> = Promise.resolve();
const kGreen = Symbol.for('evy.GreenSocket');

/**
 * A socket-level failure (eventlet's `socket.error`). `code` is Node's (`ECONNREFUSED`, `EADDRINUSE`,
 * `ECONNRESET`, `EPIPE`, `ENOTFOUND`...) or `EBADF` for an operation on a closed socket; the Node error,
 * when there is one, is the `cause`.
 */
export class SocketError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  address?: string;
  port?: number;
  constructor(message: string, code: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SocketError';
    this.code = code;
    if (cause !== null && typeof cause === 'object') {
      const c = cause as Record<string, unknown>;
      if (typeof c.errno === 'number') this.errno = c.errno;
      if (typeof c.syscall === 'string') this.syscall = c.syscall;
      if (typeof c.address === 'string') this.address = c.address;
      if (typeof c.port === 'number') this.port = c.port;
    }
  }
}
brand(SocketError, 'SocketError');

/** A TLS failure: handshake, certificate verification (`code` is OpenSSL's, e.g. `DEPTH_ZERO_SELF_SIGNED_CERT`). */
export class SSLError extends SocketError {
  constructor(message: string, code: string, cause?: unknown) {
    super(message, code, cause);
    this.name = 'SSLError';
  }
}
brand(SSLError, 'SSLError');

const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_|ERR_OSSL_)/;

/** @internal Node's error as a typed SocketError (code kept); evy's own errors pass through. */
export function toSocketError(e: unknown): Error {
  if (e instanceof SocketError) return e;
  const err = e as Error & { code?: unknown; library?: unknown };
  if (e === null || typeof e !== 'object' || typeof err.code !== 'string') {
    return e instanceof Error ? e : new SocketError(String(e), 'ERR_EVY_SOCKET', e);
  }
  // Argument errors (ERR_SOCKET_BAD_PORT, ERR_INVALID_ARG_TYPE) stay what Node made them.
  if (/^ERR_(SOCKET_BAD_PORT|INVALID_ARG|INVALID_IP|OUT_OF_RANGE)/.test(err.code)) return err;
  const Cls = TLS_CODE.test(err.code) || err.library !== undefined ? SSLError : SocketError;
  return new Cls(err.message, err.code, err);
}

function ebadf(what: string): SocketError {
  return new SocketError(`${what}: socket is closed`, 'EBADF');
}

function creatorThread(): GreenThread | null {
  const t = owningThread();
  return t === null || t.dead ? null : t;
}

/** An evy wait on a socket operation; it releases the socket's op slot however it ends. */
class OpWaiter<T> extends Waiter<T> {
  owner: GreenThread | null = null;
  constructor(
    thread: GreenThread,
    label: string,
    readonly sock: GreenSocket,
    readonly kind: number,
  ) {
    super(thread, label);
  }
  override interrupt(error: unknown): void {
    if (this.settled) return;
    this.sock._release(this);
    // A connect or handshake cut short leaves a half-made socket nobody else can reach.
    if (this.kind === CONNECT) this.sock._destroy(error);
    super.interrupt(error);
  }
}
const READ = 0;
const WRITE = 1;
const ACCEPT = 2;
const CONNECT = 3;

function opTimeout(w: Waiter<any>): void {
  const ow = w as OpWaiter<any>;
  ow.sock._release(ow);
  if (ow.kind === CONNECT) ow.sock._destroy(new SocketTimeout());
  ow.fail(new SocketTimeout());
}

function destroyOwned(gs: GreenSocket, error: unknown): void {
  if (!gs._isShared) gs._destroy(error);
}

/** Its creator, the only thread that used it, was killed while it sat idle: its private connection (net/orphan.ts). */
function orphanGreen(gs: GreenSocket): void {
  if (!gs._closed && !gs._isShared && !(gs.raw as net.Socket).destroyed) orphanSocket(gs.raw as net.Socket);
}

function concurrent(what: string, other: Waiter<any>): EvyError {
  return new EvyError(
    `second simultaneous ${what} on this socket (${other.thread.name} is already waiting): only one green thread may ${what} a socket at a time`,
    `ERR_EVY_CONCURRENT_${what.toUpperCase()}`,
  );
}

function wouldBlock(what: string): SocketError {
  return new SocketError(`${what}: resource temporarily unavailable (non-blocking socket)`, 'EAGAIN');
}

type RawSocket = net.Socket | tls.TLSSocket;
type Any = any;

export class GreenSocket {
  /** The wrapped `net.Socket`, `tls.TLSSocket` or (listening) `net.Server`. */
  readonly raw: RawSocket | net.Server;
  /** @internal */ _timeoutMs: number | undefined = undefined;
  /** @internal */ _closed = false;
  /** The thread that made this socket (connected, listened, wrapped or accepted it); null: the main thread. */
  private _creator: GreenThread | null = creatorThread();
  /** Another thread than its creator has waited on it: a kill never destroys it. */
  private _sharedUse = false;
  /** @internal */ _fileRefs = 0;
  /** @internal The host name it was connected to (wrapSsl's default servername). */
  _host: string | undefined = undefined;
  /** @internal Handed to wrapSsl: the raw socket is no longer ours. */
  _detached = false;
  /** @internal The socket wrapSsl made of this one (serve closes that one when the handler returns). */
  _successor: GreenSocket | null = null;
  private _listening: boolean;
  private _chunks: (Buffer | undefined)[] = [];
  private _head = 0;
  private _bufLen = 0;
  private _eof = false;
  private _err: Error | null = null;
  private _wrShut = false;
  private _rdShut = false;
  private _reader: OpWaiter<Buffer> | null = null;
  private _readN = 0;
  private _writer: OpWaiter<any> | null = null;
  private _acceptor: OpWaiter<GreenSocket> | null = null;
  private _pending: GreenSocket[] | null = null;
  private _peer: Address | null = null;
  private _local: Address | null = null;

  /** Wraps a connected socket, or a listening server. Keeps an 'error' listener on it for life. */
  constructor(raw: RawSocket | net.Server) {
    if (raw instanceof netModule().Server) {
      this.raw = raw;
      this._listening = true;
      this._pending = [];
      (raw as Any)[kGreen] = this;
      raw.on('connection', onConnection);
      raw.on('error', onServerError);
      raw.on('close', onServerClose);
    } else if (raw instanceof netModule().Socket) {
      this.raw = raw;
      this._listening = false;
      (raw as Any)[kGreen] = this;
      raw.on('error', onError);
      raw.on('end', onEnd);
      raw.on('close', onClose);
      raw.on('drain', onDrain);
      raw.on('data', onData);
      raw.resume(); // accepted with pauseOnConnect (or handed over paused): reading is ours now
      if (raw.destroyed) this._err = ebadf('GreenSocket');
      else if (this._creator !== null) soloUse(this, this._creator, orphanGreen);
    } else {
      throw invalidArgType('raw', 'a net.Socket, tls.TLSSocket or net.Server', raw);
    }
  }

  /** 'IPv4', 'IPv6' or 'unix'. */
  get family(): 'IPv4' | 'IPv6' | 'unix' {
    const a = this._listening ? (this.raw as net.Server).address() : null;
    if (a !== null && typeof a === 'object') return a.family === 'IPv6' ? 'IPv6' : 'IPv4';
    if (typeof a === 'string') return 'unix';
    const f = (this.raw as net.Socket).remoteFamily ?? (this.raw as net.Socket).localFamily;
    if (f === 'IPv6') return 'IPv6';
    if (f === 'IPv4') return 'IPv4';
    return 'unix';
  }

  /** True once `close()` was called (or the socket was wrapped by `wrapSsl`). */
  get closed(): boolean {
    return this._closed;
  }

  // ---- reading ------------------------------------------------------------------------------------

  /**
   * Up to `n` bytes, waiting for at least one; an empty Buffer at EOF. Throws `SocketTimeout` after the
   * socket's timeout, the typed error of a failed connection, `EBADF` on a closed socket.
   */
  recv(n = 65536): Promise<Buffer> {
    const bad = countError(n, 'n');
    if (bad !== undefined) return Promise.reject(bad);
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    if (this._closed) return Promise.reject(ebadf('recv'));
    const r = this._reader;
    // (a file's readline may be parked with part of a line buffered: that part is not ours to take)
    if (r !== null && !r.settled) return Promise.reject(concurrent('read', r));
    if (this._bufLen > 0) return Promise.resolve(this._take(n));
    const stop = this._readStop('recv');
    if (stop !== null) return stop;
    if (n === 0) return Promise.resolve(EMPTY);
    const w = new OpWaiter<Buffer>(t, 'GreenSocket.recv', this, READ);
    w.owner = this._ownFor(t);
    this._reader = w;
    this._readN = n;
    return w.park(null, this._timeoutMs, opTimeout);
  }

  /** Reads into `buffer` (up to `nbytes`, default its length); resolves the number of bytes, 0 at EOF. */
  async recvInto(buffer: Uint8Array, nbytes?: number): Promise<number> {
    if (!(buffer instanceof Uint8Array)) throw invalidArgType('buffer', 'a Buffer or Uint8Array', buffer);
    if (nbytes !== undefined) {
      const bad = countError(nbytes, 'nbytes');
      if (bad !== undefined) throw bad;
    }
    const n = nbytes === undefined || nbytes === 0 ? buffer.length : Math.min(nbytes, buffer.length);
    const data = await this.recv(n);
    buffer.set(data, 0);
    return data.length;
  }

  /** @internal Outcome of a read that finds nothing buffered, or null to wait. */
  _readStop(what: string): Promise<Buffer> | null {
    if (this._err !== null) return Promise.reject(this._err);
    if (this._closed && this._fileRefs === 0) return Promise.reject(ebadf(what));
    if (this._eof || this._rdShut) return Promise.resolve(EMPTY);
    if (this._listening) return Promise.reject(new SocketError(`${what}: socket is not connected (it is listening)`, 'ENOTCONN'));
    const r = this._reader;
    if (r !== null && !r.settled) return Promise.reject(concurrent('read', r));
    if (this._timeoutMs === 0) return Promise.reject(wouldBlock(what));
    return null;
  }

  /** @internal Unread bytes in the internal buffer. */
  get _buffered(): number {
    return this._bufLen;
  }

  /** @internal The first `n` buffered bytes (or fewer); the buffer must not be empty. */
  _take(n: number): Buffer {
    const chunks = this._chunks;
    const first = chunks[this._head]!;
    let out: Buffer;
    if (first.length > n) {
      chunks[this._head] = first.subarray(n);
      out = first.subarray(0, n);
    } else if (first.length === n || this._head + 1 === chunks.length) {
      chunks[this._head++] = undefined;
      out = first;
    } else {
      // Several small chunks: hand back as many as fit, in one Buffer.
      const parts: Buffer[] = [];
      let len = 0;
      while (this._head < chunks.length && len < n) {
        const c = chunks[this._head]!;
        if (len + c.length <= n) {
          parts.push(c);
          len += c.length;
          chunks[this._head++] = undefined;
        } else {
          parts.push(c.subarray(0, n - len));
          chunks[this._head] = c.subarray(n - len);
          len = n;
        }
      }
      out = Buffer.concat(parts, len);
    }
    this._bufLen -= out.length;
    if (this._head === chunks.length) {
      this._chunks = [];
      this._head = 0;
    }
    if (this._bufLen < READ_HWM && (this.raw as net.Socket).isPaused() && !this._eof && !this._closed) (this.raw as net.Socket).resume();
    return out;
  }

  /** @internal Index of the first `byte` in the buffer at or after `from`, or -1. */
  _indexOf(byte: number, from: number): number {
    let base = 0;
    const chunks = this._chunks;
    for (let i = this._head; i < chunks.length; i++) {
      const c = chunks[i]!;
      if (from < base + c.length) {
        const j = c.indexOf(byte, Math.max(0, from - base));
        if (j >= 0) return base + j;
      }
      base += c.length;
    }
    return -1;
  }

  /** @internal Waits until the buffer grows (resolves true) or EOF (false), for makefile reads. */
  _fill(what: string): Promise<boolean> {
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    const stop = this._readStop(what);
    if (stop !== null) return stop.then(() => false);
    const raw = this.raw as net.Socket;
    if (raw.isPaused()) raw.resume(); // a reader that wants more (a long line) may exceed the mark
    const w = new OpWaiter<Buffer>(t, what, this, READ);
    w.owner = this._ownFor(t);
    this._reader = w;
    this._readN = 0; // 0: keep the data in the buffer
    return w.park(null, this._timeoutMs, opTimeout).then((b) => b.length > 0 || this._bufLen > 0);
  }

  /** @internal */
  _onData(chunk: Buffer): void {
    if ((this._closed && this._fileRefs === 0) || this._rdShut) return;
    const r = this._reader;
    if (r !== null && this._bufLen === 0 && chunk.length <= this._readN) {
      this._reader = null;
      if (r.owner !== null) this._disown(r.owner);
      r.wake(chunk); // the common case: straight to the waiting reader, no copy
      return;
    }
    this._chunks.push(chunk);
    this._bufLen += chunk.length;
    if (r !== null) {
      this._reader = null;
      if (r.owner !== null) this._disown(r.owner);
      r.wake(this._readN === 0 ? chunk : this._take(this._readN));
    }
    if (this._bufLen >= READ_HWM) (this.raw as net.Socket).pause();
  }

  /** @internal */
  _onEnd(): void {
    this._eof = true;
    const r = this._reader;
    if (r !== null) {
      this._release(r);
      r.wake(EMPTY);
    }
  }

  // ---- writing ------------------------------------------------------------------------------------

  /** Sends all of `data` (Buffer, Uint8Array or UTF-8 string); resolves once Node's write buffer is below
   *  its high-water mark again (backpressure). Data queued before a `close()` is still delivered. */
  sendall(data: Uint8Array | string): Promise<void> {
    return this._write(data, 'sendall', false, 'GreenSocket.sendall');
  }

  /** @internal sendall for a makefile() file (which may outlive the socket's close()). */
  _fileWrite(data: Uint8Array | string): Promise<void> {
    return this._write(data, 'write', true, 'SocketFile.flush');
  }

  private _write(data: Uint8Array | string, what: string, viaFile: boolean, label: string): Promise<void> {
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    const stop = this._writeStop(data, what, viaFile);
    if (stop !== null) return stop;
    const raw = this.raw as net.Socket;
    // write() says false for a write of >= highWaterMark bytes even when the kernel took it all at once
    // (writableLength is back to 0): wait only while Node really holds a full buffer.
    if (raw.write(data) || raw.writableLength < raw.writableHighWaterMark) return DONE;
    if (this._timeoutMs === 0) return DONE; // queued; a non-blocking socket does not wait
    return this._waitDrain(t, label);
  }

  /** Sends `data`; resolves its length in bytes (like Evy, never a short count). */
  send(data: Uint8Array | string): Promise<number> {
    const n = typeof data === 'string' ? Buffer.byteLength(data) : (data as Uint8Array)?.length;
    return this.sendall(data).then(() => n);
  }

  /** @internal Why a write cannot proceed (as a rejected promise), or null. */
  _writeStop(data: unknown, what: string, viaFile: boolean): Promise<never> | null {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) {
      return Promise.reject(invalidArgType('data', 'a Buffer, Uint8Array or string', data));
    }
    if (this._err !== null) return Promise.reject(this._err);
    if (this._closed && (!viaFile || this._fileRefs === 0)) return Promise.reject(ebadf(what));
    if (this._listening) return Promise.reject(new SocketError(`${what}: socket is not connected (it is listening)`, 'ENOTCONN'));
    if (this._wrShut || (this.raw as net.Socket).writableEnded || (this.raw as net.Socket).destroyed) {
      return Promise.reject(new SocketError(`${what}: the write side is shut down`, 'EPIPE'));
    }
    const w = this._writer;
    if (w !== null && !w.settled) return Promise.reject(concurrent('write', w));
    if (this._timeoutMs === 0 && (this.raw as net.Socket).writableNeedDrain) return Promise.reject(wouldBlock(what));
    return null;
  }

  private _waitDrain(t: GreenThread, label: string): Promise<void> {
    const w = new OpWaiter<void>(t, label, this, WRITE);
    w.owner = this._ownFor(t);
    this._writer = w;
    return w.park(null, this._timeoutMs, opTimeout);
  }

  /** @internal */
  _onDrain(): void {
    const w = this._writer;
    if (w !== null && w.kind === WRITE) {
      this._release(w);
      w.wake(undefined);
    }
  }

  // ---- listening sockets ---------------------------------------------------------------------------

  /** Waits for a connection on a listening socket: `[client, address]`. */
  accept(): Promise<[GreenSocket, Address]> {
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) return Promise.reject(e);
    if (!this._listening) return Promise.reject(new SocketError('accept: socket is not listening', 'EINVAL'));
    const q = this._pending!;
    if (q.length > 0) return this._handOver(t, Promise.resolve(q.shift()!));
    if (this._err !== null) return Promise.reject(this._err);
    if (this._closed) return Promise.reject(ebadf('accept'));
    const a = this._acceptor;
    if (a !== null && !a.settled) return Promise.reject(concurrent('accept', a));
    if (this._timeoutMs === 0) return Promise.reject(wouldBlock('accept'));
    const w = new OpWaiter<GreenSocket>(t, 'GreenSocket.accept', this, ACCEPT);
    w.owner = this._ownFor(t);
    this._acceptor = w;
    return this._handOver(t, w.park(null, this._timeoutMs, opTimeout));
  }

  /**
   * The connection `accepted` gives `t`. A kill or Timeout that lands after it was taken but before `t`
   * resumes: `t` will not live to use or close it, so it goes back to the front of the queue for the next
   * accept(), not a byte lost. Until `t`'s first operation on it, a kill of `t` destroys it.
   */
  private _handOver(t: GreenThread, accepted: Promise<GreenSocket>): Promise<[GreenSocket, Address]> {
    return accepted.then((c) => {
      const late = t._takeInterrupt();
      if (late !== undefined) {
        this._onConnection(c, true); // to an accept() already waiting, else first in the queue
        throw late;
      }
      c._acceptedBy(t);
      return [c, c._peer ?? ''];
    });
  }

  /** @internal A new connection (already wrapped); `first`: one handed back, ahead of the queue. */
  _onConnection(c: GreenSocket, first = false): void {
    if (this._closed) {
      c._destroy(undefined);
      return;
    }
    const a = this._acceptor;
    if (a !== null) {
      this._release(a);
      a.wake(c);
    } else if (first) {
      this._pending!.unshift(c);
    } else {
      this._pending!.push(c);
    }
  }

  /** @internal The running acceptor, so that `serve` can stop it. */
  get _acceptWaiter(): Waiter<any> | null {
    return this._acceptor;
  }

  /** @internal Connections accepted by Node and not yet by accept(). */
  _takePending(): GreenSocket[] {
    const q = this._pending ?? [];
    this._pending = [];
    return q;
  }

  // ---- connecting (used by connect and wrapSsl) ----------------------------------------------------

  /** @internal Waits for `event` on the raw socket ('connect', 'secureConnect'). A kill, a Timeout or a
   *  failure destroys the socket: the caller never got it. */
  _waitFor(event: string, label: string): Promise<void> {
    const t = current();
    const e = t._takeInterrupt();
    if (e !== undefined) {
      this._destroy(e);
      return Promise.reject(e);
    }
    if (this._err !== null) {
      this._destroy(undefined);
      return Promise.reject(this._err);
    }
    const w = new OpWaiter<void>(t, label, this, CONNECT);
    w.owner = this._ownFor(t);
    this._writer = w;
    (this.raw as net.Socket).once(event, () => {
      if (this._writer === w) {
        this._release(w);
        w.wake(undefined);
      }
    });
    return w.park(null, this._timeoutMs, opTimeout).then(() => {
      // The event came, but a kill (or Timeout) landed before the thread resumed: the caller will not
      // live to use (or close) the socket or server it asked for, so it must not outlive the call.
      const late = t._takeInterrupt();
      if (late !== undefined) {
        this._destroy(late);
        throw late;
      }
    });
  }

  // ---- errors and the end of the socket ------------------------------------------------------------

  /** @internal */
  _onError(e: unknown): void {
    if (this._err !== null) return; // after a close or a kill, errors of the destruction are absorbed
    const err = toSocketError(e);
    this._err = err;
    this._failAll(err, null);
  }

  /** @internal The raw socket closed (after an error, a destroy, or both ends finished). */
  _onClose(): void {
    if (this._err === null && !this._eof) {
      // Destroyed under us with no error: later reads and writes see a closed socket.
      this._err = ebadf('GreenSocket');
    }
    this._failAll(this._err ?? ebadf('GreenSocket'), null);
  }

  /** @internal Fails every outstanding op. A waiter of the thread whose kill caused this gets its kill error. */
  _failAll(err: unknown, killError: unknown): void {
    for (const w of [this._reader, this._writer, this._acceptor]) {
      if (w === null || w.settled) continue;
      // The killed thread's own wait is rejected by its kill, with the kill error.
      if (killError !== null && w.thread._killError === killError) continue;
      this._release(w);
      w.fail(err);
    }
  }

  /** @internal Destroys the raw socket at once (a kill, an abandoned connect). Never emits an unhandled error. */
  _destroy(error: unknown): void {
    if (this._creator !== null) this._forget(this._creator);
    const first = this._err === null;
    if (first) {
      this._err =
        error === undefined
          ? ebadf('GreenSocket')
          : new SocketError(`socket destroyed (${(error as Error)?.name ?? 'error'}: ${(error as Error)?.message ?? String(error)})`, 'EBADF', error);
    }
    this._failAll(this._err, error ?? null);
    if (this._listening) {
      const srv = this.raw as net.Server;
      closeServer(srv);
      for (const c of this._takePending()) c._destroy(undefined);
    } else {
      const raw = this.raw as net.Socket;
      if (!raw.destroyed) raw.destroy(error instanceof Error ? error : undefined);
    }
  }

  /** Closes the socket. Data already handed to `send`/`sendall` is still delivered (a graceful end);
   *  threads waiting on it get `EBADF`. With files from `makefile()` open, the close waits for them. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    if (this._creator !== null) this._forget(this._creator);
    if (this._fileRefs > 0) return;
    this._finalClose();
  }

  /** `using sock = await connect(...)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Closes now, even with makefile() files open (serve's end of a handler). */
  _closeNow(): void {
    if (this._detached) {
      // The handler wrapped its client (STARTTLS): what is left to close is the TLS socket.
      this._fileRefs = 0;
      this._successor?._closeNow();
      return;
    }
    const wasOpen = !this._closed || this._fileRefs > 0;
    this._closed = true;
    this._fileRefs = 0;
    if (wasOpen) this._finalClose();
  }

  /** @internal */
  _finalClose(): void {
    const err = ebadf('GreenSocket');
    this._failAll(err, null);
    this._chunks = [];
    this._head = this._bufLen = 0;
    // A file of a socket wrapSsl took over, closed late: the raw socket carries TLS now, not ours to end.
    if (this._detached) return;
    if (this._listening) {
      const srv = this.raw as net.Server;
      closeServer(srv);
      for (const c of this._takePending()) c._destroy(undefined);
      return;
    }
    const raw = this.raw as net.Socket;
    if (raw.destroyed) return;
    if (raw.writableFinished || this._err !== null || raw.connecting) {
      raw.destroy();
    } else {
      // Flush what sendall queued, send FIN, then release the handle (like close(2) after the data).
      raw.once('finish', destroySoon);
      if (!raw.writableEnded) raw.end();
      raw.resume(); // unread incoming data must not hold the socket open
    }
  }

  /**
   * Shuts down one or both halves: `SHUT_RD` (0: later reads give EOF), `SHUT_WR` (1: sends FIN after
   * the queued data; later sends fail with EPIPE), `SHUT_RDWR` (2, default).
   */
  shutdown(how: number = SHUT_RDWR): void {
    if (how !== SHUT_RD && how !== SHUT_WR && how !== SHUT_RDWR) throw outOfRange('how', 'SHUT_RD (0), SHUT_WR (1) or SHUT_RDWR (2)', how);
    if (this._closed) throw ebadf('shutdown');
    if (this._listening) throw new SocketError('shutdown: socket is not connected', 'ENOTCONN');
    const raw = this.raw as net.Socket;
    if (how !== SHUT_WR) {
      this._chunks = [];
      this._head = this._bufLen = 0;
      this._rdShut = true;
      this._onEnd();
      raw.resume();
    }
    if (how !== SHUT_RD) {
      this._wrShut = true;
      if (!raw.writableEnded && !raw.destroyed) raw.end();
    }
  }

  // ---- options and addresses -----------------------------------------------------------------------

  /** `null`: blocking (default); `0`: non-blocking (a wait throws `EAGAIN`); else seconds before `SocketTimeout`. */
  settimeout(seconds: number | null): void {
    if (seconds === null || seconds === undefined) {
      this._timeoutMs = undefined;
      return;
    }
    if (typeof seconds !== 'number') throw invalidArgType('seconds', 'a number or null', seconds);
    if (!(seconds >= 0) || seconds === Infinity) throw outOfRange('seconds', 'a finite number >= 0, or null', seconds);
    this._timeoutMs = seconds * 1000;
  }

  /** The timeout in seconds, or null for a blocking socket. */
  gettimeout(): number | null {
    return this._timeoutMs === undefined ? null : this._timeoutMs / 1000;
  }

  /** `setblocking(true)` is `settimeout(null)`, `setblocking(false)` is `settimeout(0)`. */
  setblocking(flag: boolean): void {
    this.settimeout(flag ? null : 0);
  }

  /** The remote address: `[host, port]`, or the path for a Unix socket. */
  getpeername(): Address {
    if (this._closed) throw ebadf('getpeername');
    if (this._listening) throw new SocketError('getpeername: socket is not connected', 'ENOTCONN');
    const p = this._peer ?? this._readPeer();
    if (p === null) throw new SocketError('getpeername: socket is not connected', 'ENOTCONN');
    return p;
  }

  /** The local address: `[host, port]`, or the path for a Unix socket. */
  getsockname(): Address {
    if (this._closed) throw ebadf('getsockname');
    if (this._local !== null) return this._local;
    if (this._listening) {
      const a = (this.raw as net.Server).address();
      if (a === null) throw new SocketError('getsockname: socket is not bound', 'EINVAL');
      return (this._local = typeof a === 'string' ? a : [a.address, a.port]);
    }
    const raw = this.raw as net.Socket;
    if (raw.localAddress !== undefined) return (this._local = [raw.localAddress, raw.localPort!]);
    return '';
  }

  /** @internal */
  _readPeer(): Address | null {
    const raw = this.raw as net.Socket;
    const host = raw.remoteAddress;
    if (host !== undefined) return (this._peer = [host, raw.remotePort!]);
    return null;
  }

  /** @internal Addresses known from elsewhere (a Unix path). */
  _setAddrs(peer: Address | null, local: Address | null): void {
    if (peer !== null) this._peer = peer;
    if (local !== null) this._local = local;
  }

  /**
   * A file-like object over the socket (Python's `makefile`): `'r'`/`'w'`/`'rw'` give strings (UTF-8),
   * add `'b'` for Buffers. It shares the socket's buffer; the socket really closes when both it and
   * every file made from it are closed.
   */
  makefile(mode = 'r'): SocketFile {
    if (typeof mode !== 'string' || !/^[rwb+]+$/.test(mode)) throw outOfRange('mode', "a combination of 'r', 'w', 'b', '+'", mode);
    if (this._closed) throw ebadf('makefile');
    this._fileRefs++;
    return SocketFile._make(this, mode);
  }

  /** @internal A makefile() file closed. */
  _fileClosed(): void {
    if (this._fileRefs > 0 && --this._fileRefs === 0 && this._closed) this._finalClose();
  }

  /** @internal Detaches from the raw socket (wrapSsl takes it over). */
  _detach(): void {
    this._detached = true;
    const raw = this.raw as Any;
    if (this._listening) {
      raw.off('connection', onConnection);
      raw.off('close', onServerClose);
      raw.off('error', onServerError); // the GreenSocket that takes the server over adds its own
    } else {
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      raw.off('drain', onDrain);
      raw.pause();
      // Bytes read ahead go back to the stream, where the TLS layer picks them up.
      for (let i = this._chunks.length - 1; i >= this._head; i--) raw.unshift(this._chunks[i]);
      this._chunks = [];
      this._head = this._bufLen = 0;
    }
    // The 'error' listener stays: nothing evy created may crash the process with an unhandled 'error'.
    raw[kGreen] = undefined;
    if (this._creator !== null) endSolo(this, this._creator);
    this._err = new SocketError('socket was wrapped by wrapSsl: use the socket it returned', 'EBADF');
    this._failAll(this._err, null);
    this._closed = true;
  }

  /** @internal accept() handed this connection to `t`: the thread that accepted it made it, and owns it. */
  _acceptedBy(t: GreenThread): void {
    this._creator = t === rt.main || t.dead ? null : t;
    if (this._creator !== null) {
      own(this, destroyOwned, t);
      soloUse(this, t, orphanGreen);
    }
  }

  /** @internal It is closed: no thread owns it, or will find it an orphan. */
  _forget(creator: GreenThread): void {
    disown(this, creator);
    endSolo(this, creator);
  }

  /** @internal */
  get _isShared(): boolean {
    return this._sharedUse;
  }

  /**
   * @internal A wait of `t` on this socket: it owns the socket (a kill destroys it) only if it made it and no
   * other thread has used it. An interrupted wait on a socket another thread made (a Timeout around a recv
   * on an accepted connection), or on one several threads share, is just an interrupted wait: the socket
   * stays open and keeps every byte.
   */
  _ownFor(t: GreenThread): GreenThread | null {
    if (t === this._creator && !this._sharedUse) return own(this, destroyOwned, t);
    if (t !== rt.main && !this._sharedUse) {
      this._sharedUse = true;
      if (this._creator !== null) endSolo(this, this._creator);
    }
    return null;
  }

  /** @internal Ends `owner`'s ownership unless it still has another op outstanding here. */
  _disown(owner: GreenThread): void {
    const r = this._reader;
    const w = this._writer;
    const a = this._acceptor;
    if ((r !== null && r.owner === owner) || (w !== null && w.owner === owner) || (a !== null && a.owner === owner)) return;
    disown(this, owner);
  }

  /** @internal An op ended (woken, failed, timed out, interrupted). */
  _release(w: OpWaiter<any>): void {
    if (this._reader === w) this._reader = null;
    else if (this._writer === w) this._writer = null;
    else if (this._acceptor === w) this._acceptor = null;
    if (w.owner !== null) this._disown(w.owner);
  }
}

// Shared listeners (no closure per socket: 10,000 idle connections should cost little).
function onData(this: Any, chunk: Buffer): void {
  this[kGreen]?._onData(chunk);
}
function onEnd(this: Any): void {
  this[kGreen]?._onEnd();
}
function onClose(this: Any): void {
  this[kGreen]?._onClose();
}
function onDrain(this: Any): void {
  this[kGreen]?._onDrain();
}
function onError(this: Any, e: unknown): void {
  this[kGreen]?._onError(e);
}
/** Closes a server, also one whose listen() is still resolving its host (a kill can land then). */
function closeServer(srv: net.Server): void {
  if (!srv.listening) srv.once('listening', () => srv.close());
  srv.close();
}

function destroySoon(this: net.Socket): void {
  this.destroy();
}
function onConnection(this: Any, raw: net.Socket): void {
  const gs: GreenSocket | undefined = this[kGreen];
  const c = new GreenSocket(raw);
  if (gs === undefined) {
    c._destroy(undefined);
    return;
  }
  const local = gs.raw instanceof netModule().Server ? gs.raw.address() : null;
  if (typeof local === 'string') c._setAddrs('', local);
  else c._readPeer();
  gs._onConnection(c);
}
function onServerError(this: Any, e: unknown): void {
  this[kGreen]?._onError(e);
}
function onServerClose(this: Any): void {
  const gs: GreenSocket | undefined = this[kGreen];
  if (gs !== undefined && !gs.closed) gs._onClose();
}

/** @internal Hooks wrapSsl uses to feed a TLS server's secure connections into a listening GreenSocket. */
export const _internal = { kGreen, onConnection };
