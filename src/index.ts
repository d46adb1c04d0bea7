// evy: eventlet/Evy-style green threads for Node.js.
export { EvyError, GreenletExit, Empty, Full, QueueClosed, StopServe, SocketTimeout } from './errors.js';
export {
  GreenThread,
  spawn,
  spawnN,
  spawnAfter,
  getcurrent,
  kill,
  KILL_GRACE_MS,
  KILL_FINALLY_GRACE_MS,
  type Destroyer,
} from './greenthread.js';
export { unowned, own, disown } from './ownership.js';
export { sleep } from './sleep.js';
export { Timeout, withTimeout } from './timeout.js';
export { until } from './until.js';
export { Event } from './event.js';
export { Semaphore, BoundedSemaphore, CappedSemaphore } from './semaphore.js';
export { LightQueue, Queue, PriorityQueue, LifoQueue } from './queue.js';
export { GreenPool } from './greenpool.js';
export { GreenPile } from './greenpile.js';
export { GreenMap } from './greenmap.js';
export { local } from './local.js';
export type { Hub } from './runtime.js';
export {
  GreenSocket,
  SocketError,
  SSLError,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  SHUT_RD,
  SHUT_WR,
  SHUT_RDWR,
  type Address,
  type Family,
} from './net/socket.js';
export { SocketFile } from './net/socketfile.js';
export { connect, listen, serve } from './net/convenience.js';
export { wrapSsl, wrapSsl as wrap_ssl, type WrapSslOptions } from './net/ssl.js';

import { spawnN, spawnAfter } from './greenthread.js';
import { rt } from './runtime.js';
import { withTimeout } from './timeout.js';

/** The scheduler's settings, shared by every copy of evy in the process. */
export const hub = rt.hub;

// eventlet's snake_case names, as aliases of the same function objects.
export { spawnN as spawn_n, spawnAfter as spawn_after, withTimeout as with_timeout };
export {
  importPatched,
  importPatched as import_patched,
  type ImportPatchedModules,
  type ImportPatchedOptions,
  type GreenModuleName,
} from './patching/import-patched.js';
export { monkeyPatch, isMonkeyPatched, original, type MonkeyPatchOptions, type PatchHandle, type PatchName } from './patching/monkey-patch.js';
export { monkeyPatch as monkey_patch, isMonkeyPatched as is_monkey_patched } from './patching/monkey-patch.js';
export { debug, type BlockReport, type BlockingOptions, type ThreadReport, type Leak, type LeakReport, type LeaksOptions } from './debug/index.js';
export { tpool, type TpoolModuleRef } from './tpool.js';
export { backdoor, type BackdoorOptions } from './backdoor.js';
export { shutdown } from './http/shutdown.js';
export { requestDeadline } from './http/deadline.js';
