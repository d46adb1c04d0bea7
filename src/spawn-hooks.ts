// Several parts of evy want to see each new thread (evy.debug's thread tracking and leak scopes, the test
// runner adapters). launch() reads one slot, rt.ext.onSpawn, so spawning stays one property read when nobody
// listens; this file keeps that slot pointing at the one listener, or at a dispatcher when there are more.
import type { SpawnHook } from './greenthread.js';
import { rt } from './runtime.js';

const hooks: Set<SpawnHook> = ((rt.ext.spawnHooks as Set<SpawnHook> | undefined) ??= new Set());

function dispatch(t: Parameters<SpawnHook>[0]): void {
  for (const h of hooks) h(t);
}

function sync(): void {
  if (hooks.size === 0) delete rt.ext.onSpawn;
  else rt.ext.onSpawn = hooks.size === 1 ? hooks.values().next().value : dispatch;
}

/** Calls `hook(thread)` for every thread spawned from now on, in the spawning thread's context. */
export function addSpawnHook(hook: SpawnHook): void {
  hooks.add(hook);
  sync();
}

export function removeSpawnHook(hook: SpawnHook): void {
  hooks.delete(hook);
  sync();
}
