// One entry to the patching layer for every green module. It also shapes the build: each green module
// reaches all of the layer through `layer`, so esbuild puts the whole layer in one chunk. Plain
// re-exports would not do: unused ones are tree-shaken away, and each green module would pull its own
// small chunk again. Explicit objects, not `import * as`: a namespace object needs esbuild's `__export`
// helper in a chunk of its own, one more file for `--import evy/register` to load (~0.3-1 ms each).
import { cjsOverrides, greenDefault } from './state.js';
import { greenConnect, greenServer, neutralFactory } from './net.js';
import { clearImmediate, clearInterval, clearTimeout, promises, setImmediate, setInterval, setTimeout } from './timers.js';
import { fsFunctions, promiseFunctions } from './fs.js';
import { CHILD_KILL_GRACE_MS, communicate, greenChildFunctions, wait } from './child-process.js';
// Reached from every green module too, so monkeyPatch and register land in the shared chunk.
import { isMonkeyPatched } from './monkey-patch.js';

export const layer = {
  state: { cjsOverrides, greenDefault },
  net: { greenConnect, greenServer, neutralFactory },
  timers: { clearImmediate, clearInterval, clearTimeout, promises, setImmediate, setInterval, setTimeout },
  fs: { fsFunctions, promiseFunctions },
  child: { CHILD_KILL_GRACE_MS, communicate, greenChildFunctions, wait },
  patch: { isMonkeyPatched },
};
