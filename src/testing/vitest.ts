// evy/vitest: `test: { runner: 'evy/vitest' }` in vitest.config (vitest 3.2 and 4.x; the entry is vitest.mjs,
// which picks vitest's runner class for the installed version). A runner class, so
// that everything happens inside the worker process that runs the tests (a kill from the main process
// could not reach the test's children or sockets).
//
// After collection, every test function and beforeEach/afterEach hook is rewrapped (vitest's getFn/setFn,
// getHooks) to run in a green thread of its test; beforeAll/afterAll run unowned (shared by the suite).
// vitest aborts `context.signal` with its timeout error, synchronously, before it rejects: the adapter
// kills the test's threads right there and appends what the test was waiting on to that error's message.
// The leak check runs in onAfterRunTask, after the afterEach hooks, and fails the test itself.
import { EvyError } from '../errors.js';
import { abortAll, armExit, whenChildrenGone, installPatches, leakVerdict, newScope, runFixture, timeoutSuffix, type TestScope } from './core.js';

export { configure, type TestingOptions, type LeakPolicy } from './core.js';

type Fn = (...a: any[]) => any;
/** What the adapter needs from vitest: its default runner class and the task accessors (see vitest.mjs). */
export interface VitestApi {
  Base: new (config: any) => any;
  getFn: Fn;
  /** null on vitest 4.1 (its TestRunner.setTestFn is getFn): the runner's runTask() runs the test instead. */
  setFn: Fn | null;
  getHooks: Fn;
}
let getFn: Fn;
let setFn: Fn | null;
let getHooks: Fn;
const kScope = Symbol('evy.vitest.scope');
const kWrapped = Symbol('evy.vitest.wrapped');

installPatches();

// A forks worker whose vitest is gone (on Ctrl-C vitest exits without stopping its workers) would run its
// test on, orphaned, with its server and children: kill the test, then end the worker as vitest 4 does
// itself once it notices (3.2's worker spins on forever). Nobody can hear of the results any more. With
// SIGTERM, what vitest stops a worker with: process.exit is vitest's own stub inside a run.
if (typeof process.send === 'function') {
  process.once('disconnect', () => {
    if (abortAll(new EvyError('vitest is gone (the run was interrupted)', 'ERR_EVY_RUN_INTERRUPTED')) > 0) whenChildrenGone(() => process.kill(process.pid, 'SIGTERM'));
  });
}

function scopeOf(test: any): TestScope {
  let s: TestScope | undefined = test[kScope];
  if (s === undefined || s.ended) {
    const names: string[] = [];
    for (let t = test; t !== undefined && t.type !== undefined && t.file !== t; t = t.suite) if (t.name) names.unshift(t.name);
    s = newScope(names.join(' > ') || test.name, test.file?.name ?? null);
    test[kScope] = s;
    watchSignal(test, s);
  }
  return s;
}

/** vitest aborts the context's signal with its timeout error before rejecting: kill there, and name the wait. */
function watchSignal(test: any, scope: TestScope): void {
  const signal: AbortSignal | undefined = test.context?.signal;
  if (signal === undefined) return;
  const onAbort = (): void => {
    if (![...scope.threads].some((t) => !t.dead)) return;
    const reason = signal.reason;
    const waiting = scope.abort(reason);
    if (reason instanceof Error && waiting !== '') {
      const old = reason.message;
      const firstLine = old.split('\n')[0]!;
      const extra = timeoutSuffix(waiting);
      try {
        reason.message = old.replace(firstLine, firstLine.replace(/\.$/, '') + extra);
        if (typeof reason.stack === 'string') reason.stack = reason.stack.replace(firstLine, firstLine.replace(/\.$/, '') + extra);
      } catch {
        // a frozen error keeps vitest's message
      }
    }
  };
  if (signal.aborted) return;
  signal.addEventListener('abort', onAbort, { once: true });
}

/**
 * Runs a test function in a green thread of its test. On vitest the test function the runner holds is already
 * wrapped by vitest's own timeout (withTimeout/withCancel), so that wrapper runs inside the thread and its
 * timeout error is the thread's failure. evy reports a killed thread that failed as dead of the kill (its
 * `wait()` gives the kill error), so that error is mapped back to vitest's own: the one the abort listener
 * appended "while waiting on: ..." to.
 */
