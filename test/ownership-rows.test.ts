// The socket rows of docs/patching.md's state table, on every way in: under the hook (`--import evy/register`),
// through `importPatched(..., ['net', 'tls'])`, and with evy/green/net and evy/green/tls imported directly
// (the selective path has no global patch at all). Each row runs in a real process (fixtures/ownership/) against
// a line server here, which tells when it saw each connection end.
import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from './helpers/certs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = fileURLToPath(new URL('../fixtures/ownership/main.mjs', import.meta.url));
const WAYS = ['hook', 'green', 'imported'] as const;
type Way = (typeof WAYS)[number];

let certs: Certs;
let server: net.Server;
let port = 0;
/** When the server saw each connection end, by the client's local port. */
const closedAt = new Map<number, number>();
const accepted = new Set<net.Socket>();

/** `<id> <text>` per line: `hold` is never answered, `slow` after 150 ms and `slowhello` after 300 ms (what follows waits), `starttls` upgrades. */
function serve(s: net.Socket | tls.TLSSocket, clientPort: number): void {
  let buf = '';
  let chain = Promise.resolve();
  s.on('error', () => {});
  s.on('close', () => closedAt.set(clientPort, Date.now()));
  const onData = (d: Buffer): void => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; ) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const [, text] = line.split(' ', 2);
      if (text === 'hold') continue;
      if (text === 'starttls') {
        s.off('data', onData);
        s.write('0 ok\n', () => {
          const t = new tls.TLSSocket(s, { isServer: true, key: certs.serverKey, cert: certs.serverCert });
          serve(t, clientPort);
        });
        return;
      }
      chain = chain.then(() => new Promise<void>((r) => setTimeout(r, text === 'slow' ? 150 : text === 'slowhello' ? 300 : 0))).then(() => {
        if (!s.destroyed) s.write(`${line}\n`);
      });
    }
  };
  s.on('data', onData);
}

beforeAll(async () => {
  certs = makeCerts();
  server = net.createServer((s) => {
    accepted.add(s);
    s.once('close', () => accepted.delete(s));
    serve(s, s.remotePort!);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  for (const s of accepted) s.destroy();
  await new Promise((r) => server.close(r));
  certs.cleanup();
});

interface Outcome {
  code: number | null;
  /** ms from spawn to exit. */
  ms: number;
  out: Record<string, any>;
  stderr: string;
}

function runRow(way: Way, row: string, gc = true): Promise<Outcome> {
  const args = [...(gc ? ['--expose-gc'] : []), ...(way === 'hook' ? ['--import', `${ROOT}register.mjs`] : []), MAIN, way, row, String(port)];
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, timeout: 10_000 }, (err, stdout, stderr) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      let out: Record<string, any> = {};
      try {
        out = JSON.parse(last);
      } catch {
        out = { unparsed: stdout };
      }
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, ms: Date.now() - start, out, stderr });
    });
  });
}

