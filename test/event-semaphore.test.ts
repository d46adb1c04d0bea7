import { describe, expect, it } from 'vitest';
import { BoundedSemaphore, CappedSemaphore, Event, GreenletExit, Semaphore, sleep, spawn, Timeout } from '../src/index.js';

describe('Event', () => {
  it('wakes every waiter with the sent value; later waits return at once', async () => {
    const ev = new Event<number>();
    const waiters = [0, 1, 2, 3, 4].map(() => spawn(() => ev.wait()));
    await sleep(0);
    expect(ev.ready()).toBe(false);
    ev.send(42);
    expect(ev.ready() && ev.hasValue() && !ev.hasException()).toBe(true);
    expect(await Promise.all(waiters.map((w) => w.wait()))).toEqual([42, 42, 42, 42, 42]);
    expect(await ev.wait()).toBe(42);
  });

  it('sendException makes every waiter throw exactly the sent error', async () => {
    const ev = new Event();
    const err = new Error('sent');
    const w = spawn(() => ev.wait());
    await sleep(0);
    ev.sendException(err);
    await expect(w.wait()).rejects.toBe(err);
    await expect(ev.wait()).rejects.toBe(err);
    expect(ev.hasException()).toBe(true);
  });

  it('wait(timeout) throws Timeout when nothing came in time', async () => {
    const ev = new Event();
    const err = await ev.wait(0.01).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Timeout);
    expect((err as Timeout).seconds).toBe(0.01);
  });

  it('sending twice without reset is an error; reset makes it waitable again', async () => {
    const ev = new Event<string>();
    ev.send('a');
    expect(() => ev.send('b')).toThrow(expect.objectContaining({ code: 'ERR_EVY_EVENT_ALREADY_SENT' }));
    expect(await ev.wait()).toBe('a');
    ev.reset();
    expect(ev.ready()).toBe(false);
    await expect(ev.wait(0.005)).rejects.toBeInstanceOf(Timeout);
    ev.sendException(new Error('x'));
    ev.reset();
    await expect(ev.wait(0.005)).rejects.toBeInstanceOf(Timeout); // the old exception is gone
    ev.send('c');
    expect(await ev.wait()).toBe('c');
    new Event().reset(); // a no-op on a fresh event
  });
});

describe('Event: state and a killed waiter', () => {
  it('ready/hasValue/hasException tell what was sent, and nothing before', () => {
    const ev = new Event<number>();
    const state = () => [ev.ready(), ev.hasValue(), ev.hasException()];
    expect(state()).toEqual([false, false, false]);
    ev.sendException(new Error('x'));
    expect(state()).toEqual([true, false, true]);
    ev.reset();
    ev.send(1);
    expect(state()).toEqual([true, true, false]);
    expect(() => ev.send(2)).toThrow(/already sent; call reset\(\)/);
  });

  it('wait() in a thread that was already killed rejects with its kill error at once (sticky), whatever the event', async () => {
    const ev = new Event();
    const err = new Error('stop');
    const t = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here; the thread goes on to wait again
      }
      return ev.wait(5).then(() => 'woke', (e: unknown) => e);
    });
    await sleep(0);
    await t.kill(err);
    expect(await t.wait()).toBe(err);
  });

  it('also when the event was already sent (a value or an exception): the kill error comes first', async () => {
    const sent = new Event<string>();
    sent.send('value');
    const failed = new Event<string>();
    failed.sendException(new Error('sent exception'));
    const err = new Error('stop');
    const t = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here
      }
      const a = await sent.wait().then(() => 'woke', (e: unknown) => e);
      const b = await failed.wait().then(() => 'woke', (e: unknown) => e);
      return [a, b];
    });
    await sleep(0);
    await t.kill(err);
    expect(await t.wait()).toEqual([err, err]);
  });

  it('a bad timeout is a rejected promise (ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE), also once sent', async () => {
    const ev = new Event();
    await expect(ev.wait('1' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    ev.send('v');
    await expect(ev.wait(-1)).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });
});

describe('Semaphore', () => {
  it('acquire resolves true, blocks at zero, and release wakes waiters in FIFO order', async () => {
    const sem = new Semaphore(1);
    expect(await sem.acquire()).toBe(true);
    expect(sem.locked()).toBe(true);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      spawn(async () => {
        await sem.acquire();
        order.push(n);
        sem.release();
      }),
    );
    await sleep(0);
    expect(sem.balance).toBe(-3);
    sem.release();
    await Promise.all(waiters.map((w) => w.wait()));
    expect(order).toEqual([1, 2, 3]);
    expect(sem.counter).toBe(1);
  });

  it('non-blocking or timed acquire resolves false', async () => {
    const sem = new Semaphore(0);
    expect(await sem.acquire(false)).toBe(false);
    const t0 = performance.now();
    expect(await sem.acquire(true, 0.02)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
    expect(sem.balance).toBe(0);
  });

  it('run(fn) holds a permit while fn runs and releases it on error', async () => {
    const sem = new Semaphore(2);
    let maxInside = 0;
    let inside = 0;
    const workers = Array.from({ length: 6 }, () =>
      spawn(() =>
        sem.run(async () => {
          maxInside = Math.max(maxInside, ++inside);
          await sleep(0.002);
          inside--;
        }),
      ),
    );
    await Promise.all(workers.map((w) => w.wait()));
    expect(maxInside).toBe(2);
    await expect(sem.run(() => Promise.reject(new Error('e')))).rejects.toThrow('e');
    expect(sem.counter).toBe(2);
  });

  it('a killed waiter does not take a permit', async () => {
    const sem = new Semaphore(0);
    const victim = spawn(() => sem.acquire());
    await sleep(0);
    await victim.kill();
    await expect(victim.wait()).rejects.toBeInstanceOf(GreenletExit);
    sem.release();
    expect(sem.counter).toBe(1);
  });

  it('acquire() in a thread that was already killed rejects with its kill error and takes no permit, even when one is free', async () => {
    const sem = new Semaphore(1);
    const err = new Error('stop');
    const t = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here; the thread goes on to acquire
      }
      return sem.acquire().then(() => 'acquired', (e: unknown) => e);
    });
    await sleep(0);
    await t.kill(err);
    expect(await t.wait()).toBe(err);
    expect(sem.counter).toBe(1);
  });

  it('rejects a negative or non-integer value', () => {
    expect(() => new Semaphore(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new Semaphore(NaN)).toThrow(RangeError);
    expect(() => new Semaphore('2' as never)).toThrow(TypeError);
  });
});

