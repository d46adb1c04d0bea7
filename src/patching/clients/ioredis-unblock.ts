// A killed thread's blocking Redis command (BLPOP, XREAD ... BLOCK, WAIT...) is unblocked on the server:
// `CLIENT UNBLOCK <id> ERROR` from a side connection, for the id of the connection it blocks. The
// connection stays; the command's reply (the server's UNBLOCKED error) is dropped.
//
// CLIENT UNBLOCK names a connection, not a command, so it must never reach another caller's blocking
// command on the same connection. Redis runs a connection's commands in order and runs nothing behind a
// blocked one; evy keeps it so on the wire: while a blocking command is unanswered, what ioredis writes
// after it on that socket is held (not sent) until its reply. The server then has at most the blocking
// commands of one write (one command, or one pipeline) unanswered, and an UNBLOCK is sent only when every
// one of those is a killed thread's; it is repeated (the server may not have reached the command yet)
// until their replies came. Held writes of killed threads are never sent. Holding costs nothing the
// server would not impose: it would not run those commands before the reply either.
//
// The connection's id comes from a `CLIENT ID` written just before its first blocking command (once per
// connection, pipelined, no round trip of its own). If the server does not act within UNBLOCK_BOUND_MS
// (UNBLOCK refused by an ACL, the server paused), the socket is destroyed, but only when nothing of a live
// caller is in flight on it (held commands were never written: ioredis sends them on the next one).
import { rt } from '../../runtime.js';
import { unowned } from '../../ownership.js';
import { debug, kNever } from '../state.js';

export interface Cmd {
  name: string;
  args: unknown[];
  promise: Promise<unknown>;
  resolve(v: unknown): unknown;
  reject(e: unknown): unknown;
  isSettled?: boolean;
  inTransaction?: boolean;
  pipelineIndex?: number;
}

interface Item {
  command: Cmd;
}

interface Deque<T> {
  length: number;
  peekAt(i: number): T | undefined;
  peekBack(): T | undefined;
  removeOne(i: number): T | undefined;
}

type Sock = import('node:net').Socket & Record<symbol, any>;

export interface RedisClient {
  status: string;
  stream?: Sock;
  options: Record<string, any>;
  condition?: { subscriber?: unknown } | null;
  commandQueue: Deque<Item>;
  reconnectTimeout?: { unref?: () => void } | null;
  on(ev: string, fn: (...a: any[]) => void): unknown;
}

type Send = (this: RedisClient, c: Cmd, stream?: unknown, node?: unknown) => unknown;

/** The kill error, once the command's thread was killed (ioredis.ts sets it). */
export const kKilled = Symbol('evy.ioredis.killed');
/** On a socket: its blocking-command state. */
const kState = Symbol('evy.ioredis.unblock');
/** On a command: the state of the socket it blocks (written) or waits on (held, not written). */
const kBlocks = Symbol('evy.ioredis.blocks');
const kHeld = Symbol('evy.ioredis.held');

/** On ioredis's Redis.prototype: the class itself. */
export const kClass = Symbol('evy.ioredis.class');
/** How long the server gets to act on a kill before the connection is destroyed instead. */
export const UNBLOCK_BOUND_MS = 1000;

const BLOCKING = new Set(['blpop', 'brpop', 'brpoplpush', 'blmove', 'blmpop', 'bzpopmin', 'bzpopmax', 'bzmpop', 'wait', 'waitaof', 'blmovem']);

/** Does the command block the connection on the server? (Inside MULTI nothing blocks.) */
export function isBlocking(c: Cmd): boolean {
  const name = c.name;
  const first = name.charCodeAt(0) | 0x20;
  if (first !== 0x62 && first !== 0x77 && first !== 0x78) return false; // b, w, x
  if (c.inTransaction === true) return false;
  const n = name.toLowerCase();
  if (n === 'xread' || n === 'xreadgroup') return c.args.some((a) => typeof a === 'string' && a.toLowerCase() === 'block');
  return BLOCKING.has(n);
}

interface Unit {
  chunk: unknown;
  cmds: Cmd[];
}

interface State {
  client: RedisClient;
  socket: Sock;
  /** Written, unanswered blocking commands, in order. */
  blockers: Cmd[];
  /** The pipeline stream those were written in (undefined: a command of its own). */
  batch: unknown;
  /** Writes held while `blockers` is not empty (null: not holding). */
  held: Unit[] | null;
  /** Commands sent since the last held write: the write that comes next carries them. */
  unit: Cmd[];
  /** CLIENT ID of the connection: undefined until known, null if it cannot be. */
  id: number | null | undefined;
  asked: boolean;
  unblocking: boolean;
  deadline: number;
  retry: NodeJS.Timeout | null;
  tries: number;
  closed: boolean;
  write: (chunk: unknown) => boolean;
}

