// The networking examples, run as real programs (from the built dist/) and driven by real clients.
import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type GreenSocket, SHUT_WR, SocketTimeout, spawn } from '../src/index.js';
import { payload, sha } from './helpers/sockets.js';
import { removeSnapshot, snapshotPackage } from './helpers/snapshot.js';

// The examples run from a snapshot of the package (test/helpers/snapshot.ts).
let root = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  root = await snapshotPackage('evy-examples', ['examples']);
});

afterAll(() => removeSnapshot(root));

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await new Promise((r) => c.once('exit', r));
    }
  }
});

/** Starts an example and resolves the [host, port] it prints once it listens. */
function start(name: string, ...args: string[]): Promise<[string, number]> {
  const child = spawnProcess(process.execPath, [`examples/${name}`, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on ([\d.]+):(\d+)/.exec(out);
      if (m) resolve([m[1]!, Number(m[2])]);
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening:\n${out}${err}`)));
  });
}

async function recvExactly(s: GreenSocket, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const b = await s.recv(n - got);
    if (b.length === 0) break;
    parts.push(b);
    got += b.length;
  }
  return Buffer.concat(parts);
}

describe('examples', () => {
  it('echo-server echoes to several clients at once, byte for byte', async () => {
    const addr = await start('echo-server.mjs', '0');
    const clients = await Promise.all([1, 2, 3].map(() => connect(addr)));
    const threads = clients.map((c) =>
      spawn(async () => {
        const data = payload(300_000);
        const reader = spawn(recvExactly, c, data.length);
        await c.sendall(data);
        const back = await reader.wait();
        return sha(back) === sha(data);
      }),
    );
    for (const t of threads) expect(await t.wait()).toBe(true);
    clients[0]!.shutdown(SHUT_WR);
    expect((await clients[0]!.recv(10)).length).toBe(0); // the server closes after our EOF
    for (const c of clients) c.close();
  });

  it('chat-server broadcasts each line to the other clients only', async () => {
    const addr = await start('chat-server.mjs', '0');
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => connect(addr)));
    const [fa, fb, fc] = [a!, b!, c!].map((s) => s.makefile('r'));
    await new Promise((r) => setTimeout(r, 50)); // all three have joined
    await a!.sendall('hello from a\n');
    const nameA = `${(a!.getsockname() as [string, number]).join(':')}`;
    expect(await fb!.readline()).toBe(`${nameA}: hello from a\n`);
    expect(await fc!.readline()).toBe(`${nameA}: hello from a\n`);
    await b!.sendall('and b\n');
    const nameB = `${(b!.getsockname() as [string, number]).join(':')}`;
    expect(await fa!.readline()).toBe(`${nameB}: and b\n`);
    expect(await fc!.readline()).toBe(`${nameB}: and b\n`);
    a!.settimeout(0.1);
    await expect(fa!.readline()).rejects.toBeInstanceOf(SocketTimeout); // a never hears itself
    // a client leaving does not disturb the others
    c!.close();
    await fc!.close();
    await b!.sendall('still here\n');
    a!.settimeout(2);
    expect(await fa!.readline()).toBe(`${nameB}: still here\n`);
    for (const f of [fa!, fb!]) await f.close();
    a!.close();
    b!.close();
  });

  it('forwarder relays both ways to a real server, and passes a half-close on', async () => {
    const echo = await start('echo-server.mjs', '0');
    const fwd = await start('forwarder.mjs', '0', echo[0], String(echo[1]));
    const c = await connect(fwd);
    await c.sendall('through the forwarder');
    expect((await recvExactly(c, 21)).toString()).toBe('through the forwarder');
    const data = payload(500_000);
    const reader = spawn(async () => {
      const parts: Buffer[] = [];
      for (let b = await c.recv(65536); b.length > 0; b = await c.recv(65536)) parts.push(b);
      return Buffer.concat(parts);
    });
    await c.sendall(data);
    c.shutdown(SHUT_WR); // EOF travels client -> forwarder -> echo server, which closes, and back
    const back = await reader.wait();
    expect(sha(back)).toBe(sha(data));
    c.close();
    // a forwarder whose remote is down closes the client instead of hanging
    const dead = await start('forwarder.mjs', '0', '127.0.0.1', '1');
    const d = await connect(dead);
    expect((await d.recv(10)).length).toBe(0);
    d.close();
  });
});
