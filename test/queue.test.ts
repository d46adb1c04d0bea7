import { describe, expect, it } from 'vitest';
import { Empty, Full, GreenletExit, LifoQueue, LightQueue, PriorityQueue, Queue, QueueClosed, sleep, spawn, Timeout } from '../src/index.js';

describe('Queue', () => {
  it('is unbounded by default (and for null/negative maxsize)', async () => {
    for (const q of [new Queue<number>(), new Queue<number>(null), new Queue<number>(-1)]) {
      for (let i = 0; i < 1000; i++) await q.put(i);
      expect(q.qsize()).toBe(1000);
      expect(q.full()).toBe(false);
      expect(q.maxsize).toBe(Infinity);
    }
  });

  it('get waits for a put; FIFO order', async () => {
    const q = new Queue<string>();
    const getter = spawn(async () => [await q.get(), await q.get()]);
    await sleep(0);
    expect(q.getting()).toBe(1);
    await q.put('a');
    await q.put('b');
    expect(await getter.wait()).toEqual(['a', 'b']);
    expect(q.getting()).toBe(0);
  });

  it('Queue(0) is a channel: put waits until a getter takes the item (getter runs first)', async () => {
    const q = new Queue<string>(0);
    expect(q.empty() && q.full()).toBe(true);
    const events: string[] = [];
    const consumer = spawn(async () => {
      for (let i = 0; i < 2; i++) events.push(await q.get());
    });
    events.push('sending');
    await q.put('hello');
    events.push('sent hello');
    await q.put('world');
    events.push('sent world');
    await consumer.wait();
    expect(events).toEqual(['sending', 'hello', 'sent hello', 'world', 'sent world']);
  });

  it('channel: a putter blocks until a getter arrives', async () => {
    const q = new Queue<string>(0);
    const events: string[] = [];
    const producer = spawn(async () => {
      events.push('sending hello');
      await q.put('hello');
      events.push('sending world');
      await q.put('world');
      events.push('sent world');
    });
    events.push('waiting');
    events.push(await q.get());
    events.push(await q.get());
    expect(events).toEqual(['waiting', 'sending hello', 'hello', 'sending world', 'world']);
    await sleep(0);
    expect(events.at(-1)).toBe('sent world');
    await producer.wait();
  });

  it('channel: 3 getters and 3 putters all complete', async () => {
    const q = new Queue<number>(0);
    const getters = [0, 1, 2].map(() => spawn(() => q.get()));
    const putters = [1, 2, 3].map((n) => spawn(() => q.put(n)));
    const got = await Promise.all(getters.map((g) => g.wait()));
    await Promise.all(putters.map((p) => p.wait()));
    expect(got.sort()).toEqual([1, 2, 3]);
    expect(q.getting()).toBe(0);
    expect(q.putting()).toBe(0);
  });

  it('a bounded put waits for room', async () => {
    const q = new Queue<string>(2);
    const events: string[] = [];
    const putter = spawn(async () => {
      for (const x of ['a', 'b', 'c']) {
        await q.put(x);
        events.push(x);
      }
    });
    await sleep(0);
    expect(events).toEqual(['a', 'b']);
    expect(q.putting()).toBe(1);
    expect(q.full()).toBe(true);
    expect(await q.get()).toBe('a');
    await sleep(0);
    expect(events).toEqual(['a', 'b', 'c']);
    await putter.wait();
  });

  it('non-blocking and timed put/get throw Full/Empty', async () => {
    const q = new Queue<number>(1);
    await expect(q.get(false)).rejects.toBeInstanceOf(Empty);
    expect(() => q.getNowait()).toThrow(Empty);
    q.putNowait(1);
    expect(() => q.putNowait(2)).toThrow(Full);
    await expect(q.put(2, false)).rejects.toBeInstanceOf(Full);
    const t0 = performance.now();
    await expect(q.put(2, true, 0.02)).rejects.toBeInstanceOf(Full);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
    expect(q.getNowait()).toBe(1);
    await expect(q.get(true, 0.01)).rejects.toMatchObject({ code: 'ERR_EVY_QUEUE_EMPTY' });
  });

  it('a channel put that timed out leaves nothing behind', async () => {
    const q = new Queue<string>(0);
    await expect(q.put('hi', true, 0.005)).rejects.toBeInstanceOf(Full);
    expect(() => q.getNowait()).toThrow(Empty);
    expect(q.putting()).toBe(0);
  });

  it('getNowait takes from a blocked putter on a channel', async () => {
    const q = new Queue<number>(0);
    const putter = spawn(() => q.put(5));
    await sleep(0);
    expect(q.getNowait()).toBe(5);
    await putter.wait();
    expect(putter.dead).toBe(true);
  });

  it('waiters that die lose nothing: the next put goes to a live waiter', async () => {
    const q = new Queue<string>();
    const dying = [0, 1].map(() =>
      spawn(async () => {
        new Timeout(0.001, new Error('timed out'));
        return q.get().catch((e: Error) => e.message);
      }),
    );
    expect(await Promise.all(dying.map((d) => d.wait()))).toEqual(['timed out', 'timed out']);
    expect(q.getting()).toBe(0);
    const live = spawn(() => q.get());
    await sleep(0);
    await q.put('sent');
    expect(await live.wait()).toBe('sent');
  });

  it('a getter killed while parked never receives, a later getter does', async () => {
    const q = new Queue<number>();
    const victim = spawn(() => q.get());
    await sleep(0);
    await victim.kill();
    await q.put(1);
    expect(q.qsize()).toBe(1);
    expect(await q.get()).toBe(1);
    await expect(victim.wait()).rejects.toBeInstanceOf(GreenletExit);
  });

  it('resize: growing (or unbounding) wakes blocked putters; shrinking drops nothing', async () => {
    const ch = new Queue<number>(0);
    const putter = spawn(() => ch.put(1));
    await sleep(0);
    ch.resize(1);
    await sleep(0);
    expect(putter.dead).toBe(true);
    expect(ch.qsize()).toBe(1);

    const ch2 = new Queue<number>(0);
    const p2 = spawn(() => ch2.put(2));
    await sleep(0);
    ch2.resize(null);
    await p2.wait();

    const q = new Queue<number>(5);
    for (let i = 0; i < 5; i++) q.putNowait(i);
    q.resize(1);
    expect(q.qsize()).toBe(5);
    expect([0, 1, 2, 3, 4].map(() => q.getNowait())).toEqual([0, 1, 2, 3, 4]);
  });

  it('taskDone/join: join returns when every item was marked done, at once when none is unfinished', async () => {
    const q = new Queue<number>();
    await q.join(); // fresh queue: returns at once (Python's semantics)
    for (let i = 0; i < 3; i++) await q.put(i);
    expect(q.unfinishedTasks).toBe(3);
    let joined = false;
    const joiner = spawn(async () => {
      await q.join();
      joined = true;
    });
    for (let i = 0; i < 3; i++) {
      await q.get();
      await sleep(0);
      expect(joined).toBe(false);
      q.taskDone();
    }
    await joiner.wait();
    expect(joined).toBe(true);
    expect(() => q.taskDone()).toThrow(expect.objectContaining({ code: 'ERR_EVY_TASK_DONE_TOO_MANY' }));
  });

  it('PriorityQueue orders numbers, strings and [priority, value] tuples like Python', async () => {
    const q = new PriorityQueue<[number, string]>();
    for (const item of [[3, 'c'], [1, 'b'], [2, 'z'], [1, 'a']] as [number, string][]) await q.put(item);
    const out = [];
    while (!q.empty()) out.push(await q.get());
    expect(out).toEqual([[1, 'a'], [1, 'b'], [2, 'z'], [3, 'c']]);
    const nums = new PriorityQueue<number>();
    const input = Array.from({ length: 200 }, () => Math.floor(Math.random() * 1000));
    for (const n of input) nums.putNowait(n);
    const sorted = input.map(() => nums.getNowait());
    expect(sorted).toEqual([...input].sort((a, b) => a - b));
    const custom = new PriorityQueue<number>(undefined, (a, b) => b - a);
    [1, 3, 2].forEach((n) => custom.putNowait(n));
    expect([custom.getNowait(), custom.getNowait(), custom.getNowait()]).toEqual([3, 2, 1]);
  });

  it('LifoQueue returns the newest item first', async () => {
    const q = new LifoQueue<number>();
    [1, 2, 3].forEach((n) => q.putNowait(n));
    expect([await q.get(), await q.get(), await q.get()]).toEqual([3, 2, 1]);
  });

  it('async iteration yields items until the queue is closed and drained', async () => {
    const q = new Queue<number>(2);
    const producer = spawn(async () => {
      for (let i = 0; i < 5; i++) await q.put(i);
      q.close();
    });
    const got: number[] = [];
    for await (const item of q) got.push(item);
    await producer.wait();
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });

  it('close(): put throws QueueClosed, blocked getters and putters are released, queued items stay', async () => {
    const q = new LightQueue<number>(1);
    q.putNowait(1);
    const putter = spawn(() => q.put(2));
    await sleep(0);
    q.close();
    await expect(putter.wait()).rejects.toBeInstanceOf(QueueClosed);
    await expect(q.put(3)).rejects.toMatchObject({ code: 'ERR_EVY_QUEUE_CLOSED' });
    expect(await q.get()).toBe(1);
    await expect(q.get()).rejects.toBeInstanceOf(QueueClosed);
    const q2 = new Queue<number>();
    const getter = spawn(() => q2.get());
    await sleep(0);
    q2.close();
    await expect(getter.wait()).rejects.toBeInstanceOf(QueueClosed);
  });

  it('rejects bad arguments with typed errors', async () => {
    expect(() => new Queue(NaN)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Queue('3' as never)).toThrow(TypeError);
    const q = new Queue();
    await expect(q.get(true, -1)).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(q.put(1, 'yes' as never)).rejects.toBeInstanceOf(TypeError);
    expect(() => new PriorityQueue(1, 5 as never)).toThrow(TypeError);
  });
});

