// evy/green/* used directly, with nothing patched globally (what importPatched hands a module tree):
// complete drop-in replacements for the builtins, plus ownership of what they create.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import * as realNet from 'node:net';
import * as realTls from 'node:tls';
import * as realTimers from 'node:timers';
import * as realTimersPromises from 'node:timers/promises';
import * as realFs from 'node:fs';
import * as realFsPromises from 'node:fs/promises';
import * as realChild from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GreenletExit, isMonkeyPatched, sleep, spawn, withTimeout } from '../src/index.js';
import * as gNet from '../src/green/net.js';
import * as gTls from '../src/green/tls.js';
import * as gTimers from '../src/green/timers.js';
import * as gTimersPromises from '../src/green/timers-promises.js';
import * as gFs from '../src/green/fs.js';
import * as gFsPromises from '../src/green/fs-promises.js';
import * as gChild from '../src/green/child_process.js';
import { makeCerts, type Certs } from './helpers/certs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const PAIRS: [string, Record<string, any>, Record<string, any>, string[]][] = [
  ['net', realNet, gNet, ['connect', 'createConnection', 'createServer']],
  ['tls', realTls, gTls, ['connect', 'createServer']],
  ['timers', realTimers, gTimers, ['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'promises']],
  ['timers/promises', realTimersPromises, gTimersPromises, ['setTimeout', 'setImmediate', 'setInterval']],
  ['fs', realFs, gFs, ['createReadStream', 'createWriteStream', 'watch', 'promises']],
  ['fs/promises', realFsPromises, gFsPromises, ['open', 'readFile', 'writeFile', 'appendFile', 'watch']],
  ['child_process', realChild, gChild, ['spawn', 'exec', 'execFile', 'fork']],
];

describe('drop-in shape', () => {
  it.each(PAIRS)('evy/green/%s has every named export and a default like node:%s', (_name, real, green, replaced) => {
    const realNames = Object.keys(real).filter((k) => k !== 'default');
    const greenNames = new Set(Object.keys(green));
    for (const k of realNames) expect(greenNames.has(k), k).toBe(true);
    for (const k of Object.keys(real.default)) expect(k in green.default, `default.${k}`).toBe(true);
    for (const k of realNames) {
      if (replaced.includes(k)) {
        expect(green[k], k).not.toBe(real[k]);
        expect(green.default[k], `default.${k}`).toBe(green[k]);
      } else if (typeof real[k] === 'function') {
        expect(green[k], k).toBe(real[k]); // classes and the rest are the real ones: instanceof holds
      }
    }
  });

  it('extras are only the documented blocking-style helpers', () => {
    for (const [name, real, green] of PAIRS) {
      const extra = Object.keys(green).filter((k) => k !== 'default' && !(k in real));
      expect(extra, name).toEqual(name === 'child_process' ? expect.arrayContaining(['wait', 'communicate']) : []);
    }
  });

  it('the built ESM and CJS files have the same shape (what the loader redirects to)', async () => {
    const script = `
      const names = ['net', 'tls', 'timers', 'fs', 'child_process'];
      const out = {};
      for (const n of names) {
        const esm = await import('${ROOT}dist/green/' + n + '.js');
        const cjs = require('${ROOT}dist/green/' + n + '.cjs');
        const real = require('node:' + n);
        const missing = Object.keys(real).filter((k) => !(k in esm) || !(k in cjs) || !(k in esm.default));
        out[n] = { missing, sameConnect: esm.default.connect === esm.connect };
      }
      console.log(JSON.stringify(out));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=commonjs', '-e', `(async () => {${script}})()`]);
    const out = JSON.parse(stdout);
    for (const n of ['net', 'tls', 'timers', 'fs', 'child_process']) expect(out[n].missing, n).toEqual([]);
  });

  it('the green modules patch nothing globally', () => {
    for (const m of ['net', 'tls', 'timers', 'fs', 'child_process']) expect(isMonkeyPatched(m)).toBe(false);
    expect(globalThis.setTimeout).toBe(realTimers.setTimeout);
  });
});

describe('evy/green/net and evy/green/tls', () => {
  it("a green socket waiting for a reply dies with its thread; a plain net socket's does not (nothing patched)", async () => {
    const server = realNet.createServer(() => {}).listen(0, '127.0.0.1'); // never answers
    await once(server, 'listening');
    const port = (server.address() as realNet.AddressInfo).port;
    let green: realNet.Socket | undefined;
    let plain: realNet.Socket | undefined;
    const t = spawn(async () => {
      green = gNet.connect(port, '127.0.0.1');
      plain = realNet.connect(port, '127.0.0.1');
      green.write('question');
      await once(green, 'data'); // no 'error' listener: the kill must not crash anything
    });
    await sleep(0.05);
    await t.kill();
    await sleep(0.01);
    expect(green!.destroyed).toBe(true);
    expect(plain!.destroyed).toBe(false);
    plain!.destroy();
    server.close();
  });

  it('a green server stops listening when the thread that started it is killed', async () => {
    let server: realNet.Server | undefined;
    const t = spawn(async () => {
      server = gNet.createServer((s) => s.end('hi')).listen(0, '127.0.0.1');
      await sleep(10);
    });
    await sleep(0.05);
    expect(server!.listening).toBe(true);
    expect(server).toBeInstanceOf(realNet.Server);
    await t.kill();
    await sleep(0.01);
    expect(server!.listening).toBe(false);
  });

  describe('tls', () => {
    let certs: Certs;
    beforeAll(() => {
      certs = makeCerts();
    });
    afterAll(() => certs.cleanup());

    it('a TLS client waiting for a response is destroyed by the kill; the request finishes when not killed', async () => {
      const server = realTls
        .createServer({ key: certs.serverKey, cert: certs.serverCert }, (s) => {
          s.on('data', (d) => {
            if (String(d) === 'ping') s.write('pong');
          });
        })
        .listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as realNet.AddressInfo).port;
      const opts = { host: '127.0.0.1', port, ca: certs.caCert, servername: 'localhost' };
      const ok = spawn(async () => {
        const s = gTls.connect(opts);
        await once(s, 'secureConnect');
        s.write('ping');
        const [reply] = await once(s, 'data');
        s.end();
        return String(reply);
      });
      expect(await ok.wait()).toBe('pong');
      let sock: realTls.TLSSocket | undefined;
      const killed = spawn(async () => {
        sock = gTls.connect(opts);
        await once(sock, 'secureConnect');
        sock.write('silence'); // no answer comes
        await once(sock, 'data');
      });
      await sleep(0.2);
      await killed.kill();
      await sleep(0.01);
      expect(sock).toBeInstanceOf(realTls.TLSSocket);
      expect(sock!.destroyed).toBe(true);
      server.close();
    });
  });
});

describe('evy/green/timers', () => {
  it('timers created through the module are owned; the promise versions reject with the kill error', async () => {
    const fired: string[] = [];
    let rejected: unknown;
    const t = spawn(async () => {
      gTimers.setTimeout(() => fired.push('timeout'), 20);
      gTimers.setInterval(() => fired.push('interval'), 10);
      gTimersPromises.setTimeout(10_000).catch((e) => (rejected = e));
      await sleep(10);
    });
    await sleep(0.005);
    const err = new GreenletExit('bye');
    await t.kill(err);
    await sleep(0.05);
    expect(fired).toEqual([]);
    expect(rejected).toBe(err);
    expect(gTimers.promises.setTimeout).toBe(gTimersPromises.setTimeout);
  });
});

describe('evy/green/fs', () => {
  it('a stream and a FileHandle opened through the module are closed by the kill; readFile rejects with it', async () => {
    let rs: realFs.ReadStream | undefined;
    let fh: realFsPromises.FileHandle | undefined;
    let readErr: unknown;
    const t = spawn(async () => {
      rs = gFs.createReadStream(fileURLToPath(import.meta.url));
      rs.pause();
      fh = await gFsPromises.open(fileURLToPath(import.meta.url));
      gFs.promises.readFile('/dev/zero').catch((e) => (readErr = e));
      await sleep(10);
    });
    await sleep(0.05);
    await t.kill();
    await sleep(0.05);
    expect(rs!.destroyed).toBe(true);
    expect(fh!.fd).toBe(-1);
    expect(readErr).toBeInstanceOf(GreenletExit);
    expect(gFs.promises.stat).toBe(realFsPromises.stat); // the rest: the originals
  });
});

describe('evy/green/child_process', () => {
  it('a child spawned through the module is terminated by the kill; wait() gives its returncode', async () => {
    let child: gChild.GreenChildProcess | undefined;
    const t = spawn(async () => {
      child = gChild.spawn('sleep', ['100']);
      return child.wait();
    });
    await sleep(0.05);
    const watcher = spawn(() => child!.wait());
    await t.kill();
    expect(await watcher.wait()).toBe(-15); // SIGTERM, as Python reports it
  });

  it('communicate() feeds stdin and collects stdout and stderr; exec through promisify is owned too', async () => {
    const t = spawn(async () => {
      const p = gChild.spawn(process.execPath, ['-e', 'process.stdin.pipe(process.stdout); console.error("err")']);
      const [out, err] = await p.communicate('round trip');
      const { stdout } = await promisify(gChild.exec)('echo shell');
      return [String(out), String(err).trim(), stdout.trim()];
    });
    expect(await t.wait()).toEqual(['round trip', 'err', 'shell']);
    let pending: Promise<unknown> & { child?: realChild.ChildProcess };
    const k = spawn(async () => {
      pending = promisify(gChild.exec)('sleep 100');
      await pending;
    });
    await sleep(0.05);
    await k.kill();
    // SIGTERM; or SIGKILL when the shell was still between fork and exec at the kill (signals blocked there:
    // child-tree.ts kills such a process outright), which a loaded machine makes likely 50 ms after the start.
    const e = (await pending!.then(() => null, (x: unknown) => x)) as { signal?: string } | null;
    expect(e).not.toBeNull();
    expect(['SIGTERM', 'SIGKILL']).toContain(e!.signal);
  });

  it('communicate() after the output was already read to the end still returns', async () => {
    const t = spawn(async () => {
      const p = gChild.spawn(process.execPath, ['-e', 'console.log("early")']);
      let seen = '';
      p.stdout!.on('data', (d: Buffer) => (seen += d));
      await p.wait();
      if (!p.stdout!.readableEnded) await once(p.stdout!, 'end');
      const [out] = await p.communicate();
      return [seen.trim(), out!.length];
    });
    expect(await withTimeout(5, () => t.wait())).toEqual(['early', 0]);
  });
});
