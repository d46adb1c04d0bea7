// undo() puts back every slot monkeyPatch() (and the hooks it installs lazily) replaced: checked against a
// snapshot of every function-valued property of every place a patch could go, taken before patching, not
// against a list of the slots kept by hand. The places walked: every builtin module loaded at that moment
// (node:tls, node:http, node:https and the rest are loaded by this file's imports, so the lazy hooks install
// when a thread connects), the prototypes of their exported classes, globalThis, require.extensions, the
// prototypes of a timer and an immediate, and pg's, mysql2's and ioredis's client classes (wrapped as they load).
// This file runs alone in its process (vitest's forks pool), so nothing was patched before the snapshot.
import timers from 'node:timers';
import timersPromises from 'node:timers/promises';
import fs from 'node:fs';
import childProcess from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import { once } from 'node:events';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { makeCerts } from './helpers/certs.js';
import { Event, monkeyPatch, sleep, spawn, withTimeout } from '../src/index.js';

const require = createRequire(import.meta.url);

type Slot = { value?: unknown; get?: unknown; set?: unknown };

/** Every place evy could patch, named for the report. */
function places(): Map<string, object> {
  const out = new Map<string, object>();
  const add = (name: string, o: unknown): void => {
    if (o !== null && (typeof o === 'object' || typeof o === 'function') && ![...out.values()].includes(o as object)) out.set(name, o as object);
  };
  add('globalThis', globalThis);
  add('require.extensions', require('node:module')._extensions);
  const loaded = (process as unknown as { moduleLoadList: string[] }).moduleLoadList;
  for (const id of builtinModules) {
    if (id.startsWith('_') || !loaded.includes(`NativeModule ${id}`)) continue;
    const mod = process.getBuiltinModule(id) as Record<string, unknown>;
    add(id, mod);
    for (const key of Reflect.ownKeys(mod)) {
      const d = Object.getOwnPropertyDescriptor(mod, key);
      const v = d && 'value' in d ? d.value : undefined; // no getters run: a lazy export stays lazy
      if (typeof v === 'function' && v.prototype !== undefined) add(`${id}.${String(key)}.prototype`, v.prototype);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) add(`${id}.${String(key)}`, v); // fs.promises, fs.constants...
    }
  }
  add('fs.promises', fs.promises);
  const timer = setTimeout(() => {}, 0);
  clearTimeout(timer);
  add('Timeout.prototype', Object.getPrototypeOf(timer));
  const imm = setImmediate(() => {});
  clearImmediate(imm);
  add('Immediate.prototype', Object.getPrototypeOf(imm));
  add('pg.Client.prototype', pg.Client.prototype);
  add('mysql2 Connection.prototype', Object.getPrototypeOf(require('mysql2').Connection.prototype));
  add('mysql2 Connection.prototype (subclass)', require('mysql2').Connection.prototype);
  add('ioredis Redis.prototype', require('ioredis').default.prototype);
  add('ioredis Pipeline.prototype', require('ioredis').Pipeline.prototype);
  return out;
}

/** The own properties of `o` (string and symbol keys) that hold or compute functions, and the values of the others. */
function slots(o: object): Map<PropertyKey, Slot> {
  const m = new Map<PropertyKey, Slot>();
  for (const key of Reflect.ownKeys(o)) {
    const d = Object.getOwnPropertyDescriptor(o, key)!;
    if ('value' in d) m.set(key, { value: d.value });
    else m.set(key, { get: d.get, set: d.set });
  }
  return m;
}

function snapshot(where: Map<string, object>): Map<string, Map<PropertyKey, Slot>> {
  return new Map([...where].map(([name, o]) => [name, slots(o)]));
}

/** What differs: a function slot replaced, a slot added or removed (on globalThis, only function-valued ones). */
function differences(where: Map<string, object>, before: Map<string, Map<PropertyKey, Slot>>): string[] {
  const out: string[] = [];
  const isFn = (s: Slot | undefined): boolean => s !== undefined && (typeof s.value === 'function' || s.get !== undefined || s.set !== undefined);
  for (const [name, o] of where) {
    const was = before.get(name)!;
    const now = slots(o);
    for (const key of new Set([...was.keys(), ...now.keys()])) {
      const a = was.get(key);
      const b = now.get(key);
      // globalThis carries the test runner's and other state that comes and goes: only its functions count.
      if (o === globalThis && !isFn(a) && !isFn(b)) continue;
      const label = `${name}[${String(key)}]`;
      if (a === undefined) out.push(`${label} added`);
      else if (b === undefined) out.push(`${label} removed`);
      else if (isFn(a) || isFn(b)) {
        if (a.value !== b.value || a.get !== b.get || a.set !== b.set) out.push(`${label} not restored`);
      } else if (!Object.is(a.value, b.value) && typeof a.value !== 'object') {
        out.push(`${label} changed from ${String(a.value)} to ${String(b.value)}`);
      }
    }
  }
  return out;
}

