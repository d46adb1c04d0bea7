// evy.tpool: real worker threads (piscina), cancellation by kill/Timeout, bad input.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { threadId } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { debug, EvyError, GreenletExit, sleep, spawn, Timeout, tpool, withTimeout } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const tasks = join(root, 'fixtures/debug/tpool-tasks.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'evy-tpool-'));

afterEach(() => tpool.resize(2));
afterAll(async () => {
  await tpool.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

// Runs in the worker: busy for `ms` milliseconds (stops only when the worker is terminated).
const spin = (ms: number): number => {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) n++;
  return n;
};

describe('execute', () => {
  it('runs a function in another thread and returns its result', async () => {
    expect(await tpool.execute((a: number, b: number) => a + b, 2, 3)).toBe(5);
    const tid = await tpool.execute(() => process.getBuiltinModule('node:worker_threads').threadId);
    expect(tid).not.toBe(threadId);
    expect(await tpool.execute(function fib(n: number): number {
      return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }, 20)).toBe(6765);
    const o = {
      async double(x: number) {
        return x * 2;
      },
    };
    expect(await tpool.execute(o.double, 21)).toBe(42);
    expect(await tpool.execute((buf: Uint8Array) => buf.length, new Uint8Array(1000))).toBe(1000);
  });

  it('runs module exports: { module, name }, "path#name", a file URL, the default export', async () => {
    expect(await tpool.execute({ module: tasks, name: 'triple' }, 5)).toBe(15);
    expect(await tpool.execute(`${tasks}#triple`, 6)).toBe(18);
    expect(await tpool.execute({ module: pathToFileURL(tasks), name: 'triple' }, 7)).toBe(21);
    expect(await tpool.execute(tasks, 1, 2, 3)).toBe(6);
    const { threadId: tid } = (await tpool.execute({ module: tasks, name: 'whoAmI' })) as { threadId: number };
    expect(tid).not.toBe(threadId);
  });

  it('parks only the calling green thread: the main thread keeps running while a worker spins', async () => {
    let ticks = 0;
    let stop = false;
    const ticker = spawn(async () => {
      while (!stop) {
        await sleep(0.005);
        ticks++;
      }
    });
    const n = await tpool.execute(spin, 300);
    stop = true;
    await ticker.wait();
    expect(n).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(5); // ~60 when nothing else is running; 0 if the loop had been blocked
  });

  it('runs tasks in parallel up to the pool size', async () => {
    tpool.resize(2);
    const ids = await Promise.all([0, 1, 2, 3].map(() => tpool.execute(() => {
      const end = Date.now() + 100;
      while (Date.now() < end);
      return process.getBuiltinModule('node:worker_threads').threadId;
    })));
    expect(new Set(ids).size).toBe(2);
    expect(tpool.stats()).toMatchObject({ size: 2 });
  });
});

describe('cancellation', () => {
  it('killing the caller terminates running work: the caller dies at once, the pool carries on', async () => {
    tpool.resize(1);
    const gt = spawn(() => tpool.execute(() => {
      for (;;); // never returns: only terminating the worker stops it
    }));
    await sleep(0.2); // started in the worker by now
    await gt.kill();
    await expect(gt.wait()).rejects.toBeInstanceOf(GreenletExit);
    // The only worker was busy for ever: the next task can only run if it was terminated.
    expect(await tpool.execute((x: number) => x + 1, 1)).toBe(2);
  });

  it('killing the caller drops queued work (it never runs)', async () => {
    tpool.resize(1);
    const marker = join(tmp, 'queued-ran');
    const busy = spawn(() => tpool.execute(spin, 300));
    const queued = spawn(() =>
      tpool.execute((file: string) => {
        process.getBuiltinModule('node:fs').writeFileSync(file, 'ran');
      }, marker),
    );
    await sleep(0.05);
    expect(tpool.stats().queued).toBe(1);
    await queued.kill();
    expect(await busy.wait()).toBeGreaterThan(0);
    await tpool.execute(() => 0); // the queue has drained past where the killed task was
    expect(existsSync(marker)).toBe(false);
  });

  it('a Timeout in the caller, or withTimeout, cancels the work and throws Timeout', async () => {
    tpool.resize(1);
    await expect(withTimeout(0.1, () => tpool.execute(() => {
      for (;;);
    }))).rejects.toBeInstanceOf(Timeout);
    const t = new Timeout(0.1);
    try {
      await expect(tpool.execute(() => {
        for (;;);
      })).rejects.toBe(t);
    } finally {
      t.cancel();
    }
    expect(await tpool.execute(() => 'alive')).toBe('alive');
  });

  it('shows up in the thread dump: parked on tpool.execute, owning the task', async () => {
    debug.trackThreads(true);
    try {
      const gt = spawn(() => tpool.execute(spin, 200));
      gt.name = 'offloader';
      await sleep(0.05);
      const me = debug.threads().find((t) => t.name === 'offloader')!;
      expect(me.parkedOn).toEqual(['tpool.execute']);
      expect(me.owned).toEqual(['tpool task spin()']);
      await gt.wait();
    } finally {
      debug.trackThreads(false);
    }
  });
});

describe('bad input and failing work', () => {
  it('a worker that throws: the same error class, message and code in the caller; others unharmed', async () => {
    const other = spawn(() => tpool.execute((x: number) => x * 2, 8));
    const err = await tpool
      .execute(() => {
        const e = new TypeError('nope');
        (e as TypeError & { code: string }).code = 'E_NOPE';
        throw e;
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toMatchObject({ message: 'nope', code: 'E_NOPE' });
    await expect(tpool.execute({ module: tasks, name: 'fails' }, 'E_MOD')).rejects.toMatchObject({ name: 'RangeError', code: 'E_MOD' });
    await expect(tpool.execute(() => {
      throw 'a string';
    })).rejects.toBe('a string');
    expect(await other.wait()).toBe(16);
  });

  it('a worker that crashes: ERR_EVY_TPOOL_WORKER_EXIT, and the pool replaces the worker', async () => {
    await expect(tpool.execute(() => process.exit(3))).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_WORKER_EXIT', message: expect.stringMatching(/code: 3/) });
    expect(await tpool.execute(() => 'still here')).toBe('still here');
  });

  it('a non-serialisable argument or result: ERR_EVY_TPOOL_CLONE naming the argument', async () => {
    const e = await tpool.execute((_a: number, _f: unknown) => 1, 1, () => 2).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EvyError);
    expect(e).toMatchObject({ code: 'ERR_EVY_TPOOL_CLONE', message: expect.stringMatching(/argument 1 \(a function\)/) });
    await expect(tpool.execute(() => () => 1)).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_CLONE', message: expect.stringMatching(/result/) });
    expect(await tpool.execute(() => 'fine')).toBe('fine');
  });

  it('rejects what cannot run in a worker, with codes', async () => {
    await expect(tpool.execute(Math.max, 1, 2)).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_FUNCTION' });
    await expect(tpool.execute((() => 1).bind(null))).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_FUNCTION' });
    await expect(tpool.execute(42 as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(tpool.execute('./relative.mjs')).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_MODULE' });
    await expect(tpool.execute(new URL('https://example.com/x.mjs'))).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_MODULE' });
    await expect(tpool.execute({ module: tasks, name: 'missing' })).rejects.toMatchObject({ code: 'ERR_EVY_TPOOL_EXPORT' });
    await expect(tpool.execute('/no/such/module.mjs')).rejects.toMatchObject({ code: 'ERR_MODULE_NOT_FOUND' });
    await expect(tpool.execute(() => {
      // A closure over a variable of the caller: not sent along, so it is a ReferenceError in the worker.
      return tasks.length;
    })).rejects.toBeInstanceOf(ReferenceError);
    expect(() => tpool.resize(0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('destroy() rejects work in flight with ERR_EVY_TPOOL_DESTROYED; the next execute starts a new pool', async () => {
    const p = tpool.execute(spin, 5000).catch((e: unknown) => e);
    await sleep(0.1);
    await tpool.destroy();
    expect(await p).toMatchObject({ code: 'ERR_EVY_TPOOL_DESTROYED', message: expect.stringMatching(/destroy\(\) was called/) });
    expect(await tpool.execute(() => 'new pool')).toBe('new pool');
  });
});

describe('size', () => {
  it('defaults to the CPU count, EVY_THREADPOOL_SIZE overrides it (fresh processes)', async () => {
    const run = promisify(execFile);
    const code = `import(${JSON.stringify(pathToFileURL(join(root, 'dist/index.js')).href)}).then((e) => console.log(e.tpool.size))`;
    const plain = await run(process.execPath, ['-e', code]);
    expect(Number(plain.stdout)).toBe(availableParallelism());
    const sized = await run(process.execPath, ['-e', code], { env: { ...process.env, EVY_THREADPOOL_SIZE: '7' } });
    expect(Number(sized.stdout)).toBe(7);
  });
});
