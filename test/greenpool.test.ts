import { describe, expect, it } from 'vitest';
import { Event, getcurrent, GreenletExit, GreenPile, GreenPool, GreenThread, hub, local, sleep, spawn, Timeout } from '../src/index.js';

const tick = (): Promise<void> => sleep(0);

describe('GreenPool', () => {
  it('spawn waits for a free slot (backpressure) and returns the thread', async () => {
    const pool = new GreenPool(2);
    const started: number[] = [];
    const job = async (n: number): Promise<number> => {
      started.push(n);
      await sleep(0.01);
      return n * 10;
    };
    const a = await pool.spawn(job, 1);
    const b = await pool.spawn(job, 2);
    expect(a).toBeInstanceOf(GreenThread);
    expect(pool.free()).toBe(0);
    let thirdSpawned = false;
    const spawner = spawn(async () => {
      const c = await pool.spawn(job, 3);
      thirdSpawned = true;
      return c.wait();
    });
    await tick();
    expect(thirdSpawned).toBe(false);
    expect(pool.waiting()).toBe(1);
    expect(await a.wait()).toBe(10);
    expect(await spawner.wait()).toBe(30);
    expect(await b.wait()).toBe(20);
    expect(started).toEqual([1, 2, 3]);
    await pool.waitall();
    expect(pool.running()).toBe(0);
    expect(pool.free()).toBe(2);
  });

  it('results come back for many spawns with a small pool; waitall waits for all', async () => {
    const pool = new GreenPool(4);
    const threads = [];
    for (let i = 0; i < 10; i++) threads.push(await pool.spawn(async (x: number) => (await sleep(0.001), x), i));
    await pool.waitall();
    expect(await Promise.all(threads.map((t) => t.wait()))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await new GreenPool().waitall(); // empty pool: at once
  });

  it('waiting() counts threads blocked in spawn', async () => {
    const pool = new GreenPool(1);
    await pool.spawn(() => sleep(0.02));
    const spawners = [0, 1].map(() => spawn(() => pool.spawn(() => sleep(0.001))));
    await tick();
    expect(pool.waiting()).toBe(2);
    await Promise.all(spawners.map((s) => s.wait()));
    await pool.waitall();
    expect(pool.waiting()).toBe(0);
  });

  it('waitall waits for spawns still queued for a slot, and for the threads they start', async () => {
    const pool = new GreenPool(1);
    const log: string[] = [];
    await pool.spawn(async () => {
      await sleep(0.01);
      log.push('A done');
    });
    const queued = spawn(() =>
      pool.spawn(async () => {
        await sleep(0.01);
        log.push('B done');
      }),
    );
    await tick();
    expect(pool.waiting()).toBe(1);
    await pool.waitall();
    log.push('waitall returned');
    expect(log).toEqual(['A done', 'B done', 'waitall returned']);
    expect(pool.running()).toBe(0);
    await queued.wait();
  });

  it('imap awaits any thenable a call returns, as spawn does', async () => {
    const pool = new GreenPool(2);
    const thenable = (v: number): PromiseLike<number> => ({ then: (ok?: ((x: number) => unknown) | null) => (ok?.(v * 10), undefined) as never });
    const out: number[] = [];
    for await (const v of pool.imap((x: number) => thenable(x), [1, 2, 3])) out.push(v);
    expect(out).toEqual([10, 20, 30]);
  });

  it('from inside a full pool, spawn runs the function inline instead of deadlocking', async () => {
    const pool = new GreenPool(1);
    const outer = await pool.spawn(async () => {
      const inner = await pool.spawn(async () => {
        await sleep(0);
        return getcurrent();
      });
      expect(inner.dead).toBe(true);
      const innerThread = await inner.wait();
      let ran = false;
      await pool.spawnN(() => {
        ran = true;
      });
      return [innerThread === getcurrent(), ran];
    });
    expect(await outer.wait()).toEqual([true, true]);
  });

  it('resize down then up: running threads finish, then the new size holds', async () => {
    const pool = new GreenPool(2);
    const ev = { release: (): void => {} };
    const gate = new Promise<void>((r) => (ev.release = r));
    await pool.spawn(() => gate);
    await pool.spawn(() => gate);
    pool.resize(1);
    expect(pool.free()).toBe(-1);
    ev.release();
    await pool.waitall();
    expect(pool.free()).toBe(1);
    await pool.spawn(() => sleep(0.01));
    expect(pool.free()).toBe(0);
    pool.resize(2);
    expect(pool.free()).toBe(1);
    await pool.waitall();
  });

  it('resize up wakes waiting spawners', async () => {
    const pool = new GreenPool(0);
    const spawner = spawn(() => pool.spawn(() => 'ran').then((t) => t.wait()));
    await tick();
    expect(pool.waiting()).toBe(1);
    pool.resize(1);
    expect(await spawner.wait()).toBe('ran');
  });

  it('resize admits exactly as many waiting spawners as new slots; the same size admits none', async () => {
    const pool = new GreenPool(1);
    const gate = new Event<void>();
    await pool.spawn(() => gate.wait());
    const spawners = [1, 2, 3].map((n) => spawn(() => pool.spawn(() => gate.wait().then(() => n)).then((t) => t.wait())));
    await tick();
    expect([pool.running(), pool.waiting(), pool.free()]).toEqual([1, 3, 0]);
    pool.resize(1);
    await tick();
    expect([pool.running(), pool.waiting(), pool.free()]).toEqual([1, 3, 0]);
    pool.resize(2);
    await tick();
    expect([pool.running(), pool.waiting(), pool.free()]).toEqual([2, 2, 0]);
    gate.send();
    expect(await Promise.all(spawners.map((s) => s.wait()))).toEqual([1, 2, 3]);
  });

  it('from inside a pool that has room, spawn starts a new thread (not inline)', async () => {
    const pool = new GreenPool(3);
    const t = await pool.spawn(async () => {
      const child = await pool.spawn(async () => {
        await sleep(0.005);
        return 'child';
      });
      return [child.dead, pool.running(), await child.wait()];
    });
    expect(await t.wait()).toEqual([false, 2, 'child']);
  });

  it('errors in spawned threads free their slot; spawnN errors are reported, not lost', async () => {
    const errors: unknown[] = [];
    const prev = hub.onError;
    hub.onError = (e) => errors.push(e);
    try {
      const pool = new GreenPool(2);
      const pending = pool.spawn(() => {
        throw new Error('in spawn');
      });
      expect(pool.free()).toBe(1); // the slot is taken at once
      const t = await pending;
      await pool.spawnN(() => {
        throw new Error('in spawnN');
      });
      await pool.waitall();
      expect(pool.free()).toBe(2);
      await expect(t.wait()).rejects.toThrow('in spawn');
      expect(errors.map((e) => (e as Error).message)).toEqual(['in spawnN']);
    } finally {
      hub.onError = prev;
    }
  });

  it('waitall from inside the pool is an error', async () => {
    const pool = new GreenPool();
    const t = await pool.spawn(() => pool.waitall());
    await expect(t.wait()).rejects.toMatchObject({ code: 'ERR_EVY_WAITALL_IN_POOL' });
  });

  it('killall kills every thread and settles once all finished', async () => {
    const pool = new GreenPool(10);
    const cleaned: number[] = [];
    const threads = [];
    for (let i = 0; i < 5; i++) {
      threads.push(
        await pool.spawn(async (n: number) => {
          try {
            await sleep(10);
          } finally {
            cleaned.push(n);
          }
        }, i),
      );
    }
    await tick();
    await pool.killall();
    expect(cleaned.sort()).toEqual([0, 1, 2, 3, 4]);
    expect(pool.running()).toBe(0);
    for (const t of threads) await expect(t.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('a spawner killed while waiting for a slot takes no slot', async () => {
    const pool = new GreenPool(1);
    await pool.spawn(() => sleep(0.01));
    const spawner = spawn(() => pool.spawn(() => 'never'));
    await tick();
    await spawner.kill();
    await pool.waitall();
    expect(pool.free()).toBe(1);
    expect(pool.waiting()).toBe(0);
  });

  it('imap yields results in input order with bounded concurrency', async () => {
    const pool = new GreenPool(3);
    let inside = 0;
    let maxInside = 0;
    const out: number[] = [];
    for await (const v of pool.imap(
      async (x: number, y: number) => {
        maxInside = Math.max(maxInside, ++inside);
        await sleep(Math.random() * 0.005);
        inside--;
        return x + y;
      },
      [1, 2, 3, 4, 5, 6, 7],
      [10, 20, 30, 40, 50, 60], // zip stops at the shortest
    )) {
      out.push(v);
    }
    expect(out).toEqual([11, 22, 33, 44, 55, 66]);
    expect(maxInside).toBeLessThanOrEqual(3);
    const empty = pool.imap((x: number) => x, []);
    expect(await empty.next()).toEqual({ value: undefined, done: true });
  });

  it('imap over an async iterable, and starmap', async () => {
    const pool = new GreenPool(2);
    async function* gen(): AsyncGenerator<number> {
      for (let i = 0; i < 4; i++) yield i;
    }
    const a: number[] = [];
    for await (const v of pool.imap((x: number) => x * 2, gen())) a.push(v);
    expect(a).toEqual([0, 2, 4, 6]);
    const b: number[] = [];
    for await (const v of pool.starmap((x: number, y: number) => x ** y, [[2, 3], [3, 2], [10, 0]] as [number, number][])) b.push(v);
    expect(b).toEqual([8, 9, 1]);
  });

  it('imap rethrows a worker’s error at its position, then goes on', async () => {
    const pool = new GreenPool(4);
    const it = pool.imap(async (x: number) => {
      await sleep(0);
      if (x === 1 || x === 7) throw new Error(`bad ${x}`);
      return x;
    }, Array.from({ length: 10 }, (_, i) => i));
    const got: (number | string)[] = [];
    for (;;) {
      try {
        const r = await it.next();
        if (r.done) break;
        got.push(r.value);
      } catch (e) {
        got.push((e as Error).message);
      }
    }
    expect(got).toEqual([0, 'bad 1', 2, 3, 4, 5, 6, 'bad 7', 8, 9]);
  });

  it('breaking out of imap kills the calls in flight', async () => {
    const pool = new GreenPool(5);
    for await (const v of pool.imap(async (x: number) => {
      await sleep(x === 0 ? 0 : 10);
      return x;
    }, [0, 1, 2, 3, 4, 5])) {
      expect(v).toBe(0);
      break;
    }
    expect(pool.running()).toBe(0);
  });

  it('rejects bad sizes and arguments with typed errors', async () => {
    expect(() => new GreenPool(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new GreenPool(NaN)).toThrow(RangeError);
    expect(() => new GreenPool(1).resize(1.5)).toThrow(RangeError);
    expect(() => new GreenPool().imap(5 as never, [])).toThrow(TypeError);
    expect(() => new GreenPool().imap((x: number) => x, 5 as never)).toThrow(TypeError);
    await expect(new GreenPool().spawn('x' as never)).rejects.toBeInstanceOf(TypeError);
  });
});

describe('GreenPool: edges the mutation run found untested', () => {
  it('imap zips several iterables and stops at the shortest', async () => {
    const pool = new GreenPool(2);
    const out: number[] = [];
    for await (const v of pool.imap((a: number, b: number) => a + b, [1, 2, 3], [10, 20])) out.push(v);
    expect(out).toEqual([11, 22]);
  });

  it('waitall() waits for spawners queued on a pool of size 0, and rejects at once in a killed thread', async () => {
    const pool = new GreenPool(0);
    const spawner = spawn(() => pool.spawn(() => 'ran').then((t) => t.wait()));
    await tick();
    let done = false;
    const waiter = spawn(() => pool.waitall().then(() => (done = true)));
    await tick();
    expect(done).toBe(false);
    pool.resize(1);
    expect(await spawner.wait()).toBe('ran');
    await waiter.wait();
    expect(done).toBe(true);
    const busy = new GreenPool(1);
    const gate = new Event<void>();
    await busy.spawn(() => gate.wait());
    const err = new Error('stop');
    const killed = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here
      }
      return busy.waitall().then(() => 'waited', (e: unknown) => e);
    });
    await tick();
    await killed.kill(err);
    expect(await killed.wait()).toBe(err);
    gate.send();
    await busy.waitall();
  });

  it("spawnN run inline from inside a full pool reports the function's error", async () => {
    const errors: unknown[] = [];
    const prev = hub.onError;
    hub.onError = (e) => void errors.push(e);
    try {
      const pool = new GreenPool(1);
      const t = await pool.spawn(async () => {
        await pool.spawnN(() => {
          throw new Error('inline failure');
        });
        return 'outer done';
      });
      expect(await t.wait()).toBe('outer done');
    } finally {
      hub.onError = prev;
    }
    expect(errors.map(String)).toEqual(['Error: inline failure']);
  });
});

describe('GreenPile', () => {
  it('yields results in spawn order, whatever order they finish in', async () => {
    const pile = new GreenPile<number>(10);
    for (let i = 0; i < 10; i++) await pile.spawn(async (n: number) => (await sleep((10 - n) * 0.001), n), i);
    const out: number[] = [];
    for await (const v of pile) out.push(v);
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('rethrows a task’s error at its position', async () => {
    const pile = new GreenPile<number>();
    await pile.spawn(() => 1);
    await pile.spawn(() => {
      throw new Error('second');
    });
    await pile.spawn(() => 3);
    expect(await pile.next()).toEqual({ value: 1, done: false });
    await expect(pile.next()).rejects.toThrow('second');
    expect(await pile.next()).toEqual({ value: 3, done: false });
    expect(await pile.next()).toEqual({ value: undefined, done: true });
  });

  it('a spawn that times out while waiting for a slot does not break the sequence', async () => {
    const pile = new GreenPile<number>(1);
    const feeder = spawn(async () => {
      for (let i = 0; i < 10; i++) {
        try {
          const t = new Timeout(i === 3 ? 0 : null);
          await pile.spawn(async (n: number) => (await sleep(0.001), n), i);
          t.cancel();
        } catch (e) {
          if (!(e instanceof Timeout)) throw e;
        }
      }
    });
    await feeder.wait();
    const out: number[] = [];
    for await (const v of pile) out.push(v);
    expect(out).toContain(9);
    expect(out).toEqual([...out].sort((a, b) => a - b));
  });

  it('two piles on one pool each yield their own results in order', async () => {
    const pool = new GreenPool(2);
    const p1 = new GreenPile<string>(pool);
    const p2 = new GreenPile<string>(pool);
    const f1 = spawn(async () => {
      for (let i = 0; i < 5; i++) await p1.spawn(async () => (await sleep(0.001), `a${i}`));
    });
    const f2 = spawn(async () => {
      for (let i = 0; i < 5; i++) await p2.spawn(async () => (await sleep(0.001), `b${i}`));
    });
    await f1.wait(); // iterate once the feeders are done: a pile ends when nothing is pending
    await f2.wait();
    const r1: string[] = [];
    const r2: string[] = [];
    for await (const v of p1) r1.push(v);
    for await (const v of p2) r2.push(v);
    expect(r1).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
    expect(r2).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
  });

  it('a reader waits for spawns that are still waiting for a slot', async () => {
    const pile = new GreenPile<number>(1);
    const feeder = spawn(async () => {
      for (let i = 0; i < 3; i++) await pile.spawn(async (n: number) => (await sleep(0.002), n), i);
    });
    await sleep(0);
    const out: number[] = [];
    for await (const v of pile) out.push(v);
    await feeder.wait();
    expect(out).toEqual([0, 1, 2]);
  });

  it('rejects a bad size', () => {
    expect(() => new GreenPile('x' as never)).toThrow(TypeError);
    expect(() => new GreenPile('x' as never)).toThrow(/"sizeOrPool" argument must be a number or a GreenPool/);
    expect(() => new GreenPile(-2)).toThrow(RangeError);
  });

  it('next() in a thread that was already killed rejects with its kill error at once, instead of waiting for a spawn', async () => {
    const pool = new GreenPool(1);
    const gate = spawn(() => sleep(10));
    const full = await pool.spawn(() => gate.wait().catch(() => 0));
    const pile = new GreenPile<number>(pool);
    void pile.spawn(() => 1); // waits for the pool's one slot: its result is coming
    const err = new Error('stop');
    const reader = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here; the thread goes on to read
      }
      return pile.next().then(() => 'read', (e: unknown) => e);
    });
    await sleep(0);
    await reader.kill(err);
    expect(await reader.wait()).toBe(err);
    await gate.kill();
    await full.wait();
    expect(await pile.next()).toEqual({ value: 1, done: false });
  });
});

describe('local', () => {
  it('properties are per green thread', async () => {
    const data = local<{ x?: number; name?: string }>();
    data.x = 1;
    const gt = spawn(async () => {
      const before = data.x;
      data.x = 2;
      await sleep(0);
      return [before, data.x, 'x' in data];
    });
    expect(await gt.wait()).toEqual([undefined, 2, true]);
    expect(data.x).toBe(1);
    expect(Object.keys(data)).toEqual(['x']);
    delete data.x;
    expect('x' in data).toBe(false);
  });

  it('100 pool tasks each see only their own value', async () => {
    const data = local<{ id?: number }>();
    const pool = new GreenPool(10);
    const out: boolean[] = [];
    for await (const ok of pool.imap(async (i: number) => {
      data.id = i;
      await sleep(Math.random() * 0.002);
      return data.id === i;
    }, Array.from({ length: 100 }, (_, i) => i))) {
      out.push(ok);
    }
    expect(out.every(Boolean)).toBe(true);
  });
});