// Stryker's survivors in queue.ts (docs/mutation.md).
describe('Queue: edges the mutation run found untested', () => {
  it('PriorityQueue orders like Python tuples: element by element, a shorter prefix first, numbers as numbers', async () => {
    const q = new PriorityQueue<unknown[]>();
    for (const item of [[1, 'b'], [10], [1], [9, 'z'], [1, 'a'], [0, 'z', 1]]) q.putNowait(item);
    const out: unknown[] = [];
    while (!q.empty()) out.push(q.getNowait());
    expect(out).toEqual([[0, 'z', 1], [1], [1, 'a'], [1, 'b'], [9, 'z'], [10]]);
    const prefix = new PriorityQueue<unknown[]>();
    prefix.putNowait([1, 'a']);
    prefix.putNowait([1]);
    expect(prefix.getNowait()).toEqual([1]);
  });

  it('a get from a full queue admits exactly one blocked putter', async () => {
    const q = new Queue<number>(1);
    q.putNowait(0);
    const putters = [1, 2, 3].map((n) => spawn(() => q.put(n)));
    await sleep(0);
    expect(q.putting()).toBe(3);
    expect(await q.get()).toBe(0);
    await sleep(0);
    expect([q.qsize(), q.putting()]).toEqual([1, 2]);
    for (const n of [1, 2, 3]) expect(await q.get()).toBe(n);
    await Promise.all(putters.map((t) => t.wait()));
  });

  it('put() and join() in a thread that was already killed reject with its kill error; the item is not queued', async () => {
    const q = new Queue<string>();
    q.putNowait('unfinished');
    const err = new Error('stop');
    const t = spawn(async () => {
      try {
        await sleep(10);
      } catch {
        // the kill lands here
      }
      const put = await q.put('late').then(() => 'put', (e: unknown) => e);
      const join = await q.join().then(() => 'joined', (e: unknown) => e);
      return [put, join];
    });
    await sleep(0);
    await t.kill(err);
    expect(await t.wait()).toEqual([err, err]);
    expect(q.qsize()).toBe(1);
  });

  it('a closed queue: closed is true, putNowait throws QueueClosed, iteration ends; a kill during iteration is not swallowed', async () => {
    const q = new Queue<number>();
    expect(q.closed).toBe(false);
    q.close();
    q.close(); // idempotent
    expect(q.closed).toBe(true);
    expect(() => q.putNowait(1)).toThrow(QueueClosed);
    const open = new Queue<number>();
    let after = false;
    const reader = spawn(async () => {
      for await (const _ of open) {
        // nothing comes
      }
      after = true;
    });
    await sleep(0);
    await reader.kill();
    await expect(reader.wait()).rejects.toBeInstanceOf(GreenletExit);
    expect(after).toBe(false);
  });

  it('maxsize must be a number, an integer or Infinity', () => {
    for (const bad of ['3', Number.NaN, 1.5]) expect(() => new Queue(bad as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Queue(1.5)).toThrow(/"maxsize" argument must be an integer/);
    expect(new Queue(Infinity).full()).toBe(false);
  });
});
