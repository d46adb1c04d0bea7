// `npm start`: a tour of evy through eventlet's three design patterns, each on real sockets on 127.0.0.1.
//   1. client pattern   - a crawler fetching a local site through a GreenPool (examples/crawler.mjs)
//   2. dispatch pattern - a server fanning posted feeds out to a GreenPile of parsers (examples/dispatch.mjs)
//   3. server pattern   - a blocking-style echo server, one green thread per client (examples/echo-server.mjs)
//   4. producer/consumer - a bounded Queue feeding a GreenPool of workers
//   5. the hook         - a program that knows nothing of evy, under `node --import evy/register`, cut by withTimeout
// Each part says what it did, how long it took and how many green threads ran at once. Takes a few seconds.
import { GreenPool, Queue, connect, listen, serve, sleep, spawn } from 'evy';
import { crawl, serveSite } from './crawler.mjs';
import { post, serveFeeds, startDispatcher } from './dispatch.mjs';
import { spawn as spawnProcess } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const secs = (t0) => ((performance.now() - t0) / 1000).toFixed(2);
const heading = (s) => console.log(`\n== ${s}`);
const tourStart = performance.now();

// ---- 1. client pattern ------------------------------------------------------------------------------
heading('1. client pattern: a web crawler with a GreenPool (examples/crawler.mjs)');
{
  const pages = 60;
  const delayMs = 40;
  const site = await serveSite({ pages, delayMs });
  console.log(`a ${pages}-page site at ${site.url}, every page answering after ${delayMs} ms`);
  let shown = 0;
  const r = await crawl(site.url, {
    concurrency: 10,
    // Show the first few fetches as they happen, then only the summary.
    log: (line) => (shown++ < 5 ? console.log(line) : shown === 6 ? console.log('  ...') : undefined),
  });
  await site.close();
  console.log(
    `fetched ${r.fetched.length} pages in ${r.seconds.toFixed(2)} s with ${r.maxAtOnce} green threads at once ` +
      `(one at a time: >= ${((r.fetched.length * delayMs) / 1000).toFixed(2)} s)`,
  );
}

// ---- 2. dispatch pattern ----------------------------------------------------------------------------
heading('2. dispatch pattern: a feed server fanning out to a GreenPile (examples/dispatch.mjs)');
{
  const n = 30;
  const delayMs = 100;
  const feeds = await serveFeeds({ delayMs, hang: [7] });
  const dispatcher = await startDispatcher({ parsers: 20, timeout: 0.5 });
  console.log(`posting ${n} feed URLs to ${dispatcher.url} (each feed answers after ${delayMs} ms; feed 7 never does)`);
  const t0 = performance.now();
  const { status, body } = await post(dispatcher.url, Array.from({ length: n }, (_, i) => feeds.url(i)).join('\n'));
  const lines = body.trimEnd().split('\n');
  console.log(`HTTP ${status}, ${lines.length} lines in the order posted:`);
  for (const line of [...lines.slice(0, 3), '...', lines[7], '...', lines[lines.length - 1]]) console.log(`  ${line}`);
  console.log(
    `${n} feeds in ${secs(t0)} s, up to ${dispatcher.stats.maxParsersAtOnce} parsers at once, ` +
      `${dispatcher.stats.timeouts} cut off by withTimeout (one at a time: >= ${((n * delayMs) / 1000).toFixed(1)} s)`,
  );
  await dispatcher.close();
  await feeds.close();
}

