import { describe, expect, it } from 'vitest';
import {
  Event,
  getcurrent,
  GreenletExit,
  GreenThread,
  hub,
  kill,
  KILL_FINALLY_GRACE_MS,
  Queue,
  Semaphore,
  sleep,
  spawn,
  spawnAfter,
  spawnN,
  spawn_after,
  spawn_n,
  until,
} from '../src/index.js';

describe('spawn', () => {
  it('starts at the next scheduler turn, in spawn order, and wait() returns the value', async () => {
    const log: string[] = [];
    const a = spawn(async (x: number) => {
      log.push(`a${x}`);
      return x * 2;
    }, 1);
    const b = spawn((x: number) => {
      log.push(`b${x}`);
      return x * 3;
    }, 2);
    expect(log).toEqual([]); // not synchronously
    expect(await a.wait()).toBe(2);
    expect(await b.wait()).toBe(6);
    expect(log).toEqual(['a1', 'b2']);
    expect(a.dead && b.dead).toBe(true);
  });

  it('wait() rethrows the thread error, for every waiter, before and after exit', async () => {
    const err = new Error('boom');
    const gt = spawn(async () => {
      await sleep(0.01);
      throw err;
    });
    const early = gt.wait();
    await expect(early).rejects.toBe(err);
    await expect(gt.wait()).rejects.toBe(err);
  });

  it('a GreenThread is not thenable, so awaiting a promise of one hands back the thread', async () => {
    const gt = spawn(() => 1);
    expect('then' in gt).toBe(false);
    const got = await Promise.resolve(gt);
    expect(got).toBeInstanceOf(GreenThread);
    expect(await got.wait()).toBe(1);
  });

  it('getcurrent() is the thread inside it and the main thread outside', async () => {
    const main = getcurrent();
    expect(main.name).toBe('MainThread');
    const gt = spawn(async () => {
      await sleep(0);
      return getcurrent();
    });
    expect(await gt.wait()).toBe(gt);
    expect(getcurrent()).toBe(main);
  });

  it('threads started in one batch each see themselves; the spawner\'s other async context is inherited; nothing after sees them', async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const app = new AsyncLocalStorage<string>();
    const main = getcurrent();
    const seen: [string, unknown, unknown][] = [];
    const note = (tag: string) => seen.push([tag, getcurrent(), app.getStore()]);
    const [a, b, c] = app.run('request-1', () => [
      spawn(async () => {
        note('a');
        await null;
        note('a after await');
      }),
      spawn(() => {
        note('b');
        throw new Error('b fails synchronously');
      }),
      spawn(() => note('c')),
    ]);
    queueMicrotask(() => note('main microtask'));
    await Promise.resolve();
    note('main after');
    await a.wait();
    await expect(b.wait()).rejects.toThrow('b fails synchronously');
    await c.wait();
    note('main at the end');
    const who = (t: unknown) => (t === main ? 'main' : t === a ? 'a' : t === b ? 'b' : t === c ? 'c' : t);
    expect(Object.fromEntries(seen.map(([tag, t, s]) => [tag, [who(t), s]]))).toEqual({
      a: ['a', 'request-1'],
      b: ['b', 'request-1'],
      c: ['c', 'request-1'],
      'main microtask': ['main', undefined],
      'a after await': ['a', 'request-1'],
      'main after': ['main', undefined],
      'main at the end': ['main', undefined],
    });
    expect(seen.slice(0, 4).map((x) => x[0])).toEqual(['a', 'b', 'c', 'main microtask']);
  });

  it('callbacks a finished thread registered run as the main thread', async () => {
    const main = getcurrent();
    let seen: GreenThread | undefined;
    const ev = new Event<void>();
    const gt = spawn(() => {
      setTimeout(() => {
        seen = getcurrent();
        ev.send();
      }, 5);
    });
    await gt.wait();
    await ev.wait();
    expect(seen).toBe(main);
  });

  it('rejects a non-function with a typed error', () => {
    expect(() => spawn(42 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => spawnN('x' as never)).toThrow(TypeError);
    expect(() => spawnAfter(-1, () => 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => spawnAfter('1' as never, () => 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('snake_case aliases are the same function objects', () => {
    expect(spawn_n).toBe(spawnN);
    expect(spawn_after).toBe(spawnAfter);
  });
});

describe('spawnN', () => {
  it('runs the function and reports its error to hub.onError, never silently', async () => {
    const errors: unknown[] = [];
    const prev = hub.onError;
    hub.onError = (e) => errors.push(e);
    try {
      const ran: number[] = [];
      spawnN((x: number) => ran.push(x), 7);
      spawnN(async () => {
        await sleep(0);
        throw new Error('lost?');
      });
      expect(ran).toEqual([]);
      await sleep(0.01);
      expect(ran).toEqual([7]);
      expect(errors).toHaveLength(1);
      expect((errors[0] as Error).message).toBe('lost?');
    } finally {
      hub.onError = prev;
    }
  });
});

describe('kill', () => {
  it('kill before start: the function never runs and wait() throws GreenletExit', async () => {
    let ran = false;
    const gt = spawn(() => {
      ran = true;
    });
    await gt.kill();
    expect(gt.dead).toBe(true);
    await sleep(0.005);
    expect(ran).toBe(false);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it.each([
    ['sleep', async () => sleep(10)],
    ['Queue.get', async () => new Queue().get()],
    ['Queue.put', async () => {
      const q = new Queue(0);
      await q.put(1);
    }],
    ['Event.wait', async () => new Event().wait()],
    ['Semaphore.acquire', async () => new Semaphore(0).acquire()],
    ['until', async () => until(new Promise(() => {}))],
  ])('kill while parked in %s: finally runs before kill() settles, wait() throws', async (_name, park) => {
    const log: string[] = [];
    const gt = spawn(async () => {
      try {
        await park();
      } finally {
        log.push('finally-start');
        // Cleanup may take time (evy waits throw here: cancellation is sticky; foreign awaits work).
        await new Promise((r) => setTimeout(r, 10));
        log.push('finally-end');
      }
    });
    await sleep(0.005);
    await gt.kill();
    expect(log).toEqual(['finally-start', 'finally-end']);
    expect(gt.dead).toBe(true);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('kill with an error: wait() throws that error', async () => {
    const gt = spawn(() => sleep(10));
    await sleep(0);
    const err = new RangeError('custom');
    await kill(gt, err);
    await expect(gt.wait()).rejects.toBe(err);
  });

  it('a thread that catches the kill and returns a value: wait() returns it', async () => {
    const gt = spawn(async () => {
      try {
        await sleep(10);
        return 'slept';
      } catch {
        return 'caught';
      }
    });
    await sleep(0);
    await gt.kill();
    expect(await gt.wait()).toBe('caught');
  });

  it('cancellation is sticky: every later evy wait of a killed thread throws at once', async () => {
    const errors: string[] = [];
    const gt = spawn(async () => {
      for (let i = 0; i < 3; i++) {
        try {
          await sleep(10);
        } catch (e) {
          errors.push((e as Error).name);
        }
      }
      const q = new Queue();
      q.putNowait(1);
      try {
        await q.get(); // even a wait that could complete at once
      } catch (e) {
        errors.push((e as Error).name);
      }
    });
    await sleep(0);
    await gt.kill();
    expect(errors).toEqual(['GreenletExit', 'GreenletExit', 'GreenletExit', 'GreenletExit']);
  });

  it('rejects every wait a thread is parked on at once (Promise.all)', async () => {
    let settled: PromiseSettledResult<unknown>[] = [];
    const gt = spawn(async () => {
      settled = await Promise.allSettled([sleep(10), new Queue().get(), new Event().wait()]);
    });
    await sleep(0);
    await gt.kill();
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
  });

  it('an un-awaited wait of a killed thread does not crash the process', async () => {
    const gt = spawn(async () => {
      const later = sleep(5); // never awaited: the thread dies on the first wait
      await sleep(5);
      await later;
    });
    await sleep(0);
    await gt.kill();
    await sleep(0.01); // an unhandled rejection would fail the test run here
    expect(gt.dead).toBe(true);
  });

  it('kill of a dead thread is a no-op; killing twice is harmless', async () => {
    const gt = spawn(() => 5);
    expect(await gt.wait()).toBe(5);
    await gt.kill();
    await gt.kill(new Error('ignored'));
    expect(await gt.wait()).toBe(5);
  });

  it('a thread parked on a foreign promise that never settles: kill() settles, the thread is detached', async () => {
    let afterAwait = false;
    let release!: () => void;
    const foreign = new Promise<void>((r) => (release = r));
    const gt = spawn(async () => {
      await foreign;
      afterAwait = true;
      await sleep(0); // dies here: its result is discarded
      return 'late';
    });
    await sleep(0);
    const t0 = performance.now();
    await gt.kill();
    expect(performance.now() - t0).toBeLessThan(900);
    expect(gt.dead).toBe(true);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
    release();
    await sleep(0.01);
    expect(afterAwait).toBe(true);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('a wait left parked by Promise.race with a foreign promise does not make kill() hang', async () => {
    const gt = spawn(async () => {
      await Promise.race([Promise.resolve('fast'), sleep(30)]); // the sleep stays parked, nobody awaits it
      await new Promise(() => {}); // then a foreign await that never settles
    });
    await sleep(0.01);
    const t0 = performance.now();
    await gt.kill();
    expect(performance.now() - t0).toBeLessThan(KILL_FINALLY_GRACE_MS + 1000);
    expect(gt.dead).toBe(true);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('gt.signal aborts on kill with the kill error, not on a normal exit', async () => {
    const a = spawn(() => sleep(10));
    const b = spawn(() => 1);
    const sa = a.signal;
    await sleep(0);
    await b.wait();
    await a.kill();
    expect(sa.aborted).toBe(true);
    expect(sa.reason).toBeInstanceOf(GreenletExit);
    expect(b.signal.aborted).toBe(false);
  });

  it('a thread can kill itself: it throws at once', async () => {
    const gt = spawn(async () => {
      await getcurrent().kill();
      return 'not reached';
    });
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('the main thread cannot be killed, and kill() of a non-thread is a typed error', async () => {
    await expect(getcurrent().kill()).rejects.toMatchObject({ code: 'ERR_EVY_KILL_MAIN' });
    await expect(kill({} as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('a thread cannot wait for itself', async () => {
    const gt = spawn(() => getcurrent().wait());
    await expect(gt.wait()).rejects.toMatchObject({ code: 'ERR_EVY_SELF_WAIT' });
  });
});

describe('link', () => {
  it('runs callbacks once, in registration order, with curried args; at once if already dead', async () => {
    const calls: unknown[][] = [];
    const gt = spawn(async () => {
      await sleep(0.002);
      return 'v';
    });
    gt.link((g, a: number, b: string) => calls.push(['first', g === gt, a, b]), 4, 'x');
    gt.link((g) => calls.push(['second', g.dead]));
    const removed = (): void => {
      calls.push(['removed']);
    };
    gt.link(removed);
    expect(gt.unlink(removed)).toBe(true);
    expect(gt.unlink(removed)).toBe(false);
    await gt.wait();
    expect(calls).toEqual([
      ['first', true, 4, 'x'],
      ['second', true],
    ]);
    gt.link((g) => calls.push(['late', g.dead]));
    expect(calls.at(-1)).toEqual(['late', true]);
    await sleep(0.005);
    expect(calls).toHaveLength(3);
  });

  it('a link that throws is reported and the others still run', async () => {
    const errors: unknown[] = [];
    const prev = hub.onError;
    hub.onError = (e) => errors.push(e);
    try {
      const ran: string[] = [];
      const gt = spawn(() => 1);
      gt.link(() => {
        throw new Error('bad link');
      });
      gt.link(() => ran.push('after'));
      await gt.wait();
      expect(ran).toEqual(['after']);
      expect((errors[0] as Error).message).toBe('bad link');
    } finally {
      hub.onError = prev;
    }
  });

  it('links run when a thread is killed before it started', async () => {
    const seen: boolean[] = [];
    const gt = spawn(() => 1);
    gt.link((g) => seen.push(g.dead));
    gt.kill();
    expect(seen).toEqual([true]);
  });
});

describe('spawnAfter', () => {
  it('runs after the delay', async () => {
    const t0 = performance.now();
    const gt = spawnAfter(0.02, (x: number) => [x, performance.now() - t0], 3);
    const [x, elapsed] = await gt.wait();
    expect(x).toBe(3);
    expect(elapsed).toBeGreaterThanOrEqual(15);
  });

  it('cancel() before it fires prevents the call; wait() throws GreenletExit', async () => {
    let ran = false;
    const gt = spawnAfter(0.02, () => {
      ran = true;
    });
    gt.cancel();
    await sleep(0.04);
    expect(ran).toBe(false);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('cancel() after it started does nothing, kill() still kills', async () => {
    const a = spawnAfter(0, async () => {
      await sleep(0.01);
      return 'done';
    });
    await sleep(0.003);
    a.cancel();
    expect(await a.wait()).toBe('done');
    const b = spawnAfter(0, () => sleep(1));
    await sleep(0.003);
    await b.kill();
    await expect(b.wait()).rejects.toBeInstanceOf(GreenletExit);
  });
});

describe('until in a thread that is already killed', () => {
  it('still observes the promise: its later rejection is no unhandled rejection', async () => {
    const seen: unknown[] = [];
    const onUnhandled = (e: unknown): void => void seen.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      let reject!: (e: Error) => void;
      const p = new Promise<never>((_, r) => (reject = r));
      const t = spawn(async () => {
        await new Promise((r) => setTimeout(r, 20)); // foreign: the kill lands here
        return until(p); // throws the kill at once, yet must observe p
      });
      await sleep(0.005);
      await t.kill();
      await new Promise((r) => setTimeout(r, 40)); // the detached body reaches until()
      reject(new Error('late rejection'));
      await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual([]);
      await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

