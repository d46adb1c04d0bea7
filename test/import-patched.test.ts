// importPatched: one module tree sees the green (or given) builtins, the rest of the process keeps the real ones.
// vitest's forks pool runs this file in its own process: the hooks importPatched registers stay there.
import realChildProcess from 'node:child_process';
import realFs from 'node:fs';
import realFsPromises from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import realNet from 'node:net';
import realOs from 'node:os';
import realTimers from 'node:timers';
import realTimersPromises from 'node:timers/promises';
import realTls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { importPatched, import_patched, spawn, until } from '../src/index.js';

const require = createRequire(import.meta.url);
const FIX = new URL('../fixtures/import-patched/', import.meta.url);
const ESM = new URL('esm/', FIX).href;
const CJS = new URL('cjs/', FIX).href;
/** Node's own import(), not vitest's module runner: "imported normally". */
const nativeImport: (u: string) => Promise<any> = require('../fixtures/import-patched/native-import.cjs');
const fixture = (rel: string) => new URL(rel, FIX).href;

const real: Record<string, unknown> = {
  net: realNet,
  tls: realTls,
  timers: realTimers,
  fs: realFs,
  child_process: realChildProcess,
  'fs/promises': realFsPromises,
  'timers/promises': realTimersPromises,
};

/** A stand-in for node:net: a full module (every name the fixtures import) that can be told apart. */
function fakeNet() {
  return { ...realNet, connect: function fakeConnect() {}, marker: Symbol('fake net') };
}

