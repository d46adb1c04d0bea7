// Graceful shutdown that cancels (Go's Server.Shutdown, plus what it leaves out): stop accepting on every
// http(s) server, let the requests in flight finish within the drain (answered with Connection: close), then
// kill the request threads still running (their statements cancelled, children terminated) and end the
// process with code 0.
//
// Idle keep-alive connections are not closed at the start (node's server.close() does): a client may be
// sending a request on one at that moment, and closing would reset it (nodejs/node#60617). They stay open
// through the drain; a request that arrives on one is served, with Connection: close. They end at the
// server's keepAliveTimeout or with the process.
import { CHILD_KILL_GRACE_MS, finishTerminationsSync, pendingTerminations, terminateChild } from '../patching/child-process.js';
import { builtin } from '../patching/state.js';
import { killBatch } from '../greenthread.js';
import { rt } from '../runtime.js';
import { checkSeconds } from '../validate.js';
import { fmtSeconds, stopRequest } from './stop.js';
import { hs, type HttpServer } from './state.js';

/** shutdown()'s drain when neither the call nor EVY_SHUTDOWN_DRAIN gives one. */
export const DEFAULT_DRAIN_SECONDS = 10;
const POLL_MS = 10;

/**
 * Stops every http(s) server of the process from accepting, lets the requests in flight finish within
 * `drainSeconds` (default: EVY_SHUTDOWN_DRAIN, else 10), kills the request threads still running at its
 * end (a response not started is answered 503), and ends the process with exit code 0. Called again, it
 * returns the shutdown already under way.
 */
export function shutdown(drainSeconds?: number): Promise<void> {
  let ms: number;
  try {
    ms = drainSeconds === undefined ? (hs.drainMs ?? DEFAULT_DRAIN_SECONDS * 1000) : checkSeconds(drainSeconds, 'drainSeconds');
  } catch (e) {
    return Promise.reject(e);
  }
  return (hs.shutdown ??= drain(ms));
}

function stopAccepting(srv: HttpServer): void {
  // net.Server's close: the listening socket only (http's close would also drop the idle connections).
  const close = builtin<typeof import('node:net')>('net').Server.prototype.close;
  if (srv.listening) close.call(srv, () => {});
}

function until(done: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  return new Promise((resolve) => {
    const tick = (): void => {
      if (done() || performance.now() >= end) resolve();
      else rt.timers.setTimeout(tick, POLL_MS);
    };
    tick();
  });
}

async function drain(ms: number): Promise<void> {
  hs.draining = true;
  for (const srv of [...hs.servers]) stopAccepting(srv);
  for (const res of hs.inflight) if (!res.headersSent) res.shouldKeepAlive = false;
  // Servers leave hs.servers at their 'close': when their last connection has ended.
  await until(() => hs.cut || (hs.inflight.size === 0 && hs.servers.size === 0), ms);
  const why = `killed at the end of the ${fmtSeconds(ms)} shutdown drain`;
  // Every request's sockets first, then the children (freezing a process tree takes a while).
  killBatch(() => {
    for (const res of [...hs.inflight]) stopRequest(res, why);
  });
  // Every child the app started goes with it, also one no request owned (left running after a response).
  terminateChildren();
  // What the kills started: children terminated (SIGKILL after their grace), 503s written.
  await until(() => pendingTerminations() === 0, CHILD_KILL_GRACE_MS + 100);
  finishTerminationsSync(CHILD_KILL_GRACE_MS);
  process.exit(0);
}

function terminateChildren(): void {
  const { ChildProcess } = builtin<typeof import('node:child_process')>('child_process');
  const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  for (const h of handles) {
    if (h instanceof ChildProcess && h.exitCode === null && h.signalCode === null) terminateChild(h);
  }
}

/** EVY_SHUTDOWN_DRAIN: SIGTERM and SIGINT start shutdown(); a second one ends the drain at once. */
export function installShutdownSignals(ms: number): void {
  hs.drainMs = ms;
  if (hs.signals !== null) return;
  const onSignal = (): void => {
    if (hs.shutdown === null) void shutdown();
    else hs.cut = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  hs.signals = () => {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
  };
}

export function uninstallShutdownSignals(): void {
  hs.drainMs = null;
  const un = hs.signals;
  hs.signals = null;
  un?.();
}
