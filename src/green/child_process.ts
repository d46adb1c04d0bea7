// evy/green/child_process: node:child_process with ownership. A child spawned in a green thread is owned by
// it until it exits; killing the thread sends SIGTERM, then SIGKILL after a grace. Children returned by
// these functions also get blocking-style helpers: `await proc.wait()` and `await proc.communicate(input)`.
import * as cp from 'node:child_process';
import { layer } from '../patching/layer.js';
import type { GreenChildProcess } from '../patching/child-process.js';
const { CHILD_KILL_GRACE_MS, communicate, greenChildFunctions, wait } = layer.child;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:child_process';
export { CHILD_KILL_GRACE_MS, communicate, wait, type GreenChildProcess };

const base = (cp as any).default ?? cp;
const fns = greenChildFunctions(base);

export const spawn = fns.spawn as {
  (command: string, options?: cp.SpawnOptions): GreenChildProcess;
  (command: string, args?: readonly string[], options?: cp.SpawnOptions): GreenChildProcess;
};
export const exec = fns.exec as unknown as typeof cp.exec;
export const execFile = fns.execFile as unknown as typeof cp.execFile;
export const fork = fns.fork as {
  (modulePath: string | URL, options?: cp.ForkOptions): GreenChildProcess;
  (modulePath: string | URL, args?: readonly string[], options?: cp.ForkOptions): GreenChildProcess;
};

const overrides = { ...fns, wait, communicate };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base as typeof cp & { wait: typeof wait; communicate: typeof communicate }, overrides);
export default green;
