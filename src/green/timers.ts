// evy/green/timers: node:timers whose timers belong to the green thread that created them: a kill clears
// them (and rejects the `promises` versions with the kill error). Outside a thread: the originals.
import * as timers from 'node:timers';
import {
  clearImmediate,
  clearInterval,
  clearTimeout,
  promises,
  setImmediate,
  setInterval,
  setTimeout,
} from '../ownership-timers.js';

export * from 'node:timers';
export { setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate, promises };

const base = (timers as any).default ?? timers;
const green = Object.defineProperties({}, Object.getOwnPropertyDescriptors(base)) as typeof timers;
Object.assign(green, { setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate, promises });
export default green;
