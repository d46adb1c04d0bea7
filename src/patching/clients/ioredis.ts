// ioredis: a kill acts on the killed thread's commands, never on the connection they share.
//
// ioredis pipelines every caller's commands on one socket and, when the socket drops, replays the ones not
// yet answered on the next. So its socket is never owned by a thread (destroying it would cut everyone's
// commands and make ioredis replay them); each command is, from the moment its thread sends it until its
// reply. A kill of that thread (docs/patching.md, "ioredis"):
// - settles the command at once with the kill error (its reply, when it comes, is dropped);
// - takes it out of what ioredis sends later: a command not written yet is never written, one in flight
//   when the connection drops is never replayed (the offline queue and the `autoResendUnfulfilledCommands`
//   replay both go through `sendCommand`, where it is dropped);
// - unblocks a blocking command on the server (ioredis-unblock.ts).
// A pipeline or a MULTI/EXEC is one write: once written it runs to its end (its results dropped); not
// written yet, it is dropped whole, and only if every command in it is a killed thread's.
import { callbackContext, type GreenThread } from '../../greenthread.js';
import { disown, own, owningThread } from '../../ownership.js';
import { orphanSocket } from '../../net/orphan.js';
import { rt } from '../../runtime.js';
import { kNever } from '../state.js';
import { hasMethods, ownValue, type ClientAdapter, type CommandState, type Put } from './adapter.js';
import { blockerAnswered, blockerKilled, heldKilled, isBlocking, isHeld, kClass, kKilled, sendWatched, watching, type Cmd, type RedisClient } from './ioredis-unblock.js';

/** The thread that sent the command (null: main or a callback), set the first time evy sees it. */
const kThread = Symbol('evy.ioredis.thread');
/** Set once the command went through the client's sendCommand. */
const kSent = Symbol('evy.ioredis.sent');
/** The pipeline (or MULTI) it was queued in. */
const kPipeline = Symbol('evy.ioredis.pipeline');
/** Its own reject, before evy's wrapper. */
const kReject = Symbol('evy.ioredis.reject');
/** On a pipeline: whether a blocking command is in it (computed at its first write). */
const kBlocks = Symbol('evy.ioredis.pipelineBlocks');
/** On a client: the thread whose `MULTI` (sent on its own, `multi({ pipeline: false })`) awaits its EXEC. */
const kMulti = Symbol('evy.ioredis.multi');
/** On a client: what a kill of that thread needs to DISCARD it (the resource it owns meanwhile). */
const kMultiToken = Symbol('evy.ioredis.multiToken');
/** On a client: the thread that connected it first (null: main), whether anyone else used it, orphaned. */
const kCreator = Symbol('evy.ioredis.creator');
const kOthers = Symbol('evy.ioredis.others');
const kDetached = Symbol('evy.ioredis.detached');
const kPatched = Symbol.for('evy.clients.patched');

interface Pipeline extends Record<symbol, unknown> {
  _queue: Cmd[];
  promise: Promise<unknown>;
  reject(e: unknown): void;
}

interface Tagged extends Cmd {
  [kThread]?: GreenThread | null;
  [kSent]?: true;
  [kPipeline]?: Pipeline;
  [kKilled]?: unknown;
  [kReject]?: (e: unknown) => unknown;
}

type Client = RedisClient & Record<symbol, any>;

const noop = (): void => {};

/**
 * Wraps resolve/reject, which ioredis calls with the server's reply (or when it gives up on the command):
 * the thread's ownership ends, a blocking command's answer is noted, and a killed command's late reply is
 * dropped (it was settled with the kill error already). Cluster redirections make new ones (initPromise):
 * wrapped again at the next send.
 */
function watchSettle(c: Tagged, t: GreenThread | null): void {
  if (c[kReject] !== undefined && (c.reject as { evy?: true }).evy === true) return;
  const resolve = c.resolve;
  const reject = c.reject;
  let owner = t;
  const settled = (): boolean => {
    if (owner !== null) disown(c, owner);
    owner = null;
    blockerAnswered(c);
    return c[kKilled] !== undefined;
  };
  c.resolve = (v: unknown) => (settled() ? c.promise : resolve(v));
  const reject_ = (e: unknown): unknown => (settled() ? c.promise : reject(e));
  (reject_ as { evy?: true }).evy = true;
  c.reject = reject_;
  c[kReject] = reject;
}

/** A killed thread's command: settled now with the kill error, and never (re)sent. */
function destroyCommand(c: Tagged, err: unknown): void {
  if (c[kKilled] !== undefined || c.isSettled === true) return;
  if (c[kReject] === undefined) watchSettle(c, null);
  c[kKilled] = err;
  c.promise.catch(noop); // the thread may never have awaited it: its kill is no unhandled rejection
  c[kReject]!(err);
  const p = c[kPipeline];
  if (p !== undefined && onlyThread(p) === c[kThread]) {
    // The thread's own pipeline: exec() rejects with the kill error instead of resolving with it inside.
    p.promise.catch(noop);
    p.reject(err);
  }
  if (c[kSent] === true && !heldKilled(c)) blockerKilled(c);
}

