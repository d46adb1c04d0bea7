// evy/green/net: node:net whose sockets and servers belong to the green thread using them (docs/patching.md):
// a kill destroys the sockets it is connecting or waiting on and closes the servers it made listen.
// Classes are the real ones (instanceof keeps working); sockets made with `new Socket()` are tracked
// only under monkeyPatch.
import * as net from 'node:net';
import { layer } from '../patching/layer.js';
const { greenConnect, greenServer } = layer.net;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:net';

const base: typeof net = (net as any).default ?? net;
const O = base as unknown as Record<'connect' | 'createConnection' | 'createServer', (...a: unknown[]) => any>;

export const connect = function connect(...args: unknown[]) {
  return greenConnect(O.connect, args);
} as typeof net.connect;

export const createConnection = function createConnection(...args: unknown[]) {
  return greenConnect(O.createConnection, args);
} as typeof net.createConnection;

export const createServer = function createServer(...args: unknown[]) {
  return greenServer(O.createServer(...args));
} as typeof net.createServer;

const overrides = { connect, createConnection, createServer };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
