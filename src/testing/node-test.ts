// evy/node-test: `node --import evy/node-test --test`. Every test body and beforeEach/afterEach hook of
// node:test runs in a green thread of its test; before/after run unowned (shared by the suite's tests).
//
// node:test has no hook around a test body, but it calls every body and hook through
// AsyncResource#runInAsyncScope (its Test, TestHook and Suite objects are AsyncResources), with the
// TestContext as `this`. Hooking that one method covers `import test from 'node:test'`, the named exports,
// require('node:test') and t.test() alike, keeps node's own call-site locations, and gives the effective
// timeout (`test.timeout`: the test's, its suite's or --test-timeout).
//
// node:test aborts `t.signal` at a timeout *and* at the end of every passing test, then moves on to the
// afterEach hooks and the next test without awaiting anything. So the adapter's own timer fires 1 ms before
// node's: it kills the test's threads (synchronously: their handles are gone before node moves on) and fails
// the test with what it was waiting on. A signal abort while the body still runs (a cancel, or node's
// timer first) kills too and adds a diagnostic line.
import { EvyError } from '../errors.js';
import { getcurrent } from '../greenthread.js';
import { rt } from '../runtime.js';
import { configure, installPatches, leakVerdict, newScope, runFixture, timeoutSuffix, type TestScope, type TestingOptions } from './core.js';

export { configure, type TestingOptions, type LeakPolicy } from './core.js';

/** The error a test gets when its timeout expires, naming what it was waiting on. */
export class TestTimeoutError extends EvyError {
  constructor(ms: number, waiting: string) {
    super(`test timed out after ${ms}ms${timeoutSuffix(waiting)}`, 'ERR_EVY_TEST_TIMEOUT');
    this.name = 'TestTimeoutError';
  }
}

type Fn = (...a: any[]) => any;
const { AsyncResource } = process.getBuiltinModule('async_hooks') as typeof import('node:async_hooks');
const RIAS = AsyncResource.prototype.runInAsyncScope as Fn;

const scopes = new WeakMap<object, TestScope>();
/** The context the module was loaded in: a root hook registered later must not attach to a running test. */
const rootContext = new AsyncResource('evy.node-test');
let rootHookAdded = false;
let ctxClass: Function | null = null;

function scopeFor(ctx: any, name: string): TestScope {
  let s = scopes.get(ctx);
  if (s === undefined || s.ended) scopes.set(ctx, (s = newScope(ctx?.fullName ?? name, ctx?.filePath ?? null)));
  return s;
}

/** The leak check: a root afterEach, added when the first test starts, so it runs after every user afterEach. */
function addRootHook(): void {
  if (rootHookAdded) return;
  rootHookAdded = true;
  const nt = process.getBuiltinModule('node:test') as any;
  RIAS.call(rootContext, () => nt.afterEach(leakCheck));
}

function leakCheck(t: any): void {
  const scope = scopes.get(t);
  if (scope === undefined || scope.ended) return;
  if (scope.killed !== undefined || scope.failed || t.passed === false) {
    scope.finish(true); // failed or killed: close what is left, quietly (the test failed already)
    return;
  }
  const err = leakVerdict(scope);
  if (err !== null) throw err;
}

/** Runs `fn` in a thread of `scope`, inside node's async scope for the test (so t.test(), getTestContext() work). */
function inThread(res: object, scope: TestScope, fn: Fn, thisArg: unknown, args: unknown[], label: string): Promise<unknown> {
  const callback = fn.length === args.length + 1; // (t, done): node's error-first callback style
  return scope.run(
    () => {
      const me = getcurrent();
      return RIAS.call(res, () =>
        rt.als!.run(me, () => (callback ? new Promise((ok, fail) => fn.call(thisArg, ...args, (e: unknown) => (e ? fail(e) : ok(undefined)))) : fn.apply(thisArg, args))),
      );
    },
    undefined,
    [],
    label,
  );
}

