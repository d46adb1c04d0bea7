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