describe('BoundedSemaphore', () => {
  it('releasing past the initial value is a typed error', async () => {
    const sem = new BoundedSemaphore(1);
    expect(() => sem.release()).toThrow(expect.objectContaining({ code: 'ERR_EVY_SEMAPHORE_OVER_RELEASED' }));
    expect(() => sem.release()).toThrow(/released too many times \(limit 1\)/);
    await sem.acquire();
    sem.release();
    expect(sem.counter).toBe(1);
  });
});

describe('CappedSemaphore', () => {
  it('acquire blocks at 0 and release blocks at the limit (Evy’s balance walk-through)', async () => {
    const sem = new CappedSemaphore(2, 3);
    expect(sem.balance).toBe(1); // eventlet: lower.balance - upper.balance = 2 - (3 - 2)
    await sem.acquire();
    await sem.acquire();
    expect(sem.locked()).toBe(true);
    const releaser = spawn(() => sem.release());
    await releaser.wait();
    await sem.acquire();
    expect(sem.balance).toBe(-3);
    for (let i = 0; i < 3; i++) await sem.release();
    expect(sem.balance).toBe(3);
    expect(sem.bounded()).toBe(true);
    expect(await sem.release(false)).toBe(false); // would block at the limit
    const acquirer = spawn(() => sem.acquire());
    await sem.release();
    expect(await acquirer.wait()).toBe(true);
    expect(sem.balance).toBe(3);
    const blockedRelease = spawn(() => sem.release());
    await sleep(0);
    expect(blockedRelease.dead).toBe(false); // waits at the limit until someone acquires
    await sem.acquire();
    expect(await blockedRelease.wait()).toBe(true);
  });

  it('a zero-limit capped semaphore pairs a blocked acquire with a release', async () => {
    const sem = new CappedSemaphore(0, 0);
    const acq = spawn(() => sem.acquire());
    await sleep(0);
    expect(await sem.release()).toBe(true);
    expect(await acq.wait()).toBe(true);
  });

  it('rejects count > limit, naming both', () => {
    expect(() => new CappedSemaphore(3, 2)).toThrow(RangeError);
    expect(() => new CappedSemaphore(3, 2)).toThrow(/"count".*<= limit \(2\)/);
    expect(() => new CappedSemaphore(-1, 2)).toThrow(/"count"/);
    expect(() => new CappedSemaphore(1, -2)).toThrow(/"limit"/);
  });

  it('an acquire or release that times out or is killed moves no permit', async () => {
    const sem = new CappedSemaphore(0, 1); // acquire blocks (count 0); one release is free
    expect(await sem.acquire(true, 0.01)).toBe(false);
    expect([sem.counter, sem.balance, sem.bounded()]).toEqual([0, -1, false]);
    const blocked = spawn(() => sem.acquire());
    await sleep(0);
    await blocked.kill();
    expect([sem.counter, sem.balance, sem.bounded()]).toEqual([0, -1, false]);
    expect(await sem.release()).toBe(true); // the one free release is still there
    expect(await sem.release(true, 0.01)).toBe(false); // at the limit now
    const blockedRelease = spawn(() => sem.release());
    await sleep(0);
    await blockedRelease.kill();
    expect([sem.counter, sem.balance, sem.bounded()]).toEqual([1, 1, true]);
  });

  it('acquire(false) on a locked one is false; run(fn) holds a permit; a plain Semaphore is never bounded', async () => {
    const locked = new CappedSemaphore(0, 1);
    expect(await locked.acquire(false)).toBe(false);
    expect([locked.counter, locked.balance]).toEqual([0, -1]);
    const capped = new CappedSemaphore(1, 1);
    expect(await capped.run(() => capped.counter)).toBe(0);
    expect(capped.counter).toBe(1);
    expect(new Semaphore(1).bounded()).toBe(false);
  });

  it('a bad argument changes nothing, not even a blocked release', async () => {
    const sem = new CappedSemaphore(1, 1); // at the limit: release blocks until an acquire
    const releaser = spawn(() => sem.release());
    await sleep(0);
    await expect(sem.acquire('x' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await sleep(0);
    expect(releaser.dead).toBe(false);
    expect(await sem.acquire()).toBe(true); // the real acquire lets it through
    expect(await releaser.wait()).toBe(true);
  });
});
