import { execFileSync } from 'node:child_process';
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
});
