// evy.backdoor: driven by real client sockets (plain node:net, not evy) on 127.0.0.1.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { backdoor, debug, GreenSocket, sleep, spawn } from '../src/index.js';

const open: GreenSocket[] = [];
const clients: net.Socket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const s of open.splice(0)) s.close();
  debug.trackThreads(false);
  await sleep(0.02);
});

async function start(...args: Parameters<typeof backdoor>): Promise<[string, number]> {
  const sock = await backdoor(...args);
  open.push(sock);
  return sock.getsockname() as [string, number];
}

/** A line-oriented client: `send` a line, `until` some text shows up in the output. */
class Client {
  out = '';
  closed = false;
  private mark = 0;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => (this.out += d));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => {});
    clients.push(sock);
  }
  static async connect([host, port]: [string, number]): Promise<Client> {
    const s = net.connect(port, host);
    await new Promise((r) => s.once('connect', r));
    const c = new Client(s);
    await c.until('evy> ');
    return c;
  }
  /** Sends `line` and returns what the REPL printed before its next prompt. */
  async eval(line: string): Promise<string> {
    this.mark = this.out.length;
    this.sock.write(`${line}\n`);
    return this.until('evy> ', this.mark);
  }
  async until(text: string, from = 0): Promise<string> {
    for (let i = 0; i < 500; i++) {
      const at = this.out.indexOf(text, from);
      if (at >= 0) return this.out.slice(from, at);
      if (this.closed) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no ${JSON.stringify(text)} in ${JSON.stringify(this.out.slice(from))}`);
  }
  async waitClosed(): Promise<void> {
    for (let i = 0; i < 500 && !this.closed; i++) await new Promise((r) => setTimeout(r, 10));
  }
}

describe('backdoor', () => {
  it('binds 127.0.0.1 on a free port by default and evaluates in a REPL with evy at hand', async () => {
    const addr = await start();
    expect(addr[0]).toBe('127.0.0.1');
    expect(addr[1]).toBeGreaterThan(0);
    const c = await Client.connect(addr);
    expect(c.out).toMatch(/^evy backdoor: /);
    expect(await c.eval('1 + 2')).toBe('3\n');
    expect(await c.eval('typeof evy.spawn')).toBe("'function'\n");
    expect(await c.eval('await evy.sleep(0.01); "slept"')).toBe("'slept'\n");
    expect(await c.eval('answer')).toMatch(/ReferenceError/);
  });

  it('each connection runs in its own green thread; the thread dump is at hand', async () => {
    const addr = await start();
    const a = await Client.connect(addr);
    const b = await Client.connect(addr);
    const na = await a.eval('evy.getcurrent().name');
    const nb = await b.eval('evy.getcurrent().name');
    expect(na).toMatch(/^'evy\.backdoor session 127\.0\.0\.1:\d+'\n$/);
    expect(nb).toMatch(/^'evy\.backdoor session 127\.0\.0\.1:\d+'\n$/);
    expect(na).not.toBe(nb);
    // A green thread of the app, visible from the session.
    const app = spawn(() => sleep(30));
    app.name = 'app-worker';
    await sleep(0.01);
    const dump = await a.eval('.threads');
    expect(dump).toMatch(/evy: \d+ live green threads \(spawn sites tracked for/);
    expect(dump).toMatch(/- app-worker \[#\d+\] parked on sleep/);
    expect(dump).toMatch(/evy\.backdoor session 127\.0\.0\.1:\d+ \[#\d+\] running/);
    expect(dump).toMatch(/- evy\.backdoor \[#\d+\] parked on /); // the accept loop
    expect(await b.eval('threads()')).toMatch(/app-worker/);
    expect(await b.eval('hub()')).toMatch(/evy hub: [\s\S]*\n {2}TCPServerWrap x\d+/);
    await app.kill();
  });

  it('survives garbage and clients that leave mid-line; other sessions are unharmed', async () => {
    const addr = await start(undefined, { locals: { answer: 42 } });
    const good = await Client.connect(addr);
    const bad = await Client.connect(addr);
    bad.sock.write(Buffer.from([0, 0xff, 0xfe, 0x1b, 0x5b, 0x41, 0x0a]));
    await bad.until('Uncaught');
    await bad.until('evy> ', bad.out.indexOf('Uncaught')); // the prompt after the error
    expect(await bad.eval('answer + 1')).toBe('43\n');
    bad.sock.write('evy.sle'); // a partial line, then gone
    bad.sock.destroy();
    const rude = await Client.connect(addr);
    rude.sock.resetAndDestroy(); // RST instead of FIN
    await sleep(0.05);
    expect(await good.eval('answer')).toBe('42\n');
    // A new client still gets served.
    const late = await Client.connect(addr);
    expect(await late.eval('"still here"')).toBe("'still here'\n");
  });

  it('a client that streams an endless line is cut off at 1 MiB; others carry on', async () => {
    const addr = await start();
    const good = await Client.connect(addr);
    const flood = await Client.connect(addr);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 20 && !flood.closed; i++) {
      flood.sock.write(chunk);
      await sleep(0.005);
    }
    await flood.waitClosed();
    expect(flood.closed).toBe(true);
    expect(flood.out).toMatch(/line longer than 1048576 bytes, closing/);
    expect(await good.eval('6 * 7')).toBe('42\n');
  });

  it('.exit ends the session and closes the connection', async () => {
    const c = await Client.connect(await start());
    c.sock.write('.exit\n');
    await c.waitClosed();
    expect(c.closed).toBe(true);
  });

  it('closing the listening socket stops the backdoor and ends its sessions', async () => {
    const sock = await backdoor();
    const addr = sock.getsockname() as [string, number];
    const c = await Client.connect(addr);
    sock.close();
    await c.waitClosed();
    expect(c.closed).toBe(true);
    const refused = net.connect(addr[1], addr[0]);
    const err = await new Promise<NodeJS.ErrnoException>((r) => refused.once('error', r));
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('refuses non-loopback binds unless asked explicitly', async () => {
    await expect(backdoor(['0.0.0.0', 0])).rejects.toMatchObject({ code: 'ERR_EVY_BACKDOOR_REMOTE', message: expect.stringMatching(/allowRemote/) });
    await expect(backdoor(['', 0])).rejects.toMatchObject({ code: 'ERR_EVY_BACKDOOR_REMOTE' });
    await expect(backdoor(['example.com', 0])).rejects.toMatchObject({ code: 'ERR_EVY_BACKDOOR_REMOTE' });
    await expect(backdoor([1, 2] as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    const [host] = await start(['0.0.0.0', 0], { allowRemote: true });
    expect(host).toBe('0.0.0.0');
    const [lh] = await start(['localhost', 0]);
    expect(['127.0.0.1', '::1']).toContain(lh);
  });
});
