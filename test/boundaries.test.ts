// One rule at every boundary of the public API (docs/core.md, "Argument errors"): a function that returns a
// promise reports a bad argument by returning a rejected promise, never by throwing; a function that returns
// no promise throws. Either way the error is Node's (TypeError/RangeError with ERR_INVALID_ARG_TYPE,
// ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE, ERR_SOCKET_BAD_PORT) and the bad call changes nothing: no thread
// spawned, no handle or timer left behind, no item taken, no permit moved.
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import * as evy from '../src/index.js';
import * as gChild from '../src/green/child_process.js';
import * as gTimers from '../src/green/timers.js';
import * as gTimersPromises from '../src/green/timers-promises.js';
import { configure, settings } from '../src/testing/core.js';

const {
  BoundedSemaphore, CappedSemaphore, debug, Event, GreenPile, GreenPool, GreenSocket, LifoQueue, LightQueue, PriorityQueue,
  Queue, Semaphore, Timeout, tpool,
} = evy;

type ErrorClass = new (...args: any[]) => Error;
interface Entry {
  name: string;
  rule: 'throws' | 'rejects';
  error: [ErrorClass, string];
  /** Made before the call; what the call is made on (a socket, a queue...). */
  setup?: () => unknown;
  call: (s: any) => unknown;
  /** Run the call inside a green thread (the green layer takes another path there). */
  inThread?: boolean;
  /** The argument the message must name, where a wrapper passes it on under another name. */
  argument?: string;
  /** What the bad call must have left as it was. */
  intact?: (s: any) => unknown;
  teardown?: (s: any) => unknown;
}

const TYPE: [ErrorClass, string] = [TypeError, 'ERR_INVALID_ARG_TYPE'];
const VALUE: [ErrorClass, string] = [TypeError, 'ERR_INVALID_ARG_VALUE'];
const RANGE: [ErrorClass, string] = [RangeError, 'ERR_OUT_OF_RANGE'];
const PORT: [ErrorClass, string] = [RangeError, 'ERR_SOCKET_BAD_PORT'];
const fn = (): number => 1;
const ESM = new URL('../fixtures/import-patched/helper.mjs', import.meta.url).href;

/** A connected pair: `c` (client) and `s` (server side), and the listener `l`. */
async function pair(): Promise<{ l: evy.GreenSocket; c: evy.GreenSocket; s: evy.GreenSocket }> {
  const l = await evy.listen(['127.0.0.1', 0]);
  const c = await evy.connect(l.getsockname());
  const [s] = await l.accept();
  return { l, c, s };
}
function closePair(p: { l: evy.GreenSocket; c: evy.GreenSocket; s: evy.GreenSocket }): void {
  for (const sock of [p.c, p.s, p.l]) sock.close();
}
/** The peer sends one byte: a bad recv must leave it there for the next good one. */
async function pairWithByte() {
  const p = await pair();
  await p.s.sendall('x');
  await evy.sleep(0.02);
  return p;
}
const byteStillThere = async (p: { c: evy.GreenSocket }) => expect((await p.c.recv(10)).toString()).toBe('x');

/** A pair with a byte waiting for `c`, and a file `f` made from `c`. */
function withFile(mode: string) {
  return async () => {
    const p = await pairWithByte();
    return { ...p, f: p.c.makefile(mode) };
  };
}
async function closeWithFile(p: { f: evy.SocketFile; l: evy.GreenSocket; c: evy.GreenSocket; s: evy.GreenSocket }): Promise<void> {
  await p.f.close();
  closePair(p);
}

function catChild(): ChildProcess {
  return spawnChild(process.execPath, ['-e', 'process.stdin.pipe(process.stdout)']);
}

