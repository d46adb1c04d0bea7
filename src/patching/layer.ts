// One entry to the patching layer for every green module and for monkeyPatch. It also shapes the build:
// each green module reaches all of the layer through `layer`, so esbuild puts the whole layer in one
// chunk, and `--import evy/register` reads three files instead of eight (each ESM file costs ~0.3-0.5 ms
// of loader work at startup). Plain re-exports would not do: unused ones are tree-shaken away, and each
// green module would pull its own small chunk again.
import * as state from './state.js';
import * as net from './net.js';
import * as timers from './timers.js';
import * as fs from './fs.js';
import * as child from './child-process.js';
import * as patch from './monkey-patch.js';

export const layer = { state, net, timers, fs, child, patch };
