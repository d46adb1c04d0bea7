// A hello-world keep-alive server for bench/http-server.bench.mjs: node:http or Express (argv[2]). Prints its
// port. GET /hold never answers (an in-flight request, for the memory figure); GET /mem answers the heap in
// use after a full GC.
import http from 'node:http';

const kind = process.argv[2];
const held = [];
function special(req, res) {
  if (req.url === '/hold') {
    held.push(res);
    return true;
  }
  if (req.url === '/mem') {
    globalThis.gc?.();
    globalThis.gc?.();
    res.end(String(process.memoryUsage().heapUsed));
    return true;
  }
  return false;
}

let server;
if (kind === 'express') {
  const { default: express } = await import('express');
  const app = express();
  app.get('/hold', (req, res) => special(req, res));
  app.get('/mem', (req, res) => special(req, res));
  app.get('/', (req, res) => res.send('hello world'));
  server = http.createServer(app);
} else {
  server = http.createServer((req, res) => {
    if (special(req, res)) return;
    res.end('hello world');
  });
}
server.keepAliveTimeout = 60_000;
process.on('SIGUSR2', () => process.exit(0)); // a clean exit (--cpu-prof writes its profile then)
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
