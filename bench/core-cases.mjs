// One benchmark case in one process: `node --expose-gc core-cases.mjs <case> <impl> <rounds>`.
// impl "raw" never loads evy (on Node 20, once AsyncLocalStorage is used every await pays for it);
// "raw-als" is the raw code after one ALS use, to show how much of a ratio is that tax.
// Prints one JSON line: { values: [per-round figure], unit }.
const [, , name, impl, roundsArg] = process.argv;
const rounds = Number(roundsArg ?? 5);

if (impl === 'raw-als') {
  const { AsyncLocalStorage } = await import('node:async_hooks');
  const als = new AsyncLocalStorage();
  als.run({}, () => {});
}
const evy = impl === 'evy' ? await import('../dist/index.js') : null;
// raw-ctx: the raw code, each task entering its own AsyncLocalStorage context (as evy's threads must, to know
// who they are after any await), without evy's own objects.
const ctx = impl === 'raw-ctx' ? new (await import('node:async_hooks')).AsyncLocalStorage() : null;

const now = () => process.hrtime.bigint();
const ns = (t0) => Number(now() - t0);

const cases = {
  // spawn + wait of 100k threads, vs async calls that also start on a later turn.
  async spawn() {
    const N = 100_000;
    const work = (i) => i;
    const ts = new Array(N);
    const t0 = now();
    if (evy) {
      for (let i = 0; i < N; i++) ts[i] = evy.spawn(work, i);
      for (let i = 0; i < N; i++) await ts[i].wait();
    } else {
      const rawSpawn = async (i) => {
        await null;
        return work(i);
      };
      if (ctx === null) for (let i = 0; i < N; i++) ts[i] = rawSpawn(i);
      else {
        // one microtask enters each task's context in turn, as evy's scheduler does
        await new Promise((resolve) =>
          queueMicrotask(() => {
            for (let i = 0; i < N; i++) {
              ctx.enterWith(i);
              ts[i] = rawSpawn(i);
            }
            resolve();
          }),
        );
      }
      for (let i = 0; i < N; i++) await ts[i];
    }
    return ns(t0) / N;
  },

  // Round trip between two threads over two queues, vs an array + pending-resolver channel.
  async pingpong() {
    const N = 200_000;
    let a2b, b2a, t0;
    if (evy) {
      a2b = new evy.Queue();
      b2a = new evy.Queue();
      const b = evy.spawn(async () => {
        for (let i = 0; i < N; i++) await b2a.put((await a2b.get()) + 1);
      });
      const a = evy.spawn(async () => {
        for (let i = 0; i < N; i++) {
          await a2b.put(i);
          await b2a.get();
        }
      });
      t0 = now();
      await a.wait();
      await b.wait();
    } else {
      class Chan {
        q = [];
        waiter = null;
        put(v) {
          const w = this.waiter;
          if (w) {
            this.waiter = null;
            w(v);
          } else this.q.push(v);
          return Promise.resolve();
        }
        get() {
          return this.q.length ? Promise.resolve(this.q.shift()) : new Promise((r) => (this.waiter = r));
        }
      }
      a2b = new Chan();
      b2a = new Chan();
      t0 = now();
      const b = (async () => {
        for (let i = 0; i < N; i++) await b2a.put((await a2b.get()) + 1);
      })();
      const a = (async () => {
        for (let i = 0; i < N; i++) {
          await a2b.put(i);
          await b2a.get();
        }
      })();
      await a;
      await b;
    }
    return ns(t0) / N;
  },

  // Ordered map of 100k items with concurrency 1000.
  async imap() {
    const N = 100_000;
    const C = 1000;
    const items = Array.from({ length: N }, (_, i) => i);
    const fn = async (x) => {
      await null;
      return x * 2;
    };
    let sum = 0;
    const t0 = now();
    if (evy) {
      const pool = new evy.GreenPool(C);
      for await (const v of pool.imap(fn, items)) sum += v;
    } else if (impl === 'plimit') {
      const { default: pLimit } = await import('p-limit');
      const limit = pLimit(C);
      const results = await Promise.all(items.map((x) => limit(fn, x)));
      for (const v of results) sum += v;
    } else if (impl === 'raw-stream') {
      // The same shape as imap by hand: C workers, results handed out in input order through an async
      // iterator consumed with for await, at most 2 x C buffered ahead of the consumer.
      const W = 2 * C;
      const vals = new Array(W);
      const has = new Uint8Array(W);
      let nextIdx = 0;
      let consumed = 0;
      let wake = null;
      let space = [];
      const worker = async () => {
        while (nextIdx < N) {
          while (nextIdx - consumed >= W) await new Promise((r) => space.push(r));
          const i = nextIdx++;
          const v = await fn(items[i]);
          vals[i % W] = v;
          has[i % W] = 1;
          if (i === consumed && wake !== null) {
            const w = wake;
            wake = null;
            w();
          }
        }
      };
      for (let k = 0; k < C; k++) void worker();
      const it = {
        [Symbol.asyncIterator]() {
          return this;
        },
        async next() {
          if (consumed >= N) return { value: undefined, done: true };
          const s = consumed % W;
          while (!has[s]) await new Promise((r) => (wake = r));
          has[s] = 0;
          consumed++;
          if (space.length > 0 && nextIdx - consumed <= W >> 1) {
            const ws = space;
            space = [];
            for (const r of ws) r();
          }
          return { value: vals[s], done: false };
        },
      };
      for await (const v of it) sum += v;
    } else {
      // A hand-rolled limiter: C workers pulling indexes, results stored in input order.
      const results = new Array(N);
      let next = 0;
      const worker = async () => {
        while (next < N) {
          const i = next++;
          results[i] = await fn(items[i]);
        }
      };
      await Promise.all(Array.from({ length: C }, worker));
      for (const v of results) sum += v;
    }
    if (sum !== N * (N - 1)) throw new Error(`wrong sum ${sum}`);
    return ns(t0) / N;
  },

  // 100 threads each yielding 1000 times with sleep(0), vs a raw setImmediate yield.
  async sleep0() {
    const T = 100;
    const K = 1000;
    const t0 = now();
    if (evy) {
      const ts = [];
      for (let t = 0; t < T; t++) ts.push(evy.spawn(async () => {
        for (let k = 0; k < K; k++) await evy.sleep(0);
      }));
      for (const t of ts) await t.wait();
    } else {
      const yieldRaw = () => new Promise((r) => setImmediate(r));
      const ts = [];
      for (let t = 0; t < T; t++) ts.push((async () => {
        for (let k = 0; k < K; k++) await yieldRaw();
      })());
      await Promise.all(ts);
    }
    return ns(t0) / (T * K);
  },

  // Heap bytes per thread parked in Event.wait with 200k alive (BENCH_HEAP_THREADS), vs raw async functions parked on one promise.
  async heap() {
    const N = Number(process.env.BENCH_HEAP_THREADS ?? 200_000);
    global.gc();
    global.gc();
    const before = process.memoryUsage().heapUsed;
    let release;
    let done = 0;
    if (evy) {
      const ev = new evy.Event();
      release = () => ev.send();
      const body = async () => {
        await ev.wait();
        done++;
      };
      for (let i = 0; i < N; i++) evy.spawnN(body);
      await new Promise((r) => setImmediate(r)); // all started and parked
    } else {
      let open;
      const gate = new Promise((r) => (open = r));
      release = open;
      const body = async () => {
        await null; // started on a later turn, like spawn
        await gate;
        done++;
      };
      if (ctx === null) for (let i = 0; i < N; i++) body();
      else {
        // each in its own context, parked on its own promise (one a kill could reject alone)
        const own = async () => {
          await null;
          await new Promise((r) => gate.then(r));
          done++;
        };
        queueMicrotask(() => {
          for (let i = 0; i < N; i++) {
            ctx.enterWith(i);
            own();
          }
        });
      }
      await new Promise((r) => setImmediate(r));
    }
    global.gc();
    global.gc();
    const bytes = (process.memoryUsage().heapUsed - before) / N;
    release();
    while (done < N) await new Promise((r) => setImmediate(r));
    return bytes;
  },
};

const units = { spawn: 'ns/thread', pingpong: 'ns/round trip', imap: 'ns/item', sleep0: 'ns/yield', heap: 'bytes/thread' };
const values = [];
for (let r = 0; r < rounds + 1; r++) {
  const v = await cases[name]();
  if (r > 0 || name === 'heap') values.push(v); // first round warms up (heap: every round counts)
  if (name === 'heap') break;
}
console.log(JSON.stringify({ values, unit: units[name] }));
