import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  connect,
  GreenletExit,
  type GreenSocket,
  type GreenThread,
  hub,
  listen,
  serve,
  sleep,
  SocketError,
  spawn,
  StopServe,
  Timeout,
  withTimeout,
} from '../src/index.js';
import { countResources, expectNoLeaks } from './helpers/sockets.js';

let before: Record<string, number>;
beforeEach(() => {
  before = countResources();
});
afterEach(async () => {
  await expectNoLeaks(before);
});

async function server(): Promise<[GreenSocket, [string, number]]> {
  const l = await listen(['127.0.0.1', 0]);
  return [l, l.getsockname() as [string, number]];
}

describe('serve', () => {
  it('runs the handler per connection and closes each client when its handler returns', async () => {
    const [l, addr] = await server();
    let calls = 0;
    const gt = spawn(serve, l, async (c: GreenSocket, peer) => {
      calls++;
      expect(Array.isArray(peer)).toBe(true);
      await c.sendall('hi');
    });
    const clients: GreenSocket[] = [];
    // one at a time: a burst of SYNs can overflow loopback's queue and be retried a second later
    for (let i = 0; i < 100; i++) clients.push(await connect(addr));
    for (const c of clients) {
      expect((await c.recv(10)).toString()).toBe('hi');
      expect((await c.recv(10)).length).toBe(0); // EOF: serve closed it
      c.close();
    }
    expect(calls).toBe(100);
    expect(gt.dead).toBe(false); // serve blocks
    await gt.kill();
  });

  it('at the concurrency limit stops accepting until a handler ends', async () => {
    const [l, addr] = await server();
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      await c.sendall('hi');
      await c.recv(1); // until the client says so
    }, 5);
    const clients = await Promise.all(Array.from({ length: 6 }, () => connect(addr)));
    for (const c of clients.slice(0, 5)) expect((await c.recv(10)).toString()).toBe('hi');
    const sixth = clients[5]!;
    sixth.settimeout(0.1);
    await expect(sixth.recv(10)).rejects.toMatchObject({ code: 'ERR_EVY_SOCKET_TIMEOUT' });
    await clients[0]!.sendall('x'); // one handler ends...
    sixth.settimeout(2);
    expect((await sixth.recv(10)).toString()).toBe('hi'); // ...and the sixth is served
    for (const c of clients) c.close();
    await gt.kill();
  });

  it('a handler error closes that client and propagates out of serve', async () => {
    const [l, addr] = await server();
    const boom = new Error('handler exploded');
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      const d = await c.recv(10);
      if (d.toString() === 'bad') throw boom;
      await c.sendall(d);
    });
    const good = await connect(addr);
    await good.sendall('ok');
    expect((await good.recv(10)).toString()).toBe('ok');
    const bad = await connect(addr);
    await bad.sendall('bad');
    await expect(gt.wait()).rejects.toBe(boom);
    expect((await bad.recv(10)).length).toBe(0);
    // serve did not close the listening socket
    const again = await connect(addr);
    again.close();
    good.close();
    bad.close();
    l.close();
  });

  it('StopServe from a handler makes serve return normally; the listening socket stays open', async () => {
    const [l, addr] = await server();
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      const line = (await c.recv(10)).toString();
      await c.sendall(`echo ${line}`);
      if (line === 'stop') throw new StopServe();
    });
    const c = await connect(addr);
    await c.sendall('stop');
    expect((await c.recv(20)).toString()).toBe('echo stop');
    expect(await gt.wait()).toBe(undefined);
    expect((await c.recv(10)).length).toBe(0);
    expect((l.raw as net.Server).listening).toBe(true);
    c.close();
    l.close();
  });

  it('a killed handler is ignored: serve goes on', async () => {
    const [l, addr] = await server();
    const handlers: GreenThread<unknown>[] = [];
    const { getcurrent } = await import('../src/index.js');
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      handlers.push(getcurrent() as GreenThread<unknown>);
      await c.sendall('hello');
      await c.recv(10);
    });
    const c1 = await connect(addr);
    expect((await c1.recv(10)).toString()).toBe('hello');
    await handlers[0]!.kill();
    expect((await c1.recv(10)).length).toBe(0);
    const c2 = await connect(addr);
    expect((await c2.recv(10)).toString()).toBe('hello');
    expect(gt.dead).toBe(false);
    c1.close();
    c2.close();
    await gt.kill();
  });

  it('killing the thread running serve stops it, kills its handlers and closes the listening socket', async () => {
    const [l, addr] = await server();
    let cleanedUp = 0;
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      try {
        await c.sendall('in');
        await sleep(30);
      } finally {
        cleanedUp++;
      }
    });
    const clients = await Promise.all([connect(addr), connect(addr)]);
    for (const c of clients) expect((await c.recv(10)).toString()).toBe('in');
    await gt.kill();
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect(cleanedUp).toBe(2);
    for (const c of clients) {
      expect((await c.recv(10)).length).toBe(0);
      c.close();
    }
    await expect(connect(addr)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('blocks its caller: withTimeout around serve times out', async () => {
    const [l] = await server();
    await expect(withTimeout(0.02, serve, l, async () => {})).rejects.toBeInstanceOf(Timeout);
  });

  it('errors of handlers still running after serve returned are reported, not lost', async () => {
    const [l, addr] = await server();
    const seen: unknown[] = [];
    const old = hub.onError;
    hub.onError = (e) => seen.push(e);
    try {
      const gt = spawn(serve, l, async (c: GreenSocket) => {
        const d = (await c.recv(10)).toString();
        if (d === 'stop') throw new StopServe();
        await c.recv(10);
        throw new Error('late failure');
      });
      const slow = await connect(addr);
      await slow.sendall('slow');
      await sleep(0.02);
      const stopper = await connect(addr);
      await stopper.sendall('stop');
      await gt.wait();
      await slow.sendall('go');
      expect((await slow.recv(10)).length).toBe(0);
      await sleep(0.01);
      expect(seen).toHaveLength(1);
      expect((seen[0] as Error).message).toBe('late failure');
      slow.close();
      stopper.close();
      l.close();
    } finally {
      hub.onError = old;
    }
  });

  it('a server that must survive bad clients catches in its handler (the documented pattern)', async () => {
    const [l, addr] = await server();
    const errors: string[] = [];
    const gt = spawn(serve, l, async (c: GreenSocket) => {
      try {
        const f = c.makefile('rw');
        for await (const line of f) {
          if (line.startsWith('crash')) throw new Error('bad input');
          await f.write(line.toUpperCase());
          await f.flush();
        }
      } catch (e) {
        errors.push((e as Error).message ?? String(e));
      }
    });
    // a client that resets, one that sends garbage, then a well-behaved one
    const reset = await connect(addr);
    await reset.sendall('half a li');
    (reset.raw as net.Socket).resetAndDestroy();
    const bad = await connect(addr);
    await bad.sendall('crash now\n');
    expect((await bad.recv(10)).length).toBe(0);
    const good = await connect(addr);
    await good.sendall('hello\n');
    expect((await good.recv(10)).toString()).toBe('HELLO\n');
    expect(errors).toContain('bad input');
    expect(gt.dead).toBe(false);
    good.close();
    bad.close();
    reset.close();
    await gt.kill();
  });

  it('validates its arguments', async () => {
    const [l] = await server();
    await expect(serve({} as any, async () => {})).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(serve(l, 'nope' as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(serve(l, async () => {}, 0)).rejects.toBeInstanceOf(RangeError);
    l.close();
    // serve on a closed socket fails at once with EBADF
    await expect(serve(l, async () => {})).rejects.toBeInstanceOf(SocketError);
  });
});
