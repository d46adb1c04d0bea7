// own/disown/unowned and owningThread(), the primitive every module's ownership rule is built on
// (docs/architecture.md "Threads"): a kill destroys what its thread owns at that moment, once, with the kill
// error; a normal exit or a disown releases without destroying; the main thread and unowned() own nothing.
import { describe, expect, it } from 'vitest';
import { Event, GreenletExit, disown, getcurrent, own, sleep, spawn, unowned } from '../src/index.js';
import { owningThread } from '../src/ownership.js';

type Log = [string, unknown][];
const recorder = (log: Log, name: string) => (_res: object, err: unknown) => log.push([name, err]);

describe('own/disown', () => {
  it("a kill runs the destroyer of each resource its thread owns, once, with the kill error; a disowned one is spared", async () => {
    const log: Log = [];
    const a = {};
    const b = {};
    const parked = new Event<void>();
    const t = spawn(async () => {
      expect(own(a, recorder(log, 'a'))).toBe(getcurrent());
      expect(own(b, recorder(log, 'b'))).toBe(getcurrent());
      disown(b, getcurrent());
      parked.send();
      await sleep(10);
    });
    await parked.wait();
    const err = new Error('stop');
    await t.kill(err);
    expect(log).toEqual([['a', err]]);
    await t.kill(new Error('again')); // nothing is destroyed twice
    expect(log).toEqual([['a', err]]);
  });

  it('a kill with no error destroys with GreenletExit', async () => {
    const log: Log = [];
    const t = spawn(async () => {
      own({}, recorder(log, 'r'));
      await sleep(10);
    });
    await sleep(0);
    await t.kill();
    expect(log).toHaveLength(1);
    expect(log[0]![1]).toBeInstanceOf(GreenletExit);
  });

  it('a normal exit releases what the thread owned without destroying it', async () => {
    const log: Log = [];
    const t = spawn(() => {
      own({}, recorder(log, 'r'));
      return 'done';
    });
    expect(await t.wait()).toBe('done');
    await t.kill();
    expect(log).toEqual([]);
  });

  it('the main thread owns nothing: own() returns null and a kill of main is not a thing', () => {
    const log: Log = [];
    expect(own({}, recorder(log, 'r'))).toBeNull();
    expect(log).toEqual([]);
  });

  it('own() for a finished thread returns null; for a killed one it destroys at once and returns null', async () => {
    const finished = spawn(() => 1);
    await finished.wait();
    const log: Log = [];
    expect(own({}, recorder(log, 'finished'), finished)).toBeNull();
    expect(log).toEqual([]);

    const parked = new Event<void>();
    const err = new Error('killed');
    let ownedAfterKill: unknown = 'not yet';
    const killed = spawn(async () => {
      parked.send();
      try {
        await sleep(10);
      } catch {
        // still running after the kill: what it claims now is destroyed at once
        ownedAfterKill = own({}, recorder(log, 'late'));
      }
    });
    await parked.wait();
    await killed.kill(err);
    expect(ownedAfterKill).toBeNull();
    expect(log).toEqual([['late', err]]);
  });

  it('own(resource, destroy, t) records for the given thread, not the running one', async () => {
    const log: Log = [];
    const parked = new Event<void>();
    const t = spawn(async () => {
      parked.send();
      await sleep(10);
    });
    await parked.wait();
    const res = {};
    expect(own(res, recorder(log, 'given'), t)).toBe(t);
    await t.kill();
    expect(log.map(([n]) => n)).toEqual(['given']);
  });

  it('disown(resource, null) and disown of something never owned are no-ops', async () => {
    const log: Log = [];
    disown({}, null);
    const t = spawn(async () => {
      const r = {};
      own(r, recorder(log, 'r'));
      disown({}, getcurrent()); // another object
      await sleep(10);
    });
    await sleep(0);
    await t.kill();
    expect(log.map(([n]) => n)).toEqual(['r']);
  });

  it('a destroyer that throws does not stop the others', async () => {
    const log: Log = [];
    const t = spawn(async () => {
      own({}, () => {
        throw new Error('bad destroyer');
      });
      own({}, recorder(log, 'second'));
      await sleep(10);
    });
    await sleep(0);
    const errors: unknown[] = [];
    const { rt } = await import('../src/runtime.js');
    const before = rt.hub.onError;
    rt.hub.onError = (e: unknown) => void errors.push(e);
    try {
      await t.kill();
    } finally {
      rt.hub.onError = before;
    }
    expect(log.map(([n]) => n)).toEqual(['second']);
    expect(String(errors[0])).toMatch(/bad destroyer/);
  });

  it('rejects a destroy that is not a function, naming the argument', () => {
    expect(() => own({}, 5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => own({}, 5 as never)).toThrow(/"destroy"/);
  });

  it('disown() for a thread that never owned anything is a no-op', async () => {
    const t = spawn(() => 'nothing owned');
    await t.wait();
    expect(() => disown({}, t)).not.toThrow();
    const parked = new Event<void>();
    const u = spawn(async () => {
      parked.send();
      await sleep(10);
    });
    await parked.wait();
    expect(() => disown({}, u)).not.toThrow();
    await u.kill();
  });
});

describe('owningThread() and unowned()', () => {
  it('is null in the main thread, the thread inside one, null again inside unowned() and in a finished thread\'s callbacks', async () => {
    expect(owningThread()).toBeNull();
    const seen: unknown[] = [];
    let later: (() => void) | null = null;
    const t = spawn(() => {
      seen.push(owningThread() === getcurrent());
      seen.push(unowned(() => owningThread()));
      later = () => seen.push(owningThread());
      return 'done';
    });
    await t.wait();
    later!(); // a callback of a finished thread runs as main
    expect(seen).toEqual([true, null, null]);
  });

  it('unowned(fn, ...args) passes the arguments and returns the result; what it owns is never destroyed', async () => {
    const log: Log = [];
    const parked = new Event<void>();
    const t = spawn(async () => {
      const r = unowned((a: number, b: number) => {
        expect(own({}, recorder(log, 'unowned'))).toBeNull();
        return a + b;
      }, 2, 3);
      expect(r).toBe(5);
      parked.send();
      await sleep(10);
    });
    await parked.wait();
    await t.kill();
    expect(log).toEqual([]);
    expect(() => unowned(5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
