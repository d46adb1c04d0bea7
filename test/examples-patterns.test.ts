// eventlet's design patterns as runnable examples: the crawler (client pattern), the feed dispatcher
// (dispatch pattern) and the `npm start` tour. Each is run as a program (it must finish by itself, exit 0,
// and say what it did) and its functions are driven directly over real http/https sockets on 127.0.0.1.
import { spawn as spawnProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path, { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from './helpers/certs.js';
import { removeSnapshot, snapshotPackage } from './helpers/snapshot.js';

// The examples run from a snapshot of the package (test/helpers/snapshot.ts).
let root = '';
let crawler: any;
let dispatch: any;

beforeAll(async () => {
  root = await snapshotPackage('evy-patterns', ['examples']);
  crawler = await import(pathToFileURL(path.join(root, 'examples', 'crawler.mjs')).href);
  dispatch = await import(pathToFileURL(path.join(root, 'examples', 'dispatch.mjs')).href);
});

afterAll(() => removeSnapshot(root));

interface Run {
  code: number | null;
  out: string;
  err: string;
  ms: number;
}

/** Runs an example to its end (killed after `timeoutMs`: it must finish by itself). */
function run(args: string[], timeoutMs = 20_000): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawnProcess(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, ms: performance.now() - t0 });
    });
  });
}

describe('client pattern: examples/crawler.mjs', () => {
  it('fetches every page of its local site exactly once, 10 at a time, far faster than one by one', async () => {
    const pages = 40;
    const delayMs = 50;
    const site = await crawler.serveSite({ pages, delayMs });
    try {
      const r = await crawler.crawl(site.url, { concurrency: 10 });
      expect(r.failed).toEqual([]);
      const urls = r.fetched.map((f: any) => f.url).sort();
      const want = [site.url, ...Array.from({ length: pages - 1 }, (_, i) => `${site.url}page/${i + 1}`)].sort();
      expect(urls).toEqual(want); // each page once; the outside link never followed
      expect(r.fetched.every((f: any) => f.status === 200 && f.bytes > 0)).toBe(true);
      expect(site.stats.requests).toBe(pages);
      // The pool really ran 10 at once and never more; so did the server see them.
      expect(r.maxAtOnce).toBe(10);
      expect(site.stats.maxInFlight).toBeGreaterThan(1);
      expect(site.stats.maxInFlight).toBeLessThanOrEqual(10);
      // One by one: at least 40 x 50 ms = 2 s. A tree 4 levels deep at 10 at once: about 0.3 s (loose bound:
      // the machine is shared).
      expect(r.seconds).toBeLessThan(((pages * delayMs) / 1000) * 0.75);
    } finally {
      await site.close();
    }
  });

  describe('over https', () => {
    let certs: Certs;
    beforeAll(() => {
      certs = makeCerts();
    });
    afterAll(() => certs?.cleanup());

    it('crawls an https site with Node https client and server, trusting only the given CA', async () => {
      const site = await crawler.serveSite({ pages: 13, delayMs: 10, tls: { key: certs.serverKey, cert: certs.serverCert } });
      try {
        expect(site.url).toMatch(/^https:/);
        const ok = await crawler.crawl(site.url, { concurrency: 4, ca: certs.caCert });
        expect(ok.failed).toEqual([]);
        expect(ok.fetched).toHaveLength(13);
        // Without the CA the certificate is refused: the start page fails, nothing else is fetched.
        const refused = await crawler.crawl(site.url, { concurrency: 4 });
        expect(refused.fetched).toHaveLength(0);
        expect(refused.failed).toHaveLength(1);
        expect(refused.failed[0].error).toMatch(/CERT|SELF_SIGNED|UNABLE/);
      } finally {
        await site.close();
      }
    });
  });

  it('a fetch that outlives its timeout is cut off: Timeout, and the request is gone from the server', async () => {
    const site = await crawler.serveSite({ pages: 5, delayMs: 10_000 });
    try {
      const t0 = performance.now();
      const r = await crawler.crawl(site.url, { concurrency: 5, timeout: 0.2 });
      const seconds = (performance.now() - t0) / 1000;
      expect(r.fetched).toEqual([]);
      expect(r.failed).toEqual([{ url: site.url, error: 'timeout' }]);
      expect(seconds).toBeLessThan(2);
      // The aborted request closed its connection: the server no longer holds it open.
      for (let i = 0; i < 50 && site.stats.inFlight > 0; i++) await new Promise((res) => setTimeout(res, 20));
      expect(site.stats.inFlight).toBe(0);
    } finally {
      await site.close();
    }
  });

  it('runs as a program, alone and under `node --import evy/register`, finishing by itself', async () => {
    for (const args of [['examples/crawler.mjs', '30', '5', '30'], ['--import', './register.mjs', 'examples/crawler.mjs', '30', '5', '30']]) {
      const r = await run(args);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/serving a 30-page site at http:\/\/127\.0\.0\.1:\d+\//);
      expect(r.out).toMatch(/fetched 30 pages \(0 failed\) in [\d.]+ s, 5 threads at once/);
      expect(r.out.match(/^ {2}200 http/gm)).toHaveLength(30);
    }
  });
});

