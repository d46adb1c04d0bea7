// The object GreenSocket.makefile() returns: Python's socket file (readline keeps the newline, read() to
// EOF, buffered write + flush). It reads from the socket's own buffer, so no byte is lost between recv()
// and file reads; text mode decodes UTF-8 without splitting a character across calls.
const { StringDecoder } = process.getBuiltinModule('string_decoder') as typeof import('node:string_decoder');
import { EvyError, illegalConstructor, invalidArgType } from '../errors.js';
import type { GreenSocket } from './socket.js';

const WRITE_BUFFER = 8192;
const kMake = Symbol('evy.SocketFile');

function fileClosed(): EvyError {
  return new EvyError('I/O operation on closed file', 'ERR_EVY_FILE_CLOSED');
}

export class SocketFile {
  readonly mode: string;
  private sock: GreenSocket;
  private binary: boolean;
  private decoder: InstanceType<typeof StringDecoder> | null;
  private wbuf: (Buffer | string)[] = [];
  private wlen = 0;
  private _closed = false;

  /** Made by GreenSocket.makefile(). */
  private constructor(token: symbol, sock: GreenSocket, mode: string) {
    if (token !== kMake) throw illegalConstructor('SocketFile', 'GreenSocket.makefile()');
    this.sock = sock;
    this.mode = mode;
    this.binary = mode.includes('b');
    this.decoder = this.binary ? null : new StringDecoder('utf8');
  }

  /** @internal */
  static _make(sock: GreenSocket, mode: string): SocketFile {
    return new SocketFile(kMake, sock, mode);
  }

  get closed(): boolean {
    return this._closed;
  }

  /** The socket this file reads and writes. */
  get socket(): GreenSocket {
    return this.sock;
  }

  private out(b: Buffer): any {
    return this.decoder === null ? b : this.decoder.write(b);
  }

  private end(): any {
    return this.decoder === null ? Buffer.alloc(0) : this.decoder.end();
  }

  /**
   * One line, with its trailing newline; at EOF the unterminated rest, then '' (or an empty Buffer).
   * `limit` bounds the bytes returned (a longer line comes back in pieces).
   */
  async readline(limit = -1): Promise<any> {
    if (typeof limit !== 'number') throw invalidArgType('limit', 'a number', limit);
    if (this._closed) throw fileClosed();
    const sock = this.sock;
    let scanned = 0;
    for (;;) {
      const have = sock._buffered;
      const nl = sock._indexOf(10, scanned);
      if (nl >= 0 && (limit < 0 || nl < limit)) return this.out(sock._take(nl + 1));
      if (limit >= 0 && have >= limit) return this.out(sock._take(limit));
      scanned = have;
      if (!(await sock._fill('SocketFile.readline'))) {
        return sock._buffered > 0 ? this.out(sock._take(sock._buffered)) : this.end();
      }
    }
  }

  /** Up to `n` bytes (fewer only at EOF); with no `n` (or a negative one), everything up to EOF. In text
   *  mode `n` counts bytes and a character is never split (the rest of it comes with the next read). */
  async read(n = -1): Promise<any> {
    if (typeof n !== 'number' || Number.isNaN(n)) throw invalidArgType('n', 'a number', n);
    if (this._closed) throw fileClosed();
    const sock = this.sock;
    if (n === 0) return this.binary ? Buffer.alloc(0) : '';
    for (;;) {
      if (n > 0 && sock._buffered >= n) return this.out(sock._take(n));
      if (!(await sock._fill('SocketFile.read'))) break;
    }
    const rest = sock._buffered > 0 ? sock._take(sock._buffered) : null;
    if (this.decoder === null) return rest ?? Buffer.alloc(0);
    return (rest === null ? '' : this.decoder.write(rest)) + this.decoder.end();
  }

  /** Buffers `data` (a string in text mode, a Buffer in binary mode); sends once 8 KiB are pending.
   *  Resolves the length written. */
  async write(data: string | Uint8Array): Promise<number> {
    if (this._closed) throw fileClosed();
    if (this.binary ? !(data instanceof Uint8Array) : typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw invalidArgType('data', this.binary ? 'a Buffer or Uint8Array (binary file)' : 'a string', data);
    }
    const b = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.wbuf.push(b);
    this.wlen += b.length;
    if (this.wlen >= WRITE_BUFFER) await this.flush();
    return typeof data === 'string' ? data.length : b.length;
  }

  /** Sends what write() buffered (waits on backpressure like sendall). */
  async flush(): Promise<void> {
    if (this._closed) throw fileClosed();
    if (this.wlen === 0) return;
    const parts = this.wbuf;
    const len = this.wlen;
    this.wbuf = [];
    this.wlen = 0;
    await this.sock._fileWrite(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts as Buffer[], len));
  }

  /** Flushes and closes the file; the socket really closes once it and all its files are closed. */
  async close(): Promise<void> {
    if (this._closed) return;
    try {
      if (this.wlen > 0) await this.flush();
    } finally {
      this._closed = true;
      this.sock._fileClosed();
    }
  }

  /** `await using f = sock.makefile()` flushes and closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Lines until EOF. */
  async *[Symbol.asyncIterator](): AsyncGenerator<any, void, undefined> {
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return;
      yield line;
    }
  }
}
