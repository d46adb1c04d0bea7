import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('../fixtures/dual/main.mjs', import.meta.url));

describe('dual ESM/CJS package', () => {
  it('an app that imports the ESM build and requires the CJS build has one scheduler', () => {
    const out = JSON.parse(execFileSync(process.execPath, [fixture], { encoding: 'utf8' }));
    expect(out).toEqual({
      distinctCopies: true,
      sameRuntime: true,
      sameMain: true,
      currentAcrossCopies: true,
      queueWakesOtherCopy: 'from cjs',
      killAcrossCopies: true,
      timeoutAcrossCopies: true,
      poolAcrossCopies: [2, 4, 6],
    });
  });
});

describe('package exports', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  it('`import "evy"` and `require("evy")` resolve to the ESM and CJS builds, with types beside them', () => {
    const script = `
      const { createRequire } = require('node:module');
      const path = require('node:path');
      const fs = require('node:fs');
      const r = createRequire(path.join(process.cwd(), 'x.js'));
      const cjsPath = r.resolve('evy');
      import('evy').then((esm) => {
        const cjs = require('evy');
        console.log(JSON.stringify({
          cjs: path.relative(process.cwd(), cjsPath),
          sameScheduler: esm.getcurrent() === cjs.getcurrent(),
          aliases: esm.spawn_n === esm.spawnN && cjs.with_timeout === cjs.withTimeout,
          types: ['dist/index.d.ts', 'dist/index.d.cts'].every((f) => fs.existsSync(f)),
          pkg: require('evy/package.json').name,
        }));
      });`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' }));
    expect(out).toEqual({ cjs: 'dist/index.cjs', sameScheduler: true, aliases: true, types: true, pkg: 'evy' });
  });

  it('the published declarations carry no internals (stripInternal): no @internal, no underscore members', () => {
    const dirs = ['dist', 'dist/green', 'dist/testing'].map((d) => path.join(root, d));
    const files = dirs.flatMap((d) => fs.readdirSync(d).filter((f) => /\.d\.c?ts$/.test(f)).map((f) => path.join(d, f)));
    expect(files.length).toBeGreaterThan(10);
    const leaks = files.flatMap((f) =>
      fs
        .readFileSync(f, 'utf8')
        .split('\n')
        .filter((line) => line.includes('@internal') || /^\s+(readonly\s+)?([gs]et\s+)?_\w+\s*[(:?<]/.test(line))
        .map((line) => `${path.basename(f)}: ${line.trim()}`),
    );
    expect(leaks).toEqual([]);
  });
});
