// mysql2 (2.x, 3.x): a connection queues commands (query, execute, prepare, ping...) in `_commands` behind
// `_command`, the one in flight, and starts the next from the reply handler; the promise API, pools and pool
// connections all go through `addCommand`.
import type { Socket } from 'node:net';
import type { ClientAdapter, ClientHooks, CommandState, Put } from './adapter.js';

const kPatched = Symbol.for('evy.clients.patched');

/** mysql2's RingQueue (3.x) or denque (2.x): both have these. */
interface CommandQueue {
  length: number;
  shift(): Mysql2Command | undefined;
  push(c: Mysql2Command): unknown;
  peekAt(i: number): Mysql2Command | undefined;
}

export interface Mysql2Connection {
  config?: { ssl?: unknown };
  /** The command in flight; the others wait in `_commands`. */
  _command?: Mysql2Command | null;
  _commands?: CommandQueue;
  stream?: Socket;
  threadId?: number | null;
  destroy?(): void;
}

export interface Mysql2Command {
  onResult?: ((err: unknown, ...a: unknown[]) => void) | null;
  emit(ev: string, ...a: unknown[]): boolean;
  listenerCount(ev: string): number;
}

function patchConnection(Connection: unknown, put: Put, hooks: ClientHooks): void {
  const P = (Connection as { prototype?: any } | null)?.prototype;
  if (P == null || !Object.hasOwn(P, 'addCommand') || typeof P.addCommand !== 'function' || Object.hasOwn(P, kPatched)) return;
  put(P, kPatched as unknown as string, true);
  const addCommand = P.addCommand as (this: Mysql2Connection, cmd: unknown) => unknown;
  put(P, 'addCommand', function addCommand_(this: Mysql2Connection, cmd: unknown) {
    // The first command is the handshake, added by the constructor right after it connected the stream.
    hooks.watched(this.stream, this); // again after a TLS upgrade replaced the stream
    if (this.config?.ssl) hooks.tlsAhead();
    const behind = this._command != null; // it waits in mysql2's queue, writing nothing until that one is answered
    const r = addCommand.call(this, cmd);
    if (behind) hooks.queued(this.stream);
    return r;
  });
}

function indexIn(q: CommandQueue | undefined, cmd: Mysql2Command): number {
  if (q === undefined) return -1;
  for (let i = 0; i < q.length; i++) if (q.peekAt(i) === cmd) return i;
  return -1;
}

/** Settles a command that will not run with `err`, as mysql2 settles its own (callback, else an 'error' event). */
function fail(cmd: Mysql2Command, err: unknown): void {
  const onResult = cmd.onResult;
  cmd.onResult = null;
  process.nextTick(() => {
    if (typeof onResult === 'function') onResult(err);
    else if (cmd.listenerCount('error') > 0) cmd.emit('error', err);
    cmd.emit('end');
  });
}

export const mysql2Adapter: ClientAdapter<Mysql2Connection, Mysql2Command> = {
  name: 'mysql2',
  modules: [
    // The class that defines the command queue: lib/base/connection.js (3.x), or lib/connection.js (2.x; in
    // 3.x that file only subclasses the base, and is left alone by the patch).
    { file: /[\\/]node_modules[\\/]mysql2[\\/]lib[\\/](?:base[\\/])?connection\.js$/, patch: patchConnection },
  ],

  socketOf: (c) => c.stream ?? null,

  state(c, cmd): CommandState {
    if (c._command === cmd) return 'running';
    return indexIn(c._commands, cmd) >= 0 ? 'queued' : 'done';
  },

  dequeue(c, cmd, err) {
    const q = c._commands;
    const i = indexIn(q, cmd);
    if (i < 0) return;
    // Neither queue can remove from the middle: take them all out and put the others back, in order.
    const rest: Mysql2Command[] = [];
    for (let n = q!.length; n > 0; n--) rest.push(q!.shift()!);
    for (const c2 of rest) if (c2 !== cmd) q!.push(c2);
    fail(cmd, err);
  },

  // mysql2 writes one command at a time: none is ever pipelined.
  drop(_c, cmd, err) {
    fail(cmd, err);
  },
};