function runTest(res: any, fn: Fn, ctx: any, args: unknown[]): unknown {
  // node's timer started just before this call: ours is armed first thing, so that it fires first.
  const ms = res.timeout;
  let timer: NodeJS.Timeout | null = null;
  let onTimer: () => void = () => {};
  // Not unref'd: an unref'd timer can fire after a ref'd one due before it (measured: a 299 ms unref'd
  // timer fired 5 ms after a 300 ms one). It is cleared when the body settles.
  if (typeof ms === 'number' && ms > 1 && Number.isFinite(ms)) timer = rt.timers.setTimeout(() => onTimer(), ms - 1);
  const subtest = res.parent?.constructor?.name === 'Test' && res.parent.parent != null;
  if (!subtest) addRootHook();
  const name = String(res.name ?? 'test');
  const scope = scopeFor(ctx, name);
  const done = args.length > 1 && typeof args[args.length - 1] === 'function' ? (args.pop() as Fn) : null;
  let alive = true;
  const signal: AbortSignal | undefined = ctx?.signal;
  const onAbort = (): void => {
    if (!alive) return; // the end of a passing test: node aborts every test's signal
    alive = false;
    const waiting = scope.abort(signal?.reason);
    try {
      ctx.diagnostic(`evy: stopped by the test runner${timeoutSuffix(waiting)}; its threads were killed and what it created closed`);
    } catch {
      // already reported
    }
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const settle = (): void => {
    alive = false;
    if (timer !== null) rt.timers.clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  let p: Promise<unknown> = inThread(res, scope, fn, ctx, [ctx], name).then(
    (v) => {
      settle();
      if (subtest) {
        const err = leakVerdict(scope);
        if (err !== null) throw err;
      }
      return v;
    },
    (e) => {
      settle();
      if (subtest) scope.finish(true);
      throw e;
    },
  );
  if (timer !== null) {
    let reject: (e: unknown) => void = () => {};
    const timed = new Promise<never>((_, j) => (reject = j));
    onTimer = () => {
      timer = null;
      if (!alive) return;
      alive = false;
      reject(new TestTimeoutError(ms, scope.abort()));
    };
    p = Promise.race([p, timed]);
  }
  if (done !== null) {
    p.then(() => done(), (e) => done(e ?? new Error('test failed')));
    return undefined;
  }
  return p;
}

function runEachHook(res: any, fn: Fn, ctx: any, args: unknown[]): unknown {
  const scope = scopeFor(ctx, String(ctx?.name ?? 'test'));
  const done = args.length > 1 && typeof args[args.length - 1] === 'function' ? (args.pop() as Fn) : null;
  const p = inThread(res, scope, fn, ctx, args, `${scope.name} (${res.hookType})`);
  if (done !== null) {
    p.then(() => done(), (e) => done(e ?? new Error('hook failed')));
    return undefined;
  }
  return p;
}

function install(): void {
  const ext = rt.ext as Record<string, any>;
  if (ext.nodeTestHooked === true) return;
  ext.nodeTestHooked = true;
  installPatches();
  AsyncResource.prototype.runInAsyncScope = function runInAsyncScope(this: any, fn: any, thisArg?: any, ...args: any[]) {
    // Fast path for every other AsyncResource: node:test always passes its TestContext as `this` of the body.
    if (thisArg === null || typeof thisArg !== 'object' || typeof fn !== 'function') return RIAS.call(this, fn, thisArg, ...args);
    if (ctxClass === null) {
      if (thisArg.constructor?.name !== 'TestContext') return RIAS.call(this, fn, thisArg, ...args);
      ctxClass = thisArg.constructor;
    } else if (thisArg.constructor !== ctxClass) {
      return RIAS.call(this, fn, thisArg, ...args);
    }
    if (fn === leakCheck) return RIAS.call(this, fn, thisArg, ...args);
    const kind = this.constructor?.name;
    if (kind === 'Test' && this.parent != null) return runTest(this, fn, thisArg, args);
    if (kind === 'TestHook') {
      const h = this.hookType;
      if (h === 'beforeEach' || h === 'afterEach') return runEachHook(this, fn, thisArg, args);
      if (h === 'before' || h === 'after') return RIAS.call(this, (...a: unknown[]) => runFixture(fn, thisArg, a), thisArg, ...args);
    }
    return RIAS.call(this, fn, thisArg, ...args);
  } as typeof AsyncResource.prototype.runInAsyncScope;
}

install();

/** Sets the leak policy (and the exit explainer delay) from code: `setup({ leaks: 'warn' })`. */
export function setup(options: TestingOptions = {}): void {
  configure(options);
}
