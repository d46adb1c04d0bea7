import { createServer, connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Event, getcurrent, GreenletExit, Queue, sleep, spawn, Timeout, until, withTimeout, with_timeout } from '../src/index.js';
import { expiredTimeout } from '../src/timeout.js';
import { rt } from '../src/runtime.js';

describe('Timeout', () => {
  it('fires at the creating thread’s current evy wait, throwing itself', async () => {
    const t = new Timeout(0.02);
    expect(t.pending).toBe(true);
    expect(t.seconds).toBe(0.02);
    const t0 = performance.now();
    const err = await sleep(5).catch((e: unknown) => e);
    expect(err).toBe(t);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(t.pending).toBe(false);
    expect(t).toBeInstanceOf(Error);
    expect(t.code).toBe('ERR_EVY_TIMEOUT');
  });

  it('throws the given error instead when one is given (instance or class)', async () => {
    const custom = new RangeError('too slow');
    const t = new Timeout(0.01, custom);
    await expect(new Queue().get()).rejects.toBe(custom);
    t.cancel();
    new Timeout(0.01, TypeError);
    await expect(new Event().wait()).rejects.toBeInstanceOf(TypeError);
  });

  it('cancel() before expiry prevents it', async () => {
    const t = new Timeout(0.01);
    t.cancel();
    expect(t.pending).toBe(false);
    await sleep(0.03); // would throw if it fired
    t.cancel(); // idempotent
  });

  it('null/undefined seconds never fires', async () => {
    const a = new Timeout(null);
    const b = new Timeout();
    expect(a.pending || b.pending).toBe(false);
    await sleep(0.01);
    expect(a.seconds).toBeNull();
  });

  it('nested: the one that expired is raised, the other is untouched', async () => {
    const outer = new Timeout(0.2);
    const inner = new Timeout(0.02);
    const err = await sleep(1).catch((e: unknown) => e);
    expect(err).toBe(inner);
    expect(outer.pending).toBe(true);
    outer.cancel();
    const outer2 = new Timeout(0.02);
    const inner2 = new Timeout(0.2);
    expect(await sleep(1).catch((e: unknown) => e)).toBe(outer2);
    expect(inner2.pending).toBe(true);
    inner2.cancel();
  });

  it('a using-declaration disposes it (cancels) at the end of the block', async () => {
    let kept: Timeout;
    {
      using t = new Timeout(0.01);
      kept = t;
      expect(t.pending).toBe(true);
    }
    expect(kept.pending).toBe(false);
    await sleep(0.03);
  });

  it('fires in the thread that created it, not in the thread that is running', async () => {
    const gt = spawn(async () => {
      const t = new Timeout(0.01);
      try {
        await sleep(1);
        return 'slept';
      } catch (e) {
        return e === t ? 'timed out' : 'other';
      }
    });
    await sleep(0.05); // main is not interrupted
    expect(await gt.wait()).toBe('timed out');
  });

  it('fired while the thread was on a foreign await: delivered at its next evy wait', async () => {
    const t = new Timeout(0.01);
    while (t.pending) await new Promise((r) => setTimeout(r, 5)); // foreign: cannot be interrupted
    await expect(sleep(0)).rejects.toBe(t);
    await sleep(0); // delivered once
  });

  it('a Timeout cancelled after firing but before delivery is dropped', async () => {
    const t = new Timeout(0.01);
    while (t.pending) await new Promise((r) => setTimeout(r, 5)); // foreign awaits until it has fired
    t.cancel();
    expect(await sleep(0).then(() => 'not interrupted', (e: unknown) => e)).toBe('not interrupted');
  });

  it('Timeouts that fire while the thread is on a foreign await all arrive, oldest first (a retry loop keeps its overall deadline)', async () => {
    const t = spawn(async () => {
      const overall = new Timeout(0.02); // fires first, during the foreign await...
      const t0 = performance.now();
      let attempts = 0;
      try {
        for (;;) {
          attempts++;
          const attempt = new Timeout(0.05); // ...then this one, which must not replace it
          try {
            await new Promise((r) => setTimeout(r, 150)); // foreign: both fire meanwhile
            await sleep(0);
          } catch (e) {
            if (e !== attempt) throw e; // the per-attempt deadline: retry
          } finally {
            attempt.cancel();
          }
          if (performance.now() - t0 > 2000) return 'ran past its overall deadline';
        }
      } catch (e) {
        return e === overall ? `overall after ${attempts}` : String(e);
      }
    });
    expect(await t.wait()).toBe('overall after 1');
  });

  it('two fired Timeouts are delivered in firing order; one cancelled before delivery is dropped', async () => {
    const t = spawn(async () => {
      const a = new Timeout(0.01);
      const b = new Timeout(0.02);
      const c = new Timeout(0.03);
      await new Promise((r) => setTimeout(r, 60));
      b.cancel();
      const got: unknown[] = [];
      for (let i = 0; i < 3; i++) got.push(await sleep(0).then(() => 'none', (e) => e));
      return got.map((e) => (e === a ? 'a' : e === b ? 'b' : e === c ? 'c' : e));
    });
    expect(await t.wait()).toEqual(['a', 'c', 'none']);
  });

  it('does not keep the process alive (its timer is unref’d)', () => {
    const t = new Timeout(60);
    const timer = (t as unknown as { timer: NodeJS.Timeout }).timer;
    expect(timer.hasRef()).toBe(false);
    t.cancel();
  });

  it('rejects bad seconds with a typed error', () => {
    expect(() => new Timeout('1' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Timeout(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new Timeout(NaN)).toThrow(RangeError);
  });
});

describe('withTimeout', () => {
  it('returns the value when fn finishes in time', async () => {
    expect(await withTimeout(1, async (x: number) => x + 1, 1)).toBe(2);
    expect(with_timeout).toBe(withTimeout);
  });

  it('kills the child at the deadline, runs its finally, then throws Timeout in the caller', async () => {
    const log: string[] = [];
    const t0 = performance.now();
    const err = await withTimeout(0.03, async () => {
      try {
        await sleep(5);
      } finally {
        log.push('child cleanup');
      }
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect(log).toEqual(['child cleanup']);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('never hangs on a child parked on a foreign promise that never settles', async () => {
    const t0 = performance.now();
    const err = await withTimeout(0.02, () => new Promise(() => {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect(performance.now() - t0).toBeLessThan(900);
  });

  it('rethrows the child’s own error', async () => {
    const boom = new Error('boom');
    await expect(
      withTimeout(1, () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it('killing the caller kills the child too', async () => {
    let child: ReturnType<typeof getcurrent> | undefined;
    const caller = spawn(() =>
      withTimeout(10, async () => {
        child = getcurrent();
        await sleep(10);
      }),
    );
    await sleep(0.01);
    await caller.kill();
    expect(child!.dead).toBe(true);
    await expect(child!.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('nested: the outer, shorter deadline wins and the inner one does not swallow it', async () => {
    let inner: Timeout | undefined;
    const err = await withTimeout(0.02, async () => {
      try {
        await withTimeout(0.5, () => sleep(2));
      } catch (e) {
        if (e instanceof Timeout) inner = e;
        throw e;
      }
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect(inner).toBe(err); // the inner withTimeout let the outer Timeout through unchanged
  });

  it('a caught Timeout still means too late: the caller throws Timeout', async () => {
    const err = await withTimeout(0.01, async () => {
      try {
        await sleep(1);
      } catch {
        return 'swallowed';
      }
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
  });
});

describe('Timeout and withTimeout: what they say and what they leave', () => {
  it('messages and name: "timed out", "after 1 second", "after 0.5 seconds"', () => {
    const never = new Timeout(null);
    const one = new Timeout(1);
    const half = new Timeout(0.5);
    one.cancel();
    half.cancel();
    expect([never.name, never.message, one.message, half.message]).toEqual(['Timeout', 'timed out', 'timed out after 1 second', 'timed out after 0.5 seconds']);
    expect([expiredTimeout(1).message, expiredTimeout(2).message, expiredTimeout(2).seconds]).toEqual(['timed out after 1 second', 'timed out after 2 seconds', 2]);
  });

  it("withTimeout's Timeout carries its seconds; null or undefined seconds set no deadline", async () => {
    const err = await withTimeout(0.01, () => sleep(5)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect([(err as Timeout).seconds, (err as Timeout).message]).toEqual([0.01, 'timed out after 0.01 seconds']);
    expect(await withTimeout(null, async () => (await sleep(0.02), 'no deadline'))).toBe('no deadline');
    expect(await withTimeout(undefined, async () => (await sleep(0.02), 'none either'))).toBe('none either');
  });

  it('a withTimeout that returns before its deadline leaves no timer behind (its deadline timer is cleared)', async () => {
    // evy's own timer is unref'd (so not in getActiveResourcesInfo): watch the ones withTimeout arms.
    const real = rt.timers.setTimeout;
    const armed: [unknown, NodeJS.Timeout][] = [];
    rt.timers.setTimeout = ((...a: Parameters<typeof real>) => {
      const t = real(...a);
      armed.push([a[1], t]);
      return t;
    }) as typeof real;
    try {
      for (let i = 0; i < 3; i++) expect(await withTimeout(60, async (n: number) => (await sleep(0), n), i)).toBe(i);
    } finally {
      rt.timers.setTimeout = real;
    }
    const deadlines = armed.filter(([ms]) => ms === 60_000).map(([, t]) => t);
    expect(deadlines).toHaveLength(3);
    for (const t of deadlines) expect((t as unknown as { _destroyed: boolean })._destroyed).toBe(true);
  });
});

describe('until', () => {
  it('returns the foreign promise’s value or rethrows its error', async () => {
    expect(await until(Promise.resolve(3))).toBe(3);
    expect(await until(7)).toBe(7);
    await expect(until(Promise.reject(new Error('x')))).rejects.toThrow('x');
  });

  it('makes a foreign await killable: the body is interrupted (its finally runs before kill() settles), not detached after the grace', async () => {
    const steps: string[] = [];
    const gt = spawn(async () => {
      try {
        await until(new Promise(() => {}));
        steps.push('after the await');
      } finally {
        steps.push('finally');
      }
    });
    await sleep(0);
    await gt.kill();
    // A detached body (a plain await on a promise that never settles) would never have run its finally.
    expect(steps).toEqual(['finally']);
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
  });
});

describe('sleep', () => {
  it('rejects bad durations with typed errors', async () => {
    await expect(sleep(-1)).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(sleep('1' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('sleep(0) yields to every other ready thread', async () => {
    const log: string[] = [];
    const a = spawn(async () => {
      for (let i = 0; i < 3; i++) {
        log.push(`a${i}`);
        await sleep(0);
      }
    });
    const b = spawn(async () => {
      for (let i = 0; i < 3; i++) {
        log.push(`b${i}`);
        await sleep(0);
      }
    });
    await a.wait();
    await b.wait();
    expect(log).toEqual(['a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
  });

  it('a thread spinning on sleep(0) does not starve timers or socket callbacks', async () => {
    let stop = false;
    let spins = 0;
    const spinner = spawn(async () => {
      while (!stop) {
        spins++;
        await sleep(0);
      }
    });
    // A real socket round trip while the spinner runs.
    const server = createServer((s) => s.on('data', (d) => s.write(d)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const client: Socket = connect(port, '127.0.0.1');
    const echoed = await new Promise<string>((resolve) => {
      client.once('data', (d) => resolve(d.toString()));
      client.write('ping');
    });
    const timerFired = await new Promise<boolean>((r) => setTimeout(() => r(true), 5));
    stop = true;
    await spinner.wait();
    client.destroy();
    await new Promise((r) => server.close(r));
    expect(echoed).toBe('ping');
    expect(timerFired).toBe(true);
    expect(spins).toBeGreaterThan(1);
  });

  it('sleep(s) waits about s seconds and keeps the process alive', async () => {
    const t0 = performance.now();
    await sleep(0.02);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(18);
  });
});
