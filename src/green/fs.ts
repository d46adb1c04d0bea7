// evy/green/fs: node:fs whose streams, watchers and (fs.promises) FileHandles belong to the green thread
// that opened them: a kill closes them. fs.promises.readFile/writeFile/appendFile/watch get a signal the
// kill aborts (they reject with the kill error). Callback and *Sync functions are the originals.
import * as fs from 'node:fs';
import { layer } from '../patching/layer.js';
const { fsFunctions, promiseFunctions } = layer.fs;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:fs';

const base: typeof fs = (fs as any).default ?? fs;

/** fs.promises with the green functions (the other functions are the originals, through the prototype). */
export const promises: typeof fs.promises = Object.assign(Object.create(base.promises), promiseFunctions);
export const createReadStream = fsFunctions.createReadStream as typeof fs.createReadStream;
export const createWriteStream = fsFunctions.createWriteStream as typeof fs.createWriteStream;
export const watch = fsFunctions.watch as typeof fs.watch;

const overrides = { ...fsFunctions, promises };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
