// Every evy wait names itself (the Waiter label): the thread dump, a test runner's "while waiting on: ..."
// and the leak reports show people what a stuck thread is parked on. One thread parked on each primitive.
import { describe, expect, it } from 'vitest';
import { debug, Event, GreenPile, GreenPool, LightQueue, Queue, Semaphore, sleep, spawn, until, type GreenThread } from '../src/index.js';

describe('what a parked thread is parked on', () => {
  it('each primitive gives its own label in evy.debug.formatThreads()', async () => {
    const full = new Queue<number>(1);
    full.putNowait(1);
    const joined = new Queue<number>();
    joined.putNowait(1);
    const sem = new Semaphore(0);
    const pool = new GreenPool(2);
    const poolGate = new Event<void>();
    await pool.spawn(() => poolGate.wait());
    // A pile whose pool is full: its spawn waits for a slot, so next() has no thread to wait on yet.
    const pile = new GreenPile(pool);
    await pool.spawn(() => poolGate.wait());
    void pile.spawn(() => 'later');
    const forever = new Event<void>();
    const target = spawn(() => forever.wait());
    const parked: [string, () => Promise<unknown>][] = [
      ['Event.wait', () => new Event().wait()],
      ['Queue.get', () => new LightQueue().get()],
      ['Queue.put', () => full.put(2)],
      ['Queue.join', () => joined.join()],
      ['Semaphore.acquire', () => sem.acquire()],
      ['GreenPool.waitall', () => pool.waitall()],
      ['GreenPile.next', () => pile.next()],
      ['GreenThread.wait', () => target.wait()],
      ['sleep', () => sleep(60)],
      ['until', () => until(new Promise(() => {}))],
    ];
    const threads: GreenThread[] = [];
    for (const [label, wait] of parked) {
      const t = spawn(wait);
      t.name = `on-${label}`;
      threads.push(t);
    }
    await sleep(0);
    const dump = debug.formatThreads();
    for (const [label] of parked) expect(dump, dump).toMatch(new RegExp(`on-${label.replace('.', '\\.')} \\[#\\d+\\] parked on ${label.replace('.', '\\.')}(\\n|$)`));
    for (const t of threads) await t.kill();
    poolGate.send();
    await pool.waitall();
    await target.kill();
  });
});
