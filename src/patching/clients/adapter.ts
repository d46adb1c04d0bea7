// The shape every watched client library has (pg, mysql2, and the next ones: ioredis, postgres, mongodb).
//
// A client that queues commands in JavaScript, behind the one its connection is running, hides from the
// socket which thread a write serves. An adapter tells evy three things about one such library, so that a
// kill is exact on the client and reaches the server:
//   1. where its code is, found as it loads (files matched by path, a patch for each one's exports);
//   2. how it queues: which command runs on the connection now, which wait behind it, which thread each
//      is for (reported through `ClientHooks` as the patched methods are called);
//   3. how it cancels on the server: a side connection that no kill owns sends the cancel of the running
//      command, and the connection is held (nothing else written on it) until the cancel has landed.
//
// A new adapter is a copy of pg.ts or mysql2.ts, one file in this folder, listed in index.ts. Its patches:
//   - call hooks.watched(socket, client, adapter) whenever a command is issued (the socket may have changed),
//     hooks.ready(socket) once the connection is set up, hooks.queued(socket) when a command waits behind
//     another's, hooks.tlsAhead() before the client starts TLS;
//   - call commands.issued(adapter, client, cmd, hooks) for each command a thread issues, and
//     commands.answered(cmd) when its reply has wholly arrived (or it failed);
//   - run the callbacks the client calls with the outcome of a thread's request as that thread
//     (commands.asCaller), and work a pool does for a queued caller as that caller (commands.runFor);
//   - implement socketOf/state/dequeue/drop, and cancel (send + hold) when the server can cancel.
import type { Socket } from 'node:net';
import { builtin } from '../state.js';

const { types } = builtin<typeof import('node:util')>('util');

/** Replaces `obj[key]`, remembering the original so that `undo()` of the last net patch restores it. */
export type Put = (obj: any, key: string, value: unknown) => void;

/**
 * `obj[key]` when it is an own data property, else undefined. The shape tests run on whatever every CommonJS
 * file exports, so they read no accessor (a lazy getter may load or throw) and no Proxy (Node's own
 * test/common throws on a name it does not know).
 */
export function ownValue(obj: unknown, key: string): unknown {
  if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function') || types.isProxy(obj)) return undefined;
  return Object.getOwnPropertyDescriptor(obj, key)?.value;
}

/** Has the prototype of `cls` all of `methods` as its own functions? (ClientModule.looksLike) */
export function hasMethods(cls: unknown, methods: readonly string[]): boolean {
  if (typeof cls !== 'function') return false;
  const P = ownValue(cls, 'prototype');
  if (P == null || typeof P !== 'object') return false;
  for (const m of methods) if (typeof ownValue(P, m) !== 'function') return false;
  return true;
}

/** What the net layer (patching/net.ts) offers the adapters' patches. */
export interface ClientHooks {
  /** A command was queued in the client behind the one in flight on `socket`. */
  queued(socket: unknown): void;
  /**
   * `socket` is `client`'s, a watched client of `adapter`: every command queued on it is reported through
   * `queued`, and every command a thread issues on it is owned through commands.ts (`issued`/`answered`).
   */
  watched(socket: unknown, client: object, adapter: ClientAdapter): void;
  /**
   * `client`'s connection on `socket` is set up (its handshake is over): from now on a kill acts on the
   * killed thread's commands (commands.ts), never on the socket itself.
   */
  ready(socket: unknown): void;
  /**
   * Destroys the connection (the fallback of a cancel), through the adapter's `destroy` when it has one.
   * A shared socket is left alone unless `force`. Returns whether it was destroyed now.
   */
  destroy(socket: unknown, err: unknown, force: boolean): boolean;
  /**
   * The client will start TLS on its socket: load `tls` now, so that evy's `tls.connect` hook is in place
   * when the client calls it (it loads `tls` itself only at that moment, too late for the hook).
   */
  tlsAhead(): void;
  /** The cancel that held `socket` is over and the connection released: it may be idle now. */
  idle(socket: unknown): void;
}

/**
 * One file of a client library, recognised by its path when it loads (or in the module cache), or, where the
 * path does not tell (a vendored or renamed copy), by the shape of what it exports.
 */
export interface ClientModule {
  /** The file, e.g. `/[\\/]node_modules[\\/]pg[\\/]lib[\\/]client\.js$/`. */
  readonly file: RegExp;
  /**
   * Does a file at another path export this one's class? (Its own methods, by name: cheap, and run on every
   * CommonJS file that loads.)
   */
  looksLike(exports: unknown): boolean;
  /**
   * Patches the file's exports (idempotent: the same class may be reached twice). Must leave anything it
   * does not recognise alone: another major version of the library may sit at the same path.
   */
  patch(exports: unknown, put: Put, hooks: ClientHooks): void;
}