describe('importPatched: ES module trees', () => {
  it('swaps net for every importer in the tree: default, named, bare, children, node_modules, CommonJS children', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${ESM}lib.mjs`, { net });
    const s = ns.seen;
    expect(s.netDefault).toBe(net);
    expect(s.netBare).toBe(net);
    expect(s.connect).toBe(net.connect);
    expect(s.helperNet).toBe(net); // relative ESM child
    expect(s.esmPkgNet).toBe(net); // ESM package under node_modules
    expect(s.esmPkgDeepNet).toBe(net); // a file deeper in that package
    expect(s.cjsPkgNet).toBe(net); // CJS package under node_modules, imported from ESM
    expect(s.depNet).toBe(net); // relative CJS child (mixed tree)
    expect(s.depConnect).toBe(net.connect); // named import from a CJS child
    // Narrowed to net: the other builtins are the real ones.
    expect(s.setTimeout).toBe(realTimers.setTimeout);
    expect(s.readFile).toBe(realFsPromises.readFile);
    expect(ns.url).toMatch(/lib\.mjs\?evy-green=\d+$/);
  });

  it('keeps the real builtins for the same modules imported normally, before and after, in the same process', async () => {
    const before = await nativeImport(`${ESM}lib.mjs`);
    const net = fakeNet();
    const patched = await importPatched(`${ESM}lib.mjs`, { net });
    const after = await nativeImport(`${ESM}lib.mjs`);
    expect(after).toBe(before); // the plain instance is untouched by the patched load
    for (const s of [before.seen, after.seen]) {
      for (const key of ['netDefault', 'netBare', 'helperNet', 'esmPkgNet', 'esmPkgDeepNet', 'cjsPkgNet', 'depNet']) {
        expect(s[key], key).toBe(realNet);
      }
      expect(s.connect).toBe(realNet.connect);
    }
    expect(patched.seen.netDefault).toBe(net);
    // Fresh instances of the children, not the shared ones.
    expect(patched.helperInstance).not.toBe(before.helperInstance);
    expect(require('net')).toBe(realNet);
    expect((await nativeImport('node:net')).default).toBe(realNet);
  });

  it('each call loads a fresh instance of the tree', async () => {
    const a = await importPatched(`${ESM}lib.mjs`, { net: fakeNet() });
    const b = await importPatched(`${ESM}lib.mjs`, { net: fakeNet() });
    expect(a.helperInstance).not.toBe(b.helperInstance);
    expect(a.seen.depDefault).not.toBe(b.seen.depDefault);
    expect(a.seen.netDefault).not.toBe(b.seen.netDefault);
  });

  it('a dynamic import() inside the tree, made later, stays in the tree', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${ESM}lib.mjs`, { net });
    expect(await ns.dynamicNet()).toBe(net);
    const child = await ns.dynamicChild();
    expect(child.helperInstance).toBe(ns.helperInstance); // the tree's own instance of helper.mjs
    const lazy = await importPatched(`${ESM}lazy-import.mjs`, { net });
    expect(await lazy.getNet()).toBe(net);
    expect(await (await nativeImport(`${ESM}lazy-import.mjs`)).getNet()).toBe(realNet);
  });

  it('a module that captures net.connect at load time captures the swapped one', async () => {
    const net = fakeNet();
    const patched = await importPatched(`${ESM}captures-at-load.mjs`, { net });
    const plain = await nativeImport(`${ESM}captures-at-load.mjs`);
    expect(patched.connector()).toBe(net.connect);
    expect(plain.connector()).toBe(realNet.connect);
  });

  it("by default swaps all five for evy's green modules (and their promises sub-paths); other builtins stay real", async () => {
    const ns = await importPatched(`${ESM}all-builtins.mjs`);
    for (const name of Object.keys(real)) {
      const green = (await nativeImport(fixture(`../../dist/green/${name.replace('/', '-')}.js`))).default;
      expect(ns.seen[name], name).toBe(green);
      expect(ns.seen[name], name).not.toBe(real[name]);
    }
    expect(ns.seen.os).toBe(realOs);
  });

  it('a list narrows the swap; node: prefixes are accepted; an object mixes green and given modules', async () => {
    const greenNet = (await nativeImport(fixture('../../dist/green/net.js'))).default;
    const greenTimers = (await nativeImport(fixture('../../dist/green/timers.js'))).default;
    const narrowed = await importPatched(`${ESM}all-builtins.mjs`, ['node:net']);
    expect(narrowed.seen.net).toBe(greenNet);
    for (const name of ['tls', 'timers', 'fs', 'child_process', 'fs/promises', 'timers/promises']) {
      expect(narrowed.seen[name], name).toBe(real[name]);
    }
    const fs = { ...realFs, promises: { ...realFsPromises, marker: 1 } };
    const mixed = await importPatched(`${ESM}all-builtins.mjs`, { net: fakeNet(), timers: true, fs, tls: false });
    expect(mixed.seen.timers).toBe(greenTimers);
    expect(mixed.seen.fs).toBe(fs);
    expect(mixed.seen['fs/promises']).toBe(fs.promises); // the given module's promises
    expect(mixed.seen.tls).toBe(realTls);
    expect(mixed.seen.net.marker).toBeTypeOf('symbol');
  });

  it("a replacement's own keys become the namespace, odd names included; default is the object itself", async () => {
    const net = { ...fakeNet(), 'odd-name': 1, delete: 2, '\u00e9t\u00e9': 3 };
    const { ns } = await importPatched(`${ESM}namespace.mjs`, { net });
    expect(ns.default).toBe(net);
    expect(ns['odd-name']).toBe(1);
    expect(ns.delete).toBe(2);
    expect(ns['\u00e9t\u00e9']).toBe(3);
    expect(ns.connect).toBe(net.connect);
    expect(Object.keys(ns).sort()).toEqual([...Object.keys(net), 'default'].sort());
  });

  it('concurrent calls on the same files build separate trees, each with its own modules', async () => {
    const nets = [fakeNet(), fakeNet(), fakeNet(), fakeNet()];
    const trees = await Promise.all(nets.map((net, i) => importPatched(i % 2 ? `${CJS}main.cjs` : `${ESM}lib.mjs`, { net })));
    trees.forEach((ns, i) => {
      expect(i % 2 ? ns.seen.childNet : ns.seen.depNet).toBe(nets[i]);
      expect(i % 2 ? ns.seen.pkgNet : ns.seen.cjsPkgNet).toBe(nets[i]);
    });
  });

  it('import_patched is the same function', () => {
    expect(import_patched).toBe(importPatched);
  });
});

