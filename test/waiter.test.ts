// The Waiter and WaitList every evy wait goes through (src/waiter.ts), seen through the primitives: a waiter
// that timed out is skipped (no item handed to it), a thread parked on two waits at once is reachable by a
// kill on both, a wait woken before its timeout leaves no timer, a late wake of a killed waiter is a no-op,
// and a long-lived list keeps FIFO order past its compaction.
import { describe, expect, it } from 'vitest';
import { Event, GreenletExit, LightQueue, Queue, sleep, spawn } from '../src/index.js';

describe('Waiter and WaitList', () => {
  it('a getter that timed out is skipped: the next item goes to the getter still waiting, none is lost', async () => {
    const q = new LightQueue<number>();
    const early = spawn(() => q.get(true, 0.01).catch((e: unknown) => e));
    const late = spawn(() => q.get());
    const third = spawn(() => q.get());
    await sleep(0);
    expect(q.getting()).toBe(3);
    expect((await early.wait()) as Error).toMatchObject({ name: 'Empty' });
    expect(q.getting()).toBe(2);
    q.putNowait(1);
    q.putNowait(2);
    expect(await late.wait()).toBe(1);
    expect(await third.wait()).toBe(2);
    expect(q.qsize()).toBe(0);
  });

  it('a thread parked on two waits at once: one is woken, a kill still rejects the other', async () => {
    const a = new LightQueue<string>();
    const b = new Event<string>();
    const seen: unknown[] = [];
    const t = spawn(() =>
      Promise.all([
        a.get().catch((e: unknown) => (seen.push(e), 'a failed')),
        b.wait().then((v) => (seen.push(v), v)),
      ]),
    );
    await sleep(0);
    b.send('b woke');
    await sleep(0);
    expect(seen).toEqual(['b woke']);
    await t.kill();
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBeInstanceOf(GreenletExit);
    expect(a.getting()).toBe(0);
  });

  it('a wait woken before its timeout leaves no timer running', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const q = new LightQueue<number>();
    const ev = new Event<void>();
    const before = timers();
    const getter = spawn(() => q.get(true, 60));
    const waiter = spawn(() => ev.wait(60));
    await sleep(0);
    expect(timers()).toBe(before + 2);
    q.putNowait(7);
    ev.send();
    expect(await getter.wait()).toBe(7);
    await waiter.wait();
    expect(timers()).toBe(before);
  });

  it("a channel putter killed after a getter took its item but before it was woken: the late wake is a no-op", async () => {
    const ch = new Queue<string>(0);
    const putter = spawn(() => ch.put('item'));
    await sleep(0);
    expect(ch.putting()).toBe(1);
    expect(ch.getNowait()).toBe('item'); // the putter's wake is queued for a microtask...
    void putter.kill(); // ...and the kill settles it first
    await expect(putter.wait()).rejects.toBeInstanceOf(GreenletExit);
    await sleep(0.005); // the queued wake has run: no error from it
    expect(ch.putting()).toBe(0);
  });

  it('keeps FIFO order for thousands of waiters, through its compaction, with some timed out in between', async () => {
    const q = new LightQueue<number>();
    const n = 2500;
    const got: number[] = [];
    const getters = [];
    const quitters = [];
    for (let i = 0; i < n; i++) {
      getters.push(spawn(async () => got.push(i * 10_000 + (await q.get()))));
      if (i % 50 === 0) quitters.push(spawn(() => q.get(true, 0.001).catch(() => -1)));
    }
    await sleep(0);
    await Promise.all(quitters.map((t) => t.wait()));
    for (let i = 0; i < n; i++) q.putNowait(i);
    await Promise.all(getters.map((t) => t.wait()));
    expect(got).toHaveLength(n);
    // The i-th getter (in arrival order) got item i.
    expect(got.every((v) => Math.floor(v / 10_000) === v % 10_000)).toBe(true);
  });
});