it('undo() restores every slot the patch and its hooks replaced, and leaves none added', async () => {
  const certs = makeCerts();
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'evy-undo-'));
  const where = places();
  expect(where.has('net.Socket.prototype') && where.has('http.Agent.prototype') && where.has('tls')).toBe(true);
  const before = snapshot(where);
  const h = monkeyPatch();
  try {
    // Something was patched in each kind of place (or the walk would prove nothing).
    expect(differences(where, before).length).toBeGreaterThan(20);
    await spawn(async () => {
      // timers, global and module, and their promise versions; an unref'd one
      const t1 = setTimeout(() => {}, 1000);
      clearTimeout(t1);
      const i1 = setInterval(() => {}, 1000);
      clearInterval(i1);
      const im = setImmediate(() => {});
      clearImmediate(im);
      timers.setTimeout(() => {}, 1).unref();
      await timersPromises.setTimeout(1);
      await timersPromises.setImmediate();
      for await (const _ of timersPromises.setInterval(1)) break;
      // fs streams, watchers, promises
      const file = path.join(dir, 'f.txt');
      await fs.promises.writeFile(file, 'x');
      await fs.promises.appendFile(file, 'y');
      expect(await fs.promises.readFile(file, 'utf8')).toBe('xy');
      const fh = await fs.promises.open(file);
      await fh.close();
      const ws = fs.createWriteStream(path.join(dir, 'w.txt'));
      ws.end('z');
      await once(ws, 'close');
      const rs = fs.createReadStream(file);
      rs.resume();
      await once(rs, 'close');
      fs.watch(dir).close();
      // child processes, every way
      await new Promise((r) => childProcess.exec('true', r));
      await new Promise((r) => childProcess.execFile('true', r));
      await once(childProcess.spawn('true'), 'exit');
      // sockets: a server, a raw request, TLS, http and https through an agent
      const srv = net.createServer((s) => s.on('data', (d) => s.end(d))).listen(0, '127.0.0.1');
      await once(srv, 'listening');
      const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
      c.write('ping');
      await once(c, 'data');
      c.destroy();
      srv.close();
      const tsrv = tls.createServer({ key: certs.serverKey, cert: certs.serverCert }, (s) => s.end('hi')).listen(0, '127.0.0.1');
      await once(tsrv, 'listening');
      const tc = tls.connect({ port: (tsrv.address() as net.AddressInfo).port, host: '127.0.0.1', ca: certs.caCert, servername: 'localhost' });
      await once(tc, 'data');
      tc.destroy();
      tsrv.close();
      const hsrv = http.createServer((_q, r) => r.end('ok')).listen(0, '127.0.0.1');
      await once(hsrv, 'listening');
      const res = await new Promise<http.IncomingMessage>((r) => http.get(`http://127.0.0.1:${(hsrv.address() as net.AddressInfo).port}/`, r));
      res.resume();
      await once(res, 'end');
      hsrv.closeAllConnections();
      hsrv.close();
      const ssrv = https.createServer({ key: certs.serverKey, cert: certs.serverCert }, (_q, r) => r.end('ok')).listen(0, '127.0.0.1');
      await once(ssrv, 'listening');
      const sres = await new Promise<http.IncomingMessage>((r) =>
        https.get({ host: '127.0.0.1', port: (ssrv.address() as net.AddressInfo).port, ca: certs.caCert, servername: 'localhost', agent: new https.Agent() }, r),
      );
      sres.resume();
      await once(sres, 'end');
      ssrv.closeAllConnections();
      ssrv.close();
    }).wait();
    // A kill too, of a thread holding a timer and a child.
    await expect(withTimeout(0.05, async () => {
      setInterval(() => {}, 1000);
      await new Promise((r) => childProcess.spawn('sleep', ['5']).once('exit', r));
    })).rejects.toThrow();
    await sleep(0);
  } finally {
    h.undo();
    fs.rmSync(dir, { recursive: true, force: true });
    certs.cleanup();
  }
  expect(differences(where, before)).toEqual([]);
});

it("after undo(), evy/green/timers hook unref() again at their next owned timer: an unref'd heartbeat survives the kill", async () => {
  const green = await import('../src/green/timers.js');
  const h = monkeyPatch({ timers: true });
  await spawn(async () => {
    setTimeout(() => {}, 1).unref(); // hooks unref while patched
  }).wait();
  h.undo();
  const proto = Object.getPrototypeOf(timers.setTimeout(() => {}, 0).unref());
  expect(Object.getOwnPropertySymbols(proto).map(String)).not.toContain('Symbol(evy.timer.unrefHooked)');
  const ticks: string[] = [];
  let heartbeat: NodeJS.Timeout | undefined;
  const started = new Event<void>();
  const t = spawn(async () => {
    heartbeat = green.setInterval(() => ticks.push('heartbeat'), 5).unref();
    green.setInterval(() => ticks.push('owned'), 5); // ref'd: the thread's own, cleared by the kill
    started.send();
    await sleep(10);
  });
  await started.wait();
  await t.kill();
  ticks.length = 0;
  for (let i = 0; i < 200 && !ticks.includes('heartbeat'); i++) await sleep(0.005);
  green.clearInterval(heartbeat);
  expect(new Set(ticks)).toEqual(new Set(['heartbeat']));
});