const entries: Entry[] = [
  // ---- threads
  { name: 'spawn(non-function)', rule: 'throws', error: TYPE, call: () => evy.spawn(42 as never) },
  { name: 'spawnN(non-function)', rule: 'throws', error: TYPE, call: () => evy.spawnN('x' as never) },
  { name: 'spawnAfter(-1, fn)', rule: 'throws', error: RANGE, call: () => evy.spawnAfter(-1, fn) },
  { name: 'spawnAfter(1, non-function)', rule: 'throws', error: TYPE, call: () => evy.spawnAfter(1, 5 as never) },
  { name: 'unowned(non-function)', rule: 'throws', error: TYPE, call: () => evy.unowned(5 as never) },
  { name: 'own(resource, non-function)', rule: 'throws', error: TYPE, inThread: true, call: () => evy.own({}, 5 as never) },
  { name: 'kill(non-thread)', rule: 'rejects', error: TYPE, call: () => evy.kill({} as never) },
  {
    name: 'GreenThread.link(non-function)',
    rule: 'throws',
    error: TYPE,
    setup: () => evy.spawnAfter(60, fn),
    call: (gt: evy.GreenThread) => gt.link(5 as never),
    teardown: (gt: evy.GreenThread) => gt.cancel(),
  },
  // ---- time
  { name: 'sleep(-1)', rule: 'rejects', error: RANGE, call: () => evy.sleep(-1) },
  { name: 'sleep("1")', rule: 'rejects', error: TYPE, call: () => evy.sleep('1' as never) },
  { name: 'sleep(NaN) in a thread', rule: 'rejects', error: RANGE, inThread: true, call: () => evy.sleep(NaN) },
  {
    name: 'new Timeout(-1, ErrorClass)',
    rule: 'throws',
    error: RANGE,
    setup: () => ({ made: 0 }),
    call: (s) => new Timeout(-1, class extends Error { constructor() { super(); s.made++; } }),
    intact: (s) => expect(s.made).toBe(0),
  },
  { name: 'new Timeout("1")', rule: 'throws', error: TYPE, call: () => new Timeout('1' as never) },
  {
    name: 'withTimeout(-1, fn)',
    rule: 'rejects',
    error: RANGE,
    setup: () => ({ ran: false }),
    call: (s) => evy.withTimeout(-1, () => { s.ran = true; }),
    intact: async (s) => { await evy.sleep(0); expect(s.ran).toBe(false); },
  },
  { name: 'withTimeout(1, non-function)', rule: 'rejects', error: TYPE, call: () => evy.withTimeout(1, 5 as never) },
  // ---- primitives
  { name: 'new Event().wait(-1)', rule: 'rejects', error: RANGE, call: () => new Event().wait(-1) },
  { name: 'new Semaphore(-1)', rule: 'throws', error: RANGE, call: () => new Semaphore(-1) },
  { name: 'new BoundedSemaphore("2")', rule: 'throws', error: TYPE, call: () => new BoundedSemaphore('2' as never) },
  { name: 'new CappedSemaphore(3, 2)', rule: 'throws', error: RANGE, call: () => new CappedSemaphore(3, 2) },
  {
    name: 'Semaphore.acquire("yes")',
    rule: 'rejects',
    error: TYPE,
    setup: () => new Semaphore(1),
    call: (sem: evy.Semaphore) => sem.acquire('yes' as never),
    intact: (sem: evy.Semaphore) => expect([sem.counter, sem.waiting]).toEqual([1, 0]),
  },
  {
    name: 'Semaphore.acquire(true, -1)',
    rule: 'rejects',
    error: RANGE,
    setup: () => new Semaphore(0),
    call: (sem: evy.Semaphore) => sem.acquire(true, -1),
    intact: (sem: evy.Semaphore) => expect([sem.counter, sem.waiting]).toEqual([0, 0]),
  },
  {
    name: 'Semaphore.run(non-function)',
    rule: 'rejects',
    error: TYPE,
    setup: () => new Semaphore(1),
    call: (sem: evy.Semaphore) => sem.run(5 as never),
    intact: (sem: evy.Semaphore) => expect(sem.counter).toBe(1),
  },
  {
    name: 'CappedSemaphore.acquire(true, "x")',
    rule: 'rejects',
    error: TYPE,
    setup: () => new CappedSemaphore(1, 2),
    call: (sem: evy.CappedSemaphore) => sem.acquire(true, 'x' as never),
    intact: (sem: evy.CappedSemaphore) => expect([sem.counter, sem.balance, sem.bounded()]).toEqual([1, 0, false]),
  },
  {
    name: 'CappedSemaphore.release("no")',
    rule: 'rejects',
    error: TYPE,
    setup: () => new CappedSemaphore(1, 2),
    call: (sem: evy.CappedSemaphore) => sem.release('no' as never),
    intact: (sem: evy.CappedSemaphore) => expect([sem.counter, sem.balance]).toEqual([1, 0]),
  },
  { name: 'new Queue("3")', rule: 'throws', error: TYPE, call: () => new Queue('3' as never) },
  { name: 'new LightQueue(NaN)', rule: 'throws', error: TYPE, call: () => new LightQueue(NaN) },
  {
    name: 'LifoQueue.put(item, true, "x")',
    rule: 'rejects',
    error: TYPE,
    setup: () => new LifoQueue(),
    call: (q: evy.LifoQueue) => q.put('item', true, 'x' as never),
    intact: (q: evy.LifoQueue) => expect(q.qsize()).toBe(0),
  },
  { name: 'new PriorityQueue(1, non-function)', rule: 'throws', error: TYPE, call: () => new PriorityQueue(1, 5 as never) },
  { name: 'Queue.resize("x")', rule: 'throws', error: TYPE, call: () => new Queue().resize('x' as never) },
  {
    name: 'Queue.get("x")',
    rule: 'rejects',
    error: TYPE,
    setup: () => {
      const q = new Queue<string>();
      q.putNowait('item');
      return q;
    },
    call: (q: evy.Queue) => q.get('x' as never),
    intact: (q: evy.Queue) => expect([q.qsize(), q.getNowait()]).toEqual([1, 'item']),
  },
  {
    name: 'Queue.get(true, -1)',
    rule: 'rejects',
    error: RANGE,
    setup: () => new Queue(),
    call: (q: evy.Queue) => q.get(true, -1),
    intact: (q: evy.Queue) => expect(q.getting()).toBe(0),
  },
  {
    name: 'Queue.put(item, "yes")',
    rule: 'rejects',
    error: TYPE,
    setup: () => new Queue(),
    call: (q: evy.Queue) => q.put('item', 'yes' as never),
    intact: (q: evy.Queue) => expect([q.qsize(), q.unfinishedTasks]).toEqual([0, 0]),
  },
  // ---- pools
  { name: 'new GreenPool(-1)', rule: 'throws', error: RANGE, call: () => new GreenPool(-1) },
  { name: 'GreenPool.resize(1.5)', rule: 'throws', error: RANGE, call: () => new GreenPool(1).resize(1.5) },
  { name: 'GreenPool.imap(non-function)', rule: 'throws', error: TYPE, call: () => new GreenPool().imap(5 as never, []) },
  { name: 'GreenPool.starmap(fn, non-iterable)', rule: 'throws', error: TYPE, call: () => new GreenPool().starmap(fn, 5 as never) },
  {
    name: 'GreenPool.spawn(non-function)',
    rule: 'rejects',
    error: TYPE,
    setup: () => new GreenPool(2),
    call: (pool: evy.GreenPool) => pool.spawn(1 as never),
    intact: (pool: evy.GreenPool) => expect([pool.running(), pool.free(), pool.waiting()]).toEqual([0, 2, 0]),
  },
  {
    name: 'GreenPool.spawnN(non-function)',
    rule: 'rejects',
    error: TYPE,
    setup: () => new GreenPool(2),
    call: (pool: evy.GreenPool) => pool.spawnN(1 as never),
    intact: (pool: evy.GreenPool) => expect([pool.running(), pool.free()]).toEqual([0, 2]),
  },
  { name: 'new GreenPile("x")', rule: 'throws', error: TYPE, call: () => new GreenPile('x' as never) },
  {
    name: 'GreenPile.spawn(non-function)',
    rule: 'rejects',
    error: TYPE,
    setup: () => new GreenPile(2),
    call: (pile: evy.GreenPile) => pile.spawn(1 as never),
    // Nothing was spawned: iteration ends at once instead of waiting for a result.
    intact: async (pile: evy.GreenPile) => expect(await pile.next()).toEqual({ value: undefined, done: true }),
  },
  // ---- sockets
  { name: 'connect(42)', rule: 'rejects', error: TYPE, call: () => evy.connect(42 as never) },
  { name: 'connect([host, 70000])', rule: 'rejects', error: PORT, call: () => evy.connect(['127.0.0.1', 70000]) },
  { name: 'connect([host, port], "bogus")', rule: 'rejects', error: TYPE, call: () => evy.connect(['127.0.0.1', 80], 'bogus' as never) },
  { name: 'listen("")', rule: 'rejects', error: RANGE, call: () => evy.listen('') },
  { name: 'listen(addr, family, -1)', rule: 'rejects', error: RANGE, call: () => evy.listen(['127.0.0.1', 0], null, -1) },
  { name: 'serve(non-socket, fn)', rule: 'rejects', error: TYPE, call: () => evy.serve({} as never, fn) },
  {
    name: 'serve(sock, fn, 0)',
    rule: 'rejects',
    error: RANGE,
    setup: () => evy.listen(['127.0.0.1', 0]),
    call: (l: evy.GreenSocket) => evy.serve(l, fn, 0),
    intact: (l: evy.GreenSocket) => expect(l.closed).toBe(false),
    teardown: (l: evy.GreenSocket) => l.close(),
  },
  { name: 'wrapSsl(non-socket)', rule: 'rejects', error: TYPE, call: () => evy.wrapSsl({} as never) },
  { name: 'backdoor([1, 2])', rule: 'rejects', error: TYPE, call: () => evy.backdoor([1, 2] as never) },
  { name: 'new GreenSocket({})', rule: 'throws', error: TYPE, call: () => new GreenSocket({} as never) },
  {
    name: 'GreenSocket.recv(-1)',
    rule: 'rejects',
    error: RANGE,
    setup: pairWithByte,
    call: (p) => p.c.recv(-1),
    intact: byteStillThere,
    teardown: closePair,
  },
  {
    name: 'GreenSocket.recvInto(buffer, -1)',
    rule: 'rejects',
    error: RANGE,
    argument: 'nbytes',
    setup: pairWithByte,
    call: (p) => p.c.recvInto(Buffer.alloc(4), -1),
    intact: byteStillThere,
    teardown: closePair,
  },
  {
    name: "GreenSocket.recvInto(buffer, '2')",
    rule: 'rejects',
    error: TYPE,
    argument: 'nbytes',
    setup: pairWithByte,
    call: (p) => p.c.recvInto(Buffer.alloc(4), '2' as never),
    intact: byteStillThere,
    teardown: closePair,
  },
  {
    name: 'GreenSocket.recvInto(non-buffer)',
    rule: 'rejects',
    error: TYPE,
    setup: pairWithByte,
    call: (p) => p.c.recvInto('x' as never),
    intact: byteStillThere,
    teardown: closePair,
  },
  { name: 'GreenSocket.sendall(42)', rule: 'rejects', error: TYPE, setup: pair, call: (p) => p.c.sendall(42 as never), teardown: closePair },
  { name: 'GreenSocket.send(42)', rule: 'rejects', error: TYPE, setup: pair, call: (p) => p.c.send(42 as never), teardown: closePair },
  {
    name: 'GreenSocket.settimeout("x")',
    rule: 'throws',
    error: TYPE,
    setup: pair,
    call: (p) => p.c.settimeout('x' as never),
    intact: (p) => expect(p.c.gettimeout()).toBe(null),
    teardown: closePair,
  },
  {
    name: 'GreenSocket.shutdown(7)',
    rule: 'throws',
    error: RANGE,
    setup: pairWithByte,
    call: (p) => p.c.shutdown(7),
    intact: byteStillThere,
    teardown: closePair,
  },
  { name: 'GreenSocket.makefile("z")', rule: 'throws', error: RANGE, setup: pair, call: (p) => p.c.makefile('z'), teardown: closePair },
  {
    name: 'SocketFile.readline("x")',
    rule: 'rejects',
    error: TYPE,
    setup: withFile('r'),
    call: (p) => p.f.readline('x' as never),
    intact: byteStillThere,
    teardown: closeWithFile,
  },
  { name: 'SocketFile.read("x")', rule: 'rejects', error: TYPE, setup: withFile('r'), call: (p) => p.f.read('x' as never), intact: byteStillThere, teardown: closeWithFile },
  {
    name: 'SocketFile.write(5)',
    rule: 'rejects',
    error: TYPE,
    setup: withFile('w'),
    call: (p) => p.f.write(5 as never),
    // Nothing was buffered: a flush sends nothing, the peer gets only what is sent after.
    intact: async (p) => {
      await p.f.flush();
      await p.c.sendall('y');
      expect((await p.s.recv(10)).toString()).toBe('y');
      await byteStillThere(p);
    },
    teardown: closeWithFile,
  },
  // ---- patching
  {
    name: 'monkeyPatch({ sockets: true })',
    rule: 'throws',
    error: VALUE,
    setup: () => evy.isMonkeyPatched('net'),
    call: () => evy.monkeyPatch({ sockets: true } as never),
    intact: (was: boolean) => expect(evy.isMonkeyPatched('net')).toBe(was),
  },
  { name: 'monkeyPatch("net")', rule: 'throws', error: TYPE, call: () => evy.monkeyPatch('net' as never) },
  { name: 'isMonkeyPatched(5)', rule: 'throws', error: TYPE, call: () => evy.isMonkeyPatched(5 as never) },
  { name: 'isMonkeyPatched("nett")', rule: 'throws', error: VALUE, call: () => evy.isMonkeyPatched('nett') },
  { name: 'original("https")', rule: 'throws', error: VALUE, call: () => evy.original('https') },
  // ---- servers
  { name: 'shutdown(-1)', rule: 'rejects', error: RANGE, argument: 'drainSeconds', call: () => evy.shutdown(-1) },
  { name: 'shutdown("2")', rule: 'rejects', error: TYPE, argument: 'drainSeconds', call: () => evy.shutdown('2' as never) },
  { name: 'requestDeadline({}, 1)', rule: 'throws', error: TYPE, argument: 'server', call: () => evy.requestDeadline({} as never, 1) },
  { name: 'requestDeadline(server, -1)', rule: 'throws', error: RANGE, argument: 'seconds', call: () => evy.requestDeadline(net.createServer(), -1) },
  { name: 'importPatched(42)', rule: 'rejects', error: TYPE, call: () => evy.importPatched(42 as never) },
  { name: 'importPatched(spec, ["os"])', rule: 'rejects', error: VALUE, call: () => evy.importPatched(ESM, ['os'] as never) },
  { name: 'evy/green/timers setTimeout(non-function)', rule: 'throws', error: TYPE, inThread: true, call: () => gTimers.setTimeout('x' as never, 1) },
  {
    name: 'evy/green/timers/promises setTimeout("x")',
    rule: 'rejects',
    error: TYPE,
    inThread: true,
    call: () => gTimersPromises.setTimeout('x' as never),
  },
  { name: 'evy/green/child_process wait(non-child)', rule: 'rejects', error: TYPE, call: () => gChild.wait('x' as never) },
  {
    name: 'evy/green/child_process communicate(child, 5)',
    rule: 'rejects',
    error: TYPE,
    setup: catChild,
    call: (child: ChildProcess) => gChild.communicate(child, 5 as never),
    // stdin was not closed by the bad call: a good one still talks to the child.
    intact: async (child: ChildProcess) => expect((await gChild.communicate(child, 'hi'))[0]!.toString()).toBe('hi'),
  },
  // ---- debug, tpool, test runners
  { name: 'debug.trackThreads("yes")', rule: 'throws', error: TYPE, call: () => debug.trackThreads('yes' as never) },
  { name: 'debug.trackThreads(true, null)', rule: 'throws', error: TYPE, call: () => debug.trackThreads(true, null as never) },
  { name: 'debug.dumpOnSignal(5)', rule: 'throws', error: TYPE, call: () => debug.dumpOnSignal(5 as never) },
  {
    name: 'debug.blockingDetection(true, -1) while on',
    rule: 'throws',
    error: RANGE,
    setup: () => debug.blockingDetection(true, 5),
    call: () => debug.blockingDetection(true, -1),
    intact: () => expect(debug.blockingDetectionStatus()).toEqual({ on: true, seconds: 5 }),
    teardown: () => debug.blockingDetection(false),
  },
  { name: 'debug.leaks(non-function)', rule: 'rejects', error: TYPE, call: () => debug.leaks('nope' as never) },
  { name: 'debug.leaks(fn, null)', rule: 'rejects', error: TYPE, call: () => debug.leaks(fn, null as never) },
  { name: 'debug.assertNoLeaks(non-function)', rule: 'rejects', error: TYPE, call: () => debug.assertNoLeaks('nope' as never) },
  {
    name: 'tpool.execute(42)',
    rule: 'rejects',
    error: TYPE,
    call: () => tpool.execute(42 as never),
    intact: () => expect(tpool.stats()).toMatchObject({ queued: 0 }),
  },
  { name: 'tpool.resize(0)', rule: 'throws', error: RANGE, call: () => tpool.resize(0) },
  {
    name: 'configure({ leaks: "x" }) (evy/vitest, evy/node-test, evy/mocha)',
    rule: 'throws',
    error: VALUE,
    setup: () => settings().leaks,
    call: () => configure({ leaks: 'x' as never }),
    intact: (was: string) => expect(settings().leaks).toBe(was),
  },
  { name: 'configure(null)', rule: 'throws', error: TYPE, call: () => configure(null as never) },
];

