// The blocking watchdog, run in a worker thread by blocking.ts (built to dist/debug/watchdog.cjs).
//
// It watches the heartbeat the main thread writes into shared memory, and when the beat is older than the
// threshold it asks the main thread's V8 inspector to pause (that works while JS is busy: inspector messages
// run as V8 interrupts), reads the call frames and the current green thread's name, resumes at once, and
// posts the report when the loop is free again. The inspector session and its Debugger domain exist only for
// that moment: left enabled, the Debugger made promise-heavy code 2-3x slower.
import { writeSync } from 'node:fs';
import { Session } from 'node:inspector';
import { parentPort, workerData } from 'node:worker_threads';

interface Data {
  sab: SharedArrayBuffer;
  ms: number;
  pollMs: number;
}

interface Pausing {
  before: number;
  frames: string | null;
  thread: string | null;
  done: boolean;
  stuck: boolean;
}

const { sab, ms, pollMs } = workerData as Data;
const beat = new Float64Array(sab);
const stuckMs = Math.max(1000, 10 * ms);
const now = (): number => performance.timeOrigin + performance.now();
// Evaluated on the paused frame: node's internal modules have no Symbol global (primordials), hence globalThis.Symbol.
const WHO =
  "(() => { try { const r = globalThis[globalThis.Symbol.for('evy.runtime')]; const t = r && r.als && r.als.getStore(); return t && !t._finished ? t.name : (r && r.main ? r.main.name : 'MainThread'); } catch (e) { return '?'; } })()";
let pausing: Pausing | null = null;

type Post = (method: string, params?: object, cb?: (err: Error | null, r?: any) => void) => void;

// The inspector session exists only while a block is being caught (an idle connected session is not free
// either). Connecting, enabling and pausing all work while the main thread is busy.
function catchBlock(p: Pausing): void {
  const s = new Session();
  s.connectToMainThread();
  const post = s.post.bind(s) as unknown as Post;
  // CallFrame.url is empty for ES modules on some versions: map scriptId -> url from scriptParsed (sent on enable).
  const urls = new Map<string, string>();
  s.on('Debugger.scriptParsed', (m) => {
    if (m.params.url) urls.set(m.params.scriptId, m.params.url);
  });
  const done = (): void => {
    p.done = true;
    post('Debugger.resume', undefined, () => post('Debugger.disable', undefined, () => s.disconnect()));
  };
  s.on('Debugger.paused', (m) => {
    const frames = m.params.callFrames;
    if (p.frames !== null) {
      post('Debugger.resume'); // a 'debugger;' statement: not ours
      return;
    }
    // The loop beat again before the pause landed: these frames are later code, not the block.
    if (beat[0] !== p.before) {
      p.frames = '';
      done();
      return;
    }
    p.frames = frames
      .map((f) => {
        const url = f.url || urls.get(f.location.scriptId) || '<unknown>';
        return `    at ${f.functionName || '<anonymous>'} (${url}:${f.location.lineNumber + 1}:${(f.location.columnNumber ?? 0) + 1})`;
      })
      .join('\n');
    const id = frames.length > 0 ? frames[0]!.callFrameId : null;
    if (id === null) {
      done();
      return;
    }
    post('Debugger.evaluateOnCallFrame', { callFrameId: id, expression: WHO, silent: true }, (err, r) => {
      if (!err && typeof r?.result?.value === 'string' && r.result.value !== '?') {
        p.thread = r.result.value;
        done();
        return;
      }
      // Some frames (native trampolines) cannot evaluate: the global scope sees the same async context.
      post('Runtime.evaluate', { expression: WHO, silent: true }, (err2, r2) => {
        p.thread = !err2 && typeof r2?.result?.value === 'string' ? r2.result.value : '?';
        done();
      });
    });
  });
  // Back to back, not pause-after-enable: both run in the same interrupt, so a loop stuck in a native call
  // pauses at the first JS instruction after it returns (still in the caller), not somewhere later.
  post('Debugger.enable');
  post('Debugger.pause');
}

parentPort!.postMessage({ ready: true });
setInterval(() => {
  const b = beat[0]!;
  const t = now();
  if (beat[1] === 1) return; // off
  if (pausing === null) {
    if (t - b > ms) {
      pausing = { before: b, frames: null, thread: null, done: false, stuck: false };
      try {
        catchBlock(pausing);
      } catch (e) {
        pausing.done = true;
        pausing.frames = `    (stack not captured: ${(e as Error).message})`;
      }
    }
  } else if (b === pausing.before && pausing.done && !pausing.stuck && t - b > stuckMs) {
    // Still blocked long after the catch (an endless loop?): the main thread cannot take a report, and a
    // worker's process.stderr goes through it, so write straight to fd 2.
    pausing.stuck = true;
    try {
      writeSync(2, `evy: event loop blocked for ${((t - b) / 1000).toFixed(1)}s so far in green thread "${pausing.thread || '?'}"\n${pausing.frames || '    (stack not captured)'}\n`);
    } catch {
      // stderr closed: nothing to tell
    }
  } else if (b !== pausing.before && (pausing.done || t - b > 1000)) {
    const p = pausing;
    pausing = null;
    parentPort!.postMessage({ before: p.before, after: b, frames: p.frames || '    (stack not captured: the block ended before the pause landed)', thread: p.thread || '?' });
  }
}, pollMs);
