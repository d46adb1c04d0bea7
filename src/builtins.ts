// Node builtins loaded on first use. `import x from 'node:x'` in an ES module builds that builtin's ESM
// facade at startup (and loads it: node:tls alone is ~8 ms); process.getBuiltinModule returns the same
// object `require('node:x')` does, when it is first needed. `import 'evy'` stays cheap this way.
import type * as Net from 'node:net';
import type * as Tls from 'node:tls';

const load =
  <T>(name: string): (() => T) =>
  () =>
    process.getBuiltinModule(name) as T;

export const netModule = load<typeof Net>('net');
export const tlsModule = load<typeof Tls>('tls');