const NONE = Symbol('none');

/** The promise's state one event-loop turn later: a bad argument must not leave it pending. */
async function stateAfterATurn(p: Promise<unknown>): Promise<{ state: string; reason?: unknown }> {
  let out: { state: string; reason?: unknown } = { state: 'pending' };
  p.then(
    () => (out = { state: 'fulfilled' }),
    (reason: unknown) => (out = { state: 'rejected', reason }),
  );
  await new Promise((r) => setImmediate(r));
  return out;
}

/** Active handles and requests by kind (getActiveResourcesInfo), to see what a call left behind. */
function resources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}
function added(before: Map<string, number>): string[] {
  return [...resources()].filter(([k, n]) => n > (before.get(k) ?? 0)).map(([k]) => k);
}

describe('argument errors: promise APIs reject, the others throw, and a bad call changes nothing', () => {
  afterAll(() => tpool.destroy());

  it.each(entries.map((e) => [`${e.name} ${e.rule}`, e] as const))('%s', async (_, e) => {
    const s = await e.setup?.();
    const threads = debug.threads().length;
    const before = resources();
    let thrown: unknown = NONE;
    let result: unknown;
    const invoke = (): void => {
      try {
        result = e.call(s);
      } catch (err) {
        thrown = err;
      }
    };
    if (e.inThread) await evy.spawn(invoke).wait();
    else invoke();

    const [cls, code] = e.error;
    let error: unknown;
    if (e.rule === 'throws') {
      error = thrown;
    } else {
      expect(thrown).toBe(NONE);
      expect(result).toBeInstanceOf(Promise);
      const st = await stateAfterATurn(result as Promise<unknown>);
      expect(st.state).toBe('rejected');
      error = st.reason;
    }
    expect(error).toBeInstanceOf(cls);
    expect((error as { code?: string }).code).toBe(code);
    // One message shape: what was wrong, and what was received.
    expect((error as Error).message).toMatch(/^The (value of |port of )?"[^"]+"/);
    expect((error as Error).message).toMatch(/ Received /);
    if (e.argument !== undefined) expect((error as Error).message).toMatch(new RegExp(`^The (value of )?"${e.argument}"`));

    await e.intact?.(s);
    expect(debug.threads().length).toBe(threads);
    expect(added(before)).toEqual([]);
    await e.teardown?.(s);
  });

  it('covers every function and class exported by evy, and the debug and tpool namespaces', () => {
    // Nothing a caller can get wrong: no arguments, or any value (until's promise, disown's owner, a resource to
    // describe); GreenMap is made by imap/starmap; the error classes take a message.
    const noArguments = [
      'getcurrent', 'local', 'until', 'disown', 'GreenMap', 'debug.blockingDetectionStatus', 'debug.formatThreads',
      'debug.formatHub', 'debug.threads', 'debug.describeResource', 'tpool.destroy', 'tpool.stats',
    ];
    const namespaced = (ns: string, o: object) => Object.keys(o).filter((k) => typeof (o as any)[k] === 'function').map((k) => `${ns}.${k}`);
    const names = Object.entries(evy)
      .filter(([k, v]) => typeof v === 'function' && !/Error$|^(GreenletExit|Empty|Full|QueueClosed|StopServe|SocketTimeout)$/.test(k))
      .map(([k]) => k)
      .concat(namespaced('debug', debug), namespaced('tpool', tpool))
      .filter((k) => !noArguments.includes(k) && !k.includes('_'));
    expect(names.length).toBeGreaterThan(30);
    const covered = entries.map((e) => e.name).join('\n');
    const missing = names.filter((k) => !new RegExp(`(^|[ (])${k.replace('.', '\\.')}[.( ]`, 'm').test(covered));
    expect(missing).toEqual([]);
  });
});

