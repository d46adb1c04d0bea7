// evy/green/tls: node:tls whose TLS sockets and servers belong to the green thread using them, with the
// same rule as evy/green/net (a TLSSocket is a net.Socket: the same hooks see it).
import * as tls from 'node:tls';
import { greenServer, greenSocket } from '../ownership-net.js';

export * from 'node:tls';

const base = (tls as any).default ?? tls;
const O = { connect: base.connect, createServer: base.createServer };

export const connect = function connect(...args: unknown[]) {
  return greenSocket(O.connect(...args));
} as typeof tls.connect;

export const createServer = function createServer(...args: unknown[]) {
  return greenServer(O.createServer(...args));
} as typeof tls.createServer;

const green = Object.defineProperties({}, Object.getOwnPropertyDescriptors(base)) as typeof tls;
Object.assign(green, { connect, createServer });
export default green;
