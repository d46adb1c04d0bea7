// evy.debug's shared state (one per process, shared by the ESM and CJS builds) and the spawn hook that feeds
// both thread tracking and leak scopes. Everything in evy.debug is opt-in: with nothing enabled, the only
// trace in the hot paths is one unset slot read per spawn (rt.ext.onSpawn).
import type { GreenThread, SpawnHook } from '../greenthread.js';
import { current, rt } from '../runtime.js';
import { addSpawnHook, removeSpawnHook } from '../spawn-hooks.js';
import type { BlockingState } from './blocking.js';

export interface ThreadInfo {
  born: number;
  /** Captured at spawn (an Error whose stack is formatted only when someone reads it). */
  site: Error | null;
  parent: GreenThread | null;
}

export interface DebugState {
  tracking: boolean;
  trackingSince: number;
  stacks: boolean;
  /** Spawn time, site and parent of the threads spawned while tracking was on (the live ones are on the core's list). */
  registry: Map<GreenThread, ThreadInfo>;
  sweepAt: number;
  /** Roots of running leaks() scans: threads spawned under them are added. */
  scopes: Set<Set<GreenThread>>;
  signals: Map<string, () => void>;
  blocking: BlockingState | null;
}

export const state: DebugState = ((rt.ext.debug as DebugState | undefined) ??= {
  tracking: false,
  trackingSince: 0,
  stacks: true,
  registry: new Map(),
  sweepAt: 1024,
  scopes: new Set(),
  signals: new Map(),
  blocking: null,
});

// Builtins by name (process.getBuiltinModule: the same objects `require('node:fs')` returns, in ESM and CJS).
export const builtin = (name: string): any => process.getBuiltinModule(name);

// The list of live threads is the core's (greenthread.ts keeps every spawned thread on a list headed by main
// until it settles): a dump lists them all with no setup. This hook, opt-in, adds spawn time, site and parent.
const onSpawn: SpawnHook = (t) => {
  const parent = current();
  if (state.tracking) {
    const reg = state.registry;
    reg.set(t, { born: performance.now(), site: state.stacks ? captureSite() : null, parent });
    if (reg.size >= state.sweepAt) sweep();
  }
  if (state.scopes.size > 0) {
    // The raw store: a thread spawned from a callback of a scope thread that has ended is still in scope.
    const raw = rt.als?.getStore() ?? parent;
    for (const scope of state.scopes) if (scope.has(raw)) scope.add(t);
  }
};

function captureSite(): Error {
  return new Error('spawned here'); // formatted lazily, only if a dump reads it
}

/** Drops dead threads; amortised so that a long run with tracking on does not grow without bound. */
export function sweep(): void {
  const reg = state.registry;
  for (const t of reg.keys()) if (t.dead) reg.delete(t);
  state.sweepAt = Math.max(1024, reg.size * 2);
}

export function syncHook(): void {
  if (state.tracking || state.scopes.size > 0) addSpawnHook(onSpawn);
  else removeSpawnHook(onSpawn);
}

export function fmtSec(s: number): string {
  return s < 1 ? `${(s * 1000).toFixed(1)}ms` : `${s.toFixed(2)}s`;
}

/** What the event loop is waiting on, by libuv resource type. */
export function countActive(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of process.getActiveResourcesInfo()) out[k] = (out[k] ?? 0) + 1;
  return out;
}