describe('dispatch pattern: examples/dispatch.mjs', () => {
  it('parseFeed reads RSS and Atom', () => {
    expect(dispatch.parseFeed('<rss><channel><title> News </title><item><title>a</title></item><item>b</item></channel></rss>')).toEqual({ title: 'News', items: 2 });
    expect(dispatch.parseFeed('<feed><title>Atom</title><entry>x</entry></feed>')).toEqual({ title: 'Atom', items: 1 });
    expect(dispatch.parseFeed('<nothing/>')).toEqual({ title: '(untitled)', items: 0 });
  });

  it('fans posted feeds out to parsers at once, answers in the order posted, cuts off a dead feed', async () => {
    const delayMs = 100;
    const feeds = await dispatch.serveFeeds({ delayMs, items: 3, hang: [3] });
    const d = await dispatch.startDispatcher({ parsers: 10, timeout: 0.3 });
    try {
      const n = 25;
      const t0 = performance.now();
      const r = await dispatch.post(d.url, Array.from({ length: n }, (_, i) => feeds.url(i)).join('\n') + '\n\n');
      const seconds = (performance.now() - t0) / 1000;
      expect(r.status).toBe(200);
      const lines = r.body.trimEnd().split('\n');
      expect(lines).toHaveLength(n);
      lines.forEach((line: string, i: number) => {
        expect(line).toBe(i === 3 ? `${feeds.url(3)}: no answer in 0.3 s` : `Feed number ${i} (3 items)`);
      });
      expect(d.stats.timeouts).toBe(1);
      expect(d.stats.maxParsersAtOnce).toBe(10);
      expect(feeds.stats.maxInFlight).toBeLessThanOrEqual(10);
      // One by one: 2.5 s plus the timeout. 10 at a time: three waves of 100 ms and the 0.3 s timeout, about
      // 0.4 s (loose bound: the machine is shared).
      expect(seconds).toBeLessThan(2);
      // The dead feed's request was aborted, not left hanging on the feed host.
      for (let i = 0; i < 50 && feeds.stats.inFlight > 0; i++) await new Promise((res) => setTimeout(res, 20));
      expect(feeds.stats.inFlight).toBe(0);
    } finally {
      await d.close();
      await feeds.close();
    }
  });

  it('concurrent requests share one parser pool: never more parsers than its size, every answer right', async () => {
    const feeds = await dispatch.serveFeeds({ delayMs: 30, items: 2 });
    const d = await dispatch.startDispatcher({ parsers: 6, timeout: 2 });
    try {
      const bodies = [0, 1, 2, 3].map((k) => Array.from({ length: 8 }, (_, i) => feeds.url(k * 8 + i)).join('\n'));
      const answers = await Promise.all(bodies.map((b) => dispatch.post(d.url, b)));
      answers.forEach((a: any, k: number) => {
        expect(a.status).toBe(200);
        expect(a.body.trimEnd().split('\n')).toEqual(Array.from({ length: 8 }, (_, i) => `Feed number ${k * 8 + i} (2 items)`));
      });
      expect(d.stats.requests).toBe(4);
      expect(d.stats.maxParsersAtOnce).toBe(6);
      expect(feeds.stats.maxInFlight).toBeLessThanOrEqual(6);
      // Anything but a POST to /titles is refused with a hint.
      const r = await dispatch.post(d.url.replace(/titles$/, 'other'), 'x');
      expect(r.status).toBe(405);
      expect(r.body).toMatch(/POST feed URLs/);
    } finally {
      await d.close();
      await feeds.close();
    }
  });

  it('runs as a program, finishing by itself', async () => {
    const r = await run(['examples/dispatch.mjs', '24']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^HTTP 200:$/m);
    expect(r.out).toMatch(/feed\/7: no answer in 0\.5 s/);
    expect(r.out).toMatch(/Feed number 23 \(5 items\)/);
    expect(r.out).toMatch(/24 feeds parsed in [\d.]+ s with up to 20 parsers at once \(1 cut off by the timeout\)/);
  });
});

