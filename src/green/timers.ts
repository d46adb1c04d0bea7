// evy/green/timers: node:timers whose timers belong to the green thread that created them: a kill clears
// them (and rejects the `promises` versions with the kill error). Outside a thread: the originals.
import * as timers from 'node:timers';
import { layer } from '../patching/layer.js';
const { cjsOverrides, greenDefault } = layer.state;
const { clearImmediate, clearInterval, clearTimeout, promises, setImmediate, setInterval, setTimeout } = layer.timers;

export * from 'node:timers';
export { setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate, promises };

const base: typeof timers = (timers as any).default ?? timers;
const overrides = { setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate, promises };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