describe('importPatched: CommonJS trees', () => {
  it('swaps the builtins for every require in the tree, relative children and node_modules packages', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}main.cjs`, { net });
    expect(ns.seen.net).toBe(net);
    expect(ns.seen.connect).toBe(net.connect);
    expect(ns.seen.childNet).toBe(net);
    expect(ns.seen.pkgNet).toBe(net);
    expect(ns.seen.setTimeout).toBe(realTimers.setTimeout);
    expect(ns.default.seen).toBe(ns.seen); // namespace shape of import() of CommonJS: default + named
    // module.parent and require.resolve as in Node.
    expect(ns.childParentFile).toBe(fileURLToPath(`${CJS}main.cjs`));
    expect(ns.required).toBe(fileURLToPath(fixture('node_modules/cjs-pkg/index.js')));
  });

  it('keeps the real builtins and the shared instances for a normal require of the same files', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}main.cjs`, { net });
    const plain = require('../fixtures/import-patched/cjs/main.cjs');
    expect(plain.seen.net).toBe(realNet);
    expect(plain.seen.childNet).toBe(realNet);
    expect(plain.seen.pkgNet).toBe(realNet);
    expect(plain.childInstance).not.toBe(ns.childInstance);
    expect(plain.pkgInstance).not.toBe(ns.pkgInstance);
    expect(require('../fixtures/import-patched/cjs/child.cjs').net).toBe(realNet);
    expect(require('net')).toBe(realNet);
  });

  it('a require made at call time, after the load, still gets the swapped module', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}lazy-require.cjs`, { net });
    expect(ns.getNet()).toBe(net);
    expect(require('../fixtures/import-patched/cjs/lazy-require.cjs').getNet()).toBe(realNet);
  });

  it('a module that captures net.connect at load time captures the swapped one', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}captures-at-load.cjs`, { net });
    expect(ns.connector()).toBe(net.connect);
    expect(require('../fixtures/import-patched/cjs/captures-at-load.cjs').connector()).toBe(realNet.connect);
  });

  it("swaps all five for evy's green CommonJS modules by default", async () => {
    const ns = await importPatched(`${CJS}all-builtins.cjs`);
    for (const name of Object.keys(real)) {
      expect(ns.seen[name], name).toBe(require(`../dist/green/${name.replace('/', '-')}.cjs`));
      expect(ns.seen[name], name).not.toBe(real[name]);
    }
    expect(ns.seen.os).toBe(realOs);
  });

  it('CommonJS that requires an ES module gets the shared instance of it (documented limit)', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}requires-esm.cjs`, { net });
    expect(ns.net).toBe(net);
    expect(ns.esm.helperNet).toBe(realNet);
  });
});

describe('importPatched: bad input', () => {
  it('an unknown specifier: ERR_MODULE_NOT_FOUND naming the specifier and what to do', async () => {
    const err = await importPatched('./no-such-module.mjs', [], { parent: ESM }).catch((e) => e);
    expect(err.code).toBe('ERR_MODULE_NOT_FOUND');
    expect(err.message).toContain("'./no-such-module.mjs'");
    expect(err.message).toContain('options.parent');
    expect(err.cause.code).toBe('ERR_MODULE_NOT_FOUND');
    const pkg = await importPatched('no-such-package-evy', [], { parent: ESM }).catch((e) => e);
    expect(pkg.code).toBe('ERR_MODULE_NOT_FOUND');
  });

  it('a missing module inside the tree is a load failure, not "cannot resolve the specifier"', async () => {
    const err = await importPatched('./imports-missing.mjs', [], { parent: ESM }).catch((e) => e);
    expect(err.code).toBe('ERR_EVY_IMPORT_PATCHED_LOAD');
    expect(err.cause.code).toBe('ERR_MODULE_NOT_FOUND');
  });

  it('a builtin evy has no green module for: ERR_INVALID_ARG_VALUE listing the swappable ones', async () => {
    for (const modules of [['os'], ['socket'], { http: {} }, ['node:dns']] as any[]) {
      const err = await importPatched(`${ESM}helper.mjs`, modules).catch((e) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(err.message).toContain('net, tls, timers, fs, child_process');
    }
  });

  it('wrong argument types: ERR_INVALID_ARG_TYPE', async () => {
    const cases: [unknown, unknown, unknown][] = [
      [42, undefined, undefined],
      ['', undefined, undefined],
      [`${ESM}helper.mjs`, 'net', undefined],
      [`${ESM}helper.mjs`, { net: 5 }, undefined],
      ['./helper.mjs', [], { parent: 7 }],
    ];
    for (const [spec, modules, options] of cases) {
      const err = await (importPatched as any)(spec, modules, options).catch((e: unknown) => e);
      expect(err.code, JSON.stringify([spec, modules])).toBe('ERR_INVALID_ARG_TYPE');
    }
  });

  it('a module that throws while loading (ESM, or a CommonJS child): ERR_EVY_IMPORT_PATCHED_LOAD with the error as cause', async () => {
    const esm = await importPatched('./throws.mjs', { net: fakeNet() }, { parent: ESM }).catch((e) => e);
    expect(esm.code).toBe('ERR_EVY_IMPORT_PATCHED_LOAD');
    expect(esm.message).toContain('fixture throws while loading');
    expect(esm.cause.message).toBe('fixture throws while loading');
    const cjs = await importPatched('./imports-throwing-cjs.mjs', { net: fakeNet() }, { parent: ESM }).catch((e) => e);
    expect(cjs.code).toBe('ERR_EVY_IMPORT_PATCHED_LOAD');
    expect(cjs.cause).toBeInstanceOf(Error);
    expect(cjs.cause.message).toBe('fixture cjs throws while loading');
    const direct = await importPatched(`${CJS}throws.cjs`, { net: fakeNet() }).catch((e) => e);
    expect(direct.cause.message).toBe('fixture cjs throws while loading');
    // The process's modules afterwards: real, and importPatched keeps working.
    expect(require('net')).toBe(realNet);
    expect((await nativeImport(`${ESM}helper.mjs`)).helperNet).toBe(realNet);
    const net = fakeNet();
    expect((await importPatched(`${ESM}helper.mjs`, { net })).helperNet).toBe(net);
  });

  it('a relative specifier resolves against options.parent given as a URL object or a file path', async () => {
    const net = fakeNet();
    const a = await importPatched('./helper.mjs', { net }, { parent: new URL(ESM) });
    const b = await importPatched('../esm/helper.mjs', { net }, { parent: new URL(`${CJS}x.cjs`).pathname });
    expect(a.helperNet).toBe(net);
    expect(b.helperNet).toBe(net);
  });
});

describe('importPatched: where the tree ends (documented limits)', () => {
  it('createRequire inside a patched ES module gets the real builtin, and leaks nothing to plain code (Node 24 resolve cache)', async () => {
    const net = fakeNet();
    const patched = await importPatched(`${ESM}requires-esm.mjs`, { net });
    expect(patched.viaCreateRequire).toBe(realNet);
    const plain = await nativeImport(`${ESM}requires-esm.mjs`);
    expect(plain.viaCreateRequire).toBe(realNet);
    expect(createRequire(`${ESM}x.mjs`)('net')).toBe(realNet);
  });

  it('import() from a CommonJS module of the tree loads the shared ES module', async () => {
    const net = fakeNet();
    const ns = await importPatched(`${CJS}imports-esm.cjs`, { net });
    expect((await ns.load()).helperNet).toBe(realNet);
  });
});

describe('importPatched: ownership', () => {
  for (const [kind, file] of [['ES module', `${ESM}client.mjs`], ['CommonJS', `${CJS}client.cjs`]] as const) {
    it(`${kind}: a patched instance's socket belongs to the green thread using it (kill destroys it); the plain instance's does not`, async () => {
      let received!: () => void;
      const bothWrote = new Promise<void>((resolve) => {
        let n = 0;
        received = () => ++n === 2 && resolve();
      });
      // A server that reads requests and never replies: each client keeps a request outstanding.
      const server = realNet.createServer((c) => c.once('data', received));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as realNet.AddressInfo;
      const patched = await importPatched(file, ['net']);
      const plain = await nativeImport(file);
      expect(patched.net).not.toBe(realNet);
      expect(plain.net).toBe(realNet);
      const socks: realNet.Socket[] = [];
      const gt = spawn(async () => {
        const p: realNet.Socket = patched.open(port);
        const q: realNet.Socket = plain.open(port);
        socks.push(p, q);
        p.write('request');
        q.write('request');
        await until(new Promise((resolve) => p.once('data', resolve))); // a reply that never comes
      });
      await bothWrote;
      await gt.kill();
      const [p, q] = socks;
      expect(p!.destroyed).toBe(true);
      expect(q!.destroyed).toBe(false);
      q!.destroy();
      await new Promise((resolve) => server.close(resolve));
    });
  }
});

describe('importPatched: specifier forms', () => {
  it('accepts an absolute file path, a file: URL object and a bare package name', async () => {
    const net = fakeNet();
    const byPath = await importPatched(new URL(`${ESM}helper.mjs`).pathname, { net });
    const byUrl = await importPatched(new URL(`${ESM}helper.mjs`), { net });
    const bare = await importPatched('esm-pkg', { net }, { parent: ESM });
    expect(byPath.helperNet).toBe(net);
    expect(byUrl.helperNet).toBe(net);
    expect(bare.default.net).toBe(net);
    expect(byPath.helperInstance).not.toBe(byUrl.helperInstance);
  });

  it('without options.parent a relative specifier resolves against the calling file (read from the stack)', async () => {
    const net = fakeNet();
    const ns = await importPatched('../fixtures/import-patched/esm/helper.mjs', { net });
    expect(ns.helperNet).toBe(net);
    const err = await importPatched('./helper.mjs', { net }).catch((e) => e); // not next to this file
    expect(err.code).toBe('ERR_MODULE_NOT_FOUND');
    expect(err.message).toContain('import-patched.test.ts');
  });
});