function runTest(test: any, fn: Fn, thisArg: unknown, args: unknown[]): Promise<unknown> {
  const scope = scopeOf(test);
  return scope.run(fn, thisArg, args, scope.name).catch((e: unknown) => {
    const signal: AbortSignal | undefined = test.context?.signal;
    if (e === scope.killed && e !== undefined && signal?.aborted === true && signal.reason !== undefined) throw signal.reason;
    throw e;
  });
}

function wrapTest(test: any): void {
  if (setFn === null) return; // runTask() does it
  const fn = getFn(test) as Fn | undefined;
  if (typeof fn !== 'function' || (fn as any)[kWrapped]) return;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    return runTest(test, fn, this, args);
  };
  (wrapped as any)[kWrapped] = true;
  setFn!(test, wrapped as any);
}

function wrapEach(hook: Fn): Fn {
  if ((hook as any)[kWrapped]) return hook;
  const w = function (this: unknown, context: any, ...rest: unknown[]) {
    const test = context?.task;
    if (test === undefined) return hook.call(this, context, ...rest);
    const scope = scopeOf(test);
    return scope.run(hook, this, [context, ...rest], `${scope.name} (hook)`);
  };
  (w as any)[kWrapped] = true;
  return Object.assign(w, hook);
}

function wrapAll(hook: Fn): Fn {
  if ((hook as any)[kWrapped]) return hook;
  const w = function (this: unknown, ...args: unknown[]) {
    return runFixture(hook, this, args);
  };
  (w as any)[kWrapped] = true;
  return Object.assign(w, hook);
}

function walk(task: any): void {
  if (task.type === 'test' || task.type === 'custom') {
    wrapTest(task);
    return;
  }
  if (task.type === 'suite' || Array.isArray(task.tasks)) {
    const hooks = getHooks(task) as unknown as Record<string, Fn[]> | undefined;
    if (hooks !== undefined) {
      for (const k of ['beforeEach', 'afterEach'] as const) if (Array.isArray(hooks[k])) hooks[k] = hooks[k].map(wrapEach);
      for (const k of ['beforeAll', 'afterAll'] as const) if (Array.isArray(hooks[k])) hooks[k] = hooks[k].map(wrapAll);
    }
    for (const t of task.tasks ?? []) walk(t);
  }
}

/** vitest's default runner class, extended so that each test runs in a green thread (see the top of this file). */
export function createRunner(api: VitestApi): new (config: any) => any {
  ({ getFn, setFn, getHooks } = api);

  const Runner = class EvyVitestRunner extends api.Base {
    onCollected(files: any[]): unknown {
      for (const f of files) walk(f);
      return super.onCollected?.(files);
    }

    /** vitest >= 4.1 calls this instead of the test function, when a runner has it. */
    runTask(test: any): Promise<unknown> {
      return runTest(test, getFn(test) as Fn, undefined, []);
    }

    onAfterRunTask(test: any): unknown {
      const scope: TestScope | undefined = test[kScope];
      if (scope !== undefined && !scope.ended) {
        const result = test.result;
        if (result?.state === 'pass' && scope.killed === undefined) {
          const err = leakVerdict(scope);
          if (err !== null) {
            result.state = 'fail';
            // vitest sends results to the main process as plain data: the error as it serializes errors.
            const e = { name: err.name, message: err.message, stack: err.stack, code: err.code, leaks: err.leaks };
            (result.errors ??= []).push(e);
            // vitest 5 reports the errors of each attempt (its retries), recorded before this hook runs.
            const last = Array.isArray(result.attempts) ? result.attempts[result.attempts.length - 1] : undefined;
            if (last !== undefined) {
              last.state = 'fail';
              (last.errors ??= []).push(e);
            }
          }
        } else {
          scope.finish(true); // failed or killed: close what is left, quietly
        }
      }
      return super.onAfterRunTask?.(test);
    }

    onAfterRunFiles(files?: any): unknown {
      abortAll();
      armExit();
      return super.onAfterRunFiles?.(files);
    }

    cancel(reason: any): unknown {
      abortAll(reason);
      return super.cancel?.(reason);
    }
  };
  // Without setFn (4.1) runTask runs each test; with it (3.2), the functions were rewrapped at collection
  // and runTask must not exist (3.2 would then skip the test function).
  if (setFn !== null) delete (Runner.prototype as { runTask?: unknown }).runTask;
  return Runner;
}