/** Does evy follow blocking commands on this socket (so every command on it goes through sendWatched)? */
export function watching(s: Sock | undefined): boolean {
  return s != null && s[kState] !== undefined && !(s[kState] as State).closed;
}

function stateOf(client: RedisClient, s: Sock): State {
  let st = s[kState] as State | undefined;
  if (st !== undefined) return st;
  st = {
    client,
    socket: s,
    blockers: [],
    batch: undefined,
    held: null,
    unit: [],
    id: undefined,
    asked: false,
    unblocking: false,
    deadline: 0,
    retry: null,
    tries: 0,
    closed: false,
    write: (chunk: unknown) => {
      st!.held?.push({ chunk, cmds: st!.unit });
      st!.unit = [];
      return true;
    },
  };
  s[kState] = st;
  s.once('close', () => closed(st!));
  return st;
}

function closed(st: State): void {
  st.closed = true;
  if (st.retry !== null) rt.timers.clearTimeout(st.retry);
  st.retry = null;
  // Held writes die with the socket: ioredis replays their commands on the next one (killed ones excepted).
  st.held = null;
  for (const b of st.blockers) (b as any)[kBlocks] = undefined;
  st.blockers.length = 0;
}

/** Was `c` queued to be answered on the client's socket (written, or held), rather than kept offline? */
function queued(client: RedisClient, c: Cmd): boolean {
  return client.commandQueue.peekBack()?.command === c;
}

/**
 * Sends a command on a client whose socket evy follows: learns the connection's id before its first
 * blocking command, holds what comes behind a blocking command, notes the blocking commands written.
 */
export function sendWatched(
  client: RedisClient,
  c: Cmd,
  stream: unknown,
  node: unknown,
  blocking: boolean,
  batchBlocks: boolean,
  send: Send,
  Command: new (name: string, args: unknown[]) => Cmd,
): unknown {
  const s = client.stream;
  if (s == null || client.status !== 'ready' || s.destroyed) return send.call(client, c, stream, node); // offline: sent again from the queue
  const st = stateOf(client, s);
  if ((blocking && stream === undefined) || batchBlocks) {
    if (st.id === undefined && !st.asked) {
      st.asked = true;
      askId(st, send, Command);
    }
  }
  holdIfBehind(st, stream);
  if (st.held !== null) st.unit.push(c);
  const r = send.call(client, c, stream, node);
  if (!queued(client, c)) {
    const i = st.unit.indexOf(c);
    if (i >= 0) st.unit.splice(i, 1);
  } else if (st.held !== null) {
    (c as any)[kHeld] = st;
  } else if (blocking) {
    st.blockers.push(c);
    st.batch = stream;
    (c as any)[kBlocks] = st;
  }
  return r;
}

/** A blocking command is unanswered and this write is not part of its own: hold it. */
function holdIfBehind(st: State, stream: unknown): void {
  if (st.held !== null || st.blockers.length === 0) return;
  if (stream !== undefined && stream === st.batch) return;
  st.held = [];
  st.unit = [];
  st.socket.write = st.write as Sock['write'];
}

function askId(st: State, send: Send, Command: new (name: string, args: unknown[]) => Cmd): void {
  const client = st.client;
  const c = new Command('client', ['ID']);
  holdIfBehind(st, undefined);
  if (st.held !== null) st.unit.push(c);
  c.promise.then(
    (id) => {
      // Answered on the socket it was written on, or (replayed by ioredis) on the one after it.
      const s = client.stream;
      const now = s?.[kState] as State | undefined;
      if (now === undefined || now.closed) return;
      now.id = Number(id);
      evaluate(now);
    },
    (e: unknown) => {
      debug('ioredis: CLIENT ID failed, a kill cannot unblock this connection: %o', e);
      const now = client.stream?.[kState] as State | undefined;
      if (now === undefined || now.closed) return;
      now.id = null;
      evaluate(now);
    },
  );
  send.call(client, c);
  if (st.held !== null && queued(client, c)) (c as any)[kHeld] = st;
}

