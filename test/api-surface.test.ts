// The public names (the design's list): code outside the project is tested against them.
import { describe, expect, it } from 'vitest';
import * as evy from '../src/index.js';

const functions = [
  'spawn', 'spawnN', 'spawnAfter', 'sleep', 'getcurrent', 'kill', 'withTimeout', 'until', 'local',
  'connect', 'listen', 'wrapSsl', 'serve', 'monkeyPatch', 'isMonkeyPatched', 'original', 'importPatched',
  'backdoor', 'unowned', 'shutdown', 'requestDeadline',
];
const classes = [
  'GreenThread', 'GreenletExit', 'Timeout', 'Event', 'Semaphore', 'BoundedSemaphore', 'CappedSemaphore', 'Queue',
  'LightQueue', 'PriorityQueue', 'LifoQueue', 'Empty', 'Full', 'GreenPool', 'GreenPile', 'StopServe',
  'SocketTimeout', 'GreenSocket',
];
const aliases: [string, string][] = [
  ['spawn_n', 'spawnN'],
  ['spawn_after', 'spawnAfter'],
  ['import_patched', 'importPatched'],
  ['monkey_patch', 'monkeyPatch'],
  ['wrap_ssl', 'wrapSsl'],
  ['is_monkey_patched', 'isMonkeyPatched'],
  ['with_timeout', 'withTimeout'],
];

describe('public API (the pinned names)', () => {
  const api = evy as unknown as Record<string, unknown>;
  it.each(functions)('%s is a function', (name) => {
    expect(typeof api[name]).toBe('function');
  });
  it.each(classes)('%s is a class', (name) => {
    expect(typeof api[name]).toBe('function');
    expect((api[name] as { prototype: unknown }).prototype).toBeDefined();
  });
  it.each(aliases)('%s is the same function object as %s', (alias, name) => {
    expect(api[alias]).toBeDefined();
    expect(api[alias]).toBe(api[name]);
  });
  it('error classes are Error subclasses with codes', () => {
    for (const name of ['GreenletExit', 'Timeout', 'Empty', 'Full', 'StopServe', 'SocketTimeout']) {
      const Cls = api[name] as new () => Error & { code?: string };
      const e = new Cls();
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe(name);
      expect(typeof e.code).toBe('string');
    }
  });
  it('debug, tpool and hub are objects with the pinned members', () => {
    const debug = api.debug as Record<string, unknown>;
    expect(typeof debug.blockingDetection).toBe('function');
    expect(typeof debug.formatThreads).toBe('function');
    expect(typeof debug.leaks).toBe('function');
    expect(typeof (api.tpool as Record<string, unknown>).execute).toBe('function');
    expect((api.hub as Record<string, unknown>).onError).toBeNull();
  });
});
