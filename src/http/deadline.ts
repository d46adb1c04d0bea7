// Request deadlines: EVY_REQUEST_DEADLINE (read when the patch is made) for every server, or
// requestDeadline(server, seconds) for one. At the deadline the request's thread is killed, a response not
// yet started is answered 503, and one line says what the thread was waiting on.
import { invalidArgType } from '../errors.js';
import { rt } from '../runtime.js';
import { secondsError } from '../validate.js';
import { fmtSeconds, stopRequest } from './stop.js';
import { hs, kDeadline, kThread, kTimer, type HttpServer, type Res } from './state.js';

/**
 * Sets the request deadline of one http(s) server, in seconds: `0` for none, `null` to follow the process
 * default (`EVY_REQUEST_DEADLINE`). Returns the server.
 */
export function requestDeadline<S extends object>(server: S, seconds: number | null): S {
  const s = server as unknown as HttpServer;
  if (s === null || typeof s !== 'object' || typeof s.listen !== 'function' || typeof s.on !== 'function') {
    throw invalidArgType('server', 'an http or https server', server);
  }
  if (seconds === null) {
    s[kDeadline] = undefined;
    return server;
  }
  const e = secondsError(seconds, 'seconds');
  if (e !== undefined) throw e;
  s[kDeadline] = seconds * 1000;
  return server;
}

/** The deadline in ms of requests on `server` (0: none). */
export function deadlineOf(server: HttpServer): number {
  const own: number | undefined = server[kDeadline];
  return own ?? hs.deadlineMs ?? 0;
}

export function armDeadline(res: Res, ms: number): void {
  const timer = rt.timers.setTimeout(onDeadline, ms, res, ms);
  timer.unref(); // the request's socket keeps the process up, not its deadline
  res[kTimer] = timer;
}

function onDeadline(res: Res, ms: number): void {
  res[kTimer] = undefined;
  const t = res[kThread];
  if (t.dead || res.writableEnded) return;
  stopRequest(res, `killed at its ${fmtSeconds(ms)} deadline`);
}
