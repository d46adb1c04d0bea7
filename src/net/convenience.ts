// eventlet's convenience functions: connect, listen, serve.
import type net from 'node:net';
import { netModule } from '../builtins.js';
import { badPort, EvyError, GreenletExit, invalidArgType, outOfRange, StopServe } from '../errors.js';
import type { GreenThread } from '../greenthread.js';
import { GreenPool } from '../greenpool.js';
import { current, reportError } from '../runtime.js';
import { type Address, type Family, GreenSocket } from './socket.js';
import { checkBoolean, checkCount, checkFunction } from '../validate.js';
import { block, checkInterrupt, type Waiter } from '../waiter.js';

interface Parsed {
  path?: string;
  host?: string;
  port?: number;
  family: 0 | 4 | 6 | 'unix';
}

const FAMILIES: Record<string, 4 | 6 | 'unix'> = {
  4: 4,
  6: 6,
  unix: 'unix',
  IPv4: 4,
  IPv6: 6,
  AF_INET: 4,
  AF_INET6: 6,
  AF_UNIX: 'unix',
};

function parseFamily(family: unknown): 0 | 4 | 6 | 'unix' {
  if (family === undefined || family === null || family === 0) return 0;
  const f = FAMILIES[String(family)];
  if (f === undefined || (typeof family !== 'number' && typeof family !== 'string')) {
    throw invalidArgType('family', "4 (AF_INET), 6 (AF_INET6) or 'unix' (AF_UNIX)", family);
  }
  return f;
}

/** `[host, port]` or a Unix path; IPv6 inferred from a literal like '::1' when no family is given. */
function parseAddr(addr: unknown, family: unknown, name: string, listening: boolean): Parsed {
  const fam = parseFamily(family);
  if (typeof addr === 'string') {
    if (fam !== 0 && fam !== 'unix') throw invalidArgType(name, `[host, port] for family ${fam}`, addr);
    if (addr.length === 0) throw outOfRange(name, 'a non-empty Unix socket path', addr);
    return { path: addr, family: 'unix' };
  }
  if (!Array.isArray(addr) || addr.length < 2 || typeof addr[0] !== 'string') {
    throw invalidArgType(name, '[host, port] or a Unix socket path', addr);
  }
  if (fam === 'unix') throw invalidArgType(name, "a path for family 'unix'", addr);
  const port = addr[1];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw badPort(name, port);
  }
  let host = addr[0];
  const ipFam = netModule().isIP(host);
  if (fam !== 0 && ipFam !== 0 && ipFam !== fam) {
    throw invalidArgType(name, `an IPv${fam} address for family ${fam}`, host);
  }
  const f = fam !== 0 ? fam : ipFam === 6 ? 6 : ipFam === 4 ? 4 : 0;
  if (host === '') host = listening ? (f === 6 ? '::' : '0.0.0.0') : f === 6 ? '::1' : '127.0.0.1';
  return { host, port, family: f };
}

/**
 * Connects a TCP socket (`addr` = `[host, port]`, IPv4 or IPv6) or a Unix socket (`addr` = path).
 * `bind` = `[host, port]` picks the local address. Failures are typed `SocketError`s with Node's code
 * (`ECONNREFUSED`, `ENOTFOUND`, ...). An evy wait: a kill or a Timeout abandons (destroys) the attempt.
 */
export async function connect(addr: Address, family?: Family | 0 | string | null, bind?: [string, number] | null): Promise<GreenSocket> {
  const a = parseAddr(addr, family, 'addr', false);
  let opts: net.NetConnectOpts;
  if (a.path !== undefined) {
    opts = { path: a.path, allowHalfOpen: true };
  } else {
    opts = { host: a.host!, port: a.port!, allowHalfOpen: true };
    if (a.family !== 0) opts.family = a.family as 4 | 6;
    if (bind !== undefined && bind !== null) {
      const b = parseAddr(bind, a.family === 0 ? undefined : a.family, 'bind', true);
      opts.localAddress = b.host;
      opts.localPort = b.port;
    }
  }
  checkInterrupt();
  const gs = new GreenSocket(netModule().connect(opts));
  if (a.path !== undefined) gs._setAddrs(a.path, '');
  else gs._host = a.host;
  await gs._waitFor('connect', 'connect');
  return gs;
}

const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
/** Node honours `reusePort` from 22.12 / 23.1 on (Linux, BSDs); older Nodes ignore it silently. */
const REUSEPORT = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);

