// evy/green/timers-promises: node:timers/promises whose waits reject with the kill error when their green
// thread is killed (the target of a `timers/promises` import in a patched module tree).
import * as tp from 'node:timers/promises';
import { layer } from '../patching/layer.js';
const { promises } = layer.timers;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:timers/promises';
export const setTimeout = promises.setTimeout;
export const setImmediate = promises.setImmediate;
export const setInterval = promises.setInterval;

const base: typeof tp = (tp as any).default ?? tp;
const overrides = { ...promises };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
