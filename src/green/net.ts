// evy/green/net: node:net whose sockets and servers belong to the green thread using them (docs/patching.md):
// a kill destroys the sockets it is connecting or waiting on and closes the servers it made listen.
// Classes are the real ones (instanceof keeps working); sockets made with `new Socket()` are tracked
// only under monkeyPatch.
import * as net from 'node:net';
import { greenServer, greenSocket } from '../ownership-net.js';

export * from 'node:net';

const base = (net as any).default ?? net;
const O = { connect: base.connect, createConnection: base.createConnection, createServer: base.createServer };

export const connect = function connect(...args: unknown[]) {
  return greenSocket(O.connect(...args));
} as typeof net.connect;

export const createConnection = function createConnection(...args: unknown[]) {
  return greenSocket(O.createConnection(...args));
} as typeof net.createConnection;

export const createServer = function createServer(...args: unknown[]) {
  return greenServer(O.createServer(...args));
} as typeof net.createServer;

const green = Object.defineProperties({}, Object.getOwnPropertyDescriptors(base)) as typeof net;
Object.assign(green, { connect, createConnection, createServer });
export default green;
