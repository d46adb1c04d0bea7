// evy/mocha: `mocha --require evy/mocha`. Each test body and beforeEach/afterEach hook runs in a green
// thread of its test (with mocha's Context as `this`, so `this.timeout(n)` keeps working); before/after
// (suite fixtures) run unowned.
//
// mocha has no public hook around a test body, so the adapter patches the prototypes of the mocha copy the
// CLI loaded (found from the running bin, never a copy of its own): Runnable#run runs the body in a thread,
// Runnable#_timeoutError (called when mocha gives up, before it moves on) kills it and says what it was
// waiting on. mocha reports a test as passed *before* its afterEach hooks run, and a failing root afterEach
// fails the hook, not the test: so the pass of a test is held back until its afterEach hooks have run, and
// the leak check can then fail the test itself.
import { EvyError } from '../errors.js';
import { unowned } from '../ownership.js';
import { configure, installPatches, leakVerdict, newScope, runFixture, timeoutSuffix, armExit, abortAll, type TestScope } from './core.js';

export { configure, type TestingOptions, type LeakPolicy } from './core.js';

const fs = process.getBuiltinModule('fs') as typeof import('node:fs');
const path = process.getBuiltinModule('path') as typeof import('node:path');
const { createRequire } = process.getBuiltinModule('module') as typeof import('node:module');

type Fn = (...a: any[]) => any;

/** The directory of the mocha package that is running: from the CLI's own file, else resolved from the cwd. */
function mochaRoot(): string {
  const starts: string[] = [];
  if (process.argv[1]) {
    try {
      starts.push(fs.realpathSync(process.argv[1]));
    } catch {
      // not a file
    }
  }
  for (const start of starts) {
    for (let dir = path.dirname(start); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
        if (pkg.name === 'mocha') return dir;
      } catch {
        // keep looking up
      }
    }
  }
  try {
    return path.dirname(createRequire(path.join(process.cwd(), 'noop.js')).resolve('mocha/package.json'));
  } catch {
    throw new EvyError('evy/mocha: mocha is not installed (it is a peer dependency: npm install -D mocha)', 'ERR_EVY_MOCHA_MISSING');
  }
}

/** A mocha lib module: CJS (mocha <= 11) or ESM (mocha 12, loaded with require(esm): the same instance the CLI imported). */
function mochaLib(root: string, name: string, exportName: string): any {
  const mod = createRequire(path.join(root, 'package.json'))(`./lib/${name}`);
  return mod?.[exportName] ?? mod?.default ?? mod;
}

const kScope = Symbol('evy.mocha.scope');
/** What a body mocha already finished resolves to: nothing awaits it any more (mocha dropped the runnable). */
const NEVER = new Promise<never>(() => {});
const kHeld = Symbol('evy.mocha.heldPass');

function hookKind(r: any): 'each' | 'all' | null {
  if (r.type !== 'hook') return null;
  const t = String(r.originalTitle ?? r.title ?? '');
  return t.startsWith('"before each"') || t.startsWith('"after each"') ? 'each' : 'all';
}

function testOf(r: any): any {
  return r.type === 'hook' ? r.ctx?.currentTest : r;
}

function scopeOf(test: any): TestScope | null {
  if (test === null || test === undefined) return null;
  let s: TestScope | undefined = test[kScope];
  if (s === undefined || s.ended) {
    s = newScope(typeof test.fullTitle === 'function' ? test.fullTitle() : String(test.title), test.file ? path.relative(process.cwd(), test.file) : null);
    test[kScope] = s;
  }
  return s;
}