/** The one thread every command of `p` belongs to, or undefined. */
function onlyThread(p: Pipeline): GreenThread | null | undefined {
  let t: GreenThread | null | undefined;
  for (const c of p._queue as Tagged[]) {
    const u = c[kThread];
    if (u === undefined || (t !== undefined && u !== t)) return undefined;
    t = u;
  }
  return t;
}

/** Never write or replay it: its thread was killed while it was outstanding (a pipeline: all of it was). */
function dropped(c: Tagged): boolean {
  if (c[kKilled] === undefined) return false;
  const p = c[kPipeline];
  if (p === undefined) return true;
  for (const o of p._queue as Tagged[]) if (o[kKilled] === undefined) return false; // written with the others
  return true;
}

/**
 * First sight of a command: whose it is. A live thread owns it until its reply. A killed thread's code that
 * still runs (its finally blocks: releasing a lock, a cleanup write) makes no claim: its commands run.
 */
function tag(c: Tagged): GreenThread | null {
  if (c[kThread] !== undefined) return c[kThread]!;
  let t = rt.als === null ? null : owningThread();
  if (t !== null && (t._killError !== undefined || own(c, destroyCommand as (r: object, e: unknown) => void, t) === null)) t = null;
  c[kThread] = t;
  if (t !== null) watchSettle(c, t);
  return t;
}

/** Someone other than the client's creator sent a command on it: it is shared (its next write adopts it back). */
function usedBy(client: Client, t: GreenThread | null): void {
  if (t === client[kCreator] || client[kOthers] === true) return;
  if (t === null && rt.als!.getStore() === callbackContext) return; // ioredis's own (handshake, replay)
  client[kOthers] = true;
  client[kDetached] = false;
}

/**
 * The thread that first connected the client was killed and nobody else ever sent a command on it: nobody
 * may be left to close it. Once the thread has finished (its finally blocks may still use the client), its
 * socket is orphaned (net/orphan.ts): it keeps no process alive, is closed once nothing reaches the client any
 * more, and works as before for whoever still has it (the next write adopts it back). So are the sockets of
 * its reconnections. A subscriber or a monitor is left alone.
 */
function creatorKilled(client: Client): void {
  (client[kCreator] as GreenThread).link(orphanIfAlone, client);
}

function orphanIfAlone(_t: GreenThread, client: Client): void {
  if (client[kOthers] === true || client.options?.monitor === true || client.condition?.subscriber) return;
  const first = client[kDetached] === undefined;
  client[kDetached] = true;
  if (client.stream != null) orphanSocket(client.stream);
  if (!first) return;
  client.on('reconnecting', () => {
    if (client[kDetached] === true) client.reconnectTimeout?.unref?.();
  });
  client.on('connect', () => {
    if (client[kDetached] === true && client.stream != null) orphanSocket(client.stream);
  });
}

/**
 * `multi({ pipeline: false })` sends MULTI on its own, then each command (the server queues them), then EXEC.
 * A thread killed in between leaves the connection inside its transaction: evy sends DISCARD for it, so what
 * it queued never runs and the connection leaves MULTI (a shared client's other callers would be queued into
 * it otherwise).
 */
function transaction(client: Client, c: Cmd, t: GreenThread | null, send: SendFn, Command: CommandClass): void {
  const first = c.name.charCodeAt(0) | 0x20;
  if (first !== 0x6d && first !== 0x65 && first !== 0x64) return; // m, e, d
  const n = c.name.toLowerCase();
  if (n === 'multi' && t !== null) {
    client[kMulti] = t;
    own(client[kMultiToken] ??= { client, send, Command }, discardFor as (r: object, e: unknown) => void, t);
  } else if ((n === 'exec' || n === 'discard') && client[kMulti] === t) {
    client[kMulti] = undefined;
    if (t !== null) disown(client[kMultiToken], t);
  }
}

type SendFn = (this: RedisClient, c: Cmd, stream?: unknown, node?: unknown) => unknown;
type CommandClass = new (name: string, args: unknown[]) => Cmd;

function discardFor(token: { client: Client; send: SendFn; Command: CommandClass }): void {
  const { client, send, Command } = token;
  if (client[kMulti] === undefined) return;
  client[kMulti] = undefined;
  const d = new Command('discard', []);
  d.promise.catch(noop);
  rt.als!.run(callbackContext, () => send.call(client, d));
}