// ---- 3. server pattern ------------------------------------------------------------------------------
heading('3. server pattern: a blocking-style echo server (see examples/echo-server.mjs, examples/chat-server.mjs)');
{
  const server = await listen(['127.0.0.1', 0]);
  const [host, port] = server.getsockname();
  let clientsAtOnce = 0;
  let maxClientsAtOnce = 0;
  const serving = spawn(serve, server, async (client) => {
    clientsAtOnce++;
    maxClientsAtOnce = Math.max(maxClientsAtOnce, clientsAtOnce);
    try {
      for (;;) {
        const data = await client.recv(4096);
        if (data.length === 0) return;
        await client.sendall(data);
      }
    } finally {
      clientsAtOnce--;
    }
  });
  const clients = 50;
  const rounds = 20;
  const t0 = performance.now();
  const pool = new GreenPool(clients);
  let echoed = 0;
  for (let c = 0; c < clients; c++) {
    await pool.spawn(async () => {
      const sock = await connect([host, port]);
      try {
        for (let i = 0; i < rounds; i++) {
          const msg = `client ${c} line ${i}\n`;
          await sock.sendall(msg);
          let got = '';
          while (got.length < msg.length) got += (await sock.recv(4096)).toString();
          if (got === msg) echoed++;
          await sleep(0.001);
        }
      } finally {
        sock.close();
      }
    });
  }
  await pool.waitall();
  console.log(
    `echo server on ${host}:${port}: ${clients} clients x ${rounds} lines, ${echoed} echoed back intact in ${secs(t0)} s, ` +
      `${maxClientsAtOnce} handler threads at once`,
  );
  await serving.kill(); // closes the listening socket
}

// ---- 4. producer/consumer ---------------------------------------------------------------------------
heading('4. producer/consumer: a bounded Queue feeding a GreenPool of workers');
{
  const jobs = new Queue(5); // bounded: the producer waits when the workers fall behind (backpressure)
  const results = new Queue();
  const workers = 4;
  const n = 40;
  const pool = new GreenPool(workers);
  const done = new Array(workers).fill(0);
  let busy = 0;
  let maxBusy = 0;
  let producerWaits = 0;
  const t0 = performance.now();
  for (let w = 0; w < workers; w++) {
    await pool.spawn(async () => {
      for (;;) {
        const job = await jobs.get();
        if (job === null) return; // no more work
        busy++;
        maxBusy = Math.max(maxBusy, busy);
        await sleep(0.01 + (job % 3) * 0.005); // the "work": I/O that takes a while
        await results.put([job, job * job, w]);
        done[w]++;
        busy--;
        jobs.taskDone();
      }
    });
  }
  const producer = spawn(async () => {
    for (let i = 0; i < n; i++) {
      if (jobs.full()) producerWaits++;
      await jobs.put(i);
    }
  });
  await producer.wait();
  await jobs.join(); // every job taken and marked done
  for (let w = 0; w < workers; w++) await jobs.put(null);
  await pool.waitall();
  let sum = 0;
  while (!results.empty()) sum += (await results.get())[1];
  const expected = Array.from({ length: n }, (_, i) => i * i).reduce((a, b) => a + b, 0);
  console.log(
    `${n} jobs through a Queue(5) to ${workers} workers in ${secs(t0)} s: per worker ${done.join('/')}, ` +
      `${maxBusy} busy at once, the producer waited for room ${producerWaits} times; ` +
      `sum of squares ${sum} (${sum === expected ? 'correct' : `WRONG, expected ${expected}`})`,
  );
}

// ---- 5. the hook -------------------------------------------------------------------------------------
heading('5. the hook: an unchanged program made killable (examples/unaware-app.mjs under node --import evy/register)');
{
  // A server that accepts and never answers, here, so that the other process's resources are only its own.
  const silent = http.createServer(() => {}).listen(0, '127.0.0.1');
  await new Promise((r) => silent.once('listening', r));
  const url = `http://127.0.0.1:${silent.address().port}/`;
  console.log(`the app: a setInterval, a \`sleep 30\` child, and http.get(${url}) to a server that never answers`);
  const register = fileURLToPath(new URL('../register.mjs', import.meta.url));
  const runner = fileURLToPath(new URL('./hook-run.mjs', import.meta.url));
  const child = spawnProcess(process.execPath, ['--import', register, runner, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.once('close', r));
  for (const line of out.trimEnd().split('\n')) console.log(line);
  silent.closeAllConnections();
  silent.close();
}

console.log(`\ntour done in ${secs(tourStart)} s. Next: docs/examples.md`);