/** Where a command stands on its client's connection. */
export type CommandState =
  /** In the client's queue, not written: it can be taken out, and nobody else is affected. */
  | 'queued'
  /** Written, and the server is running it: nothing is written behind it yet. */
  | 'running'
  /** Written behind another command (a pipeline): it cannot be taken back; its reply can only be dropped. */
  | 'pipelined'
  /** Answered, or failed with the connection. */
  | 'done';

/**
 * How a client cancels a command on the server (PostgreSQL's CancelRequest, MySQL's `KILL QUERY`, Redis's
 * `CLIENT UNBLOCK`). A cancel names a connection (a backend, a thread id, a client id), not a command: so the
 * connection is held from the kill until the cancel has landed AND the killed command's reply has arrived,
 * and only then does the client write its next command. Without this, a cancel that arrives late would hit
 * the next thread's command.
 *
 * A client that pipelines (writes other callers' commands behind the running one before any kill: ioredis)
 * cannot be held after the fact: what is on the wire behind the command is there already. Such a client holds
 * its writes behind every command the server may block on from the moment it is written, and sends the cancel
 * only while every such command on the wire is a killed thread's (ioredis-unblock.ts).
 */
export interface ServerCancel<Client extends object = any> {
  /**
   * Sends the cancel for what `client`'s connection is running, on a side connection made inside `unowned()`
   * (no kill ever destroys it) with the connection's own transport and TLS mode. Calls `done` once:
   * `'landed'` when the server has acted (it closed the cancel connection, or answered the statement), or
   * `'not-sent'` when the server certainly never got it (the side connection failed before the request was
   * written). Returns a function that gives up (closes the side connection; `done` is then not called).
   */
  send(client: Client, done: (outcome: 'landed' | 'not-sent') => void): () => void;
  /**
   * Stops the client from writing its next command until the returned `release()` is called. `replied()` is
   * called once the running command's reply has wholly arrived (its error or result, and whatever ends it:
   * PostgreSQL's ReadyForQuery).
   */
  hold(client: Client, replied: () => void): () => void;
}

/** One watched client library. Each file of this folder (pg.ts, mysql2.ts, ...) exports one. */
export interface ClientAdapter<Client extends object = any, Command extends object = any> {
  /** The npm package, for docs and `NODE_DEBUG=evy`. */
  readonly name: string;

  // 1. Finding it.
  /** Its files to patch as they load. */
  readonly modules: readonly ClientModule[];

  // 2. Seeing its queue.
  /** The socket that carries `client`'s connection now (a TLS upgrade or a reconnect replaces it). */
  socketOf(client: Client): Socket | null;
  /** Where `cmd` stands on `client`. */
  state(client: Client, cmd: Command): CommandState;
  /**
   * Has `client` a command running or queued (a killed one being cancelled, a hold, anyone's)? Its connection is
   * then in use, whoever the socket's last user was: a killed thread's private connection is orphaned only once
   * this is false (patching/net.ts). Without it, a connection counts as idle when no thread awaits a reply on it.
   */
  busy?(client: Client): boolean;
  /**
   * Takes a `'queued'` command out of the client's queue; whoever awaits it gets `err`. It is never written:
   * a client that keeps commands offline while it (re)connects (ioredis) must not send it when it flushes them.
   */
  dequeue(client: Client, cmd: Command, err: unknown): void;
  /**
   * A `'pipelined'` command: whoever awaits it gets `err` now, and its reply is dropped when it arrives. It is
   * never sent again: a client that replays unanswered commands on its next connection (ioredis's
   * `autoResendUnfulfilledCommands`) must leave it out, or a killed `INCR` whose reply was lost runs twice.
   */
  drop(client: Client, cmd: Command, err: unknown): void;
  /**
   * Called when evy destroys the connection (a cancel's fallback, an abandoned setup), before it destroys the
   * socket: the client forgets the connection at once (a mysql2 `PoolConnection` leaves its pool before it
   * can be handed out again).
   */
  destroy?(client: Client, err: unknown): void;

  // 3. Cancelling on the server.
  /** Absent: a killed thread's running command is cut off by destroying its connection, as for any socket. */
  readonly cancel?: ServerCancel<Client>;
}