function patchRedis(exports: unknown, put: Put): void {
  const Redis = (exports as { default?: unknown } | null)?.default as { prototype?: any; Command?: unknown } | undefined;
  const P = Redis?.prototype;
  if (P == null || typeof P.sendCommand !== 'function' || typeof P.connect !== 'function' || typeof P.flushQueue !== 'function') return;
  if (typeof Redis!.Command !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  put(P, kClass as unknown as string, Redis);

  const connect = P.connect as (this: Client, ...a: unknown[]) => unknown;
  put(P, 'connect', function connect_(this: Client, ...args: unknown[]) {
    if (rt.als === null) return connect.apply(this, args);
    if (this[kCreator] === undefined) {
      const t = owningThread();
      this[kCreator] = t;
      if (t !== null) own(this, creatorKilled as (r: object) => void, t);
    }
    // The socket belongs to no thread (its commands do), and what ioredis does from its callbacks
    // (handshake, replays) is no thread's either.
    return rt.als.run(callbackContext, () => connect.apply(this, args));
  });

  const send = P.sendCommand as (this: RedisClient, c: Cmd, stream?: unknown, node?: unknown) => unknown;
  const Command = Redis!.Command as new (name: string, args: unknown[]) => Cmd;
  put(P, 'sendCommand', function sendCommand_(this: Client, c: Tagged, stream?: unknown, node?: unknown) {
    const s = this.stream;
    // Connected before any thread existed (connect_ let it through): never owned all the same.
    if (s != null && s[kNever] !== true) s[kNever] = true;
    if (c[kSent] !== true) {
      c[kSent] = true;
      const t = tag(c);
      if (this[kCreator] != null) usedBy(this, t ?? owningThread());
      if (stream === undefined && (t !== null || this[kMulti] !== undefined)) transaction(this, c, t, send, Command);
    }
    if (dropped(c)) return c.promise;
    const blocking = isBlocking(c);
    let batchBlocks = false;
    const p = c[kPipeline];
    if (p !== undefined && c.pipelineIndex === 0) batchBlocks = (p[kBlocks] ??= p._queue.some((o) => isBlocking(o as Cmd))) as boolean;
    if (!blocking && !batchBlocks && !watching(s)) return send.call(this, c, stream, node);
    if (blocking && c[kReject] === undefined) watchSettle(c, null); // a live one's answer is watched too
    return sendWatched(this, c, stream, node, blocking, batchBlocks, send, Command);
  });
}

function patchPipeline(exports: unknown, put: Put): void {
  const Pipeline = (exports as { default?: unknown } | null)?.default as { prototype?: any } | undefined;
  const P = Pipeline?.prototype;
  if (P == null || typeof P.sendCommand !== 'function' || typeof P.fillResult !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  // Queued by the caller's own code. Auto-pipelining runs exec() later, in whichever caller's context
  // came first, so the command is tagged here, with its own caller.
  const sendCommand = P.sendCommand as (this: Pipeline, c: Cmd) => unknown;
  put(P, 'sendCommand', function sendCommand_(this: Pipeline, c: Tagged) {
    const r = sendCommand.call(this, c);
    c[kPipeline] = this;
    if (rt.als !== null) tag(c);
    return r;
  });
}

function inQueue(q: { length: number; peekAt(i: number): { command: Cmd } | undefined } | null | undefined, c: Cmd): boolean {
  if (q == null) return false;
  for (let i = 0; i < q.length; i++) if (q.peekAt(i)?.command === c) return true;
  return false;
}

type IoClient = Client & { offlineQueue?: Parameters<typeof inQueue>[0]; prevCommandQueue?: Parameters<typeof inQueue>[0] };

/**
 * ioredis 5.x and 6.x, found by the files that define the client and its pipelines. Its kills are driven
 * here, command by command (the socket is never owned, see the top of this file); the queue readers below
 * are the same rules seen from outside.
 */
export const ioredisAdapter: ClientAdapter<IoClient, Cmd> = {
  name: 'ioredis',
  modules: [
    {
      file: /[\\/]node_modules[\\/]ioredis[\\/]built[\\/]Redis\.js$/,
      looksLike: (e) => hasMethods(ownValue(e, 'default'), ['sendCommand', 'flushQueue', 'resetOfflineQueue', 'handleReconnection']),
      patch: patchRedis,
    },
    {
      file: /[\\/]node_modules[\\/]ioredis[\\/]built[\\/]Pipeline\.js$/,
      looksLike: (e) => hasMethods(ownValue(e, 'default'), ['fillResult', 'sendCommand', 'addBatch']),
      patch: patchPipeline,
    },
  ],

  socketOf: (c) => c.stream ?? null,

  state(c, cmd): CommandState {
    if (inQueue(c.offlineQueue, cmd) || inQueue(c.prevCommandQueue, cmd) || isHeld(cmd)) return 'queued';
    if (inQueue(c.commandQueue as Parameters<typeof inQueue>[0], cmd)) return isBlocking(cmd) ? 'running' : 'pipelined';
    return 'done';
  },

  // Not written: settled now; ioredis's sendCommand drops it when it comes out of the queue (or the held writes).
  dequeue: (_c, cmd, err) => destroyCommand(cmd as Tagged, err),
  // Written: settled now, its reply dropped, never replayed after a reconnect; a blocking one is unblocked.
  drop: (_c, cmd, err) => destroyCommand(cmd as Tagged, err),
};
