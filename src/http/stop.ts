// Stopping a request evy gave up on (its deadline, the end of a shutdown drain): a response not started is
// answered 503 first, so that the error the kill makes the handler see cannot turn into the app's 500; a
// response already streaming is cut. Then the thread is killed, and one line says what it was waiting on.
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
  const err = new GreenletExit(`${t.name}: ${why}`);
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
