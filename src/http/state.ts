// Shared state of the server side (request threads, deadlines, shutdown). It lives in rt.ext so the ESM and
// the CJS build of evy see one table, as the patch table does.
import type { Server } from 'node:net';
import { rt } from '../runtime.js';

/** A ServerResponse as evy sees it (fields read and the symbols it sets). */
export type Res = Record<symbol, any> & {
  req: Req;
  headersSent: boolean;
  writableEnded: boolean;
  shouldKeepAlive: boolean;
  socket: (Record<symbol, any> & { destroy(err?: unknown): void; destroyed: boolean }) | null;
  getHeaderNames(): string[];
  removeHeader(name: string): void;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body?: string): unknown;
  on(ev: string, fn: (...a: any[]) => void): unknown;
  listenerCount(ev: string): number;
};
export type Req = { method?: string; url?: string };
export type HttpServer = Server & Record<symbol, any> & { closeAllConnections?: () => void; closeIdleConnections?: () => void };

export interface HttpState {
  /** Request threads are on (the `http` patch key). */
  on: boolean;
  /** The process-wide deadline in ms (EVY_REQUEST_DEADLINE, read when the patch is made), or null. */
  deadlineMs: number | null;
  /** EVY_SHUTDOWN_DRAIN in ms when set (the signal handlers are installed then), else null. */
  drainMs: number | null;
  /** shutdown() has begun: new responses get `Connection: close`. */
  draining: boolean;
  /** Responses whose request thread is alive and that the app has not ended. */
  inflight: Set<Res>;
  /** The http(s) servers seen listening (or serving), until they close. */
  servers: Set<HttpServer>;
  /** Removes the emit hook; null when not installed. */
  uninstall: (() => void) | null;
  /** The signal handlers shutdown installs for EVY_SHUTDOWN_DRAIN. */
  signals: (() => void) | null;
  shutdown: Promise<void> | null;
  /** A second signal during the drain: end it now. */
  cut: boolean;
}

export const hs: HttpState = ((rt.ext.http as HttpState | undefined) ??= {
  on: false,
  deadlineMs: null,
  drainMs: null,
  draining: false,
  inflight: new Set(),
  servers: new Set(),
  uninstall: null,
  signals: null,
  shutdown: null,
  cut: false,
});

/** On a response: its request's green thread. */
export const kThread = Symbol.for('evy.http.requestThread');
/** On a response: when its request started (performance.now()), and its deadline timer. */
export const kStart = Symbol.for('evy.http.start');
export const kTimer = Symbol.for('evy.http.deadlineTimer');
/** On a server: its deadline in ms (0: none), set by requestDeadline(); absent: the process default. */
export const kDeadline = Symbol.for('evy.http.deadline');
/** On a server: it is in hs.servers. */
export const kKnown = Symbol.for('evy.http.known');