/**
 * A listening socket on `addr` (`[host, port]`, port 0 picks one; `''` means every interface) or a Unix
 * socket path. SO_REUSEADDR is on (libuv's default), so a closed port can be listened on again at once.
 * `reusePort` lets several processes share the port (Node >= 22.12).
 */
export async function listen(addr: Address, family?: Family | 0 | string | null, backlog = 50, reusePort = false): Promise<GreenSocket> {
  const a = parseAddr(addr, family, 'addr', true);
  checkCount(backlog, 'backlog');
  checkBoolean(reusePort, 'reusePort');
  if (reusePort && !REUSEPORT) {
    throw new EvyError(`reusePort needs Node >= 22.12 (this is ${process.version}); use node:cluster to share a port`, 'ERR_EVY_REUSEPORT_UNSUPPORTED');
  }
  checkInterrupt();
  const server = netModule().createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const gs = new GreenSocket(server);
  const opts: net.ListenOptions & { reusePort?: boolean } = { backlog };
  if (a.path !== undefined) opts.path = a.path;
  else {
    opts.host = a.host;
    opts.port = a.port;
    if (reusePort) opts.reusePort = true;
  }
  server.listen(opts);
  await gs._waitFor('listening', 'listen');
  return gs;
}

/**
 * eventlet's accept loop: each connection runs `handle(client, addr)` in a GreenPool of `concurrency`
 * threads; at the limit, `serve` stops accepting until a handler ends. The client socket is closed when
 * its handler returns or throws. A handler that throws `StopServe` makes `serve` return; a killed handler
 * is ignored; any other handler error propagates out of `serve` (a server that must survive bad clients
 * catches in its handler). Killing the thread running `serve` closes the listening socket and kills the
 * handlers. `serve` never closes the listening socket otherwise.
 */
export async function serve(
  sock: GreenSocket,
  handle: (client: GreenSocket, addr: Address) => unknown,
  concurrency = 1000,
): Promise<void> {
  if (!(sock instanceof GreenSocket)) throw invalidArgType('sock', 'a listening GreenSocket', sock);
  checkFunction(handle, 'handle');
  checkCount(concurrency, 'concurrency', 1);
  const me = current();
  const pool = new GreenPool(concurrency);
  // A handler's error (or StopServe) to throw in serve; read in closures, hence not narrowed.
  let failure = null as { error: unknown } | null;
  let running = true;
  let slotWaiter: Waiter<void> | null = null;

  const onExit = (gt: GreenThread<unknown>, client: GreenSocket): void => {
    client._closeNow(); // files the handler made from it go too: nobody is left to close them
    const w = slotWaiter;
    if (w !== null) {
      slotWaiter = null;
      w.wake(undefined);
    }
    if (!gt._failed) return;
    const err = gt._result;
    if (gt._killError !== undefined && err === gt._killError) return; // a killed handler is ignored
    if (err instanceof GreenletExit) return;
    if (!running || failure !== null) {
      if (!(err instanceof StopServe)) reportError(err, gt); // serve is gone: do not lose it
      return;
    }
    // Like Evy, the handler's error is thrown into the thread running serve, at its current wait.
    failure = { error: err };
    const a = sock._acceptWaiter;
    if (a !== null && a.thread === me) a.interrupt(err);
    const sw = slotWaiter as Waiter<void> | null;
    if (sw !== null) sw.fail(err);
  };

  try {
    for (;;) {
      if (failure !== null) throw (failure as { error: unknown }).error;
      while (pool.free() <= 0) {
        const w = block<void>('serve (at the concurrency limit)');
        if (w instanceof Promise) await w;
        else {
          slotWaiter = w;
          await w.park(null);
        }
      }
      const [client, addr] = await sock.accept();
      if (failure !== null) {
        client.close();
        throw (failure as { error: unknown }).error;
      }
      const gt = await pool.spawn(handle, client, addr);
      gt.link(onExit, client);
    }
  } catch (e) {
    if (failure !== null && e === (failure as { error: unknown }).error) {
      if (e instanceof StopServe) return;
      throw e;
    }
    if (me._killError !== undefined) {
      // Killed (or withTimeout expired): the listening socket is destroyed (even when serve was parked
      // at the concurrency limit rather than in accept), and the handlers are killed.
      sock._destroy(me._killError);
      await pool.killall();
    }
    throw e;
  } finally {
    running = false;
  }
}
