// Green fs: streams, watchers and FileHandles a green thread opens are owned by it until they close, and a
// kill closes them; fs.promises calls that accept a signal get one the kill aborts (they then reject with
// the kill error). Callback and *Sync functions are unchanged (an fd number cannot be owned reliably).
import type { FileHandle } from 'node:fs/promises';
import { type GreenThread } from '../greenthread.js';
import { disown, own, owningThread } from '../ownership.js';
import { rt } from '../runtime.js';
import { absorb, callWithKillSignal, inUnowned, kNever, ps } from './state.js';

const O = ps.orig.fs;
const fs = process.getBuiltinModule('fs') as typeof import('node:fs');


function destroyStream(s: any, err: unknown): void {
  if (s.destroyed) return;
  absorb(s, err);
  s.destroy(err);
}

function closeWatcher(w: any): void {
  w.close();
}

/** Owns an emitter until its 'close' event. */
function ownUntilClose<E extends { once(ev: string, fn: () => void): unknown }>(e: E, t: GreenThread, destroy: (r: any, err: unknown) => void): E {
  if (own(e, destroy) !== null) e.once('close', () => disown(e, t));
  return e;
}

export function createReadStream(this: unknown, ...args: unknown[]): import('node:fs').ReadStream {
  const s = (O.createReadStream as any).apply(this, args);
  const t = owningThread();
  return t === null ? s : ownUntilClose(s, t, destroyStream);
}

export function createWriteStream(this: unknown, ...args: unknown[]): import('node:fs').WriteStream {
  const s = (O.createWriteStream as any).apply(this, args);
  const t = owningThread();
  return t === null ? s : ownUntilClose(s, t, destroyStream);
}

export function watch(this: unknown, ...args: unknown[]): import('node:fs').FSWatcher {
  const w = (O.watch as any).apply(this, args);
  const t = owningThread();
  return t === null ? w : ownUntilClose(w, t, closeWatcher);
}

function closeHandle(fh: FileHandle): void {
  fh.close().catch(() => {});
}

// ---- fs.promises ---------------------------------------------------------------------------------

/** fs.promises.open: the FileHandle is owned by the opening thread until closed; a kill closes it. */
export async function open(this: unknown, ...args: unknown[]): Promise<FileHandle> {
  const t = owningThread();
  const fh: FileHandle = await (ps.orig.fsp.open as any).apply(this ?? fs.promises, args);
  if (t === null) {
    if (rt.als !== null && inUnowned()) (fh as any)[kNever] = true;
    return fh;
  }
  if (t._killError !== undefined) {
    // The thread was killed while the file was opening: nobody will close it.
    closeHandle(fh);
    throw t._killError;
  }
  // Still in t's async context here; own() returns null if t has finished meanwhile (nothing to own).
  if (own(fh, closeHandle) !== null) (fh as any).once?.('close', () => disown(fh, t));
  return fh;
}

/** Calls `call` with the options given a signal that the thread's kill aborts; the abort rejects with the kill error. */
function withSignal<T>(t: GreenThread, options: unknown, call: (opts: unknown) => Promise<T>): Promise<T> {
  if (t._killError !== undefined) return Promise.reject(t._killError);
  let opts: Record<string, any>;
  if (options === undefined || options === null) opts = {};
  else if (typeof options === 'string') opts = { encoding: options };
  else if (typeof options === 'object') opts = options as Record<string, any>;
  else return call(options); // let Node report the bad argument
  if ((opts.signal as AbortSignal | undefined)?.aborted) return call(options);
  return callWithKillSignal(t, opts, call);
}

export function readFile(this: unknown, path: unknown, options?: unknown): Promise<any> {
  const t = owningThread();
  if (t === null) return ps.orig.fsp.readFile.call(this ?? fs.promises, path, options);
  const self = this ?? fs.promises;
  // Node 26 reads a path in one thread-pool call that never looks at the signal (a FIFO, a device or
  // /dev/zero is read on and on, in C++, after the abort). Opening the file ourselves keeps the read in
  // FileHandle.readFile, which checks the signal between chunks; the kill also closes the handle.
  if (typeof path !== 'string' && !(path instanceof URL) && !Buffer.isBuffer(path)) {
    return withSignal(t, options, (o) => ps.orig.fsp.readFile.call(self, path, o));
  }
  const flag = options !== null && typeof options === 'object' ? (options as { flag?: unknown }).flag : undefined;
  return withSignal(t, options, async (o) => {
    const fh: FileHandle = await open.call(self, path, flag ?? 'r');
    try {
      return await fh.readFile(o as any);
    } finally {
      await fh.close().catch(() => {});
    }
  });
}

export function writeFile(this: unknown, path: unknown, data: unknown, options?: unknown): Promise<void> {
  const t = owningThread();
  if (t === null) return ps.orig.fsp.writeFile.call(this ?? fs.promises, path, data, options);
  return withSignal(t, options, (o) => ps.orig.fsp.writeFile.call(this ?? fs.promises, path, data, o));
}

export function appendFile(this: unknown, path: unknown, data: unknown, options?: unknown): Promise<void> {
  const t = owningThread();
  if (t === null) return ps.orig.fsp.appendFile.call(this ?? fs.promises, path, data, options);
  return withSignal(t, options, (o) => ps.orig.fsp.appendFile.call(this ?? fs.promises, path, data, o));
}

/** fs.promises.watch: the async iterator ends when the thread is killed (its signal is aborted). */
export function pWatch(this: unknown, filename: unknown, options?: unknown): AsyncIterable<any> {
  const t = owningThread();
  if (t === null || (options !== undefined && typeof options !== 'object' && typeof options !== 'string')) {
    return ps.orig.fsp.watch.call(this ?? fs.promises, filename, options);
  }
  const opts: any = typeof options === 'string' ? { encoding: options } : { ...(options as object) };
  const user: AbortSignal | undefined = opts.signal;
  const signal = user === undefined ? t.signal : AbortSignal.any([user, t.signal]);
  opts.signal = signal;
  return ps.orig.fsp.watch.call(this ?? fs.promises, filename, opts);
}

export const promiseFunctions = { open, readFile, writeFile, appendFile, watch: pWatch };
export const fsFunctions = { createReadStream, createWriteStream, watch };