/** When the server saw the row's connection end, in ms after the kill settled (waits up to `ms`). */
async function closeAfterKill(o: Outcome, ms = 3000): Promise<number | null> {
  const deadline = Date.now() + ms;
  while (!closedAt.has(o.out.localPort) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const at = closedAt.get(o.out.localPort);
  return at === undefined ? null : at - o.out.killed;
}

describe.each(WAYS)('state-table rows, way in: %s', (way) => {
  it('set up by T, nothing written, T killed: destroyed once quiet for 50 ms', async () => {
    const o = await runRow(way, 'setup');
    expect(o.code, o.stderr).toBe(0);
    const after = await closeAfterKill(o);
    // Closed by evy while the process still ran, not by its exit.
    expect(after).not.toBeNull();
    expect(o.out.killed + after!).toBeLessThanOrEqual(o.out.end);
    expect(o.out.active).toEqual([]);
  });

  it("T's own request outstanding, T killed: destroyed at once", async () => {
    const o = await runRow(way, 'outstanding');
    expect(o.code, o.stderr).toBe(0);
    expect(await closeAfterKill(o)).toBeLessThan(500);
    expect(o.out.active).toEqual([]);
  });

  it("T's request outstanding on a TLS connection started on a plain one (STARTTLS), T killed: destroyed", async () => {
    const o = await runRow(way, 'outstanding-tls');
    expect(o.code, o.stderr).toBe(0);
    expect(await closeAfterKill(o)).toBeLessThan(500);
    expect(o.out.active).toEqual([]);
  });

  for (const row of ['private', 'private-tls', 'private-greensocket']) {
    it(`${row}: T's private idle connection, T killed: keeps nothing alive, closed once nothing can reach it`, async () => {
      const o = await runRow(way, row);
      expect(o.code, o.stderr).toBe(0);
      expect(o.out.reply).toBe('1 hello');
      // It no longer holds the process up (the fixture ends by itself, nothing ref'd is left) ...
      expect(o.out.active).toEqual([]);
      // ... and once garbage (the fixture runs the collector after the kill), it is closed: the server sees it end
      // while the process still runs.
      const after = await closeAfterKill(o);
      expect(after).not.toBeNull();
      expect(o.out.killed + after!).toBeLessThanOrEqual(o.out.end);
    });
  }

  // A killed thread's own code that still runs (detached after a foreign await, or its finally block) uses its
  // private connection once more: that write is the killed thread's, not main's nor another thread's, so the
  // connection stays private and orphaned. Before, it counted as main's code: the connection was adopted back
  // (ref'd) for good, stayed open and kept the process alive (the chaos harness found it with a pg.Client).
  for (const row of ['private-detached', 'private-finally']) {
    it(`${row}: T's private connection, used again by T's own code after its kill: keeps nothing alive, closed once nothing can reach it`, async () => {
      const o = await runRow(way, row);
      expect(o.code, o.stderr).toBe(0);
      expect(o.out.reply).toBe('1 hello');
      expect(o.out.last).toMatch(/^2 (detached|cleanup)$/);
      expect(o.out.active).toEqual([]);
      const after = await closeAfterKill(o);
      expect(after).not.toBeNull();
      expect(o.out.killed + after!).toBeLessThanOrEqual(o.out.end);
    });
  }

  it('private, without a garbage collection: the process still exits by itself', async () => {
    const o = await runRow(way, 'private', false);
    expect(o.code, o.stderr).toBe(0);
    expect(o.out.reply).toBe('1 hello');
    expect(o.out.active).toEqual([]);
  });

  it("made lazily by A and kept for everyone, A killed while it is idle: B is served on it later", async () => {
    const o = await runRow(way, 'lazy-shared');
    expect(o.code, o.stderr).toBe(0);
    expect(o.out.a).toBe('1 from A');
    expect(o.out.b).toBe('2 from B');
    expect(o.out.destroyed).toBe(false);
    // It lived through the kill and the collection: it ended only when the fixture ended it.
    const after = await closeAfterKill(o);
    expect(after).not.toBeNull();
    expect(o.out.killed + after!).toBeGreaterThanOrEqual(o.out.endedAt);
  });

  it("set up by A, A killed while its handshake waits on a slow server: B, waiting for the same setup, is served", async () => {
    const o = await runRow(way, 'slow-handshake');
    expect(o.code, o.stderr).toBe(0);
    expect(o.out.b).toBe('1 from B');
    expect(o.out.destroyed).toBe(false);
  });

  it("two threads' requests outstanding at once: shared, A's kill spares B's reply", async () => {
    const o = await runRow(way, 'two-outstanding');
    expect(o.code, o.stderr).toBe(0);
    expect(o.out.b).toContain('2 from B');
    expect(o.out.destroyed).toBe(false);
  });
});

describe('after an HTTP upgrade (the `ws` package, under the hook)', () => {
  it('the socket follows the socket rules: a send waiting for an answer dies with its thread (client and server side); a private idle WebSocket is orphaned; a lazily shared one keeps serving', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, ['--expose-gc', '--import', `${ROOT}register.mjs`, fileURLToPath(new URL('../fixtures/ownership/ws.mjs', import.meta.url))],
        { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, timeout: 20_000 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    // Client side: T's WebSocket with a send outstanding is destroyed by T's kill (the server sees it close).
    expect(out.client.closedAfterMs).not.toBeNull();
    expect(out.client.closedAfterMs).toBeLessThan(1000);
    expect(out.client.readyState).toBe(3); // CLOSED
    // T's private idle WebSocket: closed once collected after T's kill.
    expect(out.privateReply).toBe('echo hi');
    expect(out.private.closedAfterMs).not.toBeNull();
    // Server side: T sent on the server's end and waited; its kill destroyed the connection.
    expect(out.server.clientSawCloseAfterMs).not.toBeNull();
    expect(out.server.clientSawCloseAfterMs).toBeLessThan(1000);
    // Made lazily by A, kept for everyone: B is served after A's kill.
    expect(out.lazyA).toBe('echo from A');
    expect(out.lazyB).toBe('echo from B');
  });
});

describe('what the reports say of a private connection', () => {
  it('the test-runner adapters name one a passing test left open, with its creation site, and the run ends by itself', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, ['--import', 'evy/node-test', '--test', fileURLToPath(new URL('../fixtures/ownership/orphan.node-test.mjs', import.meta.url))],
        { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, timeout: 20_000 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })),
    );
    const all = r.stdout + r.stderr;
    expect(r.code, all).toBe(0);
    // Unref'd, it is not among what keeps the process alive (the explainer used to list every socket).
    expect(all).not.toMatch(/what keeps it alive/);
    expect(all).toMatch(/evy: note: test "kills a thread holding its own idle connection" left a killed thread's private connection open: socket to 127\.0\.0\.1:\d+ \(.*orphan\.node-test\.mjs:\d+\)/);
  });
});
