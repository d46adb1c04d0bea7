// eventlet's client pattern: a web crawler that fetches many pages at once through a GreenPool and follows
// their links. It crawls a small site that it serves itself on 127.0.0.1 (no internet needed); each page
// answers after a delay, as a real server would, so running the fetches at once is what makes it fast.
//   node examples/crawler.mjs [pages=60] [concurrency=10] [delayMs=40]
// Uses Node's own http/https client and server; a kill or a timeout aborts a fetch through the thread's
// signal (and, under `node --import evy/register`, by destroying the socket the thread is using).
import http from 'node:http';
import https from 'node:https';
import { pathToFileURL } from 'node:url';
import { GreenPool, Queue, Timeout, getcurrent, withTimeout } from 'evy';

/**
 * A site of `pages` pages on 127.0.0.1: page i links to pages 3i+1..3i+3 (a tree covering them all), back
 * to the home page, and to an outside site that the crawler must not follow. Each answer takes `delayMs`.
 * With `tls: { key, cert }` it serves https. Resolves { url, stats, close() }.
 */
export async function serveSite({ pages = 60, delayMs = 40, tls = null } = {}) {
  const stats = { requests: 0, inFlight: 0, maxInFlight: 0 };
  const handler = (req, res) => {
    stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    const done = () => stats.inFlight--;
    res.once('close', done);
    const m = /^\/page\/(\d+)$/.exec(req.url);
    const i = req.url === '/' ? 0 : m ? Number(m[1]) : -1;
    setTimeout(() => {
      if (i < 0 || i >= pages) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const links = [1, 2, 3].map((k) => 3 * i + k).filter((j) => j < pages);
      const body =
        `<!doctype html><title>page ${i}</title><h1>Page ${i}</h1>\n` +
        links.map((j) => `<a href="/page/${j}">page ${j}</a>\n`).join('') +
        `<a href="/">home</a> <a href="http://example.invalid/elsewhere">elsewhere</a>\n`;
      res.writeHead(200, { 'content-type': 'text/html' }).end(body);
    }, delayMs);
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/`,
    stats,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** GETs `url`; resolves { status, body }. Aborted by the calling green thread's signal (kill, withTimeout). */
export function fetchPage(url, { agent, ca } = {}) {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.get(url, { agent, ca, signal: getcurrent().signal }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** The same-origin links of an HTML page, as absolute URLs without fragments. */
export function sameOriginLinks(html, base) {
  const origin = new URL(base).origin;
  const out = [];
  for (const m of html.matchAll(/href="([^"]+)"/g)) {
    const u = new URL(m[1], base);
    u.hash = '';
    if (u.origin === origin) out.push(u.href);
  }
  return out;
}

/**
 * Crawls from `start`, following same-origin links, `concurrency` fetches at a time (eventlet's
 * producer/consumer crawler: fetchers put the links they find on a Queue, the crawler spawns a fetcher per
 * new URL into the pool). Each fetch gets `timeout` seconds. Resolves what was fetched and how.
 */
export async function crawl(start, { concurrency = 10, maxPages = 1000, timeout = 5, ca, log = null } = {}) {
  const pool = new GreenPool(concurrency);
  const found = new Queue();
  const seen = new Set();
  const fetched = [];
  const failed = [];
  const agent = new (start.startsWith('https:') ? https : http).Agent({ keepAlive: true, ca });
  let maxAtOnce = 0;

  async function fetcher(url) {
    maxAtOnce = Math.max(maxAtOnce, pool.running());
    const t0 = performance.now();
    try {
      const { status, body } = await withTimeout(timeout, fetchPage, url, { agent, ca });
      const ms = performance.now() - t0;
      fetched.push({ url, status, bytes: body.length, ms });
      log?.(`  ${String(status)} ${url.padEnd(32)} ${String(body.length).padStart(4)} B ${ms.toFixed(0).padStart(4)} ms  (${pool.running()} running)`);
      if (status === 200) for (const link of sameOriginLinks(body, url)) found.putNowait(link);
    } catch (e) {
      failed.push({ url, error: e instanceof Timeout ? 'timeout' : String(e?.code ?? e?.message ?? e) });
    }
  }

  const t0 = performance.now();
  found.putNowait(start);
  try {
    // Level by level: hand every new URL to the pool, wait for that wave to finish, repeat while the
    // fetchers found more. spawn() waits for a free slot, so at most `concurrency` fetches run at once.
    while (!found.empty()) {
      while (!found.empty()) {
        const url = found.getNowait();
        if (seen.has(url) || seen.size >= maxPages) continue;
        seen.add(url);
        await pool.spawn(fetcher, url);
      }
      await pool.waitall();
    }
  } finally {
    await pool.killall(); // only does something if we were interrupted: no fetch outlives the crawl
    agent.destroy();
  }
  return { fetched, failed, seconds: (performance.now() - t0) / 1000, maxAtOnce };
}

async function main() {
  const pages = Number(process.argv[2] ?? 60);
  const concurrency = Number(process.argv[3] ?? 10);
  const delayMs = Number(process.argv[4] ?? 40);
  const site = await serveSite({ pages, delayMs });
  console.log(`serving a ${pages}-page site at ${site.url} (each page takes ${delayMs} ms)`);
  console.log(`crawling it with a GreenPool of ${concurrency}:`);
  const r = await crawl(site.url, { concurrency, log: console.log });
  await site.close();
  const serial = (r.fetched.length * delayMs) / 1000;
  console.log(
    `fetched ${r.fetched.length} pages (${r.failed.length} failed) in ${r.seconds.toFixed(2)} s, ` +
      `${r.maxAtOnce} threads at once (the server saw ${site.stats.maxInFlight} requests at once); ` +
      `one at a time it would take at least ${serial.toFixed(2)} s`,
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
