// evy/green/fs-promises: node:fs/promises with evy/green/fs's ownership (the target of an `fs/promises`
// import in a patched module tree).
import * as fsp from 'node:fs/promises';
import { layer } from '../patching/layer.js';
const { promiseFunctions } = layer.fs;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:fs/promises';
export const open = promiseFunctions.open as typeof fsp.open;
export const readFile = promiseFunctions.readFile as typeof fsp.readFile;
export const writeFile = promiseFunctions.writeFile as typeof fsp.writeFile;
export const appendFile = promiseFunctions.appendFile as typeof fsp.appendFile;
export const watch = promiseFunctions.watch as typeof fsp.watch;

const base: typeof fsp = (fsp as any).default ?? fsp;
const overrides = { ...promiseFunctions };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