describe('npm start: examples/demo.mjs', () => {
  it('tours the patterns with visible output and exits 0 within seconds', async () => {
    const r = await run(['examples/demo.mjs'], 30_000);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/fetched 60 pages in [\d.]+ s with 10 green threads at once/);
    expect(r.out).toMatch(/30 feeds in [\d.]+ s, up to 20 parsers at once, 1 cut off by withTimeout/);
    expect(r.out).toMatch(/50 clients x 20 lines, 1000 echoed back intact in [\d.]+ s, \d+ handler threads at once/);
    expect(r.out).toMatch(/40 jobs through a Queue\(5\) to 4 workers .* 4 busy at once, .* \(correct\)/);
    expect(r.out).toMatch(/tour done in [\d.]+ s/);
    expect(r.ms).toBeLessThan(15_000);
  });

  it('part 5: an unaware program under --import evy/register is cut by withTimeout and leaves nothing', async () => {
    const r = await run(['examples/demo.mjs'], 30_000);
    expect(r.code).toBe(0);
    const part = r.out.slice(r.out.indexOf('== 5. the hook'));
    expect(part).toMatch(/patched by the hook: net, timers, child_process\n/);
    expect(part).toMatch(/withTimeout\(0\.5\) cut main\(\) after 0\.\d+ s: Timeout\n/);
    const list = (label: string): string => new RegExp(`resources ${label}: +(.*)\n`).exec(part)?.[1] ?? 'missing';
    // While it ran, the app held a socket, a child and an interval; afterwards exactly what was there before.
    expect(list('during')).toMatch(/ProcessWrap/);
    expect(list('during')).toMatch(/TCPSocketWrap/);
    expect(list('during')).toMatch(/Timeout/);
    expect(list('after')).toBe(list('before'));
    expect(list('after')).not.toMatch(/ProcessWrap|TCPSocketWrap|Timeout/);
    expect(part).toMatch(/nothing of the app is left/);
  });

  it('npm start builds only when dist/ is stale, in one quiet line', async () => {
    // A tree with sources and a build, whose times the test sets (the real build is not touched).
    const tree = mkdtempSync(join(tmpdir(), 'evy-stale-'));
    try {
      for (const f of ['src/index.ts', 'tsup.config.ts', 'package.json', 'dist/index.js', 'dist/index.cjs', 'dist/register.js']) {
        mkdirSync(dirname(join(tree, f)), { recursive: true });
        writeFileSync(join(tree, f), '');
      }
      const at = (f: string, s: number): void => utimesSync(join(tree, f), s, s);
      for (const f of ['src/index.ts', 'tsup.config.ts', 'package.json']) at(f, 1_000_000);
      for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/register.js']) at(f, 2_000_000);
      const script = fileURLToPath(new URL('../examples/build-if-stale.mjs', import.meta.url));
      const go = (): Promise<Run> =>
        new Promise((resolve) => {
          const c = spawnProcess(process.execPath, [script], { env: { ...process.env, EVY_BUILD_ROOT: tree, EVY_BUILD_DRY_RUN: '1' } });
          let out = '';
          let err = '';
          c.stdout.on('data', (d) => (out += d));
          c.stderr.on('data', (d) => (err += d));
          c.once('close', (code) => resolve({ code, out, err, ms: 0 }));
        });
      expect(await go()).toMatchObject({ code: 0, out: '', err: '' }); // fresh: nothing to do, nothing printed
      at('src/index.ts', 3_000_000);
      expect(await go()).toMatchObject({ code: 0, out: 'building dist/ (sources changed since the last build)... done\n', err: '' });
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });
});

