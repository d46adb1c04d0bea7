// The kill of a thread's command on a watched client (the engine every adapter shares).
//
// Each command a thread issues on a watched client is owned by that thread until its reply has arrived.
// A kill then acts on that command alone, whoever else uses the connection:
// - queued in the client (not written): taken out of the queue, its caller gets the kill error;
// - written behind another command (a pipeline): its caller gets the kill error, its reply is dropped;
// - running on the server: the server is asked to cancel it (ServerCancel) from a side connection no
//   kill owns, and the connection is held (nothing else written) until the cancel has landed AND the
//   command's reply has arrived. The caller gets the server's own error (PostgreSQL 57014, MySQL 1317),
//   the connection stays open. Without a ServerCancel, the connection is destroyed as for any socket.
// A cancel that lands before the server has started the statement (its bytes still in transit, or read but not
// yet dispatched) is dropped by the server (PostgreSQL ignores it while reading a command, MariaDB resets the
// kill flag when it starts one): the statement then runs to its end. So while the killed command has not
// replied, the cancel is sent again (CANCEL_RESEND_MS, doubling); the hold covers every cancel sent.
// Bounds: if the statement has not ended CANCEL_BOUND_MS after the kill, a connection nobody else uses is
// destroyed, as without cancel; a cancel still unanswered after CANCEL_GIVE_UP_MS gets any connection destroyed
// (it could still land on the next command).
import { callbackContext, type GreenThread } from '../../greenthread.js';
import { disown, own, owningThread, unowned } from '../../ownership.js';
import { rt } from '../../runtime.js';
import { debug } from '../state.js';
import type { ClientAdapter, ClientHooks } from './adapter.js';

/** How long after a kill the statement has to end before a connection nobody else uses is destroyed. */
export const CANCEL_BOUND_MS = 1000;
/** How long after a kill an unanswered cancel is given before any connection it may still hit is destroyed. */
export const CANCEL_GIVE_UP_MS = 10_000;
/** How long after a cancel landed without the statement ending it is sent again (doubling, at most 400 ms). */
export const CANCEL_RESEND_MS = 50;

const kCommand = Symbol('evy.clients.command');
/** On a client: the cancel in progress (its connection is held). */
const kCancelling = Symbol.for('evy.clients.cancelling');

interface Tracked {
  adapter: ClientAdapter;
  client: object;
  hooks: ClientHooks;
  owner: GreenThread;
}

/**
 * `fn`, to be called back by a client with the outcome of a request the calling thread made (a connect, a
 * query, a pool checkout), runs as that thread while it is alive, else as no thread. Node would run it in
 * the context of the socket's callbacks (no thread's), or of whichever thread's release handed a pool
 * connection on; a query made from it would then be nobody's, or worse, another thread's.
 */
export function asCaller<F extends (...a: any[]) => unknown>(fn: F): F {
  const t = owningThread();
  if (t === null) return fn;
  const bound = function (this: unknown, ...args: unknown[]) {
    return rt.als!.run(t.dead ? callbackContext : t, () => fn.apply(this, args));
  } as F;
  callers.set(bound, t);
  return bound;
}

/** The thread a callback made by `asCaller` (or passed to `forCaller`) stands for. */
const callers = new WeakMap<object, GreenThread>();

/** Whether `fn` is a callback `asCaller` made (a client handing it on to itself). */
export function boundToCaller(fn: object): boolean {
  return callers.has(fn);
}

/** Records that `fn` is a callback of a request `t` made (for `runFor`). */
export function forCaller(fn: object, t: GreenThread): void {
  callers.set(fn, t);
}

/**
 * Runs `work`, which a client does for the request whose callback is `cb` (a pool connecting for a queued
 * caller), as that request's thread while it is alive and not killed, else as no thread: never as whichever
 * thread's code happened to trigger it (the release of another thread, whose kill would take the new
 * connection with it).
 */
export function runFor<R>(cb: unknown, work: () => R): R {
  if (rt.als === null) return work();
  const t = typeof cb === 'function' ? callers.get(cb) : undefined;
  return rt.als.run(t !== undefined && !t.dead && t._killError === undefined ? t : callbackContext, work);
}

/** `cmd` was issued on `client` by the calling thread: it owns it until `answered(cmd)`. */
export function issued(adapter: ClientAdapter, client: object, cmd: object, hooks: ClientHooks): boolean {
  const t = owningThread();
  // Main owns nothing; a killed thread's code still running (its finally blocks: a ROLLBACK, a release)
  // makes no new claims: its commands run.
  if (t === null || t._killError !== undefined) return false;
  const c = cmd as Record<symbol, Tracked | undefined>;
  if (c[kCommand] !== undefined) return false;
  if (own(cmd, killCommand, t) === null) return false;
  c[kCommand] = { adapter, client, hooks, owner: t };
  return true;
}

/** `cmd`'s reply arrived (or it failed): nobody owns it any more. */
export function answered(cmd: object): void {
  const c = cmd as Record<symbol, Tracked | undefined>;
  const tr = c[kCommand];
  if (tr === undefined) return;
  c[kCommand] = undefined;
  disown(cmd, tr.owner);
}

function killCommand(cmd: object, err: unknown): void {
  const c = cmd as Record<symbol, Tracked | undefined>;
  const tr = c[kCommand];
  if (tr === undefined) return;
  c[kCommand] = undefined;
  const { adapter, client, hooks } = tr;
  switch (adapter.state(client, cmd)) {
    case 'queued':
      adapter.dequeue(client, cmd, err);
      return;
    case 'pipelined':
      adapter.drop(client, cmd, err);
      return;
    case 'running':
      if (adapter.cancel === undefined) hooks.destroy(adapter.socketOf(client), err, false);
      else cancelRunning(adapter, client, hooks, err);
      return;
    default:
  }
}

