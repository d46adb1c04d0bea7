// evy.backdoor: eventlet's backdoor, the Node way: a node:repl session per connection, over a GreenSocket,
// each in its own green thread, for inspecting a live process (thread dump, evy namespace, your own locals).
import { netModule } from './builtins.js';
import type repl from 'node:repl';
const { inspect } = process.getBuiltinModule('util') as typeof import('node:util');
import { listen, serve } from './net/convenience.js';
import { formatHub, formatThreads, trackThreads } from './debug/index.js';
import { EvyError, GreenletExit, invalidArgType } from './errors.js';
import { getcurrent, spawn, type GreenThread } from './greenthread.js';
import { unowned } from './ownership.js';
import { type Address, type GreenSocket, SocketError } from './net/socket.js';

export interface BackdoorOptions {
  /** Allow a bind on an address other than loopback or a Unix socket. Anyone who can connect runs code in your process. */
  allowRemote?: boolean;
  /** Extra names in each session's context (your app's objects). */
  locals?: Record<string, unknown>;
  /** Default 'evy> '. */
  prompt?: string;
  /** Turn on `evy.debug.trackThreads()` so the dump lists every thread spawned from now on (default true). */
  trackThreads?: boolean;
}

const BANNER = 'evy backdoor: `evy` is the evy namespace, `threads()` / `.threads` print the thread dump, `hub()` what the event loop waits on, `.exit` ends the session.\n';

/** Longest input line a session accepts (bytes). */
const MAX_LINE = 1 << 20;

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const v = netModule().isIP(host);
  if (v === 4) return host.startsWith('127.');
  if (v === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

function checkAddr(addr: unknown, allowRemote: boolean): Address {
  if (typeof addr === 'string') return addr; // a Unix socket path: local by nature (mind its permissions)
  if (!Array.isArray(addr) || addr.length !== 2 || typeof addr[0] !== 'string' || typeof addr[1] !== 'number') {
    throw invalidArgType('addr', 'a [host, port] pair or a Unix socket path', addr);
  }
  if (!allowRemote && !isLoopback(addr[0])) {
    throw new EvyError(
      `evy.backdoor: refusing to bind ${JSON.stringify(addr[0])}: it is not a loopback address, and a backdoor runs any code its clients send. Pass { allowRemote: true } if you really mean it`,
      'ERR_EVY_BACKDOOR_REMOTE',
    );
  }
  return addr as Address;
}

/**
 * Serves a REPL on `addr` (default 127.0.0.1 on a free port) and returns the listening GreenSocket (read the
 * port with `getsockname()`; `close()` it to stop the backdoor and end its sessions). Each connection gets its
 * own `node:repl` session in its own green thread, with `evy`, `threads()` and `options.locals` in scope; top-
 * level `await` works. Non-loopback binds are refused unless `options.allowRemote`.
 */
export async function backdoor(addr: Address = ['127.0.0.1', 0], options: BackdoorOptions = {}): Promise<GreenSocket> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'an object', options);
  const a = checkAddr(addr, options.allowRemote === true);
  const prompt = options.prompt ?? 'evy> ';
  if (typeof prompt !== 'string') throw invalidArgType('options.prompt', 'a string', prompt);
  if (options.trackThreads !== false) trackThreads(true);
  // The backdoor belongs to no thread: killing whoever started it must not take it down.
  return unowned(async () => {
    const sock = await listen(a);
    const sessions = new Set<GreenThread>();
    const server = spawn(async () => {
      try {
        await serve(sock, (client, peer) => session(client, peer, prompt, options.locals, sessions));
      } catch {
        // The listening socket was closed (or the serve thread killed): the backdoor is over.
      } finally {
        for (const s of sessions) void s.kill();
      }
    });
    server.name = 'evy.backdoor';
    // close() of the listening socket ends serve at its accept.
    sock.raw.once('close', () => void server.kill());
    return sock;
  });
}

async function session(client: GreenSocket, peer: Address, prompt: string, locals: Record<string, unknown> | undefined, sessions: Set<GreenThread>): Promise<void> {
  const me = getcurrent();
  me.name = `evy.backdoor session ${Array.isArray(peer) ? `${peer[0]}:${peer[1]}` : peer}`;
  sessions.add(me);
  const { PassThrough, Writable } = process.getBuiltinModule('stream') as typeof import('node:stream');
  const input = new PassThrough();
  let gone = false;
  // The REPL writes synchronously; the socket is written in order, with backpressure, by sendall.
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (gone) return cb();
      client.sendall(chunk).then(
        () => cb(),
        () => {
          gone = true;
          cb();
        },
      );
    },
  });
  output.on('error', () => {});
  let r: repl.REPLServer | null = null;
  try {
    await client.sendall(BANNER);
    // Loaded on the first session, not at import: node:repl costs ~15 ms of startup.
    const { start } = process.getBuiltinModule('repl') as typeof import('node:repl');
    r = start({ input, output, prompt, terminal: false, useGlobal: false, ignoreUndefined: true, useColors: false });
    const dump = (): string => formatThreads();
    Object.assign(
      r.context,
      {
        // The namespace, loaded here (it is this module's own importer, so already there): a static
        // `import * as` would make the bundler add a helper chunk to every preload of evy/register.
        evy: await import('./index.js'),
        threads: () => void output.write(`${dump()}\n`),
        hub: () => void output.write(`${formatHub()}\n`),
      },
      locals ?? {},
    );
    r.defineCommand('threads', {
      help: 'Print the evy thread dump',
      action(this: repl.REPLServer) {
        this.output.write(`${dump()}\n`);
        this.displayPrompt();
      },
    });
    let exited = false;
    let pendingLine = 0;
    r.on('exit', () => {
      exited = true;
      // `.exit` while we are parked in recv: closing the socket ends that wait.
      client.close();
    });
    for (;;) {
      let data: Buffer;
      try {
        data = await client.recv(4096);
      } catch (e) {
        if (exited) break;
        throw e;
      }
      if (data.length === 0) break; // the client went away (maybe mid-line: the partial line is dropped)
      // A client streaming garbage without newlines must not grow the REPL's line buffer without bound.
      const nl = data.lastIndexOf(10);
      pendingLine = nl < 0 ? pendingLine + data.length : data.length - nl - 1;
      if (pendingLine > MAX_LINE) {
        await client.sendall(`\nevy.backdoor: line longer than ${MAX_LINE} bytes, closing\n`);
        break;
      }
      input.write(data);
      if (exited) break;
    }
  } catch (e) {
    // A session must never take the backdoor (or the process) down: report and end it.
    if (!(e instanceof GreenletExit) && !(e instanceof SocketError)) process.stderr.write(`evy.backdoor: session ${me.name} ended: ${inspect(e)}\n`);
  } finally {
    gone = true;
    sessions.delete(me);
    input.end();
    r?.close();
  }
}
