// The server side as one switch for the patch layer (the `http` key of monkeyPatch): request threads, the
// process-wide deadline (EVY_REQUEST_DEADLINE) and the shutdown signals (EVY_SHUTDOWN_DRAIN), both read now.
import { invalidArgValue } from '../errors.js';
import { installRequestThreads, uninstallRequestThreads } from './request-thread.js';
import { installShutdownSignals, uninstallShutdownSignals } from './shutdown.js';
import { hs } from './state.js';

/** Seconds from an environment variable: undefined when unset or empty; a clear error when not a number. */
function envSeconds(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0) throw invalidArgValue(name, 'must be a number of seconds >= 0', raw);
  return s;
}

export function installServers(): () => void {
  const deadline = envSeconds('EVY_REQUEST_DEADLINE');
  const drain = envSeconds('EVY_SHUTDOWN_DRAIN');
  installRequestThreads();
  hs.deadlineMs = deadline === undefined || deadline === 0 ? null : deadline * 1000;
  if (drain !== undefined) installShutdownSignals(drain * 1000);
  return () => {
    uninstallRequestThreads();
    uninstallShutdownSignals();
    hs.deadlineMs = null;
  };
}