// GreenThread, GreenMap and SocketFile are exported for instanceof and their types; only evy makes them. Before,
// `new GreenThread(fn)` made a thread that never ran (its wait() pended forever) and the other two failed
// later with an unrelated TypeError.
describe('classes only evy makes: `new` throws ERR_ILLEGAL_CONSTRUCTOR', () => {
  const made: [string, () => unknown, RegExp][] = [
    // @ts-expect-error the constructor is private in the types too
    ['GreenThread', () => new evy.GreenThread(fn, null), /GreenThread objects are made by spawn\(\), spawnN\(\) and spawnAfter\(\)/],
    // @ts-expect-error
    ['GreenMap', () => new evy.GreenMap(new GreenPool(2), fn, [1, 2], false), /GreenMap objects are made by GreenPool\.imap\(\) and starmap\(\)/],
    // @ts-expect-error
    ['SocketFile', () => new evy.SocketFile({}, 'r'), /SocketFile objects are made by GreenSocket\.makefile\(\)/],
  ];
  it.each(made)('new %s()', (_, make, message) => {
    const threads = debug.threads().length;
    let thrown: unknown = NONE;
    try {
      make();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(TypeError);
    expect((thrown as { code?: string }).code).toBe('ERR_ILLEGAL_CONSTRUCTOR');
    expect((thrown as Error).message).toMatch(message);
    expect(debug.threads().length).toBe(threads);
  });

  it('what they are made by still works, and instanceof holds', async () => {
    const t = evy.spawn(() => 7);
    expect(t).toBeInstanceOf(evy.GreenThread);
    expect(await t.wait()).toBe(7);
    const m = new GreenPool(2).imap((x: number) => x * 2, [1, 2, 3]);
    expect(m).toBeInstanceOf(evy.GreenMap);
    const out: number[] = [];
    for await (const v of m) out.push(v);
    expect(out).toEqual([2, 4, 6]);
  });
});
