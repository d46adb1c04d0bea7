// importPatched seen from whole programs (each a fresh `node` on a fixture, against the built dist/): the caller's
// file as the default parent, evy's CJS build, the startup cost of never calling it, the state after failures.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const RUN = fileURLToPath(new URL('../fixtures/import-patched/run/', import.meta.url));

function run(file: string): any {
  const out = execFileSync(process.execPath, [file], { cwd: RUN, encoding: 'utf8', timeout: 15_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('importPatched in a program', () => {
  it('without options.parent, relative and bare specifiers resolve against the calling ES module', () => {
    expect(run('caller.mjs')).toEqual({ relative: true, bare: true, real: true });
  });

  it("works from CommonJS through evy's CJS build (same name and alias), the program's own requires stay real", () => {
    expect(run('caller.cjs')).toEqual({ alias: true, cjs: true, esm: true, real: true });
  });

  it('loading evy without calling importPatched loads none of loader/ and creates no importPatched state', () => {
    expect(run('startup.mjs')).toEqual({ api: 'function', loaded: [], state: true });
  });

  // Issue 20: from `node -e` (and the REPL) there is no calling file; `import()` and `require()` resolve a relative
  // specifier against the working directory there, and importPatched does the same (it threw before).
  describe('from node -e, with no calling file: relative specifiers resolve against the working directory', () => {
    const ESM_DIR = fileURLToPath(new URL('../fixtures/import-patched/esm/', import.meta.url));
    const dist = (f: string): string => JSON.stringify(fileURLToPath(new URL(`../dist/${f}`, import.meta.url)));
    const body = `
      const custom = { ...net, marker: 'custom' };
      const ns = await importPatched('./helper.mjs', { net: custom });
      const missing = await importPatched('./missing.mjs').catch((e) => e);
      console.log(JSON.stringify({ relative: ns.helperNet === custom, real: net.marker === undefined,
        code: missing.code, namesCwd: missing.message.includes('the working directory (' + process.cwd() + ')') }));`;
    const expected = { relative: true, real: true, code: 'ERR_MODULE_NOT_FOUND', namesCwd: true };
    const evalIn = (args: string[]): unknown => {
      const out = execFileSync(process.execPath, args, { cwd: ESM_DIR, encoding: 'utf8', timeout: 15_000 });
      return JSON.parse(out.trim().split('\n').pop()!);
    };

    it('node -e (CommonJS)', () => {
      const code = `const net = require('node:net'); const { importPatched } = require(${dist('index.cjs')});\n(async () => {${body}\n})();`;
      expect(evalIn(['-e', code])).toEqual(expected);
    });

    it('node --input-type=module -e', () => {
      const code = `import net from 'node:net'; import { importPatched } from ${dist('index.js')};\n${body}`;
      expect(evalIn(['--input-type=module', '-e', code])).toEqual(expected);
    });
  });

  it('after every kind of failure the real modules are intact and importPatched still works', () => {
    expect(run('real-after-error.mjs')).toEqual({
      codes: ['ERR_MODULE_NOT_FOUND', 'ERR_EVY_IMPORT_PATCHED_LOAD', 'ERR_EVY_IMPORT_PATCHED_LOAD', 'ERR_EVY_IMPORT_PATCHED_LOAD'],
      requireNet: true,
      plainTree: true,
      requireCjs: true,
      later: true,
    });
  });
});
