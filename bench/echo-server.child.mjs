// One echo server process for bench/echo.bench.mjs: `raw` (plain net, 'data' -> write) or `evy`
// (serve + recv/sendall in a green thread per connection). Talks to the parent over IPC:
// { port } once listening; on 'stats' replies { conns, heapUsed, rss } after a full GC.
import net from 'node:net';
import { listen, serve } from '../dist/index.js';

const kind = process.argv[2];
let conns = 0;
let port;

if (kind === 'raw') {
  const server = net.createServer((s) => {
    conns++;
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
    s.on('close', () => conns--);
  });
  await new Promise((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: 511 }, r));
  port = server.address().port;
} else if (kind === 'async' || kind === 'async-als') {
  // The blocking style by hand, without evy: one async loop per connection awaiting a promise per read.
  // 'async-als' runs it inside an AsyncLocalStorage, as evy does (on Node 20 that turns on promise hooks).
  const { AsyncLocalStorage } = await import('node:async_hooks');
  const als = kind === 'async-als' ? new AsyncLocalStorage() : null;
  const server = net.createServer((s) => {
    conns++;
    let waiting = null;
    const queue = [];
    const push = (d) => {
      if (waiting === null) queue.push(d);
      else {
        const w = waiting;
        waiting = null;
        w(d);
      }
    };
    s.on('data', push);
    s.on('end', () => push(Buffer.alloc(0)));
    s.on('error', () => push(Buffer.alloc(0)));
    s.on('close', () => conns--);
    const loop = async () => {
      for (;;) {
        const d = queue.length > 0 ? queue.shift() : await new Promise((r) => (waiting = r));
        if (d.length === 0) return s.end();
        s.write(d);
        await undefined;
      }
    };
    if (als === null) void loop();
    else als.run({}, loop);
  });
  await new Promise((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: 511 }, r));
  port = server.address().port;
} else if (kind === 'evy') {
  const server = await listen(['127.0.0.1', 0], undefined, 511);
  port = server.getsockname()[1];
  void serve(
    server,
    async (c) => {
      conns++;
      try {
        for (;;) {
          const d = await c.recv(65536);
          if (d.length === 0) return;
          await c.sendall(d);
        }
      } catch {
        // a reset by the load generator at the end of a run: this client is done, the server goes on
      } finally {
        conns--;
      }
    },
    20000,
  );
} else {
  throw new Error(`unknown server kind ${kind}`);
}

process.on('message', (m) => {
  if (m === 'cpu') {
    const cpu = process.cpuUsage();
    process.send({ cpu: cpu.user + cpu.system, user: cpu.user, system: cpu.system });
  } else if (m === 'stats') {
    globalThis.gc?.();
    globalThis.gc?.();
    const mu = process.memoryUsage();
    const cpu = process.cpuUsage();
    process.send({ conns, heapUsed: mu.heapUsed, rss: mu.rss, cpu: cpu.user + cpu.system });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ port });
