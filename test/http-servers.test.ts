// Issue 23: unchanged servers (node:http, Express 5, Fastify 5; no evy import) under `node --import
// evy/register`. What a request started (a request to an upstream server, a `sleep` child, a PostgreSQL
// statement) stops when nobody waits for the answer any more: the client left, the request's deadline
// passed, or the drain of a shutdown ended. Each case is also run without the `http` patch key (today's code
// before request threads), where the work goes on: the control that shows the test can fail.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, disposeApps, get, PgWatch, startApp, Upstream, whenTrue, type App } from './helpers/http-apps.js';
import { plan, postgresAvailability, requireServer, startPostgres, type PgServer } from './helpers/servers.js';

const avail = postgresAvailability();
const { skip, title } = plan(avail, 'request threads in unchanged servers, against PostgreSQL, an upstream and children');

const APPS = ['app-node.mjs', 'app-express.mjs', 'app-fastify.mjs'];
const NO_HTTP = { EVY_PATCH: 'net,tls,timers,fs,child_process' };
/** How long after the trigger each piece of work must be gone (the bound). */
const BOUND = 500;

describe.skipIf(skip)(title, () => {
  let server: PgServer;
  let upstream: Upstream;
  let watch: PgWatch;
  let n = 0;
  const tag = (p: string): string => `${p}${++n}x${process.pid}`;
  const env = (): Record<string, string> => ({ ...server.env, UPSTREAM_PORT: String(upstream.port) });

  beforeAll(async () => {
    requireServer(avail);
    server = await startPostgres();
    upstream = await new Upstream().start();
    watch = await new PgWatch(server.config).start();
  }, 90_000);

  afterAll(async () => {
    disposeApps();
    await watch?.stop();
    await upstream?.stop();
    await server?.stop();
  }, 60_000);

  /** Waits until the request `t` has all three pieces running. */
  async function started(app: App, t: string): Promise<number> {
    const pid = await app.childPid(t);
    expect(await whenTrue(() => upstream.seen.has(t), performance.now(), 10_000)).not.toBeNull();
    expect(await whenTrue(() => watch.running(t), performance.now(), 10_000)).not.toBeNull();
    return pid;
  }

  /** The ms from `t0` until the upstream saw its socket close, the child was gone, the statement was gone. */
  async function stopped(t: string, pid: number, t0: number, ms = 3000): Promise<{ upstream: number | null; child: number | null; statement: number | null }> {
    const [u, c, s] = await Promise.all([
      whenTrue(() => upstream.seen.get(t)?.closed != null, t0, ms),
      whenTrue(() => !alive(pid), t0, ms),
      whenTrue(async () => !(await watch.running(t)), t0, ms),
    ]);
    return { upstream: u === null ? null : upstream.seen.get(t)!.closed! - t0, child: c, statement: s };
  }

  function withinBound(f: Record<string, number | null>): void {
    for (const [k, v] of Object.entries(f)) {
      expect(v, `${k}: ${JSON.stringify(f)}`).not.toBeNull();
      expect(v!, `${k}: ${JSON.stringify(f)}`).toBeLessThanOrEqual(BOUND);
    }
  }

  describe.each(APPS)('%s', (file) => {
    it('the client gives up at 200 ms: upstream request aborted, child gone, statement gone, each within 500 ms; the server goes on serving', async () => {
      const app = await startApp(file, env());
      const t = tag('a');
      const { done, req } = get(app.port, `/work/${t}`);
      done.catch(() => {});
      const t1 = performance.now();
      const pid = await started(app, t);
      await new Promise((r) => setTimeout(r, Math.max(0, 200 - (performance.now() - t1))));
      const t0 = performance.now();
      req.destroy();
      const f = await stopped(t, pid, t0);
      console.log(`[http] ${file} client abort: ${JSON.stringify(f)}`);
      withinBound(f);
      const again = await get(app.port, '/quick').done;
      expect(again.status).toBe(200);
      expect(again.body).toBe('ok');
      expect(app.stderr).toBe('');
      app.proc.kill('SIGKILL');
    });

    it(`EVY_REQUEST_DEADLINE=1: 503 with Connection: close at 1 s, one line naming what it waited on; upstream, child and statement gone within 500 ms; the server goes on serving`, async () => {
      const app = await startApp(file, { ...env(), EVY_REQUEST_DEADLINE: '1'});
      const t = tag('d');
      const t1 = performance.now();
      const { done } = get(app.port, `/work/${t}`);
      const pid = await started(app, t);
      const res = await done;
      expect(res.status).toBe(503);
      expect(res.headers.connection).toBe('close');
      expect(res.at - t1).toBeGreaterThanOrEqual(990);
      expect(res.at - t1).toBeLessThan(1000 + BOUND);
      const f = await stopped(t, pid, res.at);
      console.log(`[http] ${file} deadline: ${JSON.stringify(f)}`);
      withinBound(f);
      await whenTrue(() => app.stderr.includes('\n'), performance.now(), 2000);
      const lines = app.stderr.trim().split('\n');
      expect(lines, app.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^evy: GET /work/${t} killed at its 1 s deadline, after 1(\\.\\d+)? s, while waiting on: `));
      expect(lines[0]).toContain(`http request GET http://127.0.0.1:${upstream.port}/${t} (fixtures/http/work.mjs:`);
      expect(lines[0]).toContain(`child process pid ${pid} (sleep 30) (fixtures/http/work.mjs:`);
      expect(lines[0]).toMatch(/pg query "SELECT pg_sleep\(\$1\) AS "d\d+x\d+"" on 127\.0\.0\.1:\d+/);
      const again = await get(app.port, '/quick').done;
      expect(again.status).toBe(200);
      app.proc.kill('SIGKILL');
    });
  });

  describe('control: without the http key (the code before request threads), the work goes on', () => {
    it('client abort: after 1 s the upstream request, the child and the statement are all still there', async () => {
      const app = await startApp('app-node.mjs', { ...env(), ...NO_HTTP });
      const t = tag('c');
      const { done, req } = get(app.port, `/work/${t}`);
      done.catch(() => {});
      const pid = await started(app, t);
      req.destroy();
      await new Promise((r) => setTimeout(r, 1000));
      expect(upstream.seen.get(t)!.closed).toBeNull();
      expect(alive(pid)).toBe(true);
      expect(await watch.running(t)).toBe(true);
      app.proc.kill('SIGKILL');
    });

    it('EVY_REQUEST_DEADLINE=1: no answer at 1.5 s, the work goes on', async () => {
      const app = await startApp('app-node.mjs', { ...env(), ...NO_HTTP, EVY_REQUEST_DEADLINE: '1' });
      const t = tag('c');
      const { done, req } = get(app.port, `/work/${t}`);
      let answered = false;
      done.then(() => (answered = true), () => {});
      const pid = await started(app, t);
      await new Promise((r) => setTimeout(r, 1500));
      expect(answered).toBe(false);
      expect(alive(pid)).toBe(true);
      expect(await watch.running(t)).toBe(true);
      req.destroy();
      app.proc.kill('SIGKILL');
    });
  });
});
