// The pieces the server tests watch from outside: an example app run as a real process under the hook, an
// upstream server that records when each request's socket closes, and PostgreSQL's own view of a statement.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import pg from 'pg';
import { removeSnapshot, snapshotPackage } from './snapshot.js';

let snapshotDir: string | null = null;

/** The package copy the apps run from (made once per test file). */
export async function appRoot(): Promise<string> {
  snapshotDir ??= await snapshotPackage('evy-http', ['fixtures/http']);
  return snapshotDir;
}

export function disposeApps(): void {
  for (const a of running) a.proc.kill('SIGKILL');
  running.clear();
  removeSnapshot(snapshotDir);
  snapshotDir = null;
}

const running = new Set<App>();

export class App {
  lines: any[] = [];
  stderr = '';
  port = 0;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private waiters: (() => void)[] = [];

  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push({ text: line });
        }
        this.poke();
      }
    });
    proc.stderr!.on('data', (d) => {
      this.stderr += d;
      this.poke();
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
      running.delete(this);
      resolve({ code, signal, at: performance.now() });
    }));
  }

  private poke(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves with the first logged line that `pred` accepts (waits for it up to `ms`). */
  async line(pred: (l: any) => boolean, ms = 10_000): Promise<any> {
    const end = performance.now() + ms;
    for (;;) {
      const l = this.lines.find(pred);
      if (l !== undefined) return l;
      if (performance.now() > end) throw new Error(`no such line within ${ms} ms; stdout: ${JSON.stringify(this.lines)}\nstderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  childPid(tag: string): Promise<number> {
    return this.line((l) => l.child === tag).then((l) => l.pid);
  }
}

/** Runs fixtures/http/<file> as `node --import evy/register <file>`; resolves once it listens. */
export async function startApp(file: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<App> {
  const root = await appRoot();
  const proc = spawn(process.execPath, ['--import', 'evy/register', ...nodeArgs, path.join(root, 'fixtures', 'http', file)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const app = new App(proc);
  running.add(app);
  app.port = (await app.line((l) => l.listening !== undefined, 20_000)).listening;
  return app;
}

/** An upstream server: requests to /<tag> are recorded; tags starting with `m` are answered after 600 ms, the rest never. */
export class Upstream {
  readonly server: http.Server;
  readonly seen = new Map<string, { arrived: number; closed: number | null }>();
  port = 0;

  constructor() {
    this.server = http.createServer((req, res) => {
      const tag = (req.url ?? '/').slice(1);
      const rec = { arrived: performance.now(), closed: null as number | null };
      this.seen.set(tag, rec);
      req.socket.once('close', () => (rec.closed = performance.now()));
      if (tag.startsWith('m')) setTimeout(() => res.end(`answer ${tag}`), 600);
      else if (tag.startsWith('q')) res.end(`answer ${tag}`);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** PostgreSQL's own view: is a statement with this tag running? */
export class PgWatch {
  private readonly c: pg.Client;
  constructor(config: pg.ClientConfig) {
    this.c = new pg.Client(config);
  }
  async start(): Promise<this> {
    await this.c.connect();
    return this;
  }
  async running(tag: string): Promise<boolean> {
    const r = await this.c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, [`%"${tag}"%`]);
    return r.rows[0].n > 0;
  }
  async stop(): Promise<void> {
    await this.c.end();
  }
}

/** Polls `cond` every 10 ms; the ms it took from `t0`, or null if it did not hold within `ms` of now. */
export async function whenTrue(cond: () => boolean | Promise<boolean>, t0: number, ms: number): Promise<number | null> {
  const end = performance.now() + ms;
  for (;;) {
    if (await cond()) return performance.now() - t0;
    if (performance.now() > end) return null;
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A GET on a fresh connection (or `agent`); `abortAfter` destroys the request after that many ms. */
export function get(port: number, urlPath: string, opts: { agent?: http.Agent; abortAfter?: number } = {}): { done: Promise<Response>; req: http.ClientRequest } {
  const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: opts.agent ?? false });
  const done = new Promise<Response>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, at: performance.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  done.catch(() => {}); // a test that aborts the request need not wait for this
  return { done, req };
}
