// The cost of a request thread alone, for bench/http-server.bench.mjs: an http.Server's 'request' emitted in a
// loop with an IncomingMessage and a ServerResponse on an unconnected socket (no I/O), answered synchronously;
// argv[2] `evy` turns request threads on (monkeyPatch({ http: true })). Prints CPU µs per request, then the heap
// bytes per request held in flight (a handler that never answers; run with --expose-gc).
// Each emit starts in the async context a server's own emit starts in: Node calls 'request' from a native
// callback of the socket, which enters the socket's context (here, as there, the one where the server was
// made: no store) and leaves it afterwards. An AsyncResource made at the top does the same for both runs.
import http from 'node:http';
import net from 'node:net';
import { AsyncResource } from 'node:async_hooks';

const evy = await import(process.argv[3]);
if (process.argv[2] === 'evy') evy.monkeyPatch({ http: true });
const server = http.createServer((req, res) => res.end('hello world'));
const sock = new net.Socket();
const socketContext = new AsyncResource('bench.socket');
function once() {
  socketContext.runInAsyncScope(emitOne);
}
function emitOne() {
  const req = new http.IncomingMessage(sock);
  req.method = 'GET';
  req.url = '/';
  server.emit('request', req, new http.ServerResponse(req));
}
const N = 200_000;
for (let i = 0; i < 20_000; i++) once();
const c0 = process.cpuUsage();
for (let i = 0; i < N; i++) once();
const c = process.cpuUsage(c0);
const held = [];
const holder = http.createServer((req, res) => held.push(res));
const H = 20_000;
const hold = () => {
  const req = new http.IncomingMessage(sock);
  req.method = 'GET';
  req.url = '/hold';
  holder.emit('request', req, new http.ServerResponse(req));
};
hold();
globalThis.gc();
globalThis.gc();
const h0 = process.memoryUsage().heapUsed;
for (let i = 0; i < H; i++) hold();
globalThis.gc();
globalThis.gc();
const perRequest = (process.memoryUsage().heapUsed - h0) / H;
process.stdout.write(`${((c.user + c.system) / N).toFixed(3)} ${perRequest.toFixed(0)}\n`);
