// evy/green/timers-promises: node:timers/promises whose waits reject with the kill error when their green
// thread is killed (the target of a `timers/promises` import in a patched module tree).
import * as tp from 'node:timers/promises';
import { promises } from '../ownership-timers.js';

export * from 'node:timers/promises';
export const setTimeout = promises.setTimeout;
export const setImmediate = promises.setImmediate;
export const setInterval = promises.setInterval;

const base = (tp as any).default ?? tp;
const green = Object.defineProperties({}, Object.getOwnPropertyDescriptors(base)) as typeof tp;
Object.assign(green, promises);
export default green;