function install(): void {
  const g = globalThis as any;
  if (g[Symbol.for('evy.mocha.installed')]) return;
  g[Symbol.for('evy.mocha.installed')] = true;
  installPatches();
  const root = mochaRoot();
  const Runnable = mochaLib(root, 'runnable.js', 'Runnable');
  const Runner = mochaLib(root, 'runner.js', 'Runner');
  const RP = Runnable.prototype;
  const NP = Runner.prototype;

  const run = RP.run as Fn;
  RP.run = function run_(this: any, cb: Fn) {
    const fn = this.fn;
    if (typeof fn !== 'function' || (typeof this.isPending === 'function' && this.isPending())) return run.call(this, cb);
    const kind = hookKind(this);
    const callback = this.async ? 1 : 0;
    const body = function (this: unknown): Promise<unknown> | unknown {
      const ctx = this;
      return callback ? new Promise((res, rej) => fn.call(ctx, (e: unknown) => (e ? rej(e) : res(undefined)))) : fn.call(ctx);
    };
    let wrapper: Fn;
    let scope: TestScope | null = null;
    /** mocha finished the runnable before its body did (a timeout, an uncaught error): see below. */
    let gaveUp = false;
    if (kind === 'all') {
      wrapper = function (this: unknown) {
        return runFixture(body, this, []);
      };
    } else {
      scope = scopeOf(testOf(this));
      if (scope === null) return run.call(this, cb);
      this[kScope] = scope;
      const s = scope;
      const label = kind === 'each' ? `${s.name} (${String(this.title).split(':')[0]})` : s.name;
      wrapper = function (this: unknown) {
        // Once mocha gave up on the body, settling would only make it report "done() called multiple times".
        return s.run(body, this, [], label).then(
          (v) => (gaveUp ? NEVER : v),
          (e) => (gaveUp ? NEVER : Promise.reject(e)),
        );
      };
    }
    // mocha reads fn and async only inside run(): swap them for the call, then put the user's back.
    this.fn = wrapper;
    this.async = 0;
    this.sync = false;
    try {
      return run.call(this, cb);
    } finally {
      this.fn = fn;
      this.async = callback ? fn.length : 0;
      this.sync = !this.async;
      // mocha ends a runnable early through `this.callback`: its timeout, and an uncaught error thrown while
      // the body runs (Runner#uncaught). Either way the runner moves on: the body's threads are killed.
      const done = this.callback;
      if (scope !== null && typeof done === 'function') {
        const s = scope;
        this.callback = function callback(this: unknown, err?: unknown) {
          gaveUp = true;
          if (err !== undefined && err !== null) s.abort(err);
          return done.call(this, err);
        };
      }
    }
  };

  // `this.timeout(n)` inside a body re-arms mocha's timer from the test's own thread: the timer's callback
  // (mocha's whole move to the next test) would then run in the context of the thread it kills.
  const resetTimeout = RP.resetTimeout as Fn;
  RP.resetTimeout = function resetTimeout_(this: any, ...args: unknown[]) {
    return unowned(() => resetTimeout.apply(this, args));
  };

  const timeoutError = RP._timeoutError as Fn;
  RP._timeoutError = function _timeoutError(this: any, ms: number) {
    const err = timeoutError.call(this, ms);
    const scope: TestScope | undefined = this[kScope];
    if (scope !== undefined) {
      const waiting = scope.abort(err);
      try {
        err.message += timeoutSuffix(waiting);
      } catch {
        // a frozen error: leave mocha's message
      }
    }
    return err;
  };

  // Hold a passing test's "pass" and "test end" until its afterEach hooks have run (see the top).
  const emit = NP.emit as Fn;
  NP.emit = function emit_(this: any, event: string, test: any, ...rest: unknown[]) {
    if ((event === 'pass' || event === 'test end') && test?.[kScope] !== undefined && !test[kScope].ended && test.state === 'passed') {
      (test[kHeld] ??= []).push([event, test, ...rest]);
      return true;
    }
    return emit.call(this, event, test, ...rest);
  };
  const hookUp = NP.hookUp as Fn;
  NP.hookUp = function hookUp_(this: any, name: string, fn: Fn) {
    if (name !== 'afterEach') return hookUp.call(this, name, fn);
    const test = this.test;
    const self = this;
    return hookUp.call(this, name, function (this: unknown, ...args: unknown[]) {
      const scope: TestScope | undefined = test?.[kScope];
      if (scope !== undefined && !scope.ended) {
        const held: unknown[][] = test[kHeld] ?? [];
        test[kHeld] = undefined;
        if (test.state === 'passed' && scope.killed === undefined) {
          const err = leakVerdict(scope);
          if (err !== null) {
            self.fail(test, err); // emits "fail" (and counts it); "test end" follows
            for (const h of held) if (h[0] === 'test end') emit.apply(self, h);
            return fn.apply(this, args);
          }
        } else {
          scope.finish(true);
        }
        for (const h of held) emit.apply(self, h);
      }
      return fn.apply(this, args);
    });
  };

  // The end of the run (also after --bail or Ctrl-C: mocha's abort ends it): kill what still runs, then
  // explain what keeps the process alive, if anything does.
  const runnerRun = NP.run as Fn;
  NP.run = function run_(this: any, ...args: unknown[]) {
    this.once('end', () => {
      abortAll(new EvyError('the mocha run ended', 'ERR_EVY_RUN_ENDED'));
      armExit();
    });
    return runnerRun.apply(this, args);
  };
}

install();

/** Sets the leak policy from code (a `--require`d setup file): `setup({ leaks: 'warn' })`. */
export const setup = configure;