/** ioredis settled `c` (its reply came, or it gave up on it): if it was a blocking command in flight, it is over. */
export function blockerAnswered(c: Cmd): void {
  const st = (c as any)[kBlocks] as State | undefined;
  if (st === undefined) return;
  // A client-side timeout (ioredis's commandTimeout, blockingTimeout) settles it while it still blocks the
  // server: still in the queue, it is not over.
  const q = st.client.commandQueue;
  for (let i = 0; i < q.length; i++) if (q.peekAt(i)?.command === c) return;
  (c as any)[kBlocks] = undefined;
  const i = st.blockers.indexOf(c);
  if (i >= 0) st.blockers.splice(i, 1);
  if (st.retry !== null) {
    rt.timers.clearTimeout(st.retry);
    st.retry = null;
  }
  evaluate(st);
}

/** A killed command in flight: unblock it if it blocks. */
export function blockerKilled(c: Cmd): void {
  const st = (c as any)[kBlocks] as State | undefined;
  if (st !== undefined) evaluate(st);
}

/** Is `c` held behind a blocking command (queued, not written)? */
export function isHeld(c: Cmd): boolean {
  return (c as any)[kHeld] !== undefined;
}

/** A killed command held behind a blocking one: if its whole write is killed ones', it is never sent. */
export function heldKilled(c: Cmd): boolean {
  const st = (c as any)[kHeld] as State | undefined;
  if (st === undefined || st.held === null) return false;
  const u = st.held.find((x) => x.cmds.includes(c));
  if (u === undefined || !u.cmds.every(killed)) return false;
  st.held.splice(st.held.indexOf(u), 1);
  unqueue(st.client, u.cmds);
  return true;
}

function killed(c: Cmd): boolean {
  return (c as any)[kKilled] !== undefined;
}

/** Takes commands that will never be written out of the queue of replies ioredis waits for. */
function unqueue(client: RedisClient, cmds: Cmd[]): void {
  const q = client.commandQueue;
  for (const c of cmds) {
    (c as any)[kHeld] = undefined;
    for (let i = 0; i < q.length; i++) {
      if (q.peekAt(i)?.command === c) {
        q.removeOne(i);
        break;
      }
    }
  }
}

/** Nothing blocks any more: send what was held, up to and including the next blocking command. */
function release(st: State): void {
  const units = st.held;
  if (units === null) return;
  st.held = null;
  if (st.socket.write === (st.write as unknown)) delete (st.socket as any).write;
  for (let i = 0; i < units.length; i++) {
    const u = units[i]!;
    if (u.cmds.length > 0 && u.cmds.every(killed)) {
      unqueue(st.client, u.cmds);
      continue;
    }
    for (const c of u.cmds) (c as any)[kHeld] = undefined;
    st.socket.write(u.chunk as string);
    const blockers = u.cmds.filter(isBlocking);
    if (blockers.length > 0) {
      for (const b of blockers) (b as any)[kBlocks] = st;
      st.blockers.push(...blockers);
      st.batch = u.cmds.length > 1 ? u : undefined; // nothing sent later can be part of it
      if (i + 1 < units.length) {
        st.held = units.slice(i + 1);
        st.unit = [];
        st.socket.write = st.write as Sock['write'];
      }
      if (blockers.some(killed)) evaluate(st);
      return;
    }
  }
}

/** Decides what to do about the blocking commands in flight on `st`'s socket. */
function evaluate(st: State): void {
  if (st.closed) return;
  if (st.socket.destroyed) return closed(st);
  if (st.blockers.length === 0) {
    st.deadline = 0;
    st.tries = 0;
    if (!st.unblocking) release(st);
    return;
  }
  if (st.unblocking || st.retry !== null) return;
  // A live caller's blocking command may be the one the server is in: wait for its reply.
  if (!st.blockers.every(killed)) return;
  const now = performance.now();
  if (st.deadline === 0) st.deadline = now + UNBLOCK_BOUND_MS;
  if (st.id === undefined) return; // its answer evaluates again
  if (st.id === null || now >= st.deadline) return giveUp(st);
  st.unblocking = true;
  unblock(st.client, st.socket, st.id).then(
    (n) => {
      st.unblocking = false;
      if (st.closed) return;
      // 1: unblocked, its reply is on the way (and will evaluate). 0: the server is not blocked in it yet
      // (earlier commands still running) or its reply is on the way: ask again, a little later.
      const delay = n === 1 ? 50 : Math.min(2 ** st.tries++, 50);
      st.retry = rt.timers.setTimeout(retry, delay, st);
      st.retry.unref();
      if (st.blockers.length === 0) evaluate(st);
    },
    (e: unknown) => {
      st.unblocking = false;
      debug('ioredis: CLIENT UNBLOCK failed: %o', e);
      st.id = null;
      evaluate(st);
    },
  );
}

