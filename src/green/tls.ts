// evy/green/tls: node:tls whose TLS sockets and servers belong to the green thread using them, with the
// same rule as evy/green/net (a TLSSocket is a net.Socket: the same hooks see it).
import * as tls from 'node:tls';
import { layer } from '../patching/layer.js';
const { greenConnect, greenServer, neutralFactory } = layer.net;
const { cjsOverrides, greenDefault } = layer.state;

export * from 'node:tls';

const base: typeof tls = (tls as any).default ?? tls;
const O = base as unknown as Record<"connect" | "createServer", (...a: unknown[]) => any>;

const tlsConnect = neutralFactory(O.connect);

export const connect = function connect(...args: unknown[]) {
  return greenConnect(tlsConnect, args);
} as typeof tls.connect;

export const createServer = function createServer(...args: unknown[]) {
  return greenServer(O.createServer(...args));
} as typeof tls.createServer;

const overrides = { connect, createServer };
declare const module: { exports?: unknown } | undefined;
cjsOverrides(typeof module === 'undefined' ? undefined : module, overrides);

const green = greenDefault(base, overrides);
export default green;
