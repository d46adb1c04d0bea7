// eventlet's dispatch pattern (its "feed scraper"): a server accepts a POST listing feeds, one URL a line,
// and fans each feed out to a GreenPile of parsers that fetch and parse them at the same time; it answers
// with one line per feed, in the order posted. A shared GreenPool bounds the parsers across all requests,
// and a feed that does not answer in time is cut off (withTimeout) instead of holding the request.
//   node examples/dispatch.mjs            serves some feeds and the dispatcher locally, posts to it, prints
//   curl --data-binary @urls.txt http://127.0.0.1:<port>/titles      (against a running dispatcher)
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { GreenPile, GreenPool, Timeout, spawn, withTimeout } from 'evy';
import { fetchPage } from './crawler.mjs';

/**
 * A local feed host: /feed/i is an RSS document with `items` items, answered after `delayMs`; the feeds
 * listed in `hang` never answer (a dead upstream). Resolves { url(i), stats, close() }.
 */
export async function serveFeeds({ delayMs = 100, items = 5, hang = [] } = {}) {
  const stats = { requests: 0, inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    res.once('close', () => stats.inFlight--);
    const m = /^\/feed\/(\d+)$/.exec(req.url);
    if (!m) return void res.writeHead(404).end();
    const i = Number(m[1]);
    if (hang.includes(i)) return; // never answers; the dispatcher's timeout must deal with it
    setTimeout(() => {
      const entries = Array.from({ length: items }, (_, k) => `<item><title>story ${i}.${k}</title></item>`).join('');
      res.writeHead(200, { 'content-type': 'application/rss+xml' });
      res.end(`<?xml version="1.0"?><rss version="2.0"><channel><title>Feed number ${i}</title>${entries}</channel></rss>`);
    }, delayMs);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    url: (i) => `${base}/feed/${i}`,
    stats,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The title and item count of an RSS or Atom document (a tiny parser: enough for the example). */
export function parseFeed(xml) {
  const title = /<title>([^<]*)<\/title>/.exec(xml)?.[1]?.trim() ?? '(untitled)';
  const items = (xml.match(/<item[\s>]|<entry[\s>]/g) ?? []).length;
  return { title, items };
}

/**
 * The dispatcher: POST /titles with feed URLs, one a line. Each request is handled in its own green
 * thread; its feeds go to a GreenPile over one GreenPool of `parsers` shared by every request, each fetch
 * limited to `timeout` seconds. Resolves { url, stats, close() }.
 */
export async function startDispatcher({ parsers = 20, timeout = 1 } = {}) {
  const pool = new GreenPool(parsers);
  const stats = { requests: 0, feeds: 0, timeouts: 0, maxParsersAtOnce: 0 };

  async function parser(url) {
    stats.maxParsersAtOnce = Math.max(stats.maxParsersAtOnce, pool.running());
    try {
      const { status, body } = await withTimeout(timeout, fetchPage, url);
      if (status !== 200) return `${url}: HTTP ${status}`;
      const { title, items } = parseFeed(body);
      return `${title} (${items} items)`;
    } catch (e) {
      if (e instanceof Timeout) {
        stats.timeouts++;
        return `${url}: no answer in ${timeout} s`;
      }
      return `${url}: ${e?.code ?? e?.message ?? e}`;
    }
  }

  async function handle(req, res) {
    stats.requests++;
    try {
      if (req.method !== 'POST' || req.url !== '/titles') {
        res.writeHead(405, { 'content-type': 'text/plain' }).end('POST feed URLs, one a line, to /titles\n');
        return;
      }
      let body = '';
      for await (const chunk of req) body += chunk;
      const pile = new GreenPile(pool);
      for (const line of body.split('\n')) {
        const url = line.trim();
        if (url === '') continue;
        stats.feeds++;
        await pile.spawn(parser, url); // waits for a free parser when the shared pool is full
      }
      const lines = [];
      for await (const line of pile) lines.push(line); // in the order posted
      res.writeHead(200, { 'content-type': 'text/plain' }).end(lines.join('\n') + '\n');
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`error: ${e?.message ?? e}\n`);
    }
  }

  const server = http.createServer((req, res) => {
    spawn(handle, req, res); // one green thread per request
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/titles`,
    stats,
    close: async () => {
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await pool.killall();
    },
  };
}

/** POSTs `text` to `url` with Node's http client; resolves { status, body }. */
export function post(url, text) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(text);
  });
}

async function main() {
  const n = Number(process.argv[2] ?? 30);
  const delayMs = 100;
  const hang = [7];
  const feeds = await serveFeeds({ delayMs, hang });
  const dispatcher = await startDispatcher({ parsers: 20, timeout: 0.5 });
  console.log(`feeds at ${feeds.url(0).replace(/0$/, '<i>')} (${delayMs} ms each; feed ${hang.join(', ')} never answers)`);
  console.log(`dispatcher at ${dispatcher.url}; posting ${n} feed URLs...`);
  const urls = Array.from({ length: n }, (_, i) => feeds.url(i)).join('\n');
  const t0 = performance.now();
  const { status, body } = await post(dispatcher.url, urls);
  const seconds = (performance.now() - t0) / 1000;
  console.log(`HTTP ${status}:`);
  for (const line of body.trimEnd().split('\n')) console.log(`  ${line}`);
  console.log(
    `${n} feeds parsed in ${seconds.toFixed(2)} s with up to ${dispatcher.stats.maxParsersAtOnce} parsers at once ` +
      `(${dispatcher.stats.timeouts} cut off by the timeout); one at a time it would take at least ${((n * delayMs) / 1000).toFixed(1)} s`,
  );
  await dispatcher.close();
  await feeds.close();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
