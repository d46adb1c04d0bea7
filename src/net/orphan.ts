// A killed thread's private idle connection (docs/patching.md, "Sockets: a state table").
//
// eventlet had Python's reference counting: a socket only a killed greenlet could reach was closed when the
// greenlet's frames went away. Node keeps a socket alive through its native handle for as long as it is open,
// so a connection nothing in the program can reach any more stays open for good and keeps the process up.
// Whether anything can still reach it is exactly what tells a thread's private client (closed with the thread)
// from one it created for everyone (a module-level client, a pool's connection: it must keep serving).
//
// Orphaning a socket makes the links from its native handles back to JavaScript weak: the handles' owner
// link, the callbacks and accessors Node put on them, and a socket TLS was started on. They now reach what
// they held through the socket: while anything else reaches the socket it works exactly as before (reads,
// writes, events), but it no longer keeps the process alive (unref'd), and once it is garbage its handles are
// closed, so the peer sees the connection end. Any new write adopts it back: strong links, ref'd as before.
import type { Socket } from 'node:net';

const kOrphan = Symbol.for('evy.net.orphan');

type AnySock = Socket & Record<symbol, any>;
type Handle = Record<PropertyKey, any>;

interface Slot {
  obj: Handle;
  key: PropertyKey;
  /** What was there (a data property, or an accessor). */
  desc: PropertyDescriptor;
  /** What evy put there instead: restored only if it is still there. */
  mine: unknown;
}

interface Orphanage {
  slots: Slot[];
  /** `onread` lives in an internal field behind a prototype accessor: [handle, original]. */
  onread: [Handle, unknown][];
  handles: Handle[];
  /** The handle was ref'd: adopting refs it again. */
  reffed: boolean;
}

function closeAll(handles: Handle[]): void {
  for (const h of handles) {
    try {
      h.close?.();
    } catch {
      // already closed
    }
  }
}

const registry = new FinalizationRegistry<Handle[]>(closeAll);

let ownerSymbol: symbol | undefined;

function ownerKey(h: Handle): symbol | undefined {
  return (ownerSymbol ??= Object.getOwnPropertySymbols(h).find((k) => k.description === 'owner_symbol'));
}

/** The native handles under `s`: its own, the stream a TLS layer wraps, and the socket TLS was started on. */
function handlesOf(s: AnySock): Handle[] {
  const out: Handle[] = [];
  const add = (h: unknown): void => {
    if (h !== null && typeof h === 'object' && !out.includes(h as Handle)) out.push(h as Handle);
  };
  const h = (s as unknown as { _handle?: Handle | null })._handle;
  add(h);
  add(h?._parent);
  add((h?._parentWrap as { _handle?: unknown } | undefined)?._handle);
  return out;
}

function isSocketLike(v: unknown): boolean {
  return v !== null && typeof v === 'object' && typeof (v as { _events?: unknown })._events === 'object' && typeof (v as Socket).write === 'function';
}

/** True while `s` is an orphan (weakly held by its handles, unref'd). */
export function isOrphan(s: object): boolean {
  return (s as AnySock)[kOrphan] !== undefined;
}

/** Makes `s` a connection nothing keeps alive but the program's own references (see above). */
export function orphanSocket(sock: Socket): void {
  const s = sock as AnySock;
  if (s[kOrphan] !== undefined || s.destroyed) return;
  const handles = handlesOf(s);
  if (handles.length === 0) return;
  const rec: Orphanage = { slots: [], onread: [], handles, reffed: true };
  const weak = new WeakRef(s);
  const slotValue = (i: number): unknown => weak.deref()?.[kOrphan]?.slots[i]?.desc.value;
  const owner = ownerKey(handles[0]!);
  for (const h of handles) {
    for (const key of Reflect.ownKeys(h)) {
      const desc = Object.getOwnPropertyDescriptor(h, key)!;
      if (!desc.configurable) continue;
      const i = rec.slots.length;
      let mine: PropertyDescriptor | null = null;
      if (key === owner || (desc.value !== undefined && isSocketLike(desc.value))) {
        mine = {
          get: () => slotValue(i),
          set: (v: unknown) => {
            const r = weak.deref()?.[kOrphan] as Orphanage | undefined;
            if (r !== undefined) r.slots[i]!.desc.value = v;
          },
          enumerable: desc.enumerable,
          configurable: true,
        };
      } else if (desc.get !== undefined || desc.set !== undefined) {
        const get = function (this: unknown): unknown {
          const d = (weak.deref()?.[kOrphan] as Orphanage | undefined)?.slots[i]?.desc;
          return d?.get?.call(this);
        };
        const set = function (this: unknown, v: unknown): void {
          const d = (weak.deref()?.[kOrphan] as Orphanage | undefined)?.slots[i]?.desc;
          d?.set?.call(this, v);
        };
        mine = { get, set, enumerable: desc.enumerable, configurable: true };
      } else if (typeof desc.value === 'function') {
        const value = function (this: unknown, ...args: unknown[]): unknown {
          const fn = slotValue(i) as ((...a: unknown[]) => unknown) | undefined;
          return fn === undefined ? undefined : fn.apply(this, args);
        };
        mine = { value, writable: true, enumerable: desc.enumerable, configurable: true };
      }
      if (mine === null) continue;
      rec.slots.push({ obj: h, key, desc, mine: mine.get ?? mine.value });
      Object.defineProperty(h, key, mine);
    }
    const onread = h.onread;
    if (typeof onread === 'function') {
      const i = rec.onread.length;
      rec.onread.push([h, onread]);
      h.onread = function (this: Handle, ...args: unknown[]): unknown {
        const r = weak.deref()?.[kOrphan] as Orphanage | undefined;
        // Collected, and its handles not closed yet: nobody is left to read this.
        if (r === undefined) return void this.close?.();
        return (r.onread[i]![1] as (...a: unknown[]) => unknown).apply(this, args);
      };
    }
  }
  const deepest = handles[handles.length - 1]!;
  rec.reffed = typeof deepest.hasRef === 'function' ? deepest.hasRef() !== false : true;
  s[kOrphan] = rec;
  registry.register(s, handles, rec);
  s.unref();
}

/**
 * `s` is used again (or destroyed: its handles then close the normal way): they hold it as before, and it keeps
 * the process alive if it did.
 */
export function adoptSocket(sock: Socket): void {
  const s = sock as AnySock;
  const rec: Orphanage | undefined = s[kOrphan];
  if (rec === undefined) return;
  registry.unregister(rec);
  for (const { obj, key, desc, mine } of rec.slots) {
    const now = Object.getOwnPropertyDescriptor(obj, key);
    // Node may have replaced it meanwhile (a writable slot): then that value stands.
    if (now !== undefined && (now.get ?? now.value) === mine) Object.defineProperty(obj, key, desc);
  }
  for (const [h, onread] of rec.onread) h.onread = onread;
  s[kOrphan] = undefined;
  if (rec.reffed && !s.destroyed) s.ref();
}
