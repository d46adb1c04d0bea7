// Stopping a request evy gave up on (its deadline, the end of a shutdown drain): a response not started is
// answered 503 first, so that the error the kill makes the handler see cannot turn into the app's 500; a
// response already streaming is cut. Then the thread is killed, and one line says what it was waiting on.
import type { GreenThread } from '../greenthread.js';
import { GreenletExit } from '../errors.js';
import { absorb } from '../patching/state.js';
import { kStart, kThread, type Res } from './state.js';
import { waitingOn } from './waiting.js';

const BODY = 'Service Unavailable\n';

export function stopRequest(res: Res, why: string): void {
  const t = res[kThread];
  if (t.dead) return;
  const start: number | undefined = res[kStart];
  const elapsed = start === undefined ? '' : `, after ${fmtSeconds(Math.round(performance.now() - start))},`;
  const line = `evy: ${t.name} ${why}${elapsed} while waiting on: ${waitingOn(t)}\n`;
  const err = requestExit(t, why);
  // Whatever the killed handler still does with the response (a write after the end, its own error page)
  // must not crash the process.
  absorb(res);
  process.stderr.write(line);
  if (!res.headersSent) {
    answer503(res);
    void t.kill(err);
  } else {
    void t.kill(err);
    res.socket?.destroy(); // streaming: cut
  }
}

/**
 * The kill error of a request thread, its stack read at once: until it is read, V8 keeps the receivers of its
 * frames (the response, and through it the request and its socket) alive with the error, which the thread
 * keeps after the request is over.
 */
export function requestExit(t: GreenThread, why: string): GreenletExit {
  const err = new GreenletExit(`${t.name}: ${why}`);
  void err.stack;
  return err;
}

function answer503(res: Res): void {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.shouldKeepAlive = false;
  res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': BODY.length, Connection: 'close' });
  res.end(BODY);
}

export function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : Number(s.toFixed(3))} s`;
}