interface Cancelling {
  landed: boolean;
  /** The cancel never reached the server (side connection failed before the request was written). */
  notSent: boolean;
  replied: boolean;
  over: boolean;
  release: () => void;
  /** Give-ups of the cancels sent and not answered yet. */
  aborts: Set<() => void>;
  timer: NodeJS.Timeout | null;
  resend: NodeJS.Timeout | null;
  resendMs: number;
}

function cancelRunning(adapter: ClientAdapter, client: object, hooks: ClientHooks, err: unknown): void {
  const cancel = adapter.cancel!;
  const cl = client as Record<symbol, Cancelling | undefined>;
  if (cl[kCancelling] !== undefined) return; // one command runs at a time: already being cancelled
  const sock = adapter.socketOf(client);
  if (sock === null || sock.destroyed) return;
  const st: Cancelling = { landed: false, notSent: false, replied: false, over: false, release: noop, aborts: new Set(), timer: null, resend: null, resendMs: CANCEL_RESEND_MS };
  cl[kCancelling] = st;
  const abortAll = (): void => {
    for (const abort of st.aborts) abort();
    st.aborts.clear();
  };
  // The connection gone before the statement replied (destroyed at the bound, or by someone else): the statement
  // still runs on the server (it does not notice a vanished client by default), so the cancels on their way go on
  // until the give-up, CANCEL_GIVE_UP_MS after the kill. They name a backend that runs nobody else's statement now.
  const killedAt = performance.now();
  const keepCancels = (): void => {
    if (st.aborts.size > 0) rt.timers.setTimeout(abortAll, Math.max(0, killedAt + CANCEL_GIVE_UP_MS - performance.now())).unref();
  };
  const end = (): void => {
    if (st.over) return;
    st.over = true;
    cl[kCancelling] = undefined;
    if (st.timer !== null) rt.timers.clearTimeout(st.timer);
    if (st.resend !== null) rt.timers.clearTimeout(st.resend);
    sock.removeListener('close', onClose);
  };
  // Released once the reply has arrived and every cancel sent has been answered (a later one may still land).
  const check = (): void => {
    if (st.over || !st.replied || st.aborts.size > 0 || !(st.landed || st.notSent)) return;
    end();
    // As the connection's own callbacks would have (the release stands in for its reply handler, which writes the
    // next command), not in the context of what called this: the cancel's side connection, made in unowned(), runs
    // as main, and main's own writes make a killed thread's private connection main's for good.
    const releaseNow = (): void => {
      st.release();
      hooks.idle(sock);
    };
    if (rt.als === null) releaseNow();
    else rt.als.run(callbackContext, releaseNow);
  };
  // The connection died meanwhile: nothing left to hold.
  const onClose = (): void => {
    end();
    if (st.replied) abortAll();
    else keepCancels();
  };
  sock.once('close', onClose);
  st.release = cancel.hold(client, () => {
    st.replied = true;
    check();
  });
  // The bound: the statement has not ended 1 s after the kill. A connection nobody else uses is destroyed, as
  // without cancel. A shared one keeps waiting (the others' commands wait for this one, as without cancel),
  // as does one whose statement did end while the cancel's answer is late (a loaded server): only a cancel
  // still unanswered CANCEL_GIVE_UP_MS after the kill, which may yet land on anything, gets it destroyed.
  const giveUp = (): void => {
    st.timer = null;
    if (st.over) return;
    if (st.aborts.size > 0 || (!st.landed && !st.notSent)) {
      debug('cancel of a %s command unanswered after %d ms: destroying its connection', adapter.name, CANCEL_GIVE_UP_MS);
      abortAll();
      end();
      hooks.destroy(sock, err, true);
    }
  };
  st.timer = rt.timers.setTimeout(() => {
    st.timer = null;
    if (st.over) return;
    if (!st.replied && hooks.destroy(sock, err, false)) {
      debug('%s statement still running %d ms after its kill: destroyed its connection', adapter.name, CANCEL_BOUND_MS);
      end();
      keepCancels(); // (a side connection still in its TLS handshake on a loaded machine)
      return;
    }
    st.timer = rt.timers.setTimeout(giveUp, CANCEL_GIVE_UP_MS - CANCEL_BOUND_MS);
    st.timer.unref();
  }, CANCEL_BOUND_MS);
  st.timer.unref();
  // Landed, and the statement has not ended: the cancel may have come before the server started it. Again.
  const resendLater = (): void => {
    if (st.over || st.replied || st.resend !== null) return;
    st.resend = rt.timers.setTimeout(() => {
      st.resend = null;
      if (st.over || st.replied || st.aborts.size > 0) return;
      debug('%s statement still running %d ms after its cancel landed: cancelling again', adapter.name, st.resendMs);
      st.resendMs = Math.min(st.resendMs * 2, 400);
      send();
    }, st.resendMs);
    st.resend.unref();
  };
  // A connection that no kill owns: made as if by no thread.
  const send = (): void => {
    let abort: (() => void) | null = null;
    let settled = false;
    abort = unowned(() =>
      cancel.send(client, (outcome) => {
        settled = true;
        if (abort !== null) st.aborts.delete(abort);
        if (st.over) return;
        if (outcome === 'landed') {
          st.landed = true;
          resendLater();
        } else if (!st.landed) {
          st.notSent = true;
          // The statement runs on: a connection nobody else uses is destroyed now, as without cancel.
          if (!st.replied && hooks.destroy(sock, err, false)) {
            abortAll();
            return end();
          }
        }
        check();
      }),
    );
    if (!settled) st.aborts.add(abort);
  };
  send();
}

function noop(): void {}