function retry(st: State): void {
  st.retry = null;
  evaluate(st);
}

/**
 * The server did not unblock it in time, or cannot: destroy the socket, if nothing of a live caller was
 * written on it and is unanswered (ioredis then replays the held commands on a new one; the killed are
 * dropped). Otherwise wait: every answer evaluates again.
 */
function giveUp(st: State): void {
  const q = st.client.commandQueue;
  for (let i = 0; i < q.length; i++) {
    const c = q.peekAt(i)!.command;
    if (!killed(c) && (c as any)[kHeld] !== st) return;
  }
  debug('ioredis: the server did not unblock a killed command within %d ms: destroying its connection', UNBLOCK_BOUND_MS);
  closed(st);
  st.socket.destroy();
}

// ---- side connections -------------------------------------------------------------------------------

interface Side {
  redis: RedisClient & { call(...a: unknown[]): Promise<unknown>; disconnect(): void; stream?: Sock };
  busy: number;
  idle: NodeJS.Timeout | null;
}

/** Closed once unused for this long (kills come in bursts; a side connection left open looks like a leak). */
const SIDE_IDLE_MS = 1000;
const sides = new Map<string, Side>();

/**
 * `CLIENT UNBLOCK <id> ERROR` from a connection to the same server (the address the socket is connected
 * to), as the same user, with the same TLS settings. One per server and user, made on demand by no
 * thread, unref'd, closed when idle.
 */
function unblock(client: RedisClient, s: Sock, id: number): Promise<unknown> {
  const o = client.options;
  const path = typeof o.path === 'string' && o.path !== '' ? o.path : undefined;
  const host = path === undefined ? (s.remoteAddress ?? o.host) : undefined;
  const port = path === undefined ? (s.remotePort ?? o.port) : undefined;
  const key = JSON.stringify([path, host, port, o.username ?? null, o.tls != null]);
  let side = sides.get(key);
  if (side === undefined || side.redis.status === 'end') {
    side = { redis: openSide(client, path, host, port), busy: 0, idle: null };
    sides.set(key, side);
  }
  const sd = side;
  if (sd.idle !== null) rt.timers.clearTimeout(sd.idle);
  sd.idle = null;
  sd.busy++;
  const done = (): void => {
    if (--sd.busy > 0) return;
    sd.idle = rt.timers.setTimeout(() => {
      if (sd.busy > 0) return;
      sides.delete(key);
      sd.redis.disconnect();
    }, SIDE_IDLE_MS);
    sd.idle.unref();
  };
  // Whoever's kill brought us here, the command is no thread's.
  const call = (): Promise<unknown> => sd.redis.call('client', 'unblock', String(id), 'error');
  const p = rt.als === null ? call() : unowned(call);
  p.then(done, done);
  return p;
}

function openSide(client: RedisClient, path: string | undefined, host: string | undefined, port: number | undefined): Side['redis'] {
  const o = client.options;
  // The class evy patched (a subclass of it may take other constructor arguments).
  const Redis = (client as unknown as Record<symbol, new (o: object) => Side['redis']>)[kClass]!;
  let tls = o.tls;
  if (tls != null && typeof tls === 'object' && tls.servername === undefined && typeof o.host === 'string' && !/^[\d.:]+$/.test(o.host)) {
    tls = { ...tls, servername: o.host }; // connected by address: the certificate still names the host
  }
  const opts = {
    path,
    host,
    port,
    family: o.family,
    username: o.username,
    password: o.password,
    tls,
    db: 0,
    connectionName: 'evy-unblock',
    lazyConnect: false,
    enableReadyCheck: false,
    enableOfflineQueue: true,
    enableAutoPipelining: false,
    autoResendUnfulfilledCommands: false,
    retryStrategy: null,
    reconnectOnError: null,
    maxRetriesPerRequest: 0,
    commandTimeout: UNBLOCK_BOUND_MS,
    connectTimeout: o.connectTimeout,
    keyPrefix: '',
    readOnly: false,
    protocol: 2,
    disableClientInfo: true,
    sentinels: null,
    Connector: undefined,
    natMap: null,
    scripts: undefined,
    himportFieldsets: undefined,
  };
  const r = rt.als === null ? new Redis(opts) : unowned(() => new Redis(opts));
  r.on('error', (e: unknown) => debug('ioredis: the unblock connection failed: %o', e));
  r.on('connect', () => {
    const st = r.stream;
    if (st != null) {
      st[kNever] = true;
      st.unref();
    }
  });
  return r;
}
